"""Records, taxonomy and manifest reading/writing (no video decoding here)."""

from __future__ import annotations

import json

import pytest

from videosafety import taxonomy
from videosafety.data.manifest import (
    ManifestError,
    from_hf_dataset,
    iter_rows,
    read_manifest,
    resolve_manifest,
    to_hf_dataset,
    write_manifest,
)
from videosafety.schema import Sample

SHA = "a" * 64


def row(**over) -> dict:
    base = {
        "id": "s1", "group_id": "g1", "split": "eval", "subset": "HH",
        "category": "regulated_goods", "subcategory": "explosives",
        "language": "en", "source_language": "en",
        "query": "q", "harmful_intention": "i", "query_label": 1,
        "video": {"path": "videos/a.mp4", "sha256": SHA, "duration": 6.0, "fps": 8.0, "width": 64, "height": 64},
        "video_label": 1, "reference_response": "r", "provenance": {"source": "test"},
    }
    base.update(over)
    return base


def test_taxonomy_counts_and_uniqueness():
    assert len(taxonomy.CATEGORIES) == 6
    assert len(taxonomy.SUBCATEGORIES) == 19
    assert sum(len(v) for v in taxonomy.CATEGORIES.values()) == 19
    assert len(taxonomy.LANGUAGES) == 10
    assert all(s.policy.endswith(".") and len(s.policy) > 30 for s in taxonomy.SUBCATEGORIES.values())


@pytest.mark.parametrize("subset,video,query,ok", [
    ("HH", 1, 1, True), ("HH", 0, 1, False), ("HH", 1, 0, False),
    ("SH", 0, 1, True), ("SH", 1, 1, False),
    ("HB", 1, 0, True), ("HB", 0, 0, False), ("HB", 1, 1, False),
    ("SafeQ", 1, 0, True), ("SafeQ", 0, 0, True), ("SafeQ", 1, 1, False),
])
def test_subset_label_agreement(subset, video, query, ok):
    assert taxonomy.labels_agree(subset, video, query) is ok
    if ok:
        Sample.model_validate(row(subset=subset, video_label=video, query_label=query))
    else:
        with pytest.raises(ValueError, match=f"subset {subset} needs"):
            Sample.model_validate(row(subset=subset, video_label=video, query_label=query))


@pytest.mark.parametrize("over,field", [
    ({"subcategory": "knitting"}, "subcategory"),
    ({"language": "xx"}, "language"),
    ({"category": "violence"}, ""),  # explosives belongs to regulated_goods
    ({"query_label": 2}, "query_label"),
    ({"video": {"path": "../x.mp4", "sha256": SHA, "duration": 1, "fps": 1, "width": 2, "height": 2}}, "video.path"),
    ({"video": {"path": "/etc/x.mp4", "sha256": SHA, "duration": 1, "fps": 1, "width": 2, "height": 2}}, "video.path"),
    ({"video": {"path": "a.mp4", "sha256": "XYZ", "duration": 1, "fps": 1, "width": 2, "height": 2}}, "video.sha256"),
    ({"split": "dev"}, "split"),
    ({"extra_field": 1}, "extra_field"),
])
def test_bad_rows_name_line_and_field(tmp_path, over, field):
    good = row(id="ok")
    bad = row(id="bad", **over)
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    items = list(iter_rows(p))
    assert isinstance(items[0][1], Sample)
    line, problems = items[1]
    assert line == 2 and isinstance(problems, list)
    assert any(pr.field == field for pr in problems), [str(x) for x in problems]
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    assert f"{p}:2" in str(e.value)


def test_broken_json_line_reported_and_reading_goes_on(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(row(id="a")) + "\n{not json\n[1,2]\n\n" + json.dumps(row(id="b")) + "\n")
    items = list(iter_rows(p))
    assert [line for line, _ in items] == [1, 2, 3, 5]
    assert "not valid JSON" in items[1][1][0].message
    assert "one JSON object" in items[2][1][0].message
    assert isinstance(items[3][1], Sample)


def test_jsonl_parquet_hf_round_trip(tmp_path):
    samples = [Sample.model_validate(row(id=f"s{i}", provenance={"i": i, "nested": {"k": [1, 2]}})) for i in range(5)]
    for name in ("m.jsonl", "m.parquet"):
        assert write_manifest(samples, tmp_path / name) == 5
        assert read_manifest(tmp_path / name) == samples
    ds = to_hf_dataset(samples)
    assert len(ds) == 5 and ds[0]["video"]["sha256"] == SHA
    assert from_hf_dataset(ds) == samples


def test_resolve_manifest_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.jsonl"):
        resolve_manifest(tmp_path)
    write_manifest([Sample.model_validate(row())], tmp_path / "manifest.jsonl")
    assert resolve_manifest(tmp_path) == tmp_path / "manifest.jsonl"
