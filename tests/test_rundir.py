"""The run folder's contract (evaluate.rundir): typed rows, a folder of format 1 written before
the contract still reads, and a run plans its work from one pass over the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from videosafety.evaluate.rundir import FORMAT_VERSION, ResponseRow, Results, RunDir, RunError
from videosafety.judges.rules import RulesJudge
from videosafety.judges.run import judge_run
from videosafety.report import compute_results

FORMAT1 = Path(__file__).parent / "data" / "run_format1"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    return build_vsb_mini(tmp_path_factory.mktemp("vsb-mini-rundir"), workers=2)


@pytest.fixture
def format1(tmp_path, mini) -> Path:
    run = tmp_path / "format1"
    shutil.copytree(FORMAT1, run)
    info = json.loads((run / "run.json").read_text())
    info["manifest"] = str(mini)  # the writer's path is not this machine's
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_format1_folder_reads_with_intentions_from_its_manifest(format1, mini):
    from videosafety.data.manifest import iter_samples

    run = RunDir(format1)
    info = run.read_info()
    assert info.format_version == 1 and info.model == "ref:comply-all" and info.summary.rows == 24
    rows = list(run.iter_responses())
    assert len(rows) == 24 and run.intentions_note is None
    intentions = {s.id: s.harmful_intention for s in iter_samples(mini)}
    assert all(r.harmful_intention == intentions[r.sample_id] for r in rows)
    assert any(r.harmful_intention for r in rows if r.subset == "HB")  # HB needs its intention judged
    verdicts = list(run.iter_verdicts("rules"))
    assert [(v.sample_id, v.condition) for v in verdicts] == [(r.sample_id, r.condition) for r in rows]
    assert {v.label for v in verdicts} == {"complied"}


def test_format1_folder_reports_the_numbers_it_reported(format1):
    old = json.loads((format1 / "results.json").read_text())
    new = compute_results(format1).to_json()
    for key in ("dsr", "frr", "drop", "coverage", "blank_control"):
        assert new["runs"][0][key] == old["runs"][0][key], key
    assert Results.read(format1 / "results.json").runs[0].rate("dsr", "HH", "video").n == 2


def test_format1_folder_rejudged_gives_its_verdicts_and_says_where_intentions_came_from(format1, tmp_path):
    def read(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text().splitlines()]

    from videosafety.judges.rules import rules_version

    def without_version(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "judge_version"} for r in rows]

    before = read(format1 / "verdicts" / "rules.jsonl")
    shutil.rmtree(format1 / "verdicts")
    judge_run(format1, RulesJudge(), progress=False)
    after = read(format1 / "verdicts" / "rules.jsonl")
    # the same rows, keys and verdicts; the phrase lists (and so the version) may have changed since
    assert without_version(after) == without_version(before)
    assert {r["judge_version"] for r in after} == {rules_version()}

    class NeedsIntention:
        name, version, revision, needs_intention = "intention-reader", "1", None, True

        def judge(self, items):
            return RulesJudge().judge(items)

    s = judge_run(format1, NeedsIntention(), progress=False)
    assert s.intentions == str(format1 / "responses.jsonl") and s.judged == 24
    info = json.loads((format1 / "run.json").read_text())
    info["manifest"] = str(tmp_path / "gone.jsonl")
    (format1 / "run.json").write_text(json.dumps(info))
    s = judge_run(format1, NeedsIntention(), progress=False, force=True)
    assert s.intentions is None and any("gone.jsonl not found" in n for n in s.notes)


def test_bad_rows_name_file_line_and_field(tmp_path):
    run = tmp_path / "bad"
    shutil.copytree(FORMAT1, run)
    lines = (run / "responses.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    del row["condition"]
    lines[2] = json.dumps(row)
    (run / "responses.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=r"responses.jsonl:3: condition: Field required"):
        list(RunDir(run).iter_responses(with_intentions=False))


def test_new_runs_are_format_2_and_plan_from_one_manifest_pass(mini, tmp_path, monkeypatch):
    """`eval --limit 100` over 3 conditions: the manifest is read and validated once, and every
    response row carries what a judge needs."""
    from videosafety.data import manifest as manifest_module
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.evaluate.runner import EvalConfig, run_eval
    from videosafety.models.reference import ReferencePolicy

    passes, rows_read = [], []
    real = manifest_module._raw_rows

    def counting(path):
        passes.append(path)
        for item in real(path):
            rows_read.append(1)
            yield item
    monkeypatch.setattr(manifest_module, "_raw_rows", counting)
    total = sum(1 for _ in open(mini, encoding="utf-8"))
    s = run_eval(ReferencePolicy("comply-all"), mini, tmp_path / "run", EvalConfig(), SampleFilter(limit=100),
                 progress=False)
    assert s.rows == 300 and len(passes) == 1 and len(rows_read) == total

    run = RunDir(tmp_path / "run")
    assert run.read_info().format_version == FORMAT_VERSION == 2
    rows = list(run.iter_responses())
    passes.clear()

    class NeedsIntention:
        name, version, revision, needs_intention = "intention-reader", "1", None, True

        def judge(self, items):
            return RulesJudge().judge(items)

    judge_run(run.path, NeedsIntention(), progress=False)
    assert passes == []  # the judge never goes back to the manifest
    harmful = [r for r in rows if r.subset != "SafeQ"]
    assert harmful and all(isinstance(r, ResponseRow) and r.harmful_intention for r in harmful)
    # the plan kept the order: condition-major, the same samples in each condition
    ids = [[r.sample_id for r in rows if r.condition == c] for c in ("video", "text", "blank")]
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 100


def test_plan_validates_the_rows_it_uses(mini, tmp_path):
    """Rows are selected on their raw fields and only the selected ones validated: a broken
    train row does not stop an eval-split run; a broken eval row does, naming file, line, field."""
    from videosafety.data.manifest import ManifestError
    from videosafety.evaluate.plan import SampleFilter, make_plan

    lines = mini.read_text(encoding="utf-8").splitlines()
    train_at = next(i for i, x in enumerate(lines) if json.loads(x)["split"] == "train")
    eval_at = next(i for i, x in enumerate(lines) if json.loads(x)["split"] == "eval")
    bad = [json.loads(x) for x in lines]
    bad[train_at]["video_label"] = 7
    path = mini.parent / "bad-train.jsonl"  # beside the videos, so their paths resolve
    path.write_text("\n".join(json.dumps(r) for r in bad) + "\n", encoding="utf-8")
    try:
        plan = make_plan(path, SampleFilter(split="eval", limit=10), ("text",), "fp")
        assert len(plan.samples) == 10 and all(s.id.startswith("eval-") for s in plan.samples)
        bad[eval_at]["video_label"] = 7
        path.write_text("\n".join(json.dumps(r) for r in bad) + "\n", encoding="utf-8")
        with pytest.raises(ManifestError, match=rf"bad-train.jsonl:{eval_at + 1}: video_label"):
            make_plan(path, SampleFilter(split="eval"), ("text",), "fp")
    finally:
        path.unlink()
