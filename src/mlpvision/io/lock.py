"""An exclusive lock on a run folder, so that two trainings can never write into one folder.

The lock is an advisory ``flock`` on ``FOLDER/.lock``, which holds the owner's process id: the operating system
releases it when the owner exits, however it exits (``kill -9`` included), so a lock left by a dead process is
stale by construction and is simply taken over.

``.lock`` is opened without following a symbolic link (``O_NOFOLLOW``) and must be a regular file: a link planted
there (to a user's file, or to a system file when training runs as root) is refused, never truncated.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows has no flock: the pid file alone, checked for a live owner
    fcntl = None

__all__ = ["RunLock"]


class RunLock:
    """``with RunLock(folder):`` holds ``folder`` for this process; another holder is a :class:`ConfigError` that
    names its process."""

    NAME = ".lock"  # the lock file, in the folder it holds

    def __init__(self, folder: str | os.PathLike, what: str = "run folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / self.NAME
        self._fd: int | None = None
        self.stale_owner: int | None = None  # the dead process whose lock was taken over, if any

    def _owner(self, fd: int) -> int | None:
        try:
            return int(os.pread(fd, 64, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _open(self) -> int:
        """``.lock`` opened (created when missing) without following a link; a link, folder or special file there
        is a :class:`ConfigError`."""
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | nofollow | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            if os.path.islink(self.path):
                raise ConfigError(
                    f"{self.path} is a symbolic link; the lock file of a {self.what} must be a regular file (remove "
                    "the link, or choose another --out)"
                ) from None
            what = "a folder" if self.path.is_dir() else (e.strerror or str(e))
            raise ConfigError(f"cannot use {self.path} as the lock of {self.what} {self.folder}: {what}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:  # a hard link is another name of someone's file
            os.close(fd)
            kind = "a second name (hard link) of another file" if info.st_nlink > 1 else "not a regular file"
            raise ConfigError(f"{self.path} is {kind}; remove it or choose another --out")
        return fd

    def _refuse(self, pid: int | None) -> ConfigError:
        who = f"process {pid}" if pid else "another process"
        return ConfigError(
            f"{self.what} {self.folder} is in use by {who} (another training writing there); wait for it to end, "
            "stop it, or choose another --out"
        )

    def __enter__(self) -> RunLock:
        fd = self._open()
        previous = self._owner(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._refuse(previous) from None
        elif previous and previous != os.getpid() and _alive(previous):
            os.close(fd)
            raise self._refuse(previous)
        self.stale_owner = previous if previous and previous != os.getpid() else None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no owner recorded: the folder is free
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
