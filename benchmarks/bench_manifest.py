"""Reading + validating a manifest at the paper's pool size (77,646 rows).

Builds VSB-mini once (its 126 real videos), then writes manifests of N rows that cycle over
VSB-mini's samples with fresh ids, and times `validate_manifest` (schema, labels, ids, and
each video file hashed, probed and decoded once) and plain reading. Memory: Python heap
peak (tracemalloc) while validating, for growing N; "flat" means it does not grow with N
beyond the id set that duplicate detection needs.

    python benchmarks/bench_manifest.py [--rows 77646] [--work DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from videosafety.data.manifest import iter_samples, read_manifest, sample_to_row
from videosafety.data.validate import validate_manifest
from videosafety.data.vsb_mini import build_vsb_mini


def write_big(src: Path, dst: Path, n: int) -> None:
    base = read_manifest(src)
    with open(dst, "w", encoding="utf-8") as f:
        for i, s in zip(range(n), itertools.cycle(base)):
            row = sample_to_row(s)
            row["id"] = f"{row['id']}-{i}"
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def measure(path: Path) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_samples(path))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = validate_manifest(path)
    val_s = time.perf_counter() - t0
    assert report.ok, report.problems[:3]
    # A second, traced pass for memory: tracemalloc slows Python down, so it is not timed.
    tracemalloc.start()
    validate_manifest(path, hash_files=False, decode=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return read_s, val_s, peak / 2**20, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=77_646)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vs-bench-manifest-"))
    manifest = build_vsb_mini(work)
    print("rows     read (s)  validate (s)  rows/s (validate)  heap peak (MiB)")
    for n in (10_000, 40_000, args.rows):
        big = work / f"big-{n}.jsonl"
        write_big(manifest, big, n)
        read_s, val_s, peak, count = measure(big)
        assert count == n
        print(f"{n:<8} {read_s:8.2f}  {val_s:12.2f}  {n / val_s:17.0f}  {peak:15.1f}")


if __name__ == "__main__":
    main()
