"""Re-parameterization speed: the conv -> FC merge by shift matrices (``mlpvision.reparam.conv_to_fc``) against the
earlier method, which convolved a batch of C·h·w one-hot images, side by side in one run.

Two measurements, each timed round-robin (``mlpvision.deploy.measure``):

1. ``conv_to_fc`` alone on a few kernel shapes (channels, kernel size, map size, groups, dtype), with the largest
   absolute difference between the two FC weights (the new method places kernel entries, so it should be 0).
2. ``reparameterize`` of whole RepMLP models (train form -> FC-only deploy form), with the models' ``conv_to_fc``
   swapped for the one-hot method, and the largest difference between the two deploy forms' outputs.

Writes docs/reparam_speed.json and docs/reparam_speed.md.

    python benchmarks/reparam_speed.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, machine, start, write_results

import mlpvision.models.repmlp as repmlp_module
import mlpvision.models.repmlpnet as repmlpnet_module
from mlpvision.models import create_model
from mlpvision.reparam import conv_to_fc, reparameterize

# (output channels, input channels, kernel, map side, groups, dtype)
SHAPES = [
    (64, 64, 3, 8, 1, torch.float64),
    (64, 32, 5, 14, 1, torch.float32),
    (128, 128, 3, 7, 4, torch.float32),
    (32, 32, 9, 14, 1, torch.float32),
]
MODELS = [("repmlp_pure_nogp_32", torch.float64), ("repmlp_pure_28", torch.float32), ("repmlpnet_28", torch.float32)]


def one_hot_conv_to_fc(kernel: torch.Tensor, bias: torch.Tensor | None, h: int, w: int, groups: int = 1):
    """The earlier conv -> FC merge: the FC's columns are the conv's responses to every one-hot input image."""
    out_chans, in_per_group, k, _ = kernel.shape
    n = in_per_group * h * w
    eye = torch.eye(n, dtype=kernel.dtype, device=kernel.device).reshape(n, in_per_group, h, w).repeat(1, groups, 1, 1)
    weight = F.conv2d(eye, kernel, padding=k // 2, groups=groups).reshape(n, out_chans * h * w).t()
    return weight, None if bias is None else bias.repeat_interleave(h * w)


def kernel_rows(repeats: int) -> list[dict]:
    rows = []
    for out_chans, in_chans, k, side, groups, dtype in SHAPES:
        g = torch.Generator().manual_seed(0)
        kernel = torch.randn(out_chans, in_chans // groups, k, k, generator=g, dtype=dtype)
        bias = torch.randn(out_chans, generator=g, dtype=dtype)
        new, old = conv_to_fc(kernel, bias, side, side, groups), one_hot_conv_to_fc(kernel, bias, side, side, groups)
        diff = (new[0] - old[0]).abs().max().item()
        times = interleaved_medians(
            {
                "one-hot": lambda: one_hot_conv_to_fc(kernel, bias, side, side, groups),  # noqa: B023 (timed now)
                "shift": lambda: conv_to_fc(kernel, bias, side, side, groups),  # noqa: B023
            },
            repeats,
            warmup=1,
        )
        label = f"{out_chans}<-{in_chans} ch, {k}x{k}, {side}x{side}, groups {groups}, {str(dtype)[6:]}"
        rows.append({"part": "conv_to_fc", "case": label, "max_abs_diff": diff, **_ratio(times)})
        print(f"{label}: {rows[-1]['speedup']:.1f}x", flush=True)
    return rows


def _ratio(times: dict[str, dict]) -> dict:
    old, new = times["one-hot"]["median_s"], times["shift"]["median_s"]
    return {"one_hot_s": old, "shift_s": new, "speedup": old / new, "times": times}


def model_rows(repeats: int) -> list[dict]:
    rows = []
    for name, dtype in MODELS:
        torch.manual_seed(0)
        model = create_model(name).to(dtype).eval()
        x = torch.randn(2, *model.pretrained_cfg["input_size"], dtype=dtype)

        def one_hot(model=model):
            with (
                mock.patch.object(repmlp_module, "conv_to_fc", one_hot_conv_to_fc),
                mock.patch.object(repmlpnet_module, "conv_to_fc", one_hot_conv_to_fc),
            ):
                return reparameterize(model)

        with torch.inference_mode():
            diff = (one_hot()(x) - reparameterize(model)(x)).abs().max().item()
        fns = {"one-hot": one_hot, "shift": lambda model=model: reparameterize(model)}
        times = interleaved_medians(fns, repeats, warmup=1)
        label = f"{name}, {str(dtype)[6:]}"
        rows.append({"part": "reparameterize", "case": label, "max_abs_output_diff": diff, **_ratio(times)})
        print(f"{label}: {rows[-1]['speedup']:.1f}x", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args, allocator, command = start(parser, repeats=5)
    rows = kernel_rows(args.repeats) + model_rows(args.repeats)
    meta = {"command": command, "machine": machine(), "threads": args.threads, "allocator": allocator}
    md = [
        "# Re-parameterization speed: shift matrices vs one-hot images",
        "",
        f"`{command}` on {meta['machine']}; medians of {args.repeats} calls per method, timed round-robin in one run.",
        "",
        "| what | case | one-hot (s) | shift (s) | speed-up | max abs difference |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        diff = r.get("max_abs_diff", r.get("max_abs_output_diff"))
        cells = [r["part"], r["case"], f"{r['one_hot_s']:.3f}", f"{r['shift_s']:.3f}", f"{r['speedup']:.1f}x"]
        md.append("| " + " | ".join([*cells, f"{diff:.2g}"]) + " |")
    md += [
        "",
        "The difference is between the two FC weights for `conv_to_fc`, and between the two deploy forms' outputs "
        "on the same input for `reparameterize`.",
    ]
    write_results("reparam_speed", meta, rows, md)


if __name__ == "__main__":
    main()
