"""Input conditions: video frames, text only, and gray frames of the same count and size."""

from __future__ import annotations

import numpy as np
import pytest

from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.conditions import BLANK_GRAY, blank_frames, model_input
from videosafety.schema import Sample


@pytest.fixture()
def sample(tmp_path):
    (tmp_path / "v").mkdir()
    frames = [np.full((48, 64, 3), (10 * i) % 256, dtype=np.uint8) for i in range(40)]
    vio.encode_video(tmp_path / "v" / "a.mp4", frames, fps=8, width=64, height=48)
    s = Sample(id="a", group_id="a", split="eval", subset="HH", category="violence",
               subcategory="physical_violence", language="en", source_language="en", query="q?",
               query_label=1, video_label=1,
               video={"path": "v/a.mp4", "sha256": vio.sha256_file(tmp_path / "v" / "a.mp4"),
                      "duration": 5.0, "fps": 8.0, "width": 64, "height": 48})
    return tmp_path, s


@pytest.mark.parametrize("budget", [FrameBudget(fps=1.0), FrameBudget.uniform(4), FrameBudget(fps=2.0, max_frames=3)])
def test_blank_matches_video_in_count_and_size(sample, budget):
    root, s = sample
    v = model_input(s, "video", budget, root)
    b = model_input(s, "blank", budget, root)
    t = model_input(s, "text", budget, root)
    assert v.frames.shape == b.frames.shape
    assert v.frames.shape[0] == (budget.num_frames or min(budget.max_frames, int(5.0 * budget.fps)))
    assert (b.frames[0::2] == BLANK_GRAY).all() and (b.frames[1::2] == BLANK_GRAY + 1).all() and v.frames.std() > 0
    assert b.timestamps.tolist() == v.timestamps.tolist() and b.video_fps == v.video_fps
    assert t.frames is None and t.query == v.query == b.query == "q?"
    assert v.meta == {"sample_id": "a", "condition": "video"}


def test_unknown_condition_and_bad_video(sample):
    root, s = sample
    with pytest.raises(ValueError, match="unknown condition 'audio'"):
        model_input(s, "audio", FrameBudget(), root)
    (root / "v" / "a.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(vio.VideoError, match="a.mp4"):
        model_input(s, "video", FrameBudget(), root)
    # the blank is timed from the decoded clip, so a broken file stops it too; text needs no video
    with pytest.raises(vio.VideoError, match="a.mp4"):
        model_input(s, "blank", FrameBudget.uniform(3), root)
    assert model_input(s, "text", FrameBudget(), root).frames is None


def test_samples_through_a_tiny_model_in_all_conditions(sample, tiny_llm):
    """The model layer end to end from benchmark records: frames -> processor -> generate,
    in the three conditions; a broken video stops its own sample in the video condition only."""
    from videosafety.models.base import GenerationSettings

    root, s = sample
    broken = s.model_copy(update={"id": "b", "video": s.video.model_copy(update={"path": "v/broken.mp4"})})
    (root / "v" / "broken.mp4").write_bytes(b"\x00" * 512)
    settings = GenerationSettings(max_new_tokens=4)
    budget = FrameBudget.uniform(4, max_pixels=64 * 48)
    for condition in ("video", "text", "blank"):
        inputs = [model_input(s, condition, budget, root)]
        if condition == "video":
            with pytest.raises(vio.VideoError, match="broken.mp4"):
                model_input(broken, condition, budget, root)
        elif condition == "blank":  # timed from the decoded clip: the broken file stops it too
            with pytest.raises(vio.VideoError, match="broken.mp4"):
                model_input(broken, condition, budget, root)
        else:  # text never decodes, so the broken file does not matter
            inputs.append(model_input(broken, condition, budget, root))
        out = tiny_llm.generate(inputs, settings)
        assert len(out) == len(inputs) and all(isinstance(o, str) for o in out)
    batch = tiny_llm.prepare_batch([model_input(s, "blank", budget, root), model_input(s, "text", budget, root)])
    counts = (batch["input_ids"] == tiny_llm.video_token_id).sum(dim=1).tolist()
    assert counts[0] > 0 and counts[1] == 0


@pytest.fixture()
def half_static(tmp_path):
    """A 2.5 s clip at 8 fps whose left half never changes (what a compressing processor drops),
    described by a manifest that says 2.55 s: within `bench validate`'s old tolerance, yet a
    1 fps plan from it would give 3 frames where the file gives 2."""
    (tmp_path / "v").mkdir()
    frames = []
    for i in range(20):
        f = np.full((64, 96, 3), 90, dtype=np.uint8)
        f[:, 48:] = (37 * i) % 256
        frames.append(f)
    vio.encode_video(tmp_path / "v" / "h.mp4", frames, fps=8, width=96, height=64)
    s = Sample(id="h", group_id="h", split="eval", subset="HH", category="violence",
               subcategory="physical_violence", language="en", source_language="en", query="q?",
               query_label=1, video_label=1,
               video={"path": "v/h.mp4", "sha256": vio.sha256_file(tmp_path / "v" / "h.mp4"),
                      "duration": 2.55, "fps": 8.0, "width": 96, "height": 64})
    return tmp_path, s


def test_blank_frames_flicker_by_one_gray_level():
    f = blank_frames(3, 2, 4)
    assert f.shape == (3, 2, 4, 3) and f.dtype == np.uint8
    assert f[0].min() == f[0].max() == 128 and f[1].min() == f[1].max() == 129 and (f[2] == 128).all()


def test_blank_is_timed_from_the_decoded_clip_not_the_manifest(half_static):
    root, s = half_static
    budget = FrameBudget(fps=1.0)
    v = model_input(s, "video", budget, root)
    b = model_input(s, "blank", budget, root)
    # the file lasts 2.5 s: targets 0.5 and 1.5 s (the manifest's 2.55 s would add one at 2.5 s)
    assert len(v.timestamps) == len(b.timestamps) == 2
    assert b.timestamps.tolist() == v.timestamps.tolist() and b.video_fps == v.video_fps == 1.0
    assert b.frames.shape == v.frames.shape


def test_clip_timing_decodes_once_per_file_and_budget(half_static, monkeypatch):
    from videosafety import conditions

    root, s = half_static
    calls = []
    real = vio.sample_with_budget
    monkeypatch.setattr(vio, "sample_with_budget", lambda *a, **k: calls.append(a) or real(*a, **k))
    conditions._timings.clear()
    model_input(s, "video", FrameBudget(fps=1.0), root)
    for _ in range(3):
        model_input(s, "blank", FrameBudget(fps=1.0), root)
    assert len(calls) == 1  # the video condition's decoding timed the blank
    model_input(s, "blank", FrameBudget.uniform(4), root)
    model_input(s, "blank", FrameBudget.uniform(4), root)
    assert len(calls) == 2  # another budget: sampled once more


def _position_ids(llm, batch):
    """The model's own temporal (3-D rope) positions where it has them; None for 1-D positions."""
    import inspect

    inner = getattr(llm.model, "model", llm.model)
    fn = getattr(inner, "get_rope_index", None)
    if fn is None:
        return None
    names = inspect.signature(fn).parameters
    return fn(**{k: batch[k] for k in names if k in batch})[0]


def test_blank_holds_visual_tokens_and_positions_in_every_family(family, tiny_llm, half_static):
    """Video and blank give the same prompt (placeholders expanded, frame times written in), the
    same video grid and seconds per grid step, the same number of visual tokens and the same
    temporal position ids, in every family, VideoLLaMA3 (a compressing processor) included."""
    root, s = half_static
    budget = FrameBudget.uniform(4)
    v, b = model_input(s, "video", budget, root), model_input(s, "blank", budget, root)
    bv, bb = tiny_llm.prepare_batch([v]), tiny_llm.prepare_batch([b])
    n_v = int((bv["input_ids"] == tiny_llm.video_token_id).sum())
    assert n_v > 0 and n_v == int((bb["input_ids"] == tiny_llm.video_token_id).sum())
    assert bv["input_ids"].tolist() == bb["input_ids"].tolist()
    assert bv["video_grid_thw"].tolist() == bb["video_grid_thw"].tolist()
    for key in ("second_per_grid_ts", "video_compression_mask"):
        if key in bv:
            assert bv[key].tolist() == bb[key].tolist(), key
    pv, pb = _position_ids(tiny_llm, bv), _position_ids(tiny_llm, bb)
    if family == "video_llama_3":
        assert pv is None  # 1-D positions: equal input_ids give equal positions
    else:
        assert pv is not None and pv.tolist() == pb.tolist()


def test_compressing_processor_keeps_every_blank_patch(tiny_model_dirs, half_static):
    """With VideoLLaMA3's compression on, the flickering blank keeps all its tokens (a static gray
    blank would keep one per frame after the first) while the half-static video loses some."""
    from videosafety.models.hf import HFVideoLLM

    root, s = half_static
    llm = HFVideoLLM(tiny_model_dirs["video_llama_3"], device="cpu", dtype="float32", token_compression=True)
    budget = FrameBudget.uniform(4)
    v, b = model_input(s, "video", budget, root), model_input(s, "blank", budget, root)
    bb, bv = llm.prepare_batch([b]), llm.prepare_batch([v])
    t, h, w = bb["video_grid_thw"][0].tolist()
    full = t * h * w // int(bb["video_merge_sizes"][0]) ** 2
    count = lambda batch: int((batch["input_ids"] == llm.video_token_id).sum())  # noqa: E731
    assert count(bb) == full and count(bv) < full
    static = model_input(s, "blank", budget, root)
    static.frames[:] = BLANK_GRAY
    tokens_per_frame = full // t
    assert count(llm.prepare_batch([static])) == tokens_per_frame + (t - 1)  # min_tokens=1 per later frame
