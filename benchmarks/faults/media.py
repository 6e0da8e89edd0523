"""Bad media campaign: each kind of broken or unusual video sampled `trials` times, each time in
a fresh subprocess (so peak memory and a hang are measured per file), with the default frame
budget (1 fps, at most 90 frames) that an eval run uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from faults.media_files import BUILDERS, build_bad_media

BOUND_S = 60  # wall-clock bound per file: past it the trial counts as hung

_PROBE = r"""
import json, sys, time
from videosafety import video as v
from videosafety.budget import FrameBudget
t0 = time.monotonic()
try:
    s = v.sample_with_budget(sys.argv[1], FrameBudget())
    out = {"ok": True, "shape": list(s.frames.shape), "strategy": s.strategy}
except v.VideoError as e:
    out = {"ok": False, "error": type(e).__name__, "names_file": sys.argv[1] in str(e)}
out["wall_s"] = time.monotonic() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) parent
out["peak_mb"] = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps(out))
"""


def run(seed: int, workdir: Path, trials: int = 5) -> list[dict]:
    cases = build_bad_media(workdir / "media")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    rows = []
    for kind, case in cases.items():
        hung = wrong = 0
        walls, peaks, seen = [], [], set()
        for _ in range(trials):
            try:
                p = subprocess.run([sys.executable, "-c", _PROBE, str(case.path)], capture_output=True, text=True,
                                   timeout=BOUND_S, env=env)
            except subprocess.TimeoutExpired:
                hung += 1
                continue
            if p.returncode != 0:  # a crash (not a typed error) is a loss
                wrong += 1
                seen.add(f"crash: {p.stderr.strip().splitlines()[-1][:80] if p.stderr.strip() else p.returncode}")
                continue
            got = json.loads(p.stdout.strip().splitlines()[-1])
            walls.append(got["wall_s"])
            peaks.append(got["peak_mb"])
            if got["ok"]:
                seen.add(f"{got['shape'][0]} frames {got['shape'][2]}x{got['shape'][1]} by {got['strategy']}")
                wrong += case.expect != "sample"
            else:
                seen.add(got["error"])
                wrong += case.expect != "error" or not got["names_file"]
        rows.append({"fault": f"{kind}: {BUILDERS[kind][1]}", "trials": trials, "lost": wrong, "hung": hung,
                     "notes": f"{'; '.join(sorted(seen))}; max {max(walls, default=0):.2f} s, "
                              f"peak {max(peaks, default=0):.0f} MB"})
    return rows
