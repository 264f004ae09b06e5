"""An exclusive lock on a run folder, so that two trainings can never write into one folder.

The lock is an advisory ``flock`` on ``FOLDER/.lock``, which holds the owner's process id: the operating system
releases it when the owner exits, however it exits (``kill -9`` included), so a lock left by a dead process is
stale by construction and is simply taken over.
"""

from __future__ import annotations

import os
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

    def __init__(self, folder: str | os.PathLike, what: str = "run folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / ".lock"
        self._fd: int | None = None
        self.stale_owner: int | None = None  # the dead process whose lock was taken over, if any

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _refuse(self, pid: int | None) -> ConfigError:
        who = f"process {pid}" if pid else "another process"
        return ConfigError(
            f"{self.what} {self.folder} is in use by {who} (another training writing there); wait for it to end, "
            "stop it, or choose another --out"
        )

    def __enter__(self) -> RunLock:
        previous = self._owner()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
