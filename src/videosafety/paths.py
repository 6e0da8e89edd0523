"""Where files are: the toolkit's cache (VSB-mini, the demo model, judge validations) and the
videos a manifest or records file names, which may never lie outside its folder."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """$VIDEOSAFETY_CACHE, else ~/.cache/videosafety."""
    return Path(os.environ.get("VIDEOSAFETY_CACHE") or Path.home() / ".cache" / "videosafety")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on path's lock file: two processes never build the same thing twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve_video_path(root: str | os.PathLike[str], rel: str) -> Path:
    """The video's path on disk; refuses (ValueError) any path that leaves root, symlinks included."""
    root = Path(root)
    root_real = root.resolve()
    candidate = root / rel
    # Every component below root must be a plain file or folder: a symlink could point
    # anywhere, and checking only the final target would miss links to inside-looking places.
    cur = root
    for part in Path(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            raise ValueError(f"{rel!r} goes through a symlink ({cur.relative_to(root)}), which is not allowed")
    real = candidate.resolve()
    if root_real != real and root_real not in real.parents:
        raise ValueError(f"{rel!r} resolves outside the manifest's folder")
    return candidate
