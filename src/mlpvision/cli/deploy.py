"""``mlpvision deploy``: a model file re-parameterized into its deploy form, and verified."""

from __future__ import annotations

import argparse

from .common import add_limit_flags


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("deploy", help="re-parameterize a model file into its deploy form and verify it")
    p.add_argument("input", help="train-form model file (.safetensors)")
    p.add_argument("output", help="where to write the deploy-form model file")
    p.add_argument("--batch-size", type=int, default=4, help="random images for the check (default: %(default)s)")
    add_limit_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy import deploy_checkpoint
    from ..io import check_writable

    check_writable(args.output)
    r = deploy_checkpoint(args.input, args.output, batch_size=args.batch_size)
    print(f"{r.model}: {r.params_before / 1e6:.3f} M parameters in train form -> {r.params_after / 1e6:.3f} M deployed")
    print(f"max |train - deploy| on random input: {r.max_abs_diff:.3g} (output scale {r.output_scale:.3g})")
    print(f"saved {r.path}")
    return 0
