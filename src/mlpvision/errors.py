"""Exceptions raised for bad user input.

Every error a user can cause (an unknown model name, an input of the wrong size, a broken weights file) is an
:class:`MlpVisionError`, so that the command line can print one clear line and exit non-zero instead of a
traceback. Each subclass also derives from the built-in exception a Python caller would expect.
"""

from __future__ import annotations


class MlpVisionError(Exception):
    """Base class of every error caused by user input."""


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
