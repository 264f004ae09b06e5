"""Reading user files within limits: only regular files (a FIFO, a device or a folder is refused before it is read,
so nothing hangs on a pipe or reads an endless device), at most a given number of bytes, and YAML documents read by
a loader that refuses alias bombs and deep nesting before anything is expanded.

These limits, and those of the image and data decoders, are listed in the README's "Trusted inputs and limits".
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ..errors import LimitError, MlpVisionError, printable

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "load_yaml",
    "open_regular",
    "parse_json",
    "read_bounded",
]

MAX_YAML_BYTES = 1 << 20  # a recipe is a few hundred bytes; a megabyte is far beyond any real one
MAX_YAML_ALIASES = 100  # references to an anchor (*name) in one document
MAX_YAML_DEPTH = 32  # nesting of mappings and lists
MAX_YAML_NODES = 10_000  # values in the document once every alias is expanded (a recipe has about a hundred)
MAX_JSON_BYTES = 4 << 20  # a config or data description stored in a model file's metadata


def open_regular(path: str | os.PathLike, what: str, error: type[MlpVisionError] = MlpVisionError) -> BinaryIO:
    """Opens ``path`` for reading in binary mode when it is a regular file (links to one included).

    A FIFO is opened without blocking and refused, as are devices, sockets and folders: reading one could hang or
    never end. Raises ``error`` (a :class:`MlpVisionError`) naming ``what`` the file was meant to be.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a {what}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise error(f"{path} is a folder, not a {what}")
        kind = "a pipe" if stat.S_ISFIFO(mode) else "not a regular file"
        raise error(f"{what} {path} is {kind}; give a regular file")
    if hasattr(os, "O_NONBLOCK"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bounded(
    path: str | os.PathLike, what: str, max_bytes: int, error: type[MlpVisionError] = MlpVisionError
) -> bytes:
    """The bytes of regular file ``path``; more than ``max_bytes`` is a :class:`LimitError` (read no further)."""
    with open_regular(path, what, error) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LimitError(f"{what} {path} is larger than {max_bytes} bytes, more than a {what} can be")
    return data


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only) that counts aliases, nesting and the size the document would have with
    every alias expanded while it composes the document, so an alias bomb ("billion laughs": a few hundred bytes
    that expand to gigabytes once printed or walked) or a deeply nested document is refused before any value is
    expanded."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._weights: dict[int, int] = {}  # id(node) -> values in it once expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise LimitError(f"more than {MAX_YAML_ALIASES} aliases (*name): refused before expanding them")
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._weights:  # an alias returns its anchor's node, weighed already
            children = node.value if isinstance(node, yaml.SequenceNode) else []
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            weight = 1 + sum(self._weights.get(id(c), 1) for c in children)
            if weight > MAX_YAML_NODES:
                raise LimitError(f"expands to more than {MAX_YAML_NODES} values (an alias bomb?): refused")
            self._weights[id(node)] = weight
        return node


def load_yaml(text: str | bytes, what: str) -> Any:
    """Parses one YAML document of plain data (mappings, lists, strings, numbers, booleans) within the limits above.

    Errors name ``what`` and the line, never the (possibly expanded) value. Raises :class:`MlpVisionError`.
    """
    if len(text) > MAX_YAML_BYTES:
        raise LimitError(f"{what} is larger than {MAX_YAML_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MlpVisionError(f"{what} is not UTF-8 text (byte {e.start})") from None
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters here already
        return loader.get_single_data()
    except LimitError as e:
        raise LimitError(f"{what}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = printable(e.problem or "syntax error", 100)
        raise MlpVisionError(f"{what} is not valid YAML{where}: {problem}") from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as e:
        raise MlpVisionError(f"{what} is not valid YAML: {printable(str(e), 100)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def parse_json(text: str, what: str, error: type[MlpVisionError] = MlpVisionError, max_bytes: int = MAX_JSON_BYTES):
    """Parses a JSON document of at most ``max_bytes`` characters; any failure (too deep included) is ``error``."""
    if not isinstance(text, str):
        raise error(f"{what} is not text")
    if len(text) > max_bytes:
        raise LimitError(f"{what} is larger than {max_bytes} bytes")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON ({e.msg} at character {e.pos})") from None
    except (RecursionError, ValueError) as e:  # nested too deeply, or a number too long to convert
        raise error(f"{what} is not valid JSON ({printable(str(e), 80)})") from None
