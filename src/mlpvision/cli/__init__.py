"""The ``mlpvision`` command line: one module per command, each a thin layer of argument parsing and printing over
library functions.

Every command module defines ``add_parser(subparsers)`` (its flags and help, built without importing torch, so
``--help`` answers at once) and ``run(args)`` (which imports what it needs and calls the library); a command that
never touches torch sets ``light=True`` as a parser default. To add a command, write its module and add its name
to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__

# the commands in the order `mlpvision --help` lists them; each is the module cli/<name>.py
COMMANDS = ("models", "demo", "deploy", "train", "eval", "bench", "export", "lab", "predict")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (no heavy imports: the command's ``run`` imports what it uses)."""
    parser = argparse.ArgumentParser(prog="mlpvision", description="MLP-style vision models: zoo, training, lab.")
    parser.add_argument("--version", action="version", version=f"mlpvision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __name__)
        p = module.add_parser(sub)
        p.set_defaults(func=module.run, light=bool(p.get_default("light")))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; user errors print one line on stderr and return 2."""
    args = build_parser().parse_args(argv)
    from ..errors import MlpVisionError

    if not args.light:  # a command that runs models: before torch allocates anything
        from ..runtime import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        return args.func(args)
    except MlpVisionError as e:
        print(f"mlpvision: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlpvision: interrupted", file=sys.stderr)
        return 130
