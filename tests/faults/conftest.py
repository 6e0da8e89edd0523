"""The fault campaign's builders live in benchmarks/faults/ (shared by these fast cases and the
long campaign, benchmarks/bench_faults.py): make them importable as `faults.*`."""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parents[2] / "benchmarks")
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)
