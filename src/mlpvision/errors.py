"""Exceptions raised for bad user input.

Every error a user can cause (an unknown model name, an input of the wrong size, a broken weights file) is an
:class:`MlpVisionError`, so that the command line can print one clear line and exit non-zero instead of a
traceback. Each subclass also derives from the built-in exception a Python caller would expect.
"""

from __future__ import annotations

import re

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputShapeError",
    "LimitError",
    "MlpVisionError",
    "UnknownModelError",
    "brief",
    "printable",
]


class MlpVisionError(Exception):
    """Base class of every expected failure: bad input (the command line exits with status 2) or a run that started
    and could not finish (a subclass with ``exit_code = 1``)."""

    exit_code = 2


class UnknownModelError(MlpVisionError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(MlpVisionError, ValueError):
    """An option that a model or command does not accept, or a value out of range."""


class InputShapeError(MlpVisionError, ValueError):
    """An input tensor whose channel count or spatial size the model cannot take."""


class CheckpointError(MlpVisionError, ValueError):
    """A weights file that is missing, unreadable, not safetensors, or made for another model."""


class DataError(MlpVisionError, ValueError):
    """A data set that is missing or corrupt."""


class LimitError(MlpVisionError, ValueError):
    """An input larger than a resource limit allows (pixels, bytes, parameters, nesting); the message names the
    option that raises the limit when there is one."""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int = 400) -> str:
    """``text`` safe to print on a terminal: control characters (ANSI escapes, carriage returns, bidirectional
    overrides; newlines and tabs too) shown as ``\\xNN`` escapes, and cut to ``limit`` characters with the number
    of characters left out."""
    text = str(text).replace("\n", " ").replace("\t", " ")
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text
    )


def brief(value: object, limit: int = 60) -> str:
    """A short, printable ``repr`` of a value for an error message: a long string or a large container is cut
    (without formatting all of it first), control characters are escaped."""
    if isinstance(value, str | bytes) and len(value) > limit:
        return printable(repr(value[:limit]), limit + 20) + f"... (length {len(value)})"
    if isinstance(value, list | tuple | dict | set) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} items"
    try:
        text = repr(value)  # small: bounded by the cases above, unless nested (cut below)
    except (RecursionError, ValueError):  # nested too deeply, or an int too long to print
        return f"a {type(value).__name__}"
    return printable(text, limit)
