"""Fault campaign, construction input (issue 13): metadata that says a video is safe, repeated
rows, missing files, a CSV that is not UTF-8 (or has a BOM, or too many cells)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videosafety.data.construct import ingest, static_filter
from videosafety.data.construct.ingest import read_metadata
from videosafety.data.construct.label import LabelSettings, label_videos
from videosafety.data.manifest import ManifestError
from videosafety.video import encode_video


def moving(seed: int) -> np.ndarray:
    """A coarse random texture (its own per seed, so no two clips are near duplicates) sliding right."""
    rng = np.random.default_rng(seed)
    texture = np.kron(rng.integers(0, 255, (8, 24, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    return np.stack([np.roll(texture, 2 * t, axis=1)[:, :96] for t in range(30)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, name in enumerate(("street.mp4", "kitchen.mp4")):
        encode_video(root / name, moving(i), fps=10, width=96, height=64)
    return root


class Says:
    """A stand-in labeller (no VLM weights here) answering one fixed name through the VideoLLM
    interface the label stage calls."""

    revision = "says-v1"

    def __init__(self, answer: str):
        self.name, self.answer = f"says:{answer}", answer

    def generate(self, inputs, settings):
        return [self.answer for _ in inputs]


def test_safe_hint_is_accepted_and_checked_by_the_labellers(videos, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("video,category_hint\nstreet.mp4,safe\nkitchen.mp4,safe\n")
    assert [r.category_hint for r in read_metadata(meta)] == ["safe", "safe"]
    out = tmp_path / "build"
    ingest(videos, meta, out, workers=1)
    static_filter(videos, out, workers=1)
    settings = LabelSettings(labellers=["says:safe"])
    label_videos(videos, out, settings, models=[Says("safe")])
    recs = {r["video"]: r for r in map(json.loads, (out / "label.jsonl").read_text().splitlines())}
    assert all(r["video_label"] == 0 and not r["label"]["flagged"] for r in recs.values())
    assert all(len(r["label"]["candidates"]) == 19 for r in recs.values())  # every policy is still shown
    # labellers who see harm in a video said to be safe send it to review instead of trusting either
    out2 = tmp_path / "build2"
    ingest(videos, meta, out2, workers=1)
    static_filter(videos, out2, workers=1)
    label_videos(videos, out2, LabelSettings(labellers=["says:x"]), models=[Says("physical_violence")])
    recs = [json.loads(x) for x in (out2 / "label.jsonl").read_text().splitlines()]
    assert all(r["label"]["flagged"] and r["video_label"] is None for r in recs)


def test_unknown_hint_still_named(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("video,category_hint\na.mp4,harmless\n")
    with pytest.raises(ManifestError, match=r"meta.csv:2: category_hint: unknown category .*'harmless'.*'safe'"):
        read_metadata(meta)


def test_non_utf8_csv_names_the_line(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_bytes("video,source\na.mp4,ok\nb.mp4,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"meta.csv:3: not UTF-8 text \(byte 10 of the line is 0xe9\)"):
        read_metadata(meta)


def test_bom_and_too_many_cells(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("\ufeffvideo,source\na.mp4,camera\n", encoding="utf-8")
    assert read_metadata(meta)[0].video == "a.mp4"  # a spreadsheet's BOM is not part of the first column name
    meta.write_text("video,source\na.mp4,camera,extra\n")
    with pytest.raises(ManifestError, match=r"meta.csv:2: 3 cells, the header has 2"):
        read_metadata(meta)


def test_repeated_rows_and_missing_files(videos, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("video\nstreet.mp4\nkitchen.mp4\nstreet.mp4\n")
    with pytest.raises(ManifestError, match=r"meta.csv:4: video: 'street.mp4' already listed on line 2"):
        read_metadata(meta)
    meta.write_text("video\nstreet.mp4\ngone.mp4\nkitchen.mp4\n")
    s = ingest(videos, meta, tmp_path / "b", workers=1)
    recs = {r["video"]: r for r in map(json.loads, (tmp_path / "b" / "ingest.jsonl").read_text().splitlines())}
    assert (s.listed, s.kept) == (3, 2)
    assert recs["gone.mp4"]["status"] == "rejected" and "gone.mp4" in recs["gone.mp4"]["reason"]
