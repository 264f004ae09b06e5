"""How committed files name paths: never by a machine's folders."""

from __future__ import annotations

from pathlib import Path

__all__ = ["shown_path"]


def shown_path(path: str | Path, root: Path, folder: str | Path | None = None) -> str:
    """``path`` as a committed file shows it: relative to the repository ``root``, or, outside it, to the parent of
    its run or result ``folder`` (the path's own folder by default), so that no machine's folders are published."""
    path = Path(path).resolve()
    root = root.resolve()
    folder = Path(folder).resolve() if folder is not None else path.parent
    return path.relative_to(root if path.is_relative_to(root) else folder.parent).as_posix()
