"""Input conditions: video frames, text only, and gray frames of the same count and size."""

from __future__ import annotations

import numpy as np
import pytest

from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.conditions import BLANK_GRAY, model_input
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
    assert (b.frames == BLANK_GRAY).all() and v.frames.std() > 0
    np.testing.assert_allclose(b.timestamps, v.timestamps, atol=0.13)  # one source frame at 8 fps
    assert t.frames is None and t.query == v.query == b.query == "q?"
    assert v.meta == {"sample_id": "a", "condition": "video"}


def test_unknown_condition_and_bad_video(sample):
    root, s = sample
    with pytest.raises(ValueError, match="unknown condition 'audio'"):
        model_input(s, "audio", FrameBudget(), root)
    (root / "v" / "a.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(vio.VideoError, match="a.mp4"):
        model_input(s, "video", FrameBudget(), root)
    # text and blank need no decoding, so a broken file does not stop them
    assert model_input(s, "blank", FrameBudget(), root).frames.shape[0] == 5


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
        else:  # text and blank never decode, so the broken file does not matter
            inputs.append(model_input(broken, condition, budget, root))
        out = tiny_llm.generate(inputs, settings)
        assert len(out) == len(inputs) and all(isinstance(o, str) for o in out)
    batch = tiny_llm.prepare_batch([model_input(s, "blank", budget, root), model_input(s, "text", budget, root)])
    counts = (batch["input_ids"] == tiny_llm.video_token_id).sum(dim=1).tolist()
    assert counts[0] > 0 and counts[1] == 0
