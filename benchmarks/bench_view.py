"""`videosafety view` at the paper's pool size: the report benchmark's synthetic run (77,646
samples x 3 conditions = 232,938 rows, bench_report.synth_run), then

- the index build (one pass over responses + verdicts into RUN/view/), and its size;
- in headless Chromium against the local server: time to first screen (page load to the first
  list rendered), and time to apply a filter (hash change to the list redrawn), both as the
  page measures them (performance.now) and as seen from outside (wall clock);
- the static export (no frames: the synthetic run has no videos): files and size, and its first
  screen opened from file://.

    python benchmarks/bench_view.py [--samples 77646] [--judges 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_report import synth_run  # noqa: E402

from videosafety.view import ViewServer, build_index, export_view  # noqa: E402
from videosafety.view.chromium import Browser, find_chromium  # noqa: E402


COUNTS = "document.getElementById('counts').textContent"


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=77_646)
    ap.add_argument("--judges", type=int, default=2, choices=(1, 2))
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="videosafety-bench-view-"))
    run = work / f"run-{args.samples}-{args.judges}j"
    if not (run / "run.json").is_file():
        t0 = time.perf_counter()
        rows = synth_run(run, args.samples, args.judges)
        print(f"synthesised {rows:,} rows in {time.perf_counter() - t0:.1f} s -> {run}")
    t0 = time.perf_counter()
    ix = build_index(run, force=True)
    print(f"index build: {time.perf_counter() - t0:.1f} s for {ix.rows:,} rows; RUN/view/ {du(ix.dir) / 2**20:.1f} MiB "
          f"(index.js {(ix.dir / 'index.js').stat().st_size / 2**20:.1f} MiB)")
    t0 = time.perf_counter()
    build_index(run)
    print(f"index reuse (unchanged run): {time.perf_counter() - t0:.3f} s")

    chromium = find_chromium()
    if chromium is None:
        print("chromium not found: browser timings skipped")
    else:
        with ViewServer([ix]) as srv, tempfile.TemporaryDirectory() as prof:
            b = Browser(chromium, Path(prof))
            try:
                for attempt in range(3):
                    b.goto("about:blank")
                    t0 = time.perf_counter()
                    b.goto(srv.url)
                    b.wait("document.body.dataset.ready === '1'", timeout=60)
                    wall = time.perf_counter() - t0
                    print(f"first screen, try {attempt + 1}: {wall:.2f} s wall (page: "
                          f"{float(b.eval('document.body.dataset.firstScreenMs')) / 1000:.2f} s); "
                          f"{b.eval(COUNTS)}")
                for f in ("subset=HH", "subset=HH&condition=video&v.rules=complied",
                          "language=fr&fail=1", "dis=1", "q=vsb-0770"):
                    b.eval("document.body.dataset.ready = ''")
                    t0 = time.perf_counter()
                    b.eval(f"location.hash = {f!r}")
                    b.wait("document.body.dataset.ready === '1'", timeout=60)
                    wall = time.perf_counter() - t0
                    print(f"filter {f}: {wall * 1000:.0f} ms wall (page: {b.eval('document.body.dataset.filterMs')} ms); "
                          f"{b.eval(COUNTS)}")
                b.eval("document.body.dataset.ready = ''")
                t0 = time.perf_counter()
                b.eval("location.hash = 'subset=HH&open=0:160000'")
                b.wait("document.body.dataset.ready === '1' && document.getElementById('sample-title')", timeout=60)
                print(f"open one sample (3 detail shards): {(time.perf_counter() - t0) * 1000:.0f} ms wall")
            finally:
                b.close()
    t0 = time.perf_counter()
    sizes = export_view([ix], work / "export", frames=False)
    print(f"static export: {sizes['files']:,} files, {sizes['bytes'] / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
    if chromium is not None:
        with tempfile.TemporaryDirectory() as prof:
            b = Browser(chromium, Path(prof))
            try:
                t0 = time.perf_counter()
                b.goto((work / "export" / "index.html").as_uri() + "#fail=1&language=fr")
                b.wait("document.body.dataset.ready === '1'", timeout=60)
                print(f"export from file://, first screen with a filter: {time.perf_counter() - t0:.2f} s wall; "
                      f"{b.eval(COUNTS)}")
            finally:
                b.close()


if __name__ == "__main__":
    main()
