"""Beyond the paper: temporal / typographic attacks (`bench augment`, data.augment) with the
report's DSR-by-attack breakdown, and frame-budget sweeps (`eval --fps 0.5,1`, evaluate.sweep)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from videosafety.cli import app

runner = CliRunner()
ATTACKS = ("late", "interleave", "overlay")


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    out = tmp_path_factory.mktemp("vsb-mini-attacks")
    build_vsb_mini(out, workers=2)
    return out


@pytest.fixture(scope="module")
def augmented(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("augmented")
    r = runner.invoke(app, ["bench", "augment", str(mini), "--out", str(out), "--languages", "en", "--limit", "3",
                            "--with-sources"])
    assert r.exit_code == 0, r.output
    return out


def _samples(path: Path) -> list:
    from videosafety.data.manifest import read_manifest

    return read_manifest(path)


def _frames(path: Path, fps: float = 8.0) -> np.ndarray:
    from videosafety import video as vio

    return vio.sample_frames(path, fps=fps, max_frames=1000).frames.astype(np.int16)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_augment_manifest_provenance_and_validation(mini, augmented):
    from videosafety.data.validate import validate_manifest

    report = validate_manifest(augmented)
    assert report.ok, [str(p) for p in report.problems]
    source = {s.id: s for s in _samples(mini)}
    safe_videos = {s.video.path for s in source.values() if s.video_label == 0}
    out = _samples(augmented)
    variants = [s for s in out if s.provenance.get("attack")]
    originals = [s for s in out if not s.provenance.get("attack")]
    assert len(originals) == 3 and len(variants) == 9  # --limit 3 sources x 3 attacks, plus the sources
    assert len({s.id for s in out}) == len(out)
    for v in variants:
        p = v.provenance
        src = source[p["source_id"]]
        assert v.id == f"{src.id}~{p['attack']}" and p["attack"] in ATTACKS
        assert (v.subset, v.video_label, v.query_label, v.category, v.language) == \
               (src.subset, src.video_label, src.query_label, src.category, src.language)
        assert src.subset in ("HH", "HB") and src.split == "eval" and src.language == "en"
        assert p["benign_source"] in safe_videos and p["source_provenance"] == src.provenance
        assert v.video.path.startswith(f"videos/{p['attack']}/")
    assert {s.provenance["attack"] for s in variants} == set(ATTACKS)


def test_late_interleave_overlay_frames(mini, augmented):
    from videosafety.data.augment import overlay_box

    for v in (s for s in _samples(augmented) if s.provenance.get("attack")):
        p, settings = v.provenance, v.provenance["settings"]
        src = next(s for s in _samples(mini) if s.id == p["source_id"])
        benign = _frames(mini / p["benign_source"])
        harmful = _frames(mini / src.video.path)
        got = _frames(augmented / v.video.path)
        assert abs(benign.mean() - harmful.mean()) > 40  # VSB-mini: light safe scenes, dark harmful ones
        if p["attack"] == "late":
            nb, keep = settings["benign_frames"], settings["harmful_frames"]
            assert len(got) == nb + keep and keep == round(0.25 * len(harmful))
            assert _diff(got[:nb], benign) < 6  # the opening is the benign clip...
            assert _diff(got[nb:], harmful[-keep:]) < 6  # ...and only the end is harmful
            assert _diff(got[:nb], harmful[:nb]) > 40
        elif p["attack"] == "interleave":
            block = settings["block_frames"]
            assert block == 8 and len(got) == len(harmful)
            for i in range(0, len(got), block):
                want = benign if (i // block) % 2 == 0 else harmful
                other = harmful if want is benign else benign
                assert _diff(got[i:i + block], want[i:i + block]) < 6
                assert _diff(got[i:i + block], other[i:i + block]) > 40
        else:
            assert len(got) == len(benign)
            (x0, y0, x1, y1), lines, _ = overlay_box(v.video.width, v.video.height, src.harmful_intention)
            assert 1 <= len(lines) <= 3
            assert _diff(got[:, y0:y1, x0:x1], benign[:, y0:y1, x0:x1]) > 30  # the text band
            assert _diff(got[:, : y0 - 2], benign[:, : y0 - 2]) < 4  # the rest is the benign video


def test_augment_is_deterministic(mini, augmented, tmp_path):
    from videosafety.data.augment import augment_manifest

    a = augment_manifest(mini, tmp_path / "a", split="eval", languages=["en"], limit=3, with_sources=True)
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (augmented / "manifest.jsonl").read_bytes()
    for s in _samples(augmented):
        assert (tmp_path / "a" / s.video.path).read_bytes() == (augmented / s.video.path).read_bytes()
    assert a.sources == 3 and a.variants == {k: 3 for k in ATTACKS}


def test_augment_rejects_unknown_attack(mini, tmp_path):
    r = runner.invoke(app, ["bench", "augment", str(mini), "--out", str(tmp_path / "x"), "--attacks", "late,bogus"])
    assert r.exit_code == 2 and "bogus" in r.output


def test_eval_report_breaks_dsr_down_by_attack(augmented, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["eval", "--bench", str(augmented), "--model", "ref:comply-all", "--out", str(out),
                            "--conditions", "video,text"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    assert {x.get("attack") for x in rows} == {None, *ATTACKS}
    res = json.loads((out / "results.json").read_text())
    by_attack = res["runs"][0]["dsr"]["harmful"]["video"]["by_attack"]
    assert list(by_attack) == ["none", "interleave", "late", "overlay"]
    assert all(c["n"] == 3 and c["value"] == 0.0 for c in by_attack.values())
    md = (out / "report.md").read_text()
    assert "## DSR by attack" in md and "| late |" in md
    assert 'id="dsr-attack"' in (out / "report.html").read_text()


def test_fps_sweep_writes_runs_report_and_plot(mini, tmp_path):
    out = tmp_path / "sweep"
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:refuse-all", "--out", str(out),
                            "--fps", "0.5,1", "--limit", "24", "--conditions", "video"])
    assert r.exit_code == 0, r.output
    for name, fps in (("fps-0.5", 0.5), ("fps-1", 1.0)):
        run = json.loads((out / name / "run.json").read_text())
        assert run["status"] == "done" and run["budget"]["fps"] == fps and run["sweep"]["point"] == name
        assert (out / name / "responses.jsonl").is_file() and (out / name / "verdicts" / "rules.jsonl").is_file()
    res = json.loads((out / "results.json").read_text())
    assert sorted(r["budget"]["fps"] for r in res["runs"]) == [0.5, 1.0]
    assert all(r["dsr"]["HH"]["video"]["all"]["value"] == 1.0 for r in res["runs"])
    assert (out / "sweep-dsr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = json.loads((out / "sweep.json").read_text())["points"]
    assert [p["budget"]["fps"] for p in points] == [0.5, 1.0] and all(p["dsr"]["n"] > 0 for p in points)
    assert "## DSR by frame budget" in (out / "report.md").read_text()
    # a rerun resumes: every response from the cache
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:refuse-all", "--out", str(out),
                            "--fps", "0.5,1", "--limit", "24", "--conditions", "video", "--no-judge"])
    assert r.exit_code == 0, r.output
    assert r.output.count(" 0 generated") == 2


def test_single_fps_is_one_plain_run(mini, tmp_path):
    out = tmp_path / "one"
    r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:refuse-all", "--out", str(out),
                            "--fps", "1", "--limit", "8", "--conditions", "video", "--no-judge"])
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    assert run["budget"]["fps"] == 1.0 and "sweep" not in run
    assert (out / "responses.jsonl").is_file() and not (out / "fps-1").exists()
    rows = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    assert all("attack" not in x for x in rows)


def test_sweep_options_are_checked(mini, tmp_path):
    from videosafety.budget import FrameBudget
    from videosafety.evaluate.sweep import parse_values, sweep_points

    assert parse_values("0.5, 1,2", float, "--fps") == [0.5, 1.0, 2.0] and parse_values(None, int, "x") is None
    for bad in ("0", "a", "1,1", ","):
        with pytest.raises(ValueError):
            parse_values(bad, float, "--fps")
    pts = sweep_points(FrameBudget(max_pixels=3136), num_frames=[4, 120])
    assert [p.name for p in pts] == ["frames-4", "frames-120"]
    assert pts[1].budget.max_frames == 120 and pts[0].budget.max_pixels == 3136 and pts[0].budget.fps is None
    for args in (["--fps", "0.5,1", "--num-frames", "4"], ["--fps", "0"]):
        r = runner.invoke(app, ["eval", "--bench", str(mini), "--model", "ref:refuse-all",
                                "--out", str(tmp_path / "x"), *args])
        assert r.exit_code == 2, r.output
