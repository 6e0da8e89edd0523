"""Hostile input to ``videosafety serve`` (issue 13): every hostile case ``trials`` times (keys,
body and frame limits, non-media base64, file / path / remote URLs with a listening loopback
server that must get no request, malformed JSON), floods of 200 concurrent requests, and the peak
memory of decoded frames under a flood of small bodies that decode large. Scenarios:
tests/faults/netserve.py."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import faults._net  # noqa: F401 - sys.path

DEFAULT = 20
FLOODS = 5


def run(seed: int, workdir: Path, trials: int = DEFAULT) -> list[dict]:
    from netserve import KEY, concurrent_flood, decoded_peak, hostile_cases, post, serve_app, slow_body

    rows = []
    with serve_app() as (srv, model, hits):
        cases = hostile_cases(workdir, hits.url)
        for name, (body, headers, status, code) in cases.items():
            wrong, leaked, slow = Counter(), 0, 0.0
            for _ in range(trials):
                t0 = time.monotonic()
                got, resp = post(srv, body, headers)
                slow = max(slow, time.monotonic() - t0)
                got_code = resp.get("error", {}).get("code") if isinstance(resp, dict) else None
                if got != status or (code is not None and got_code != code):
                    wrong[f"{got} {got_code}"] += 1
                leaked += KEY in str(resp)
            rows.append({"fault": f"serve: {name}", "trials": trials, "lost": 0, "duplicated": 0,
                         "differing": sum(wrong.values()) + leaked, "hung": 0,
                         "notes": f"{status} {code}" + (f"; got {dict(wrong)}" if wrong else "")
                                  + f"; slowest {slow:.2f} s"})
        rows.append({"fault": "serve: hostile requests reaching the model or a URL", "trials": trials * len(cases),
                     "lost": 0, "duplicated": 0, "differing": len(model.seen) + hits.count, "hung": 0,
                     "notes": f"model saw {len(model.seen)} inputs, the remote URL got {hits.count} requests"})
    with serve_app(max_pending=1, body_timeout=1.0) as (srv, model, _):
        got = Counter()
        for _ in range(min(trials, 5)):
            got[slow_body(srv, wait=15)] += 1
            got[f"then {post(srv, None, None)[0]}"] += 1
    n = min(trials, 5)
    rows.append({"fault": "serve: body trickled then stalled (body_timeout 1 s, max_pending 1)", "trials": n,
                 "lost": 0, "duplicated": 0, "hung": got.get("no answer", 0),
                 "differing": n - sum(v for k, v in got.items() if " 408 " in f" {k} ") + n - got.get("then 200", 0),
                 "notes": f"{dict(got)}"})
    statuses: Counter = Counter()
    unanswered, slowest, inside = 0, 0.0, 0
    with serve_app(max_pending=16, delay=0.02) as (srv, model, _):
        for _ in range(FLOODS):
            f = concurrent_flood(srv, model, n=200, timeout=120)
            statuses.update(f["statuses"])
            unanswered += f["unanswered"]
            slowest = max(slowest, f["seconds"])
            inside = max(inside, f["max_in_model"])
        alive = post(srv, None, None)[0] == 200
    rows.append({"fault": "serve: 200 concurrent requests (max_pending 16, 1 in 5 wrong key)", "trials": 200 * FLOODS,
                 "lost": unanswered, "duplicated": 0,
                 "differing": sum(v for k, v in statuses.items() if k not in (200, 401, 503)) + (not alive), "hung": 0,
                 "notes": f"statuses {dict(sorted(statuses.items()))}; slowest flood {slowest:.1f} s; "
                          f"{inside} in the model at once; alive after: {alive}"})
    per = 8 * 1024 * 1024 * 3
    peaks = [decoded_peak(n=24, frames=8, size=1024, max_decoding=2) for _ in range(3)]
    worst = max(p["peak_bytes"] for p in peaks)
    unbounded = decoded_peak(n=24, frames=8, size=1024, max_decoding=24)["peak_bytes"]  # the old behaviour
    rows.append({"fault": "serve: 24 small bodies decoding to 24 MiB each (max_decoding 2)", "trials": 24 * 3,
                 "lost": sum(24 - p["statuses"].get(200, 0) for p in peaks), "duplicated": 0,
                 "differing": int(worst >= 6 * per), "hung": 0,
                 "notes": f"peak traced memory {worst / 2**20:.0f} MiB = {worst / per:.1f} x one request's frames "
                          f"(with max_decoding 24, i.e. no bound: {unbounded / per:.1f} x)"})
    return rows
