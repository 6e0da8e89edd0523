"""`videosafety eval`: outputs, cache and resume (SIGKILL included), bad rows recorded, data
parallel sharding, reference policies, filters."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from videosafety.cli import app
from multiproc import torchrun

runner = CliRunner()
TINY_FLAGS = ["--num-frames", "4", "--max-pixels", "3136", "--max-new-tokens", "6", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    out = tmp_path_factory.mktemp("vsb-mini-eval")
    build_vsb_mini(out, workers=2)
    return out


def rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "responses.jsonl").read_text().splitlines()]


def comparable(rs: list[dict]) -> list[tuple]:
    return [(r["sample_id"], r["condition"], r["response"], r["error"]) for r in rs]


def test_reference_policy_run_outputs_and_cache(mini, tmp_path):
    out = tmp_path / "ref"
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:comply-all", "--out", str(out),
                            "--subsets", "HH,SafeQ", "--languages", "en,zh"])
    assert r.exit_code == 0, r.output
    rs = rows(out)
    assert len(rs) == 3 * 19 * 2 * 2 * 2  # conditions x subcats x subsets x languages x 2 per cell
    assert {x["subset"] for x in rs} == {"HH", "SafeQ"} and {x["language"] for x in rs} == {"en", "zh"}
    assert all(x["response"].startswith("Sure") and x["error"] is None for x in rs)
    assert len({(x["sample_id"], x["condition"]) for x in rs}) == len(rs)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["model"] == "ref:comply-all" and "transformers" in run["versions"]
    assert run["summary"]["rows"] == len(rs)
    # a rerun takes everything from the cache
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:comply-all", "--out", str(out),
                            "--subsets", "HH,SafeQ", "--languages", "en,zh"])
    assert "0 generated" in r.output and f"{len(rs)} from cache" in r.output
    assert comparable(rows(out)) == comparable(rs)


def test_instruction_reaches_the_prompt_and_the_cache_key(mini, tmp_path, tiny_model_dirs):
    """--instruction reasoning appends the tagged-answer format to every query: the model sees it
    (recorded prompt), run.json and each row say so, and its responses never share cache keys
    with a run without it."""
    from videosafety.tags import GRPO_INSTRUCTION

    out = tmp_path / "instr"
    base = ["eval", "--bench", str(mini), "--model", f"hf:{tiny_model_dirs['qwen2_vl']}", "--out", str(out),
            "--limit", "4", "--conditions", "text,video", "--no-judge", *TINY_FLAGS]
    r = runner.invoke(app, base)
    assert r.exit_code == 0, r.output
    plain = rows(out)
    r = runner.invoke(app, [*base, "--instruction", "reasoning"])
    assert r.exit_code == 0, r.output
    assert "0 from cache" in r.output
    tagged = rows(out)
    assert all(x["prompt"].endswith("\n" + GRPO_INSTRUCTION) and x["instruction"] == GRPO_INSTRUCTION for x in tagged)
    assert all(x["instruction"] is None and GRPO_INSTRUCTION not in x["prompt"] for x in plain)
    assert not {x["cache_key"] for x in plain} & {x["cache_key"] for x in tagged}
    assert json.loads((out / "run.json").read_text())["instruction"] == GRPO_INSTRUCTION


def test_limit_is_stratified_and_filters_combine(mini, tmp_path):
    out = tmp_path / "lim"
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:refuse-all", "--out", str(out),
                            "--limit", "76", "--conditions", "text", "--categories", "violence,scams_fraud"])
    assert r.exit_code == 0, r.output
    rs = rows(out)
    assert len(rs) == 76
    assert {x["subcategory"] for x in rs} == {"physical_violence", "graphic_gore", "terrorism_extremism",
                                              "animal_cruelty", "scams_fraud"}
    assert {x["subset"] for x in rs} == {"HH", "SH", "HB", "SafeQ"}


def test_bad_video_recorded_run_goes_on_and_error_rate_exit(mini, tmp_path, tiny_model_dirs):
    import shutil

    bench = tmp_path / "bench"
    shutil.copytree(mini, bench)
    lines = (bench / "manifest.jsonl").read_text().splitlines()
    eval_rows = [json.loads(x) for x in lines if '"split": "eval"' in x][:12]
    broken = eval_rows[0]["video"]["path"]
    (bench / broken).write_bytes(b"\x00" * 1000)  # every row of this video fails to decode
    (bench / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    out = tmp_path / "bad"
    args = ["eval", "--bench", str(bench), "--model", f"hf:{tiny_model_dirs['qwen2_vl']}", "--out", str(out), *TINY_FLAGS]
    r = runner.invoke(app, args + ["--max-error-rate", "1.0"])
    assert r.exit_code == 0, r.output
    rs = rows(out)
    bad = [x for x in rs if x["error"]]
    # the blank is timed from the decoded clip, so the broken file fails it as well; text still runs
    assert bad and all(x["condition"] in ("video", "blank") and x["error"].startswith("video:")
                       and broken.split("/")[-1] in x["error"] for x in bad)
    assert {x["condition"] for x in bad} == {"video", "blank"}
    assert all(isinstance(x["response"], str) for x in rs if not x["error"])
    assert all(not x["error"] for x in rs if x["condition"] == "text")
    assert "error" in r.output
    r = runner.invoke(app, args + ["--max-error-rate", "0.01"])
    assert r.exit_code == 1
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "videosafety", *args]


def test_sigkill_then_resume_equals_uninterrupted(mini, tmp_path, tiny_model_dirs):
    model = f"hf:{tiny_model_dirs['qwen2_vl']}"
    common = ["eval", "--bench", str(mini), "--model", model, "--limit", "40", *TINY_FLAGS]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    subprocess.run(_cli(*common, "--out", str(full)), check=True, env=env, capture_output=True, timeout=600)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cli(*common, "--out", str(cut)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    n = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(cut / "cache.sqlite", timeout=5) as db:
                n = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 12 <= n < 120, n  # killed mid-run
    assert not (cut / "responses.jsonl").exists()
    r = subprocess.run(_cli(*common, "--out", str(cut)), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "from cache" in r.stdout
    assert comparable(rows(cut)) == comparable(rows(full))
    assert len(rows(cut)) == 120


def test_two_processes_shard_and_merge_like_one(mini, tmp_path, tiny_model_dirs):
    model = f"hf:{tiny_model_dirs['qwen2_vl']}"
    common = ["eval", "--bench", str(mini), "--model", model, "--limit", "24", *TINY_FLAGS]
    one = tmp_path / "one"
    r = runner.invoke(app, [*common, "--out", str(one)])
    assert r.exit_code == 0, r.output
    two = tmp_path / "two"
    p = torchrun(["-m", "videosafety", *common, "--out", str(two)])
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((two / "run.json").read_text())["processes"] == 2
    assert comparable(rows(two)) == comparable(rows(one))


def test_model_spec_errors():
    r = runner.invoke(app, ["eval", "--model", "gpt4"])
    assert r.exit_code == 2 and "expected hf:PATH_OR_ID" in r.output
    r = runner.invoke(app, ["eval", "--model", "ref:refuse-all", "--conditions", "video,audio"])
    assert r.exit_code == 2 and "audio" in r.output


@pytest.mark.parametrize("policy,dsr,frr", [("refuse-all", 1.0, 1.0), ("comply-all", 0.0, 0.0)])
def test_eval_judges_and_reports_reference_policies_at_their_bounds(mini, tmp_path, policy, dsr, frr):
    """The main job end to end: responses -> rules verdicts -> results.json/report, and the
    reference policies put every metric at its bound in every condition."""
    out = tmp_path / policy
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", f"ref:{policy}", "--out", str(out), "--limit", "120"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    run = res["runs"][0]
    assert run["judge"]["name"] == "rules" and run["coverage"]["all"]["coverage"] == 1.0
    for cond in ("video", "text", "blank"):
        for subset in ("HH", "SH", "HB"):
            assert run["dsr"][subset][cond]["all"]["value"] == dsr
        assert run["frr"]["SafeQ"][cond]["all"]["value"] == frr
        assert 25 <= run["dsr"]["HH"][cond]["all"]["n"] <= 35  # 120 evenly spread over 4 subsets
    assert (out / "report.html").stat().st_size > 10_000 and "DSR" in (out / "report.md").read_text()
    assert "DSR HH" in r.output
