"""The one atomic-write rule: write to a uniquely named temporary file beside the target, flush it to disk, then
rename it over the target. A reader, or a crash at any moment, sees the old file or the new one, never half of
one, and no file of the user's (``x.tmp`` included) is ever overwritten or removed on the way."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..plotting import pyplot

__all__ = [
    "atomic_path",
    "check_writable",
    "output_folder",
    "remove_stale_temporaries",
    "save_figure",
    "write_json",
    "write_text",
]

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_path names its temporary files


def output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a folder to write into: created when missing; a clear :class:`ConfigError` when it is a file or
    cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise ConfigError(f"cannot write to {what} {path}: {e.strerror or e}") from None
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Fails early, with one clear :class:`ConfigError`, when ``path`` could not be written later: it is a folder,
    or its folder cannot be created or written into. Nothing at ``path`` is touched."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder; give a file name")
    output_folder(path.parent, "folder")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a fresh temporary path in ``path``'s folder; once the block has written it, it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files that writers killed mid-write (``kill -9``) left in ``folder``; returns them.

    Only names of atomic_path's pattern (``.NAME.XXXXXXXX.tmp``) are touched. Call it only while no other process
    writes into ``folder`` (a training run holds the folder's lock).
    """
    removed = [p for p in Path(folder).iterdir() if p.is_file() and _TEMPORARY.match(p.name)]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Writes a matplotlib figure as PNG atomically and closes it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")
