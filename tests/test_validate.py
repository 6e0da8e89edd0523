"""`bench validate` on bad manifests and bad videos: every problem with its line and field,
nothing crashing; and the CLI commands around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from videosafety.cli import app
from videosafety.data.validate import validate_manifest
from videosafety.video import encode_video, sha256_file

runner = CliRunner()


def _video(path, n=8, w=64, h=48, fps=8):
    frames = [np.full((h, w, 3), (i * 30) % 255, dtype=np.uint8) for i in range(n)]
    encode_video(path, frames, fps=fps, width=w, height=h)
    return {"path": str(path.relative_to(path.parent.parent)), "sha256": sha256_file(path),
            "duration": n / fps, "fps": float(fps), "width": w, "height": h}


def _row(i, video, **over):
    r = {"id": f"s{i}", "group_id": f"g{i}", "split": "eval", "subset": "HH",
         "category": "violence", "subcategory": "physical_violence", "language": "en",
         "source_language": "en", "query": "q", "harmful_intention": "i", "query_label": 1,
         "video": video, "video_label": 1, "reference_response": None, "provenance": {}}
    r.update(over)
    return r


@pytest.fixture()
def bench(tmp_path):
    (tmp_path / "videos").mkdir()
    good = _video(tmp_path / "videos" / "good.mp4")
    return tmp_path, good


def _write(root, rows):
    p = root / "manifest.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def test_clean_manifest_passes(bench):
    root, good = bench
    report = validate_manifest(_write(root, [_row(1, good), _row(2, good)]))
    assert report.ok and report.rows == 2 and report.videos_checked == 1


def test_every_problem_reported_with_line_and_field(bench, tmp_path_factory):
    root, good = bench
    # a truncated video, a text file posing as a video, an empty file, a symlink out
    trunc = _video(root / "videos" / "trunc.mp4", n=40)
    data = (root / "videos" / "trunc.mp4").read_bytes()
    (root / "videos" / "trunc.mp4").write_bytes(data[: len(data) // 3])
    trunc["sha256"] = sha256_file(root / "videos" / "trunc.mp4")
    (root / "videos" / "text.mp4").write_text("hello, not a video\n" * 10)
    (root / "videos" / "empty.mp4").write_bytes(b"")
    outside = tmp_path_factory.mktemp("outside") / "x.mp4"
    outside.write_bytes((root / "videos" / "good.mp4").read_bytes())
    os.symlink(outside, root / "videos" / "link.mp4")

    rows = [
        _row(1, good),                                                   # 1 fine
        _row(1, good),                                                   # 2 duplicate id
        _row(3, good, subset="SH"),                                      # 3 subset/label
        _row(4, good, language="xx"),                                    # 4 unknown language
        _row(5, {**good, "path": "videos/missing.mp4"}),                 # 5 missing video
        _row(6, {**good, "sha256": "0" * 64}),                           # 6 sha mismatch
        _row(7, {**good, "path": "../escape.mp4"}),                      # 7 escapes by ..
        _row(8, {**good, "path": "videos/link.mp4"}),                    # 8 symlink
        _row(9, {**good, "path": "videos/text.mp4", "sha256": sha256_file(root / "videos" / "text.mp4")}),  # 9
        _row(10, {**good, "path": "videos/empty.mp4", "sha256": sha256_file(root / "videos" / "empty.mp4")}),  # 10
        _row(11, trunc),                                                 # 11 truncated
        "{broken",                                                       # 12 not JSON
        _row(13, {**good, "width": 640}),                                # 13 metadata mismatch
        _row(14, good, subcategory="knitting"),                          # 14 unknown sub-category
    ]
    report = validate_manifest(_write(root, rows))
    found = {(p.line, p.field) for p in report.problems}
    expected = {(2, "id"), (3, ""), (4, "language"), (5, "video.path"), (6, "video.sha256"),
                (7, "video.path"), (8, "video.path"), (9, "video"), (10, "video"), (11, "video"),
                (12, ""), (13, "video.width"), (14, "subcategory")}
    assert expected <= found, sorted(found)
    assert not any(p.line == 1 for p in report.problems)
    msgs = {p.line: p.message for p in report.problems}
    assert "duplicate id 's1' (first on line 1)" in msgs[2]
    assert "symlink" in msgs[8]
    assert "text.mp4" in msgs[9] and "empty.mp4" in msgs[10]


def test_cli_validate_exit_codes_and_info(bench):
    root, good = bench
    p = _write(root, [_row(1, good), _row(2, good, language="fr", subset="SafeQ", query_label=0)])
    r = runner.invoke(app, ["bench", "validate", str(p)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bench", "info", str(root), "--json"])
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["total"] == 2 and info["by_subset"] == {"HH": 1, "SafeQ": 1}
    assert {"subset": "SafeQ", "category": "violence", "language": "fr", "count": 1} in info["cells"]

    _write(root, [_row(1, good), _row(1, good)])
    r = runner.invoke(app, ["bench", "validate", str(root), "--json"])
    assert r.exit_code == 1
    problems = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert problems == [{"file": str(root / "manifest.jsonl"), "line": 2, "field": "id",
                         "message": "duplicate id 's1' (first on line 1)"}]
    r = runner.invoke(app, ["bench", "validate", str(root / "nope.jsonl")])
    assert r.exit_code == 2


def test_convert_to_parquet_and_hf(bench, tmp_path):
    root, good = bench
    _write(root, [_row(1, good), _row(2, good)])
    r = runner.invoke(app, ["bench", "convert", str(root), str(root / "manifest2.parquet")])
    assert r.exit_code == 0, r.output
    assert validate_manifest(root / "manifest2.parquet").ok
    r = runner.invoke(app, ["bench", "convert", str(root), str(tmp_path / "hf"), "--hf"])
    assert r.exit_code == 0, r.output
    import datasets
    assert len(datasets.load_from_disk(str(tmp_path / "hf"))) == 2


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "videosafety", "version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0"


def test_duration_rounding_passes_a_frame_plan_change_does_not():
    from videosafety.data.validate import duration_disagrees

    assert not duration_disagrees(2.5, 2.48)      # rounded to 0.1 s
    assert duration_disagrees(2.55, 2.48)          # 1 fps: 3 planned frames against the file's 2
    assert not duration_disagrees(600.0, 600.5)    # 0.1 % of a long file
    assert duration_disagrees(600.0, 601.0)


def test_manifest_duration_off_by_more_than_rounding_is_flagged(bench):
    root, good = bench  # the file lasts 1.0 s
    report = validate_manifest(_write(root, [_row(1, good), _row(2, {**good, "duration": 1.07})]))
    assert [(p.line, p.field) for p in report.problems] == [(2, "video.duration")]
    assert "file lasts 1.00s, manifest says 1.07s" in report.problems[0].message
