"""Faulty servers (issue 13): the model backend, the llm:openai and rj:openai judges and the
eval command's exit status against a seeded loopback server that answers 30 % of requests with a
fault (429 with / without Retry-After, 500, 503, read timeout, dropped connection, malformed JSON,
empty choices, null content, refusal field). ``trials``: eval samples per seed (x 2 conditions:
video, text); the judges judge those rows. Scenarios: tests/faults/netfaults.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from faults._net import manifest

DEFAULT = 100
SEEDS = 3


def _rows(name: str, figs: dict) -> list[dict]:
    passes = figs["passes"]
    tot = {k: sum(p.get(k, 0) for p in passes) for k in ("lost", "differing", "duplicated", "hung", "requests",
                                                           "retried_success", "recorded_errors")}
    rerun = passes[-1]
    kinds: dict[str, Counter] = {}
    for p in passes:
        for k, v in p["by_kind"].items():
            kinds.setdefault(k, Counter()).update(v)
    lost = tot["lost"] + rerun.get("rerun_missed", 0)
    differing = tot["differing"] + rerun.get("rerun_extra", 0)
    out = [{"fault": f"{name}: all kinds at 30 %", "trials": sum(sum(c.values()) for c in kinds.values()),
            "lost": lost, "duplicated": tot["duplicated"], "differing": differing, "hung": tot["hung"],
            "notes": (f"{passes[0]['rows']} rows, {tot['requests']} requests over 2 passes; first pass "
                      f"{passes[0]['ok']} ok / {passes[0]['errors']} errors, rerun asked {rerun.get('rerun_asked')} "
                      f"(= the failed rows; {rerun.get('rerun_extra')} extra, {rerun.get('rerun_missed')} missed), "
                      f"then {rerun['errors']} errors; {passes[0]['seconds']} s + {rerun['seconds']} s")}]
    for kind, c in sorted(kinds.items()):
        out.append({"fault": f"{name}: {kind}", "trials": sum(c.values()), "lost": 0, "duplicated": 0, "differing": 0,
                    "hung": 0, "notes": ", ".join(f"{v} {k}" for k, v in sorted(c.items()))})
    return out


def merge(parts: list[dict]) -> dict:
    """The passes of several seeds, as if one run (sums; by_kind added up)."""
    out = {"passes": []}
    for i in range(2):
        ps = [p["passes"][i] for p in parts]
        m = {k: sum(p.get(k, 0) for p in ps) for k in ("lost", "differing", "duplicated", "hung", "requests", "ok",
                                                        "errors", "rows", "retried_success", "recorded_errors",
                                                        "rerun_asked", "rerun_extra", "rerun_missed")}
        m["seconds"] = round(sum(p["seconds"] for p in ps), 1)
        by: dict[str, Counter] = {}
        for p in ps:
            for k, v in p["by_kind"].items():
                by.setdefault(k, Counter()).update(v)
        m["by_kind"] = {k: dict(v) for k, v in by.items()}
        if i == 0:
            m = {k: v for k, v in m.items() if not k.startswith("rerun")}
        out["passes"].append(m)
    return out


def run(seed: int, workdir: Path, trials: int = DEFAULT) -> list[dict]:
    from netfaults import cli_exit_status, eval_under_faults, judge_under_faults

    mani = manifest(workdir, unique=True)
    models, llms, rjs = [], [], []
    for s in range(seed, seed + SEEDS):
        out = workdir / f"run-{s}"
        models.append(eval_under_faults(mani, out, seed=s, limit=trials, conditions=("video", "text"),
                                        cycle=False))
        llms.append(judge_under_faults(out, "llm", seed=s, cycle=False))
        rjs.append(judge_under_faults(out, "rj", seed=s, cycle=False))
    rows = _rows("model backend", merge(models)) + _rows("llm:openai judge", merge(llms)) + \
        _rows("rj:openai judge", merge(rjs))
    exits = [cli_exit_status(mani, workdir / f"cli-{s}", seed=s, limit=max(8, trials // 5))
             for s in range(seed, seed + SEEDS)]
    passes = [p for e in exits for p in e["passes"]]
    rows.append({"fault": "eval exit status vs --max-error-rate", "trials": len(passes), "lost": 0, "duplicated": 0,
                 "differing": sum(p["rc"] != p["expected_rc"] for p in passes), "hung": 0,
                 "notes": "; ".join(f"rate {p['error_rate']:.3f} thr {p['threshold']:.3f} rc {p['rc']}" for p in passes)})
    return rows
