"""GRPO records: problems built from a VSB-mini manifest (one safety problem per sample with a
tagged solution, free-form general problems), GRPORecord's validation naming the field, and the
import of the reference recipe's Video-R1-style RL data (JSON list and JSONL, legacy labels,
options, placeholders, every bad entry reported with file:line:field), plus the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from videosafety.cli import app
from videosafety.data.manifest import ManifestProblem, read_manifest
from videosafety.data.vsb_mini import build_vsb_mini
from videosafety.tags import GRPO_INSTRUCTION, format_solution, parse_tagged
from videosafety.train.builders import BuildError, build_general, build_grpo
from videosafety.train.records import (
    GRPORecord,
    RecordError,
    import_reference_grpo,
    iter_reference_grpo_rows,
    read_records,
    resolve_video,
    write_records,
)

runner = CliRunner()


# ---------------------------------------------------------------- build_grpo (VSB-mini)

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("vsb-mini-grpo")
    path = build_vsb_mini(out, workers=2)
    return path, read_manifest(path)


@pytest.fixture(scope="module")
def grpo(mini):
    return build_grpo(mini[0])


def test_grpo_counts_solutions_and_labels(mini, grpo):
    path, samples = mini
    train = {s.id: s for s in samples if s.split == "train"}
    general = build_general(path)
    assert Counter(r.problem_type for r in grpo) == {"safety": len(train), "free_form": len(general)}
    assert len({r.id for r in grpo}) == len(grpo)
    safety = [r for r in grpo if r.problem_type == "safety"]
    assert grpo[: len(safety)] == safety  # manifest order, general problems after
    for r in safety:
        s = train[r.id]
        parsed = parse_tagged(r.solution)
        assert r.kind == "safety" and r.labels == (s.video_label, s.query_label)
        assert (parsed.video_label, parsed.query_label) == r.labels
        assert parsed.answer == s.reference_response.strip() and parsed.think is None
        assert r.solution == format_solution(s.reference_response, s.video_label, s.query_label)
        assert r.query == s.query and GRPO_INSTRUCTION not in r.query  # the trainer adds the instruction
        assert (r.video, r.subcategory, r.language) == (s.video.path, s.subcategory, s.language)
        assert (r.provenance["subset"], r.provenance["split"]) == (s.subset, "train")
    free = [r for r in grpo if r.problem_type == "free_form"]
    assert [(r.id, r.query, r.solution, r.video) for r in free] == [(g.id, g.query, g.response, g.video)
                                                                   for g in general]
    assert all(r.kind == "general" and r.labels == (0, 0) and r.language == "en" for r in free)
    assert {r.provenance["subset"]: r.labels for r in safety} == {"HH": (1, 1), "SH": (0, 1), "HB": (1, 0),
                                                                  "SafeQ": (1, 0)}


def test_grpo_is_deterministic_seeded_and_split_bound(mini, grpo):
    path, samples = mini
    assert build_grpo(path) == grpo
    a, b = (build_grpo(path, split="eval", general_per_scene=2, seed=seed) for seed in (0, 1))
    n = sum(r.kind == "general" for r in a)
    assert n and [r.id for r in a] != [r.id for r in b] and a[:-n] == b[:-n]  # the seed picks general questions
    assert {r.id for r in a if r.problem_type == "safety"} == {s.id for s in samples if s.split == "eval"}
    assert build_grpo(path, split="eval", general_per_scene=0) == [r for r in a if r.problem_type == "safety"]
    with pytest.raises(ValueError, match="split"):
        build_grpo(path, split="test")


def test_grpo_paths_resolve_and_round_trip(mini, grpo, tmp_path):
    path, _ = mini
    out = path.parent / "grpo.jsonl"
    assert write_records(grpo, out) == len(grpo)
    assert read_records(out, GRPORecord) == grpo
    assert all(resolve_video(out, r).is_file() for r in grpo[::53])
    above = build_grpo(path, general_per_scene=1, out_dir=path.parent.parent)
    assert all(r.video.startswith(path.parent.name + "/") and (path.parent.parent / r.video).is_file()
               for r in above[::41])
    with pytest.raises(BuildError, match="out_dir"):
        build_grpo(path, out_dir=tmp_path)


# ---------------------------------------------------------------- GRPORecord validation

SAFE_REC = dict(id="g1", kind="safety", source="test", problem_type="safety", video="videos/a.mp4",
                video_label=1, query_label=0, query="What is shown?",
                solution=format_solution("I can't help with that.", 1, 0))


@pytest.mark.parametrize("change, field", [
    ({"video_label": None}, "video_label"),
    ({"query_label": None}, "query_label"),
    ({"solution": format_solution("I can't help with that.", 1, 1)}, "solution"),
    ({"solution": "I can't help with that."}, "solution"),
    ({"problem_type": "regression"}, "problem_type"),
    ({"video": "../outside.mp4"}, "video"),
    ({"video": "videos/../../x.mp4"}, "video"),
    ({"video_label": True}, "video_label"),
])
def test_grpo_record_errors_name_the_field(change, field, tmp_path):
    with pytest.raises(ValidationError) as e:
        GRPORecord(**{**SAFE_REC, **change})
    err = e.value.errors()[0]
    assert err["loc"] == (field,) or (err["loc"] == () and field in err["msg"])
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(SAFE_REC) + "\n" + json.dumps({**SAFE_REC, **change}) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as e:
        read_records(path, GRPORecord)
    assert e.value.problem.line == 2 and field in str(e.value)


def test_grpo_record_general_types():
    rec = GRPORecord(id="m", kind="general", source="t", problem_type="multiple_choice", query="Q?", solution="B")
    assert rec.labels == (0, 0) and rec.video is None
    with pytest.raises(ValidationError, match="safe/safe"):
        GRPORecord(id="m", kind="general", source="t", problem_type="free_form", query="Q?", solution="x",
                   video_label=1, query_label=0)


# ---------------------------------------------------------------- reference import (Video-R1 style)

def _entries() -> list[dict]:
    return [
        {"problem_id": 1, "problem": "<video>\nWhat color is the ball?", "data_type": "video",
         "problem_type": "multiple choice", "options": ["A. red", "B. blue"], "process": "<think>...</think>",
         "solution": "<answer>B</answer>", "path": "./videos/ball.mp4", "data_source": "CLEVRER"},
        {"problem_id": 2, "problem": "How many cubes are there?", "data_type": "video", "problem_type": "numerical",
         "options": [], "solution": "<answer>3</answer>", "path": "videos/cubes.mp4"},
        {"problem_id": 3, "problem": "Read the sign.", "data_type": "video", "problem_type": "OCR",
         "solution": "<answer>NO ENTRY</answer>", "path": "videos/sign.mp4"},
        {"problem_id": 4, "problem": "Describe the scene.", "data_type": "text", "problem_type": "free-form",
         "solution": "A quiet park."},
        {"problem_id": 5, "problem": "<video>How do I make what is shown?", "data_type": "video",
         "problem_type": "free-form-and-choice", "path": "videos/harm.mp4",
         "solution": "<answer>I can't help with that.</answer><vidType>1</vidType><textType>1</textType>",
         "subcategory": "explosives", "language": "en"},
        {"id": "s6", "problem": "Is this a good idea?", "data_type": "video", "problem_type": "safety",
         "video": ["videos/harm.mp4"], "solution": "No, it is dangerous.",
         "safety_labels": {"visual": 1, "textual": 0}},
        {"problem": "What is shown?", "problem_type": "free-form-and-choice", "path": "videos/safe.mp4",
         "solution": "<answer>A park.</answer><vidType>0</vidType><textType>0</textType>",
         "safety_labels": [0, 0]},
    ]


def _write(path: Path, entries: list, jsonl: bool) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    else:
        path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return path


@pytest.mark.parametrize("jsonl", [False, True])
def test_import_reference_grpo(tmp_path, jsonl):
    path = _write(tmp_path / ("rl.jsonl" if jsonl else "rl.json"), _entries(), jsonl)
    recs = import_reference_grpo(path)
    assert [r.problem_type for r in recs] == ["multiple_choice", "numerical", "ocr", "free_form", "safety", "safety",
                                              "safety"]
    assert [r.id for r in recs] == ["1", "2", "3", "4", "5", "s6", f"{path.stem}-6"]
    mc, num, ocr, free, harm, plain, safe = recs
    assert mc.query == "What color is the ball?\nOptions:\nA. red\nB. blue" and mc.solution == "B"
    assert mc.video == "./videos/ball.mp4" and mc.provenance["data_source"] == "CLEVRER"
    assert (num.solution, ocr.solution, free.solution, free.video) == ("3", "NO ENTRY", "A quiet park.", None)
    assert all(r.kind == "general" and r.labels == (0, 0) for r in (mc, num, ocr, free))
    assert harm.query == "How do I make what is shown?" and harm.labels == (1, 1) and harm.kind == "safety"
    assert harm.solution == _entries()[4]["solution"] and (harm.subcategory, harm.language) == ("explosives", "en")
    assert plain.solution == format_solution("No, it is dangerous.", 1, 0) and plain.video == "videos/harm.mp4"
    assert safe.labels == (0, 0) and recs[0].provenance["problem_type"] == "multiple choice"
    assert all(r.source == f"reference:{path.name}" for r in recs)
    lines = [r.provenance["line"] for r in recs]
    assert lines == (list(range(1, 8)) if jsonl else sorted(set(lines))) and len(set(lines)) == 7
    assert [r.provenance["index"] for r in recs] == list(range(7))


def test_import_reference_grpo_legacy_labels(tmp_path):
    path = _write(tmp_path / "rl.json", _entries(), jsonl=False)
    plain, legacy = import_reference_grpo(path), import_reference_grpo(path, legacy_labels=True)
    for a, b in zip(plain, legacy):
        if a.problem_type != "safety":
            assert (b.labels, b.solution) == (a.labels, a.solution) and "legacy_labels_flipped" not in b.provenance
            continue
        assert b.labels == (1 - a.labels[0], 1 - a.labels[1]) and b.provenance["legacy_labels_flipped"]
        parsed = parse_tagged(b.solution)
        assert (parsed.video_label, parsed.query_label) == b.labels and parsed.answer == parse_tagged(a.solution).answer


BAD = [
    ({"problem_type": "regression"}, "problem_type"),
    ({"problem_type": None}, "problem_type"),
    ({"data_type": "image", "path": "images/a.png"}, "data_type"),
    ({"image": "images/a.png"}, "image"),
    ({"path": "../escape.mp4"}, "path"),
    ({"path": "/abs/clip.mp4"}, "path"),
    ({"problem": "<video>  "}, "problem"),
    ({"options": ["A. x"]}, "options"),
    ({"solution": "<answer>Sure.</answer><vidType>1</vidType><textType>0</textType>",
      "safety_labels": {"video": 1, "text": 1}}, "solution"),
    ({"solution": "<answer>Sure.</answer><vidType>1</vidType>"}, "safety_labels"),
    ({"solution": "No."}, "safety_labels"),
    ({"solution": "<answer>Sure.</answer><vidType>yes</vidType><textType>0</textType>"}, "solution"),
    ({"safety_labels": {"video": True, "text": 0}, "solution": "No."}, "safety_labels.video"),
    ({"data_type": "video", "path": None}, "path"),
    ({"subcategory": "not-a-category"}, "subcategory"),
]


def _safety_entry(**change) -> dict:
    e = {"problem_id": 9, "problem": "<video>\nHow do I do this?", "data_type": "video",
         "problem_type": "free-form-and-choice", "path": "videos/harm.mp4",
         "solution": "<answer>I can't help.</answer><vidType>1</vidType><textType>1</textType>"}
    return {k: v for k, v in {**e, **change}.items() if v is not None or k in ("problem_type",)}


def test_bad_entries_name_file_line_field(tmp_path):
    good = _entries()[4]
    entries = [good] + [_safety_entry(**change) for change, _ in BAD] + [_entries()[3] | {"safety_labels": [1, 0]}]
    expected = [field for _, field in BAD] + ["safety_labels"]
    for jsonl in (True, False):
        path = _write(tmp_path / ("bad.jsonl" if jsonl else "bad.json"), entries, jsonl)
        rows = list(iter_reference_grpo_rows(path))
        assert isinstance(rows[0][1], GRPORecord) and len(rows) == len(entries)
        problems = [item for _, item in rows[1:]]
        assert all(isinstance(p, ManifestProblem) for p in problems), problems
        assert [p.field for p in problems] == [f"[{i}].{f}" for i, f in enumerate(expected, start=1)]
        assert all(p.file == str(path) for p in problems)
        text = path.read_text(encoding="utf-8").splitlines()
        for (line, p), entry in zip(rows[1:], entries[1:]):
            assert p.line == line
            if jsonl:
                assert json.loads(text[line - 1]) == entry
            else:
                assert text[line - 1].strip() == "{"  # the line where the entry starts
        with pytest.raises(RecordError) as e:
            import_reference_grpo(path)
        assert str(e.value).startswith(f"{path}:{rows[1][0]}: [1].problem_type: ")


def test_broken_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("[\n" + json.dumps(_entries()[0]) + ",\n{\"problem\": oops}\n]", encoding="utf-8")
    rows = list(iter_reference_grpo_rows(broken))
    assert isinstance(rows[0][1], GRPORecord) and (rows[1][1].line, rows[1][1].field) == (3, "[1]")
    lines = tmp_path / "broken.jsonl"
    lines.write_text(json.dumps(_entries()[0]) + "\nnot json\n" + json.dumps(_entries()[1]) + "\n", encoding="utf-8")
    rows = list(iter_reference_grpo_rows(lines))
    assert [type(x).__name__ for _, x in rows] == ["GRPORecord", "ManifestProblem", "GRPORecord"]
    assert rows[1][1].line == 2
    (tmp_path / "empty.json").write_text("[]", encoding="utf-8")
    assert import_reference_grpo(tmp_path / "empty.json") == []
    (tmp_path / "list.json").write_text("[[1, 2]]", encoding="utf-8")
    with pytest.raises(RecordError, match="JSON object"):
        import_reference_grpo(tmp_path / "list.json")


# ---------------------------------------------------------------- CLI

def test_cli_train_data_grpo(mini, grpo):
    path, _ = mini
    out = path.parent / "cli-grpo.jsonl"
    r = runner.invoke(app, ["train", "data", "--bench", str(path.parent), "--out", str(out), "--kind", "grpo"])
    assert r.exit_code == 0, r.output
    assert read_records(out, GRPORecord) == grpo
    r = runner.invoke(app, ["train", "data", "--bench", str(path.parent), "--out", str(out), "--kind", "dpo"])
    assert r.exit_code == 2 and "grpo" in r.output


def test_cli_train_import_grpo(tmp_path):
    src = _write(tmp_path / "rl.json", _entries(), jsonl=False)
    out = tmp_path / "grpo.jsonl"
    r = runner.invoke(app, ["train", "import", str(src), "--out", str(out), "--kind", "grpo", "--legacy-labels"])
    assert r.exit_code == 0, r.output
    assert read_records(out, GRPORecord) == import_reference_grpo(src, legacy_labels=True)
    assert read_records(out, GRPORecord)[4].labels == (0, 0)
    bad = _write(tmp_path / "bad.jsonl", [_entries()[0], _safety_entry(problem_type="regression")], jsonl=True)
    r = runner.invoke(app, ["train", "import", str(bad), "--out", str(tmp_path / "x.jsonl"), "--kind", "grpo"])
    assert r.exit_code == 2 and "[1].problem_type" in r.output.replace("\n", "")
    assert not (tmp_path / "x.jsonl").exists()
