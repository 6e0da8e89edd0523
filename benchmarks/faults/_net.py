"""What the network campaigns (servers, serve, secrets) share: their scenarios live with the fast
cases in tests/faults/ (one copy), and they measure this checkout's code."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT / "tests" / "faults", ROOT / "src"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def manifest(workdir: Path, *, unique: bool = False) -> Path:
    """VSB-mini, built in workdir; ``unique``: one sample per query (see netfaults.unique_queries)."""
    from netfaults import unique_queries

    from videosafety.data.vsb_mini import build_vsb_mini

    built = build_vsb_mini(workdir / "vsb-mini", workers=2)
    return unique_queries(built) if unique else built
