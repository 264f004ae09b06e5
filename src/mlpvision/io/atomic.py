"""The one atomic-write rule: write to a uniquely named temporary file beside the target, flush it to disk, then
rename it over the target. A reader, or a crash at any moment, sees the old file or the new one, never half of
one, and no file of the user's (``x.tmp`` included) is ever overwritten or removed on the way.

A temporary file is named ``.mlpvision-tmp.PID.NAME.XXXXXXXX.tmp``: the project's prefix and the id of the process
that wrote it (its recorded owner). Clean-up removes only such files, owned by this user, whose writer is no longer
running; a user's look-alike (``.backup.20241203.tmp``) never matches."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..plotting import pyplot

__all__ = [
    "atomic_path",
    "check_writable",
    "json_safe",
    "output_folder",
    "remove_stale_temporaries",
    "save_figure",
    "to_json",
    "write_json",
    "write_text",
]

_PREFIX = ".mlpvision-tmp."
_TEMPORARY = re.compile(r"^\.mlpvision-tmp\.(\d+)\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_path names its files


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
        fd, name = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}.{path.name}.", suffix=".tmp", dir=path.parent)
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


def _stale(entry: os.DirEntry) -> bool:
    """A temporary file of atomic_path's, of this user, whose writing process has ended."""
    match = _TEMPORARY.match(entry.name)
    if match is None or not entry.is_file(follow_symlinks=False):
        return False
    if hasattr(os, "getuid") and entry.stat(follow_symlinks=False).st_uid != os.getuid():
        return False
    pid = int(match.group(1))
    return pid != os.getpid() and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # another user's process, or no such id: leave the file
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files that writers killed mid-write (``kill -9``) left in ``folder``; returns them.

    Only files this project wrote are touched: the ``.mlpvision-tmp.PID.`` prefix, this user as their owner, and a
    writing process (PID) that is no longer running. Call it while holding the folder's lock.
    """
    with os.scandir(folder) as entries:
        removed = [Path(e.path) for e in entries if _stale(e)]
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


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Makes ``dst`` hold ``src``'s bytes, atomically. A hard link where the file system has them (no byte is
    written; the two names stay independent because every write here replaces a file, never changes one in
    place), else a copy."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return Path(dst)


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, so that it is valid JSON (``NaN`` is not)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strictly valid JSON: non-finite numbers become null."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as indented, strictly valid JSON (:func:`to_json`: a NaN becomes null) with a final newline to
    ``path`` atomically."""
    return write_text(path, to_json(obj) + "\n")
