"""What every construction stage shares: its records file (which is also its cache), provenance,
and parallel work over videos."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from videosafety.data.manifest import ManifestError, ManifestProblem, iter_jsonl_objects
from videosafety.workers import process_pool


def settings_fingerprint(stage: str, settings: BaseModel) -> str:
    payload = json.dumps({"stage": stage, "settings": settings.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def provenance(stage: str, rule: str, settings: BaseModel) -> dict[str, Any]:
    return {"stage": stage, "rule": rule, "settings": settings.model_dump(mode="json"),
            "fingerprint": settings_fingerprint(stage, settings),
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def read_stage(path: Path) -> list[dict]:
    """A stage's records; a broken line is an error naming the file and the line."""
    out = []
    for _, rec in iter_jsonl_objects(path):
        if isinstance(rec, ManifestProblem):
            raise ManifestError(rec)
        out.append(rec)
    return out


def cached(path: Path, stage: str, settings: BaseModel) -> dict[str, dict]:
    """Records of an earlier run of this stage with the same settings, by video sha256 (or by
    path for videos that could not be hashed)."""
    if not path.exists():
        return {}
    fp = settings_fingerprint(stage, settings)
    return {r.get("sha256") or r["video"]: r for r in read_stage(path)
            if r.get("provenance", {}).get(stage, {}).get("fingerprint") == fp}


def write_stage(path: Path, records: Iterable[dict]) -> int:
    """JSONL via a temporary name: an interrupted write never leaves a half file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    tmp.replace(path)
    return n


def parallel_map(fn: Callable, items: list, workers: int) -> Iterator:
    """fn over items in order; worker processes when workers > 1 (decoding is CPU-bound and
    PyAV holds the GIL for part of it)."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with process_pool(workers) as pool:
        yield from pool.map(fn, items, chunksize=max(1, len(items) // (workers * 8)))


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))
