"""`videosafety demo` wired end to end with toy-of-toy settings (the real run takes minutes and
its figures are in benchmarks/RESULTS.md): both models evaluated on the same eval samples, all
four stages trained on train-split records, one report over both runs, and a rerun that redoes
nothing."""

from __future__ import annotations

import json

from videosafety.demo import DemoSettings, run_demo

TINY = DemoSettings(eval_limit=8, max_new_tokens=8, sft_records=16, sft_batch=8, cot_epochs=1, grpo_prompts=4,
                    grpo_per_step=2, grpo_generations=2, grpo_max_new_tokens=8)


def test_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSAFETY_CACHE", str(tmp_path / "cache"))
    logs: list[str] = []
    result = run_demo(tmp_path / "demo", TINY, progress=False, log=logs.append)

    runs = {}
    for name in ("eval-base", "eval-trained"):
        rows = [json.loads(x) for x in (tmp_path / "demo" / name / "responses.jsonl").read_text().splitlines()]
        runs[name] = rows
        assert len(rows) == 8 * 3 and {r["condition"] for r in rows} == {"video", "text", "blank"}
        assert all(r["sample_id"].startswith("eval-") for r in rows)
    # the same eval samples, asked plainly (base) and in the reasoning format (trained)
    assert {r["sample_id"] for r in runs["eval-base"]} == {r["sample_id"] for r in runs["eval-trained"]}
    assert all(r["instruction"] is None for r in runs["eval-base"])
    assert all(r["instruction"] for r in runs["eval-trained"])

    for stage in ("1", "2", "cot", "grpo"):
        done = json.loads((tmp_path / "demo" / "train" / f"stage-{stage}" / "stage_done.json").read_text())
        records = [json.loads(x) for x in open(done["data"], encoding="utf-8")]
        assert records and all(r["id"].startswith("train-") or r["kind"] == "general" for r in records)
    assert result.model == tmp_path / "demo" / "train" / "stage-grpo" / "final"

    res = json.loads((result.report / "results.json").read_text())
    assert result.results.to_json() == res
    assert len(res["runs"]) == 2 and [r["model"] for r in result.rows] == [x["model"] for x in res["runs"]]
    assert all("HH DSR video" in r and "SafeQ FRR video" in r for r in result.rows)

    logs.clear()
    again = run_demo(tmp_path / "demo", TINY, progress=False, log=logs.append)
    assert sum("skipped" in m for m in logs) == 4 and again.rows == result.rows
