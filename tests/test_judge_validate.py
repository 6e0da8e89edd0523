"""`videosafety judge validate`: a judge's agreement with human labels, hand-computed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from videosafety.cli import app
from videosafety.judges.base import Verdict
from videosafety.judges.validate import LabelsError, last_validation, read_labels, validate_judge

# (id, human, judge's call, harmful request?, language)
ROWS = [("a", "refused", "R", True, "en"), ("b", "refused", "U", True, "en"), ("c", "complied", "C", True, "en"),
        ("d", "partial", "R", True, "en"), ("e", "complied", "R", True, "zh"), ("f", "complied", "C", False, "en"),
        ("g", "refused", "R", False, "en")]


class Scripted:
    """Answers what the response text says: R refused, C complied, U no call."""

    name, version, revision, needs_intention = "scripted", "s1", None, False

    def judge(self, items):
        out = []
        for it in items:
            refusal = {"R": True, "C": False, "U": None}[it.response]
            label = {"R": "refused", "C": "complied", "U": "unclear"}[it.response]
            out.append(Verdict(it.sample_id, it.condition, self.name, self.version, label,
                               safe=None if refusal is None else refusal, refusal=refusal))
        return out


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": f"question {i}", "response": call, "human": human,
                                        "harmful": harmful, "language": lang}) + "\n"
                            for i, human, call, harmful, lang in ROWS), encoding="utf-8")
    return path


def test_agreement_and_implied_rates_by_hand(labels, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSAFETY_CACHE", str(tmp_path / "cache"))
    res = validate_judge(Scripted(), labels).to_dict()
    assert res["n"] == 7 and res["judge_calls"] == {"refused": 4, "undecided": 1, "complied": 2}
    refused = res["views"]["partial_as_refused"]
    assert refused["all"]["accuracy"] == round(5 / 7, 4) and refused["all"]["kappa"] == round(13 / 27, 4)
    assert refused["all"]["confusion"] == {"refused": {"refused": 3, "complied": 0, "undecided": 1},
                                           "complied": {"refused": 1, "complied": 2, "undecided": 0}}
    assert (refused["dsr"]["human"]["k"], refused["dsr"]["human"]["n"], refused["dsr"]["judge"]["k"]) == (3, 5, 3)
    assert (refused["frr"]["human"]["value"], refused["frr"]["judge"]["value"]) == (0.5, 0.5)
    assert refused["by_language"]["zh"] == {"n": 1, "accuracy": 0.0, "kappa": 0.0, "confusion": {
        "refused": {"refused": 0, "complied": 0, "undecided": 0}, "complied": {"refused": 1, "complied": 0,
                                                                              "undecided": 0}}}
    assert refused["by_language"]["en"]["accuracy"] == round(5 / 6, 4)
    complied = res["views"]["partial_as_complied"]
    assert complied["all"]["accuracy"] == round(4 / 7, 4) and complied["all"]["kappa"] == round(8 / 29, 4)
    assert complied["dsr"]["human"]["value"] == 0.4
    lo, hi = complied["dsr"]["human"]["ci"]
    assert lo < 0.4 < hi


def test_cli_writes_json_and_keeps_the_last_validation(labels, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSAFETY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "validation.json"
    r = CliRunner().invoke(app, ["judge", "validate", str(labels), "--judge", "rules", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "against 7 human labels" in r.output and "partial refusals partial as refused" in r.output
    (saved,) = json.loads(out.read_text())
    assert saved["judge"] == "rules" and saved["n"] == 7
    # R, C and U are no phrases the rules know: "unclear", which the rules judge does not call a
    # refusal; so it agrees with the three human "complied" labels only
    assert saved["judge_calls"] == {"complied": 7}
    assert saved["views"]["partial_as_refused"]["all"]["accuracy"] == round(3 / 7, 4)
    assert last_validation("rules", saved["judge_version"]) == saved
    assert last_validation("rules", "another-version") is None


def test_bad_labels_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "response": "r", "human": "refused"}) + "\n"
                   + json.dumps({"prompt": "p", "response": "r", "human": "maybe"}) + "\n", encoding="utf-8")
    with pytest.raises(LabelsError, match=r"bad.jsonl:2: human: Input should be 'refused', 'complied' or 'partial'"):
        read_labels(bad)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("prompt,response,human,harmful,language\nq,I cannot help,refused,false,\nq2,ok,complied,,fr\n",
                        encoding="utf-8")
    rows = read_labels(csv_file)
    assert [(r.id, r.harmful, r.language) for r in rows] == [("line-2", False, "en"), ("line-3", True, "fr")]
    r = CliRunner().invoke(app, ["judge", "validate", str(bad)])
    assert r.exit_code == 2 and "bad.jsonl:2:" in r.output and "human: Input should be" in r.output


def test_report_shows_the_judges_validation_and_warns_about_rules(labels, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from videosafety.judges.validate import save_validation
    from videosafety.report import report_paths, write_report

    monkeypatch.setenv("VIDEOSAFETY_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "run_format1", run)
    results = write_report(run, run)
    md = report_paths(run)["markdown"].read_text()
    assert results.runs[0].judge.validation is None and "never validated against human labels" in md
    assert "come from the offline rules judge alone" in md.split("## Defense success rate")[0]  # at the top

    class SameVersionAsTheRun(Scripted):  # stands for the rules judge that judged the run
        name, version = "rules", results.runs[0].judge.version

    save_validation(validate_judge(SameVersionAsTheRun(), labels))
    write_report(run, run)
    md = report_paths(run)["markdown"].read_text()
    assert f"agreement with 7 human labels: accuracy {5 / 7:.1%}, kappa 0.48" in md
