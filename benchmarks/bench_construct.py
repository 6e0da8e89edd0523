"""Benchmark construction throughput: stages ingest (probe + sha256 + perceptual hash) and
static filter (built-in pixel score), in videos per second on this machine, with 1 and N
worker processes, and the projection to a pool the size of the paper's.

Synthetic candidates: N clips of D seconds at 25 fps, 640x360 (a moving square on a coloured
background; every fourth clip static), written once into --work.

    python benchmarks/bench_construct.py [--videos 48] [--seconds 10] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from videosafety.data.construct import ingest, static_filter
from videosafety.video import encode_video

W, H, FPS = 640, 360, 25
PAPER_PAIRS = 77_646


def clip(i: int, seconds: float) -> np.ndarray:
    """A distinct scene per clip (random blocks on the background: different perceptual hashes)
    with a square moving at its own speed; every fourth clip static."""
    rng = np.random.default_rng(i)
    n = int(seconds * FPS)
    scene = np.empty((H, W, 3), dtype=np.uint8)
    scene[:] = rng.integers(0, 255, size=3)
    for _ in range(12):
        x, y = rng.integers(0, W - 60), rng.integers(0, H - 60)
        w, h = rng.integers(20, 160), rng.integers(20, 120)
        scene[y:y + h, x:x + w] = rng.integers(0, 255, size=3)
    side, y0, speed = int(rng.integers(40, 90)), int(rng.integers(0, H - 90)), int(rng.integers(3, 9))
    frames = np.repeat(scene[None], n, axis=0)
    if i % 4 != 3:
        for t in range(n):
            x = (speed * t) % (W - side)
            frames[t, y0:y0 + side, x:x + side] = 255 - scene[y0, x]
    return frames


def make_corpus(root: Path, n: int, seconds: float) -> Path:
    vids = root / "videos"
    vids.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = vids / f"v{i:04d}.mp4"
        if not p.exists():
            encode_video(p, clip(i, seconds), fps=FPS, width=W, height=H, gop=50)
    meta = root / "meta.csv"
    meta.write_text("video,source\n" + "".join(f"v{i:04d}.mp4,synthetic\n" for i in range(n)))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-construct-"))
    t0 = time.perf_counter()
    meta = make_corpus(work, a.videos, a.seconds)
    print(f"{a.videos} clips of {a.seconds:.0f} s, {W}x{H} @ {FPS} fps in {work} ({time.perf_counter() - t0:.1f} s to write)")
    rows = []
    for workers in sorted({1, a.workers}):
        out = work / f"build-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        s = ingest(work / "videos", meta, out, workers=workers)
        t_ingest = time.perf_counter() - t
        t = time.perf_counter()
        st = static_filter(work / "videos", out, workers=workers)
        t_static = time.perf_counter() - t
        t = time.perf_counter()
        ingest(work / "videos", meta, out, workers=workers)
        static_filter(work / "videos", out, workers=workers)
        t_rerun = time.perf_counter() - t
        rows.append((workers, t_ingest, t_static, t_rerun, s.kept, st.static))
    print(f"{'workers':>7} {'ingest s':>9} {'videos/s':>9} {'static s':>9} {'videos/s':>9} {'both v/s':>9} {'rerun s':>8}")
    for w, ti, ts, tr, kept, static in rows:
        both = a.videos / (ti + ts)
        print(f"{w:>7} {ti:>9.2f} {a.videos / ti:>9.2f} {ts:>9.2f} {kept / ts:>9.2f} {both:>9.2f} {tr:>8.2f}"
              f"   (kept {kept}, near-static {static})")
    best = max(a.videos / (ti + ts) for _, ti, ts, _, _, _ in rows)
    for pool in (10_000, PAPER_PAIRS):
        print(f"projection: {pool:,} candidate clips of {a.seconds:.0f} s -> {pool / best / 3600:.2f} h for ingest + "
              f"static on this machine ({best:.2f} videos/s)")


if __name__ == "__main__":
    main()
