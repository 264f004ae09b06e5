"""The ``mlpvision`` command line: one module per command, each a thin layer of argument parsing and printing over
library functions.

Every command module defines ``add_parser(subparsers)`` (its flags and help, built without importing torch, so
``--help`` answers at once) and ``run(args)`` (which imports what it needs and calls the library); a command that
never touches torch sets ``light=True`` as a parser default. To add a command, write its module and add its name
to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from .._version import __version__

# OS errors of the machine rather than of a path given (exit status 1, as for a run that failed); others are bad
# input (2)
_MACHINE_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE,  # disk, memory
    errno.EROFS, errno.ESTALE, errno.ENODEV, errno.ENOTCONN, errno.ETIMEDOUT,  # a mount lost or read-only
}  # fmt: skip

# the commands in the order `mlpvision --help` lists them; each is the module cli/<name>.py
COMMANDS = ("models", "demo", "deploy", "convert", "train", "eval", "bench", "export", "lab", "predict")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (the usage itself is one ``--help`` away), exit status 2."""

    def error(self, message: str):
        from ..errors import printable

        self.exit(2, f"mlpvision: error: {printable(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (no heavy imports: the command's ``run`` imports what it uses)."""
    parser = _Parser(prog="mlpvision", description="MLP-style vision models: zoo, training, lab.")
    parser.add_argument("--version", action="version", version=f"mlpvision {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __name__)
        p = module.add_parser(sub)
        p.set_defaults(func=module.run, light=bool(p.get_default("light")))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command: the one error boundary of the command line.

    Every expected failure is one line on stderr, its values escaped and cut: bad input (options, files, data) exits
    with status 2 before anything is written over, a run that started and failed with status 1, an interruption
    with 130. Anything else is a bug and keeps its traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors: argparse has printed them
        return e.code if isinstance(e.code, int) else 2
    from ..errors import MlpVisionError, printable
    from ..fields import Limits
    from ..limits import limited
    from .common import check_range

    if not args.light:  # a command that runs models: before torch allocates anything
        from ..runtime import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        limits = {k: getattr(args, k, None) for k in ("max_pixels", "max_params", "max_windows")}
        for name, value in limits.items():
            check_range("--" + name.replace("_", "-"), value, Limits(ge=1))
        with limited(**limits):
            return args.func(args)
    except MlpVisionError as e:
        print(f"mlpvision: error: {printable(str(e), 1000)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mlpvision: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("mlpvision: error: out of memory; use a smaller batch, model or input", file=sys.stderr)
        return 1
    except OSError as e:
        where = f" ({printable(e.filename, 200)})" if e.filename else ""
        if e.errno in _MACHINE_ERRNOS:  # the machine failed the run: a full disk, a lost mount
            print(f"mlpvision: error: {e.strerror or e}{where}; free space or fix the mount and run again",
                  file=sys.stderr)  # fmt: skip
            return 1
        # a path the command was given, or one it derived from them: missing, a folder, a link loop, not allowed
        print(f"mlpvision: error: {e.strerror or e}{where}; check the path and its permissions", file=sys.stderr)
        return 2
