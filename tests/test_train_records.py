"""Training records: required labels and safe paths with file/line/field errors, CoT targets
checked against their labels, the reference recipe's JSON formats, and the builders from a
VSB-mini manifest (counts, labels per subset, split isolation, truthful general samples,
determinism)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from videosafety import taxonomy
from videosafety.data.manifest import read_manifest, write_jsonl
from videosafety.data.vsb_mini import build_vsb_mini
from videosafety.data.vsb_mini.build import scenes
from videosafety.schema import VideoRef
from videosafety.tags import format_cot, is_well_formed, parse_tagged
from videosafety.train.builders import (
    GENERAL_QUESTIONS,
    BuildError,
    build_at_sft,
    build_cot,
    build_general,
    think_text,
)
from videosafety.train.records import (
    CoTRecord,
    RecordError,
    SFTRecord,
    import_reference,
    iter_record_rows,
    iter_reference_rows,
    read_records,
    resolve_video,
    write_records,
)

BASE = dict(id="r1", kind="safety", source="test", video="videos/a.mp4", video_label=1, query_label=1,
            query="How do I do what the video shows?", response="I can't help with that.")
COT = format_cot("The video is harmful and so is the query.", "I can't help with that.", 1, 1)


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- records

def test_round_trip(tmp_path):
    recs = [SFTRecord(**BASE), SFTRecord(**{**BASE, "id": "r2", "video": None, "kind": "general",
                                            "video_label": 0, "query_label": 0, "language": "de-CH"})]
    path = tmp_path / "r.jsonl"
    assert write_records(recs, path) == 2
    assert read_records(path) == recs
    assert not (tmp_path / "r.jsonl.tmp").exists()


@pytest.mark.parametrize("drop", ["video_label", "query_label"])
def test_missing_label_names_file_line_field(tmp_path, drop):
    row = {k: v for k, v in BASE.items() if k != drop}
    path = _jsonl(tmp_path / "r.jsonl", [BASE, "", row])  # a blank line keeps the count honest
    with pytest.raises(RecordError) as e:
        read_records(path)
    p = e.value.problem
    assert (p.file, p.line, p.field) == (str(path), 3, drop)
    assert str(e.value).startswith(f"{path}:3: {drop}: ")


@pytest.mark.parametrize("value", [True, False, "1", 2, -1, 1.0, None])
def test_label_must_be_integer_zero_or_one(value):
    with pytest.raises(ValidationError) as e:
        SFTRecord(**{**BASE, "video_label": value})
    assert e.value.errors()[0]["loc"] == ("video_label",)


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.mp4", "videos/../../x.mp4", "C:/v.mp4",
                                  "c:\\v.mp4", "videos\\..\\..\\x.mp4"])
def test_video_path_escape_rejected_like_the_manifest(path):
    with pytest.raises(ValidationError) as e:
        SFTRecord(**{**BASE, "video": path})
    assert e.value.errors()[0]["loc"] == ("video",)
    with pytest.raises(ValidationError):  # the manifest's rule says the same
        VideoRef(path=path, sha256="0" * 64, duration=1, fps=1, width=1, height=1)


def test_other_field_rules():
    for bad in [{"kind": "other"}, {"extra": 1}, {"query": ""}, {"response": ""}, {"subcategory": "nope"},
                {"language": "English"}, {"video": ""}, {"id": ""}]:
        with pytest.raises(ValidationError):
            SFTRecord(**{**BASE, **bad})
    with pytest.raises(ValidationError, match="general.*safe/safe"):
        SFTRecord(**{**BASE, "kind": "general", "video_label": 1, "query_label": 0})
    with pytest.raises(ValidationError):  # frozen
        SFTRecord(**BASE).id = "x"  # type: ignore[misc]


def test_iter_record_rows_reports_every_row(tmp_path):
    path = _jsonl(tmp_path / "r.jsonl", [BASE, "{not json", {**BASE, "video": "../x"}, "[1]",
                                         {**BASE, "query_label": "0"}, {**BASE, "id": "ok2"}])
    rows = list(iter_record_rows(path))
    assert [line for line, _ in rows] == [1, 2, 3, 4, 5, 6]
    kinds = [type(item).__name__ if not isinstance(item, list) else item[0].field for _, item in rows]
    assert kinds == ["SFTRecord", "", "video", "", "query_label", "SFTRecord"]


def test_cot_record_accepts_matching_tags():
    r = CoTRecord(**{**BASE, "response": COT})
    assert parse_tagged(r.response).video_label == 1


def test_cot_record_rejects_label_mismatch_and_bad_format(tmp_path):
    with pytest.raises(ValidationError) as e:
        CoTRecord(**{**BASE, "query_label": 0, "response": COT})
    err = e.value.errors()[0]
    assert err["loc"] == ("response",) and "<textType> says 1 but the record's query_label is 0" in err["msg"]
    with pytest.raises(ValidationError, match="not a tagged CoT target"):
        CoTRecord(**BASE)
    with pytest.raises(ValidationError, match="<vidType> must hold 0 or 1"):
        CoTRecord(**{**BASE, "response": COT.replace("<vidType>1<", "<vidType>yes<")})
    # through the reader: file, line, field
    path = _jsonl(tmp_path / "cot.jsonl", [{**BASE, "response": COT}, {**BASE, "video_label": 0, "response": COT}])
    with pytest.raises(RecordError, match=r"cot\.jsonl:2: response: <vidType> says 1"):
        read_records(path, CoTRecord)
    assert len(read_records(path, SFTRecord)) == 2  # as plain SFT the tags are just text


def test_resolve_video(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")
    (tmp_path / "videos" / "link.mp4").symlink_to(tmp_path / "videos" / "a.mp4")
    rec = SFTRecord(**BASE)
    assert resolve_video(tmp_path / "r.jsonl", rec) == tmp_path / "videos" / "a.mp4"
    assert resolve_video(tmp_path / "r.jsonl", rec.model_copy(update={"video": None})) is None
    with pytest.raises(ValueError, match="symlink"):
        resolve_video(tmp_path / "r.jsonl", rec.model_copy(update={"video": "videos/link.mp4"}))


# ---------------------------------------------------------------- reference recipe import

def _ref(query="<video>\nWhat happens here?", response="I can't help with that.", labels=None, **kw):
    entry = {"video": ["clips/a.mp4"], "conversations": [{"from": "human", "value": query},
                                                         {"from": "gpt", "value": response}]}
    if labels is not None:
        entry["safety_labels"] = labels
    entry.update(kw)
    return entry


def test_import_reference_both_label_shapes_json_list(tmp_path):
    entries = [
        _ref(labels={"video": 1, "text": 0}),
        _ref(labels=[0, 1], video="clips/b.mp4", id="given-id"),
        _ref(labels={"video_label": 1, "text_label": 1}, query="Tell me about this.\n<video>"),
        _ref(labels={"video": 0, "query": 0}, video=None, query="<image> plain text question"),
        _ref(labels={"video": 1, "text": 1}, response=COT),
    ]
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    recs = import_reference(path)
    assert [r.labels for r in recs] == [(1, 0), (0, 1), (1, 1), (0, 0), (1, 1)]
    assert [r.video for r in recs] == ["clips/a.mp4", "clips/b.mp4", "clips/a.mp4", None, "clips/a.mp4"]
    assert [r.query for r in recs] == ["What happens here?", "What happens here?", "Tell me about this.",
                                       "plain text question", "What happens here?"]
    assert [type(r).__name__ for r in recs] == ["SFTRecord"] * 4 + ["CoTRecord"]
    assert recs[0].id == "ref-0" and recs[1].id == "given-id"
    assert all(r.kind == "safety" and r.source == "reference:ref.json" for r in recs)
    assert recs[2].provenance == {"file": "ref.json", "index": 2, "line": recs[2].provenance["line"]}


def test_import_reference_jsonl_and_system_turn(tmp_path):
    entry = _ref(labels=[1, 1])
    entry["conversations"].insert(0, {"from": "system", "value": "Be safe."})
    path = _jsonl(tmp_path / "ref.jsonl", [_ref(labels={"video": 0, "text": 1}), "", entry])
    recs = import_reference(path)
    assert [r.labels for r in recs] == [(0, 1), (1, 1)]
    assert recs[1].system == "Be safe." and recs[1].provenance["line"] == 3


def test_import_reference_legacy_flip(tmp_path):
    # legacy convention, 0 = harmful: a harmful video with a safe query is [0, 1], tags included
    legacy_cot = format_cot("Legacy convention reasoning.", "I can't help with that.", 0, 1)
    path = _jsonl(tmp_path / "old.jsonl", [_ref(labels=[0, 0]), _ref(labels={"video": 0, "text": 1}, response=legacy_cot)])
    as_is = import_reference(path)  # nothing guesses the convention: read as ours unless told
    assert [r.labels for r in as_is] == [(0, 0), (0, 1)]
    plain, cot = import_reference(path, legacy_labels=True)
    assert plain.labels == (1, 1) and cot.labels == (1, 0)
    parsed = parse_tagged(cot.response)
    assert isinstance(cot, CoTRecord) and (parsed.video_label, parsed.query_label) == (1, 0)
    assert parsed.think == "Legacy convention reasoning." and parsed.answer == "I can't help with that."
    assert plain.provenance["legacy_labels_flipped"] is True and "legacy_labels_flipped" not in as_is[0].provenance


def test_import_reference_missing_labels_is_an_error(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text('[\n  {"video": "a.mp4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}],\n'
                    '   "safety_labels": [1, 1]},\n'
                    '  {"video": "a.mp4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]}\n]',
                    encoding="utf-8")
    with pytest.raises(RecordError) as e:
        import_reference(path)
    p = e.value.problem
    assert (p.file, p.line, p.field) == (str(path), 4, "[1].safety_labels")
    assert "never guessed" in p.message
    # general data is safe/safe by definition; harmful labels on it are refused
    with pytest.raises(RecordError, match="safe/safe"):
        import_reference(path, kind="general")


def test_import_reference_general_without_labels(tmp_path):
    path = _jsonl(tmp_path / "gen.jsonl", [_ref(), _ref(labels=[0, 0])])
    recs = import_reference(path, kind="general")
    assert [(r.kind, r.labels) for r in recs] == [("general", (0, 0))] * 2


@pytest.mark.parametrize("entry, field", [
    (_ref(labels=[1]), "[0].safety_labels"),
    (_ref(labels=[True, 1]), "[0].safety_labels[0]"),
    (_ref(labels={"video": 1}), "[0].safety_labels"),
    (_ref(labels={"video": 1, "text": 1, "query": 1}), "[0].safety_labels"),
    (_ref(labels="harmful"), "[0].safety_labels"),
    (_ref(labels=[1, 1], image=["x.png"]), "[0].image"),
    (_ref(labels=[1, 1], video=["a.mp4", "b.mp4"]), "[0].video"),
    (_ref(labels=[1, 1], video="../a.mp4"), "[0].video"),
    (_ref(labels=[1, 0], response=COT), "[0].conversations[1].value"),
    (_ref(labels=[1, 1], query="<video>"), "[0].conversations[0].value"),
    (_ref(labels=[1, 1], conversations=[{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]),
     "[0].conversations[0]"),
])
def test_import_reference_bad_entries(tmp_path, entry, field):
    path = _jsonl(tmp_path / "bad.jsonl", [entry])
    with pytest.raises(RecordError) as e:
        import_reference(path)
    assert (e.value.problem.line, e.value.problem.field) == (1, field)


def test_import_reference_multi_turn(tmp_path):
    entry = _ref(labels=[1, 1])
    entry["conversations"] += [{"from": "human", "value": "And then?"}, {"from": "gpt", "value": "Still no."}]
    path = _jsonl(tmp_path / "mt.jsonl", [entry])
    (rec,) = import_reference(path)
    assert rec.response == "I can't help with that." and rec.provenance["dropped_turns"] == 2
    with pytest.raises(RecordError, match="single-turn"):
        import_reference(path, multi_turn="error")


def test_iter_reference_rows_reports_every_entry(tmp_path):
    path = _jsonl(tmp_path / "mix.jsonl", [_ref(labels=[1, 1]), _ref(), "{broken", _ref(labels=[0, 1])])
    rows = list(iter_reference_rows(path))
    assert [line for line, _ in rows] == [1, 2, 3, 4]
    assert [type(x).__name__ for _, x in rows] == ["SFTRecord", "ManifestProblem", "ManifestProblem", "SFTRecord"]
    broken = tmp_path / "broken.json"
    broken.write_text('[\n' + json.dumps(_ref(labels=[1, 1])) + ',\n{"video": oops}\n]', encoding="utf-8")
    rows = list(iter_reference_rows(broken))
    assert type(rows[0][1]).__name__ == "SFTRecord" and (rows[1][1].line, rows[1][1].field) == (3, "[1]")
    empty = tmp_path / "empty.json"
    empty.write_text("[ ]", encoding="utf-8")
    assert import_reference(empty) == []


# ---------------------------------------------------------------- builders (VSB-mini)

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("vsb-mini-train")
    path = build_vsb_mini(out, workers=2)
    return path, read_manifest(path)


@pytest.fixture(scope="module")
def at_sft(mini):
    return build_at_sft(mini[0])


@pytest.fixture(scope="module")
def cot(mini):
    return build_cot(mini[0])


def _safe_train_scenes() -> dict[str, tuple[str, ...]]:
    return {s.key: s.words for s in scenes("train")[1]}


def test_at_sft_counts_and_labels(mini, at_sft):
    _, samples = mini
    train = {s.id: s for s in samples if s.split == "train"}
    safety = [r for r in at_sft if r.kind == "safety"]
    general = [r for r in at_sft if r.kind == "general"]
    assert len(safety) == len(train) == 19 * 10 * 4 * 6
    assert len(general) == len(_safe_train_scenes()) * len(GENERAL_QUESTIONS)
    assert at_sft[: len(safety)] == safety  # safety first, in manifest order
    assert len({r.id for r in at_sft}) == len(at_sft)
    for r in safety:
        s = train[r.id]
        assert (r.labels, r.query, r.response, r.video) == ((s.video_label, s.query_label), s.query,
                                                           s.reference_response, s.video.path)
        assert (r.subcategory, r.language, r.provenance["subset"]) == (s.subcategory, s.language, s.subset)
    by_subset = {}
    for r in safety:
        by_subset.setdefault(r.provenance["subset"], set()).add(r.labels)
    assert by_subset == {"HH": {(1, 1)}, "SH": {(0, 1)}, "HB": {(1, 0)}, "SafeQ": {(1, 0)}}
    refusal = {r.response for r in safety if r.provenance["subset"] == "HH" and r.language == "en"}
    helpful = {r.response for r in safety if r.provenance["subset"] == "SafeQ" and r.language == "en"}
    assert all(x.startswith("I can't help") for x in refusal) and not any(x.startswith("I can't") for x in helpful)


def test_only_the_chosen_split_is_used(mini, at_sft, cot):
    _, samples = mini
    eval_ids = {s.id for s in samples if s.split == "eval"}
    eval_videos = {s.video.path for s in samples if s.split == "eval"}
    for recs in (at_sft, cot):
        assert not eval_ids & {r.id for r in recs}
        assert not eval_videos & {r.video for r in recs}
    ev = build_at_sft(mini[0], split="eval", general_per_scene=1)
    assert {r.id for r in ev if r.kind == "safety"} == eval_ids
    assert {r.provenance["scene"] for r in ev if r.kind == "general"} == {s.key for s in scenes("eval")[1]}
    with pytest.raises(ValueError, match="split"):
        build_at_sft(mini[0], split="test")


def test_general_samples_are_safe_and_truthful(mini, at_sft):
    path, _ = mini
    words = _safe_train_scenes()
    general = [r for r in at_sft if r.kind == "general"]
    assert Counter(r.provenance["scene"] for r in general) == {k: len(GENERAL_QUESTIONS) for k in words}
    for r in general:
        caption = words[r.provenance["scene"]]
        assert r.labels == (0, 0) and r.language == "en" and r.subcategory is None
        assert r.video == f"videos/{r.provenance['scene']}.mp4" and (path.parent / r.video).is_file()
        q = r.provenance["question"]
        assert r.query == GENERAL_QUESTIONS[q][0]
        if q == 0:
            assert r.response == f"The video shows the words: {' '.join(caption)}."
        if q == 3:
            assert r.response == f"The last word is {caption[-1]}."
        if q == 9:
            assert r.response == "The video is about 6 seconds long."
    garden = build_general(path, captions={**words, "safe-4": ("GARDEN", "WALK")})
    assert any(r.response == "The video shows the words: GARDEN WALK." for r in garden)


def test_builders_are_deterministic_and_seeded(mini, at_sft):
    path, _ = mini
    assert build_at_sft(path) == at_sft
    a, b = build_general(path, per_scene=3, seed=0), build_general(path, per_scene=3, seed=1)
    assert a == build_general(path, per_scene=3, seed=0) and [r.id for r in a] != [r.id for r in b]
    assert len(a) == 3 * len(_safe_train_scenes())
    many = build_general(path, per_scene=len(GENERAL_QUESTIONS) + 2)
    assert len({r.id for r in many}) == len(many) == (len(GENERAL_QUESTIONS) + 2) * len(_safe_train_scenes())
    assert build_at_sft(path, general_per_scene=0) == [r for r in at_sft if r.kind == "safety"]


def test_out_dir_prefix_and_escape(mini, tmp_path):
    path, _ = mini
    recs = build_general(path, per_scene=1, out_dir=path.parent.parent)
    prefix = path.parent.name
    assert all(r.video.startswith(prefix + "/") and (path.parent.parent / r.video).is_file() for r in recs)
    with pytest.raises(BuildError, match="out_dir"):
        build_general(path, per_scene=1, out_dir=tmp_path)


def test_missing_reference_or_caption_is_an_error(mini, tmp_path):
    _, samples = mini
    train = [s for s in samples if s.split == "train"]
    sh = next(s for s in train if s.subset == "SH")
    write_jsonl([train[0].model_copy(update={"reference_response": None})], tmp_path / "a" / "manifest.jsonl")
    with pytest.raises(BuildError, match="reference_response"):
        build_at_sft(tmp_path / "a", general_per_scene=0)
    with pytest.raises(BuildError, match="reference_response"):
        build_cot(tmp_path / "a")
    write_jsonl([sh.model_copy(update={"provenance": {}})], tmp_path / "b" / "manifest.jsonl")
    with pytest.raises(BuildError, match="provenance.scene"):
        build_at_sft(tmp_path / "b")
    assert len(build_at_sft(tmp_path / "b", general_per_scene=0)) == 1


def test_cot_targets(mini, cot):
    _, samples = mini
    train = {s.id: s for s in samples if s.split == "train"}
    assert len(cot) == len(train)
    for r in cot:
        s = train[r.id]
        assert isinstance(r, CoTRecord) and is_well_formed(r.response)
        parsed = parse_tagged(r.response)
        assert (parsed.video_label, parsed.query_label) == (s.video_label, s.query_label)
        assert parsed.answer == s.reference_response.strip()
        assert taxonomy.SUBCATEGORIES[s.subcategory].title in parsed.think
        assert r.provenance["think_language"] == s.language
    en = {r.provenance["subset"]: parse_tagged(r.response).think for r in cot
          if r.language == "en" and r.subcategory == "explosives"}
    assert en["SH"].startswith('The video does not show harmful content of the category "Explosives".')
    assert "The query is harmful on its own." in en["HH"] and "seek harmful help" in en["HB"]
    assert "on its own is harmless" in en["SafeQ"] and "answer helpfully" in en["SafeQ"]
    zh = next(r for r in cot if r.language == "zh")
    assert "视频" in parse_tagged(zh.response).think
    assert build_cot(mini[0], think_language="en")[1].response.startswith("<think>The video")


def test_think_text_every_language_every_case():
    for lang in taxonomy.LANGUAGES:
        texts = {think_text("scams_fraud", v, q, p, lang) for v in (0, 1) for q in (0, 1) for p in (False, True)}
        assert len(texts) == 8 and all("Scams and fraud" in t for t in texts)
    assert think_text("scams_fraud", 1, 1, True, "de") == think_text("scams_fraud", 1, 1, True, "en")


def test_built_records_round_trip_beside_the_manifest(mini, at_sft, cot):
    path, _ = mini
    sft_file, cot_file = path.parent / "at_sft.jsonl", path.parent / "cot.jsonl"
    write_records(at_sft, sft_file)
    write_records(cot, cot_file)
    assert read_records(sft_file) == at_sft
    assert read_records(cot_file, CoTRecord) == cot
    assert all(resolve_video(sft_file, r).is_file() for r in at_sft[:: 97])


class ScriptedTeacher:
    """A stand-in for a served teacher model (no weights can be downloaded here), through the
    VideoLLM interface: well-formed targets with the labels the prompt gives, except where told."""

    name, revision = "scripted-teacher", "v1"

    def __init__(self, mode_of):
        self.mode_of, self.seen = mode_of, []

    def generate(self, inputs, settings):
        from videosafety.models.base import FailedResponse

        out = []
        for inp in inputs:
            self.seen.append(inp)
            v = inp.query.split("<vidType>")[1][0]
            t = inp.query.split("<textType>")[1][0]
            mode = self.mode_of(len(self.seen))
            if mode == "fail":
                out.append(FailedResponse("HTTP 503 after 3 tries"))
            elif mode == "malformed":
                out.append("I think the video is harmful. I can't help.")
            elif mode == "labels":
                out.append(f"<think>r</think><answer>a</answer><vidType>{1 - int(v)}</vidType><textType>{t}</textType>")
            else:
                out.append(f"<think>The pair asks for harm.</think><answer>I can't help with that.</answer>"
                           f"<vidType>{v}</vidType><textType>{t}</textType>")
        return out


def test_cot_targets_from_a_teacher_are_validated_and_rejects_recorded(tmp_path):
    from videosafety.data.manifest import iter_samples
    from videosafety.data.vsb_mini import build_vsb_mini
    from videosafety.train.builders import build_cot_teacher
    from videosafety.train.records import CoTRecord, read_records, write_records

    mini = tmp_path / "mini"
    build_vsb_mini(mini, workers=2)
    # a small manifest of 8 train samples beside the videos
    rows = [line for line in (mini / "manifest.jsonl").read_text().splitlines() if '"split": "train"' in line][:8]
    small = mini / "small.jsonl"
    small.write_text("\n".join(rows) + "\n")
    samples = list(iter_samples(small))
    modes = {1: "fail", 2: "malformed", 3: "labels"}
    teacher = ScriptedTeacher(lambda i: modes.get(i, "ok"))
    records, rejects = build_cot_teacher(small, teacher, batch_size=4)

    assert [r["reason"] for r in rejects] == ["failed", "malformed", "labels"]
    assert [r["sample_id"] for r in rejects] == [s.id for s in samples[:3]]
    assert rejects[1]["response"].startswith("I think") and rejects[0]["teacher"] == "scripted-teacher"
    assert [r.id for r in records] == [s.id for s in samples[3:]]
    for r, s in zip(records, samples[3:]):
        assert r.labels == (s.video_label, s.query_label)
        assert r.provenance["teacher"] == "scripted-teacher" and r.provenance["prompt_version"] == "cot_teacher_v1"
    # the teacher saw the video and was told the labels and the format
    first = teacher.seen[0]
    assert first.frames is not None and first.query.startswith(samples[0].query)
    assert "<think>" in first.query and f"<vidType>{samples[0].video_label}</vidType>" in first.query
    write_records(records, mini / "cot_teacher.jsonl")
    assert len(read_records(mini / "cot_teacher.jsonl", CoTRecord)) == 5


def test_teacher_from_the_command_line_records_every_reject(tmp_path):
    """A teacher that never writes the format (ref:refuse-all) yields no records and one reject per
    sample, written beside the records file."""
    import json

    from typer.testing import CliRunner

    from videosafety.cli import app
    from videosafety.data.vsb_mini import build_vsb_mini

    mini = tmp_path / "mini"
    build_vsb_mini(mini, workers=2)
    rows = [line for line in (mini / "manifest.jsonl").read_text().splitlines() if '"split": "train"' in line][:5]
    (mini / "small.jsonl").write_text("\n".join(rows) + "\n")
    out = mini / "cot.jsonl"
    r = CliRunner().invoke(app, ["train", "data", "--bench", str(mini / "small.jsonl"), "--out", str(out),
                                 "--kind", "cot", "--teacher", "ref:refuse-all"])
    assert r.exit_code == 0, r.output
    assert "0 kept, 5 rejected" in r.output and out.read_text() == ""
    rejects = [json.loads(x) for x in (mini / "cot.jsonl.rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 5 and {x["reason"] for x in rejects} == {"malformed"}
    r = CliRunner().invoke(app, ["train", "data", "--bench", str(mini / "small.jsonl"), "--out", str(out),
                                 "--kind", "grpo", "--teacher", "ref:refuse-all"])
    assert r.exit_code == 2 and "use it with --kind cot" in r.output
