"""Benchmark: sampling frames from a long video, seek vs sequential decode (vs decord).

    python benchmarks/bench_video.py [--dir DIR] [--minutes 10] [--gop 250] [--repeat 5]

Generates (once, cached in DIR, default $TMPDIR/videosafety-bench) a synthetic 30 fps 640x360
h264 video (x264 preset veryfast, B-frames on, a keyframe at most every --gop frames; 250 is
x264's default keyint, i.e. a keyframe every 8.3 s, the pessimistic case for seeking), then
times videosafety.video.sample_frames for 16 uniform frames and for the default 1 fps <= 90
frames budget with each strategy, and decord for the same frame indices if it imports.
Prints a table (median wall-clock and CPU seconds); the figures go into benchmarks/RESULTS.md
by hand. Generating the video takes about 2.5 minutes on 2 cores; each run about 1.5 minutes.
Run it for --gop 250 and --gop 60 to see how the gain from seeking depends on keyframe spacing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from videosafety.video import encode_video, probe, sample_frames

W, H, FPS = 640, 360, 30


def synthetic_frames(n: int):
    """Cheap but not trivial to code: moving colour gradients plus a moving block of noise."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (H * 2, W * 2, 3), dtype=np.uint8)
    xx = np.arange(W)[None, :]
    yy = np.arange(H)[:, None]
    base = np.empty((H, W, 3), np.uint8)
    for i in range(n):
        base[..., 0] = (xx + 2 * i) % 256
        base[..., 1] = (yy + i) % 256
        base[..., 2] = ((xx + yy + 3 * i) % 256) // 2
        f = base.copy()
        x0, ox, oy = (i * 4) % (W - 128), (i * 3) % W, (i * 2) % H
        f[H // 4 : H // 4 + 96, x0 : x0 + 128] = noise[oy : oy + 96, ox : ox + 128]
        # a slow scene change every 20 s so that the content is not one long pan
        if (i // (20 * FPS)) % 2:
            f[:, :, [0, 1]] = f[:, :, [1, 0]]
        yield f


def ensure_video(directory: Path, minutes: float, gop: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    n = int(round(minutes * 60 * FPS))
    path = directory / f"bench_{n}f_{FPS}fps_{W}x{H}_gop{gop}.mp4"
    if path.exists():
        print(f"using cached {path}")
        return path
    print(f"generating {path} ({n} frames) ...", flush=True)
    t0 = time.perf_counter()
    encode_video(path, synthetic_frames(n), fps=FPS, width=W, height=H, gop=gop, threads=2, preset="veryfast")
    dt = time.perf_counter() - t0
    print(f"  generated in {dt:.1f} s ({n / dt:.0f} frames/s), {path.stat().st_size / 1e6:.1f} MB")
    return path


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall-clock and median CPU seconds (all threads of this process) over runs.

    CPU time is the steadier figure on a shared machine: it does not grow when another
    process takes the cores, which wall-clock time does.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "videosafety-bench")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--gop", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=5, help="runs per fast method (median)")
    ap.add_argument("--decode-repeat", type=int, default=3, help="runs of full decodes")
    args = ap.parse_args()

    path = ensure_video(args.dir, args.minutes, args.gop)
    info = probe(path)
    with av.open(str(path)) as c:
        entries = c.streams.video[0].index_entries
        keyframes = sum(e.is_keyframe for e in entries)
    print(
        f"video: {info.duration:.1f} s, {info.num_frames} frames, {info.width}x{info.height}, "
        f"{info.fps:g} fps, {info.codec}, {keyframes} keyframes "
        f"(mean GOP {info.num_frames / keyframes:.0f} frames), {path.stat().st_size / 1e6:.1f} MB"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, PyAV {av.__version__}, "
          f"FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")

    try:
        import decord  # noqa: F401
    except Exception as exc:  # not installed, or its binary does not load
        decord = None
        print(f"decord: not available ({type(exc).__name__}: {exc}); its rows are skipped")

    rows: list[tuple[str, str, float, float, int, str]] = []
    plans = [("16 uniform", dict(num_frames=16)), ("1 fps <= 90", dict(fps=1.0, max_frames=90))]
    for label, kw in plans:
        w_seek, c_seek, s = timed(
            lambda: sample_frames(path, strategy="seek", timeout=600, **kw), args.repeat
        )
        w_dec, c_dec, d = timed(
            lambda: sample_frames(path, strategy="decode", timeout=600, **kw), args.decode_repeat
        )
        same = np.array_equal(s.frames, d.frames) and np.array_equal(s.timestamps, d.timestamps)
        w_auto, c_auto, a = timed(lambda: sample_frames(path, timeout=600, **kw), 1)
        note = f"same frames as decode: {same}"
        rows.append((label, "videosafety seek", w_seek, c_seek, len(s.timestamps), note))
        rows.append((label, "videosafety decode", w_dec, c_dec, len(d.timestamps), ""))
        rows.append(
            (label, f"videosafety auto -> {a.strategy}", w_auto, c_auto, len(a.timestamps), "")
        )
        if decord is not None:
            idx = np.rint(s.timestamps * info.fps).astype(int).tolist()

            def run_decord():
                vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
                return vr.get_batch(idx).asnumpy()

            w_dc, c_dc, frames = timed(run_decord, args.repeat)
            diff = float(np.abs(frames.astype(np.int16) - s.frames.astype(np.int16)).mean())
            note = f"mean |diff| vs ours {diff:.2f}"
            rows.append((label, "decord get_batch", w_dc, c_dc, len(idx), note))

    print()
    print(
        f"{'plan':<12} {'method':<28} {'wall s':>7} {'cpu s':>7} {'frames':>6} "
        f"{'speed-up (wall, cpu) vs decode':>31}  note"
    )
    for label, method, w, c, n, note in rows:
        base = next(r for r in rows if r[0] == label and r[1] == "videosafety decode")
        speed = f"{base[2] / w:.1f}x, {base[3] / c:.1f}x"
        print(f"{label:<12} {method:<28} {w:7.3f} {c:7.3f} {n:6d} {speed:>31}  {note}")
    for label in dict.fromkeys(r[0] for r in rows):
        seek = next(r for r in rows if r[0] == label and r[1] == "videosafety seek")
        dec = next(r for r in rows if r[0] == label and r[1] == "videosafety decode")
        print(
            f"{label}: seek is {dec[2] / seek[2]:.1f}x faster than decode in wall-clock time, "
            f"{dec[3] / seek[3]:.1f}x in CPU time"
        )


if __name__ == "__main__":
    main()
