"""Fault campaign, faulty servers (issue 13), fast cases: the model backend and the LLM / RJ
judges against a real threaded HTTP server on loopback that answers 30 % of requests with 429
(with and without Retry-After), 500, 503, a read timeout, a dropped connection, malformed JSON,
empty ``choices``, ``null`` content or a refusal field (tests/faults/fakeserver.py). The run
completes; every fault ends as a retried success or a recorded error; no fault is counted as a
response or a verdict; a rerun asks only for the failed rows; the exit status follows
``--max-error-rate``. The long campaign: ``python benchmarks/bench_faults.py servers``."""

from __future__ import annotations

import time

import pytest

from fakeserver import FAULTS, FakeOpenAIServer
from netfaults import cli_exit_status, eval_under_faults, judge_under_faults

from videosafety.models.base import FailedResponse, GenerationSettings, ModelInput
from videosafety.models.openai_api import OpenAIVideoLLM


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    from netfaults import unique_queries

    return unique_queries(build_vsb_mini(tmp_path_factory.mktemp("vsb-mini-faults"), workers=2))


@pytest.fixture(scope="module")
def model_run(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults-run") / "run"
    return out, eval_under_faults(mini, out, seed=0, limit=24, conditions=("video", "text"))


def assert_clean(p: dict) -> None:
    for k in ("lost", "differing", "duplicated", "hung", "rerun_extra", "rerun_missed"):
        assert p.get(k, 0) == 0, (k, p)


def test_model_backend_under_faults(model_run):
    _, figs = model_run
    first, rerun = figs["passes"]
    assert first["keys"] == first["rows"] == first["requests_distinct"] == 48  # one request per row: exact accounting
    assert set(first["faults"]) == set(FAULTS), first["faults"]  # every kind was served
    assert first["retried_success"] > 0 and first["recorded_errors"] > 0 and first["errors"] > 0
    assert first["refusal_text_as_response"] == 0
    assert first["ok"] + first["errors"] == first["rows"]
    assert_clean(first)
    # the rerun asked exactly the failed rows again, and nothing else
    assert rerun["rerun_asked"] == first["errors"] and rerun["requests"] >= first["errors"]
    assert_clean(rerun)


@pytest.mark.parametrize("kind", ["llm", "rj"])
def test_judges_under_faults(model_run, kind):
    import shutil

    run, _ = model_run
    figs = judge_under_faults(run, kind, seed=0)
    first, rerun = figs["passes"]
    assert set(first["faults"]) == set(FAULTS), first["faults"]
    assert first["retried_success"] > 0 and first["errors"] > 0
    assert first["unparsed"] == 0  # an empty answer, a null content or a refusal field is no verdict
    assert_clean(first)
    assert rerun["rerun_asked"] == first["errors"]
    assert_clean(rerun)
    shutil.rmtree(run / "verdicts", ignore_errors=True)


def test_retry_after_is_honoured():
    """A 429 with Retry-After: the next attempt waits at least that long, even with a tiny backoff."""
    with FakeOpenAIServer(seed=0, rate=1.0, faults=("429_retry_after",), retry_after=1) as srv:
        llm = OpenAIVideoLLM("fake-model", srv.url, revision="r", timeout=5, max_retries=1, backoff=0.001)
        (out,) = llm.generate([ModelInput("q")], GenerationSettings(max_new_tokens=4))
        times = [e["t"] for e in srv.log]
    assert isinstance(out, FailedResponse) and "429" in out.error
    assert len(times) == 2 and times[1] - times[0] >= 0.9, times


def test_read_timeout_is_bounded():
    """A server that never answers in time: the row fails within the client's bound, not hanging."""
    with FakeOpenAIServer(rate=1.0, faults=("read_timeout",), stall=30) as srv:
        llm = OpenAIVideoLLM("fake-model", srv.url, revision="r", timeout=0.5, max_retries=1, backoff=0.01)
        t0 = time.monotonic()
        (out,) = llm.generate([ModelInput("q")], GenerationSettings(max_new_tokens=4))
        elapsed = time.monotonic() - t0
    assert isinstance(out, FailedResponse) and "timed out" in out.error
    assert elapsed < 10, elapsed  # generous: 2 x 0.5 s attempts; the server would stall 30 s


def test_exit_status_follows_max_error_rate(mini, tmp_path):
    figs = cli_exit_status(mini, tmp_path / "cli", seed=0, limit=8, in_process=True)
    first, rerun = figs["passes"]
    assert first["error_rate"] > 0 and first["rc"] == 1, first  # errors above --max-error-rate 0
    assert rerun["error_rate"] <= rerun["threshold"] and rerun["rc"] == 0, rerun
    for p in figs["passes"]:
        assert p["rc"] == p["expected_rc"], p
