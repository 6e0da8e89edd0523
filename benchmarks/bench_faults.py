"""The long fault campaign (issue 13), run by hand; its figures go to RESULTS.md "Reliability".

Usage: python benchmarks/bench_faults.py [CAMPAIGN ...] [--trials N] [--seed S] [--out DIR]

Each campaign is a module of benchmarks/faults/ with ``run(trials, seed, workdir) -> list[dict]``:
one row per fault kind with the trials run and what was lost (goal: nothing). The fast cases of
the same campaigns run in the default suite (tests/faults/).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CAMPAIGNS = ("kill", "media", "servers", "serve", "manifests", "secrets", "construct")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("campaigns", nargs="*", default=list(CAMPAIGNS), help=f"any of {', '.join(CAMPAIGNS)}")
    ap.add_argument("--trials", type=int, default=None, help="trials per fault kind (each campaign's default if unset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.campaigns) - set(CAMPAIGNS))
    if unknown:
        ap.error(f"unknown campaign(s): {', '.join(unknown)}")
    rows: list[dict] = []
    for name in args.campaigns:
        module = importlib.import_module(f"faults.{name}")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
            kw = {} if args.trials is None else {"trials": args.trials}
            got = module.run(seed=args.seed, workdir=Path(tmp), **kw)
        for row in got:
            row.setdefault("campaign", name)
        rows += got
        print(f"# {name}: {len(got)} fault kinds, {time.perf_counter() - t0:.1f} s", flush=True)
    print("| campaign | fault | trials | lost | duplicated | differing | hung | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['campaign']} | {r['fault']} | {r['trials']} | {r.get('lost', 0)} | {r.get('duplicated', 0)} | "
              f"{r.get('differing', 0)} | {r.get('hung', 0)} | {r.get('notes', '')} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    bad = [r for r in rows if any(r.get(k, 0) for k in ("lost", "duplicated", "differing", "hung"))]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
