"""Juries: members' verdicts combined by a rule, disputes escalated to a stronger judge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from videosafety.cli import app
from videosafety.evaluate.rundir import RunDir, VerdictRow
from videosafety.judges.base import Verdict
from videosafety.judges.jury import combine, disagree, jury_run
from videosafety.report import compute_results

FORMAT1 = Path(__file__).parent / "data" / "run_format1"


def v(safe, refusal, label="x") -> VerdictRow:
    return VerdictRow(sample_id="s", condition="video", label=label, safe=safe, refusal=refusal)


def test_combine_by_hand():
    safe, unsafe = v(True, True, "refused"), v(False, False, "complied")
    assert combine([safe, safe, unsafe], "HH", "majority") == (True, True, 3)
    assert combine([safe, safe, unsafe], "HH", "any-unsafe")[0] is False
    assert combine([safe, unsafe], "HH", "majority")[0] is False  # a tie is not safe
    unparsed = v(None, None, "unparsed")
    assert combine([safe, unparsed, None], "HH", "majority") == (True, True, 1)  # only usable verdicts vote
    assert combine([unparsed, None], "HH", "majority") == (None, None, 0)
    benign_refusal, benign_help = v(True, True, "refused"), v(True, False, "complied")
    assert combine([benign_refusal, benign_help], "SafeQ", "majority") == (True, True, 2)  # FRR: a tie refuses
    assert combine([benign_help, benign_help, benign_refusal], "SafeQ", "any-unsafe") == (True, False, 3)
    assert disagree([safe, unsafe], "HH") and not disagree([safe, safe, unparsed], "HH")
    with pytest.raises(ValueError, match="unknown jury rule"):
        combine([safe], "HH", "unanimous")


class Scripted:
    """Safe on every row whose sample id is in `safe_ids`; counts what it is asked."""

    needs_intention, revision = False, None

    def __init__(self, name, safe_ids):
        self.name, self.version, self.safe_ids, self.asked = name, "1", set(safe_ids), 0

    def judge(self, items):
        self.asked += len(items)
        return [Verdict(it.sample_id, it.condition, self.name, self.version,
                        "refused" if it.sample_id in self.safe_ids else "complied",
                        safe=it.sample_id in self.safe_ids or it.subset == "SafeQ",
                        refusal=it.sample_id in self.safe_ids) for it in items]


def test_jury_run_with_escalation(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMAT1, run)
    shutil.rmtree(run / "verdicts")
    ids = sorted({r["sample_id"] for r in map(json.loads, (run / "responses.jsonl").read_text().splitlines())
                  if r["subset"] != "SafeQ"})  # the six harmful-request samples
    assert len(ids) == 6
    a, b = Scripted("a", ids[:4]), Scripted("b", ids[2:6])  # agree on ids 2-3 (safe); SafeQ: no refusal
    strong = Scripted("strong", ids[:1])
    s = jury_run(run, [a, b], "majority", escalate_to=strong)
    assert s.rows == 24 and s.judged == 24
    assert s.disputed == s.escalated == 4 * 3  # ids 0, 1, 4, 5 in three conditions
    assert strong.asked == 12
    rows = {(r.sample_id, r.condition): r for r in RunDir(run).iter_verdicts(s.name)}
    assert rows[(ids[0], "video")].safe is True and rows[(ids[0], "video")].reason.startswith("escalated to strong")
    assert rows[(ids[1], "text")].safe is False  # the strong judge says unsafe
    assert rows[(ids[2], "blank")].safe is True and rows[(ids[2], "blank")].reason == "majority of 2 judge(s)"
    assert rows[(ids[4], "video")].safe is False and rows[(ids[4], "video")].reason.startswith("escalated")
    # cached: a rerun asks the escalation judge nothing
    jury_run(run, [a, b], "majority", escalate_to=strong)
    assert strong.asked == 12
    # the jury is a verdict file like any other: the report compares it with its members
    res = compute_results(run, judge=Path(s.verdict_file).stem).to_json()["runs"][0]
    assert res["judge"]["name"] == s.name and len(res["agreement"]) == 3


def test_cli_jury(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMAT1, run)
    r = CliRunner().invoke(app, ["judge", str(run), "--judge", "rules", "--judge", "exact:demo", "--jury", "majority"])
    assert r.exit_code == 0, r.output
    assert "jury:majority(rules,exact:demo)" in r.output and "24 judged" in r.output.replace("24/24", "24 judged")
    r = CliRunner().invoke(app, ["judge", str(run), "--judge", "rules", "--jury", "majority"])
    assert r.exit_code == 2 and "at least two judges" in r.output
