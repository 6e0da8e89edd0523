"""Where the toolkit keeps what it builds on first use (VSB-mini, the demo model)."""

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
