"""Benchmark construction, stages ingest and static filter, on synthetic videos: unreadable files,
exact and near duplicates rejected with the reason, near-static clips dropped by the built-in
score and by a Hugging Face vision model through AutoModel, everything cached by content."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from videosafety.data.construct import IngestSettings, StaticSettings, ingest, static_filter
from videosafety.data.construct.ingest import dhash, read_metadata
from videosafety.data.construct.static import consecutive_similarity, pixel_features
from videosafety.data.manifest import ManifestError
from videosafety.video import encode_video

W, H, N = 96, 64, 40


def moving(seed: int, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 255, size=3)
    frames = np.empty((N, H, W, 3), dtype=np.uint8)
    for t in range(N):
        frames[t] = bg
        x = (5 + 2 * t) % (W - side)
        y = (3 + t) % (H - side)
        frames[t, y:y + side, x:x + side] = 255 - bg
    return frames


def still(seed: int) -> np.ndarray:
    f = moving(seed)[0]
    return np.repeat(f[None], N, axis=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    vids = root / "videos"
    vids.mkdir()
    encode_video(vids / "a.mp4", moving(1), fps=10, width=W, height=H)
    encode_video(vids / "b.mp4", moving(2), fps=10, width=W, height=H)
    encode_video(vids / "static.mp4", still(3), fps=10, width=W, height=H)
    shutil.copy(vids / "a.mp4", vids / "a_copy.mp4")
    encode_video(vids / "a_reencoded.mp4", moving(1), fps=10, width=W, height=H, crf=35)
    (vids / "broken.mp4").write_bytes(b"not a video at all")
    meta = root / "meta.csv"
    meta.write_text("video,category_hint,language,source,licence\n"
                    "a.mp4,violence,en,synthetic,CC0\n"
                    "b.mp4,,fr,synthetic,CC0\n"
                    "static.mp4,,,synthetic,\n"
                    "a_copy.mp4,,,,\n"
                    "a_reencoded.mp4,,,,\n"
                    "broken.mp4,,,,\n")
    return root


def by_video(path) -> dict:
    return {r["video"]: r for r in (json.loads(x) for x in path.read_text().splitlines())}


def test_dhash_and_similarity_by_hand():
    frame = np.zeros((8, 9, 3), dtype=np.uint8)
    frame[:, 1::2] = 200  # columns 0, 200, 0, 200, ...: bit x says column x+1 is brighter than column x
    assert dhash(frame) == int("10101010" * 8, 2)
    f = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert consecutive_similarity(f) == pytest.approx((1.0 + 0.0) / 2)
    same = pixel_features(still(0)[:4])
    assert consecutive_similarity(same) == pytest.approx(1.0)
    assert consecutive_similarity(pixel_features(moving(0)[::10])) < 0.9


def test_ingest_and_static_filter_reject_with_reasons_and_cache(corpus, tmp_path):
    out = tmp_path / "build"
    s = ingest(corpus / "videos", corpus / "meta.csv", out, workers=2)
    recs = by_video(out / "ingest.jsonl")
    assert s.listed == 6 and s.examined == 6 and s.kept == 3
    assert {v for v, r in recs.items() if r["status"] == "kept"} == {"a.mp4", "b.mp4", "static.mp4"}
    assert recs["a_copy.mp4"]["reason"].startswith("duplicate of a.mp4")
    assert recs["a_reencoded.mp4"]["reason"].startswith("near duplicate of a.mp4")
    assert recs["broken.mp4"]["reason"].startswith("unreadable")
    assert recs["a.mp4"]["metadata"] == {"category_hint": "violence", "language": "en", "source": "synthetic",
                                         "licence": "CC0"}
    assert recs["b.mp4"]["nearest"]["distance"] > IngestSettings().near_duplicate_bits
    assert all(r["provenance"]["ingest"]["stage"] == "ingest" for r in recs.values())

    st = static_filter(corpus / "videos", out, workers=2)
    srecs = by_video(out / "static.jsonl")
    assert st.candidates == 3 and st.static == 1 and st.kept == 2
    assert srecs["static.mp4"]["status"] == "rejected" and srecs["static.mp4"]["static"]["similarity"] > 0.99
    assert all(srecs[v]["static"]["similarity"] < StaticSettings().threshold for v in ("a.mp4", "b.mp4"))
    assert srecs["a.mp4"]["provenance"].keys() == {"ingest", "static"}

    # rerun: nothing decoded again; a changed threshold re-decides from the same files
    again = ingest(corpus / "videos", corpus / "meta.csv", out)
    assert again.examined == 1 and again.kept == 3  # only the unreadable file is tried again
    assert static_filter(corpus / "videos", out).scored == 0
    loose = static_filter(corpus / "videos", out, StaticSettings(threshold=1.0))
    assert loose.scored == 3 and loose.kept == 3


def test_bad_metadata_names_file_line_and_field(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("video,category_hint\nok.mp4,violence\nx.mp4,astrology\n")
    with pytest.raises(ManifestError, match=r"meta.csv:3: category_hint: .*unknown category"):
        read_metadata(meta)
    meta.write_text("video,language\n../outside.mp4,en\n")
    with pytest.raises(ManifestError, match=r"meta.csv:2: video: .*escape"):
        read_metadata(meta)
    jl = tmp_path / "meta.jsonl"
    jl.write_text('{"video": "a.mp4"}\n{"video": "a.mp4"}\n')
    with pytest.raises(ManifestError, match=r"meta.jsonl:2: video: .*already listed on line 1"):
        read_metadata(jl)
    jl.write_text('{"video": "a.mp4", "colour": "red"}\n')
    with pytest.raises(ManifestError, match=r"meta.jsonl:1: colour"):
        read_metadata(jl)


def test_static_filter_with_a_vision_model_through_automodel(corpus, tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    mdir = tmp_path / "dinov2-tiny"
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=56, patch_size=14)
    Dinov2Model(cfg).save_pretrained(mdir)
    BitImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(mdir)
    out = tmp_path / "build"
    ingest(corpus / "videos", corpus / "meta.csv", out, workers=1)
    st = static_filter(corpus / "videos", out, StaticSettings(model=str(mdir), threshold=0.9999))
    recs = by_video(out / "static.jsonl")
    assert st.scored == 3 and all(r["static"]["method"] == f"model:{mdir}" for r in recs.values())
    assert recs["static.mp4"]["static"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert recs["static.mp4"]["status"] == "rejected"
    assert recs["a.mp4"]["static"]["similarity"] < recs["static.mp4"]["static"]["similarity"]


def test_bench_build_command(corpus, tmp_path):
    from typer.testing import CliRunner

    from videosafety.cli import app

    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["bench", "build", "--videos", str(corpus / "videos"), "--metadata",
                                 str(corpus / "meta.csv"), "--out", str(out), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "ingest: 3/6 kept" in r.output and "static: 2/3 kept, 1 near-static" in r.output
    r = CliRunner().invoke(app, ["bench", "build", "--videos", str(corpus / "videos"), "--metadata",
                                 str(corpus / "meta.csv"), "--out", str(out), "--stages", "ingest,astrology"])
    assert r.exit_code == 2 and "unknown stage" in r.output


class RuleLabeller:
    """A stand-in for a served VLM (no weights can be downloaded here): answers from what the
    frames and the prompt show, through the same VideoLLM interface the harness uses."""

    revision = "rule-v1"

    def __init__(self, name: str, answer_for):
        self.name, self.answer_for, self.prompts = name, answer_for, []

    def generate(self, inputs, settings):
        self.prompts += [i.query for i in inputs]
        return [self.answer_for(i) for i in inputs]


def test_labelling_votes_flags_disagreement_and_takes_human_review(corpus, tmp_path):
    from videosafety.data.construct.label import (LabelSettings, candidates_for, export_review, import_review,
                                                  label_videos, parse_label, vote)

    assert parse_label("Physical_violence.", ["physical_violence", "terrorism"]) == "physical_violence"
    assert parse_label("safe", ["physical_violence"]) == "safe"
    assert parse_label("physical_violence or safe", ["physical_violence"]) is None  # two answers: none
    assert vote(["a", "a", None]) == ("a", pytest.approx(2 / 3)) and vote(["a", "b"])[0] is None

    out = tmp_path / "build"
    ingest(corpus / "videos", corpus / "meta.csv", out, workers=1)
    static_filter(corpus / "videos", out, workers=1)  # a.mp4 (hint: violence) and b.mp4 (no hint) remain
    violence = candidates_for("violence")
    assert "physical_violence" in violence and len(candidates_for(None)) == 19

    def n_policies(inp):
        return inp.query.count("\n- ")

    a = RuleLabeller("a", lambda inp: "physical_violence")  # names one policy, whatever it is shown
    b = RuleLabeller("b", lambda inp: "physical_violence" if n_policies(inp) <= 5 else "safe")
    settings = LabelSettings(labellers=["rule:a", "rule:b"])
    s = label_videos(corpus / "videos", out, settings, models=[a, b])
    recs = by_video(out / "label.jsonl")
    assert s.videos == 2 and s.labelled == 2
    # a.mp4 (hint: violence) is asked about the violence policies, b.mp4 (no hint) about all 19
    assert sorted(p.count("\n- ") for p in a.prompts) == [len(violence), 19]
    ra, rb = recs["a.mp4"]["label"], recs["b.mp4"]["label"]
    assert ra["candidates"] == violence and rb["candidates"] == list(candidates_for(None))
    assert [v["parsed"] for v in ra["votes"]] == ["physical_violence", "physical_violence"]
    assert (ra["majority"], ra["agreement"], ra["flagged"]) == ("physical_violence", 1.0, False)
    assert recs["a.mp4"]["video_label"] == 1 and recs["a.mp4"]["subcategory"] == "physical_violence"
    assert (rb["majority"], rb["agreement"], rb["flagged"]) == (None, 0.5, True)  # a tie: no majority
    assert recs["b.mp4"]["video_label"] is None and s.flagged == 1

    sheet = tmp_path / "review.csv"
    assert export_review(out, sheet) == 1
    header, row = sheet.read_text().splitlines()
    assert row.startswith("b.mp4,") and row.endswith(",")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\n{row}astrology\n")
    with pytest.raises(ManifestError, match=r"bad.csv:2: decision: 'astrology' is not one of"):
        import_review(out, bad)
    good = tmp_path / "good.csv"
    good.write_text(f"{header}\n{row}safe\n")
    assert import_review(out, good) == 1
    b_rec = by_video(out / "label.jsonl")["b.mp4"]
    assert (b_rec["label"]["human"], b_rec["video_label"], b_rec["subcategory"]) == ("safe", 0, None)
    assert b_rec["provenance"]["label_review"]["rule"] == "human"
    # a rerun asks nobody again and keeps the human decision
    again = label_videos(corpus / "videos", out, settings, models=[a, b])
    assert again.labelled == 0 and again.flagged == 0 and again.safe == 1 and again.harmful == 1
    assert by_video(out / "label.jsonl")["b.mp4"]["label"]["human"] == "safe"


def test_label_stage_and_review_from_the_command_line(corpus, tmp_path):
    """`ref:refuse-all` answers no policy name: every video is flagged, and the sheet round-trips."""
    from typer.testing import CliRunner

    from videosafety.cli import app

    out = tmp_path / "cli"
    base = ["bench", "build", "--videos", str(corpus / "videos"), "--metadata", str(corpus / "meta.csv"),
            "--out", str(out), "--workers", "1"]
    r = CliRunner().invoke(app, [*base, "--stages", "ingest,static,label"])
    assert r.exit_code == 2 and "needs at least one --labeller" in r.output
    r = CliRunner().invoke(app, [*base, "--stages", "ingest,static,label", "--labeller", "ref:refuse-all"])
    assert r.exit_code == 0, r.output
    assert "label: 0 harmful, 0 safe, 2 flagged" in r.output
    sheet = tmp_path / "sheet.csv"
    r = CliRunner().invoke(app, ["bench", "review", str(out), "--export", str(sheet)])
    assert r.exit_code == 0 and "2 video(s) to review" in r.output
    header, *rows = sheet.read_text().splitlines()
    sheet.write_text("\n".join([header, *(row + "safe" for row in rows)]) + "\n")
    r = CliRunner().invoke(app, ["bench", "review", str(out), "--import", str(sheet)])
    assert r.exit_code == 0 and "2 decision(s) applied" in r.output


def test_a_tiny_hf_model_labels_through_the_real_backend(corpus, tmp_path, tiny_model_dirs):
    """The labelling stage on a real transformers video LLM (a tiny random Qwen2-VL): its answers
    name no policy, so every video is flagged; the votes keep its raw answers for the reviewer."""
    from videosafety.budget import FrameBudget
    from videosafety.data.construct.label import LabelSettings, label_videos

    out = tmp_path / "build"
    ingest(corpus / "videos", corpus / "meta.csv", out, workers=1)
    static_filter(corpus / "videos", out, workers=1)
    spec = f"hf:{tiny_model_dirs['qwen2_vl']}"
    s = label_videos(corpus / "videos", out, LabelSettings(
        labellers=[spec], budget=FrameBudget(num_frames=4, fps=None, max_frames=4, max_pixels=3136), max_new_tokens=6))
    recs = by_video(out / "label.jsonl")
    assert s.labelled == 2 and len(recs) == 2
    for r in recs.values():
        (v,) = r["label"]["votes"]
        assert v["labeller"] == spec and isinstance(v["answer"], str)
        assert r["label"]["flagged"] == (v["parsed"] is None)
