"""Scenarios of the faulty-server campaign (issue 13), shared by the fast cases
(tests/faults/test_faults_servers.py) and the long campaign (benchmarks/faults/servers.py).

Each scenario runs the real pipeline (run_eval / judge_run over the real openai client) against a
``FakeOpenAIServer`` and compares what the run recorded with what the server did, row by row:

* ``lost``: a success the server served that no row holds, or a row error the server's last
  attempt for it does not explain;
* ``differing``: a row response (or verdict) the server never served as a final success (a
  fault's text counted as a response, a refusal field taken for the model's answer, ...);
* ``duplicated``: a verdict on a row whose generation or judging failed (a fault counted as a
  verdict);
* ``rerun_extra`` / ``rerun_missed``: rows a rerun asked again although they had succeeded, and
  failed rows a rerun did not ask again;
* ``hung``: the run took longer than its bound (every row's retries at their longest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from fakeserver import ERROR_TEXT, FAULTS, RETRYABLE, FakeOpenAIServer, rj_expected_score, rubric_answer

CATEGORIES = ("refusal", "no text content", "malformed", "timed out", "connection", "429", "500", "503")
def _src() -> Path:
    """The folder the videosafety under test was imported from: subprocesses run that code."""
    import videosafety

    return Path(videosafety.__file__).resolve().parents[1]


SRC = _src()


def error_category(text: str) -> str | None:
    low = text.lower()
    return next((c for c in CATEGORIES if c in low), None)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def compare(got: list, errors: list, final: dict[str, dict], served_of) -> dict:
    """Figures of one pass. ``got``: (request, value) of the rows with a success; ``errors``:
    (request, error text) of the failed rows, where ``request`` names what the row sent (rows that
    send the same request, e.g. two samples with the same query and video, are one key on the
    server: they must end alike and are counted once); ``final``: the server's last attempt per
    key; ``served_of(key, entry)``: the value a final success must show up as."""
    outcomes: dict = {}
    for req, v in got:
        outcomes.setdefault(req, set()).add(("ok", v))
    for req, t in errors:
        outcomes.setdefault(req, set()).add(("error", error_category(t)))
    split = sum(len(o) - 1 for o in outcomes.values())  # identical requests that ended differently
    have = Counter(v for o in outcomes.values() for kind, v in o if kind == "ok")
    have_err = Counter(v for o in outcomes.values() for kind, v in o if kind == "error")
    served = Counter(served_of(k, e) for k, e in final.items() if e["fault"] is None)
    want_err = Counter(ERROR_TEXT[e["fault"]] for e in final.values() if e["fault"] is not None)
    return {
        "lost": sum((served - have).values()) + sum((want_err - have_err).values()),
        "differing": sum((have - served).values()) + sum((have_err - want_err).values()) + split,
        "ok": len(got), "errors": len(errors), "requests_distinct": len(outcomes),
    }


def fault_figures(entries: list[dict], final: dict[str, dict]) -> dict:
    """Faults served, retried successes (a key with a fault whose last attempt succeeded)."""
    faulted = {e["key"] for e in entries if e["fault"] is not None}
    by_kind: dict[str, Counter] = {}
    for e in entries:
        if e["fault"] is None:
            continue
        end = final[e["key"]]
        how = ("retried to success" if end["fault"] is None else "recorded error" if end is e
               else "retried, a later fault")
        by_kind.setdefault(e["fault"], Counter())[how] += 1
    return {
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "faults": dict(Counter(e["fault"] for e in entries if e["fault"] is not None)),
        "retried_success": sum(1 for k in faulted if final[k]["fault"] is None),
        "recorded_errors": sum(1 for k in faulted if final[k]["fault"] is not None),
        "requests": len(entries),
    }


def rerun_figures(failed_before: set[str], asked: set[str]) -> dict:
    return {"rerun_extra": len(asked - failed_before), "rerun_missed": len(failed_before - asked),
            "rerun_asked": len(asked)}


def unique_queries(manifest: Path) -> Path:
    """A copy of a manifest, beside it, keeping the first sample of each query, so that no two rows
    of a run send the same request in any condition (the server counts attempts per request;
    VSB-mini reuses some queries across sub-sets)."""
    manifest = Path(manifest)
    seen: set[str] = set()
    lines = []
    for m in read_jsonl(manifest):
        if m["query"] not in seen:
            seen.add(m["query"])
            lines.append(json.dumps(m, ensure_ascii=False))
    out = manifest.with_name(manifest.stem + "-unique-queries.jsonl")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------ the model


def eval_under_faults(manifest: Path, out: Path, *, seed: int = 0, rate: float = 0.3, limit: int = 12,
                      conditions=("video", "text", "blank"), timeout: float = 1.0, max_retries: int = 2,
                      cycle: bool = True, faults=FAULTS) -> dict:
    """run_eval of an openai: model against the faulty server, judged by the rules judge; then a
    rerun in the same folder. Returns the figures of both passes (see the module docstring)."""
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.evaluate.runner import EvalConfig, run_eval
    from videosafety.judges.rules import RulesJudge
    from videosafety.judges.run import judge_run, read_verdicts
    from videosafety.models.openai_api import OpenAIVideoLLM

    with FakeOpenAIServer(seed=seed, rate=rate, cycle=cycle, stall=timeout + 0.5, faults=faults) as srv:
        llm = OpenAIVideoLLM("fake-model", srv.url, revision="fake", timeout=timeout, max_retries=max_retries,
                             backoff=0.01, max_concurrency=8)
        cfg = EvalConfig(conditions=tuple(conditions), max_error_rate=1.0)
        videos = {m["id"]: (m.get("video") or {}).get("path") for m in read_jsonl(Path(manifest))}
        figures: dict = {"passes": []}
        failed_before: set[str] | None = None
        for n in range(2):
            start = len(srv.log)
            t0 = time.monotonic()
            summary = run_eval(llm, manifest, out, cfg, SampleFilter(limit=limit), progress=False)
            seconds = time.monotonic() - t0
            rows = read_jsonl(out / "responses.jsonl")
            final = srv.final("model")
            req = [(r["prompt"], r["condition"], videos[r["sample_id"]] if r["condition"] == "video" else None)
                   for r in rows]
            p = compare([(q, r["response"]) for q, r in zip(req, rows) if r["response"] is not None],
                        [(q, r["error"]) for q, r in zip(req, rows) if r["error"] is not None], final,
                        lambda k, e: e["answer"])
            p.update(fault_figures(srv.entries("model", start), final), rows=len(rows), seconds=round(seconds, 2))
            p["keys"] = len(final)  # distinct requests: one per row
            # the row bound: every request of a batch queued behind max_concurrency, each at its longest
            p["hung"] = int(seconds > (len(rows) / llm.max_concurrency + 1) * llm.max_request_seconds + 30)
            p["error_rate"] = round(summary.error_rate, 4)
            asked = {e["key"] for e in srv.entries("model", start)}
            if failed_before is not None:
                p.update(rerun_figures(failed_before, asked))
            failed_before = {k for k, e in final.items() if e["fault"] is not None}
            judge_run(out, RulesJudge(), progress=False)
            verdicts = list(read_verdicts(out, "rules"))
            p["duplicated"] = sum(1 for r, v in zip(rows, verdicts) if r["response"] is None and v["judged"])
            p["refusal_text_as_response"] = sum("I refuse to answer this." in (r["response"] or "") for r in rows)
            figures["passes"].append(p)
    return figures


# ------------------------------------------------------------------------------------ the judges


def judge_under_faults(run_dir: Path, kind: str, *, seed: int = 0, rate: float = 0.3, timeout: float = 1.0,
                       max_retries: int = 2, cycle: bool = True, faults=FAULTS) -> dict:
    """judge_run with ``llm:openai`` or ``rj:openai`` (``kind``) against the faulty server, then a
    rerun. The run folder's responses are the judge's input (all present)."""
    from videosafety.judges.run import judge_run, read_verdicts
    from videosafety.judges.spec import load_judge

    with FakeOpenAIServer(seed=seed, rate=rate, cycle=cycle, stall=timeout + 0.5, faults=faults) as srv:
        opts = {"timeout": timeout, "max_retries": max_retries}
        if kind == "llm":
            opts["backoff"] = 0.01
            judge = load_judge(f"llm:openai:fake-model@{srv.url}", openai=opts)
            req_kind = "rubric"

            def value(v):
                return (v["safe"], v["refusal"], v["helpfulness"], v["reason"])

            def served(k, e):
                a = rubric_answer(k)
                return (a["safe"], a["refusal"], a["helpfulness"], a["reason"])
        else:
            judge = load_judge(f"rj:openai:fake-model@{srv.url}", openai=opts)
            req_kind = "rj"

            def value(v):
                return round(v["harm_score"], 6)

            def served(k, e):
                return round(rj_expected_score(k), 6)
        figures: dict = {"passes": []}
        failed_before: set[str] | None = None
        responses = read_jsonl(Path(run_dir) / "responses.jsonl")
        for n in range(2):
            start = len(srv.log)
            t0 = time.monotonic()
            summary = judge_run(run_dir, judge, batch_size=16, progress=False)
            seconds = time.monotonic() - t0
            verdicts = list(read_verdicts(run_dir, judge.name))
            final = srv.final(req_kind)
            # what the judge's prompt is made of: rows alike in all of it are one request
            req = [(r["prompt"], r["response"], r["subcategory"], r["language"], r["harmful_intention"])
                   for r in responses]
            p = compare([(q, value(v)) for q, v in zip(req, verdicts) if v["judged"]],
                        [(q, v["unjudged_reason"]) for q, v in zip(req, verdicts)
                         if not v["judged"] and v["unjudged_reason"] != "no response"], final, served)
            p.update(fault_figures(srv.entries(req_kind, start), final), rows=len(verdicts),
                     seconds=round(seconds, 2), keys=len(final), unparsed=summary.unparsed)
            # a verdict whose label says nothing was judged (an unparsed verdict from a fault), or a
            # verdict on a row without a response
            p["duplicated"] = sum(1 for v, r in zip(verdicts, responses)
                                  if v["judged"] and (v["label"] == "unparsed" or r["response"] is None))
            p["hung"] = int(seconds > len(verdicts) * (timeout + 10) * (max_retries + 1) + 60)
            asked = {e["key"] for e in srv.entries(req_kind, start)}
            if failed_before is not None:
                p.update(rerun_figures(failed_before, asked))
            failed_before = {k for k, e in final.items() if e["fault"] is not None}
            figures["passes"].append(p)
    return figures


# ------------------------------------------------------------------------------------ the CLI


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "VIDEOSAFETY_TEST"))}
    env.update(PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 300, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "videosafety", *args], env=env or cli_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_in_process(args: list[str]):
    """The command line in this process (typer's runner): (exit code, output)."""
    from typer.testing import CliRunner

    from videosafety.cli import app

    r = CliRunner().invoke(app, args)
    return r.exit_code, r.output


def cli_exit_status(manifest: Path, out: Path, *, seed: int = 0, rate: float = 0.5, limit: int = 8,
                    in_process: bool = False) -> dict:
    """``videosafety eval`` against the faulty server (faults a client does not retry, so the run is
    quick with the CLI's default backoff): the exit status with ``--max-error-rate 0`` and, on the
    rerun in the same folder, with a threshold at the run's own error rate. ``in_process``: through
    typer's runner instead of a subprocess (the same command, without the start-up)."""
    faults = tuple(f for f in FAULTS if f not in RETRYABLE and f != "malformed_json")
    with FakeOpenAIServer(seed=seed, rate=rate, faults=faults) as srv:
        base = ["eval", "--bench", str(manifest), "--model", f"openai:fake-model@{srv.url}", "--limit", str(limit),
                "--conditions", "text", "--timeout", "5", "--no-judge", "--out", str(out)]
        passes = []
        for threshold in ("0", None):
            rows_before = read_jsonl(out / "responses.jsonl") if (out / "responses.jsonl").exists() else []
            rate_before = sum(r["error"] is not None for r in rows_before) / max(1, len(rows_before))
            thr = threshold if threshold is not None else f"{rate_before:.6f}"
            if in_process:
                rc, output = cli_in_process([*base, "--max-error-rate", thr])
            else:
                proc = run_cli([*base, "--max-error-rate", thr])
                rc, output = proc.returncode, proc.stderr
            rows = read_jsonl(out / "responses.jsonl")
            err_rate = sum(r["error"] is not None for r in rows) / len(rows)
            passes.append({"threshold": float(thr), "error_rate": err_rate, "rc": rc,
                           "expected_rc": int(err_rate > float(thr)), "output": output[-2000:], "rows": len(rows)})
    return {"passes": passes}
