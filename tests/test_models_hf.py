"""HFVideoLLM end to end on tiny random checkpoints of the real transformers classes.

Every family goes frames -> chat template -> processor -> generate, offline, on CPU."""

from __future__ import annotations

import inspect
import os
import time

import numpy as np
import pytest

from videosafety.budget import FrameBudget
from videosafety.models.base import GenerationSettings, ModelInput, NoVisualTokensError, VideoLLM

GREEDY = GenerationSettings(max_new_tokens=8)


def random_frames(t: int = 4, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, size, size, 3), dtype=np.uint8)


def gray_frames(t: int = 4, size: int = 112) -> np.ndarray:
    return np.full((t, size, size, 3), 128, dtype=np.uint8)


def three_situations() -> list[ModelInput]:
    """Real-looking frames, text only, gray frames of the same count."""
    return [
        ModelInput("What happens in this video?", frames=random_frames(4, 112), video_fps=1.0),
        ModelInput("How do I bake bread at home?"),
        ModelInput("Describe the video.", frames=gray_frames(4, 112), video_fps=1.0, system="Be careful."),
    ]


def video_token_counts(llm, batch) -> list[int]:
    return (batch["input_ids"] == llm.video_token_id).sum(dim=1).tolist()


# ------------------------------------------------------------------------------ tiny builders


def test_tokenizer_is_byte_level_multilingual(tiny_tokenizer):
    from videosafety.models.tiny import SPECIAL_TOKENS

    tok = tiny_tokenizer
    assert tok.padding_side == "left"
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    for text in ["视频中的人在做什么？", "ما الذي يحدث في الفيديو؟", "वीडियो में क्या हो रहा है?",
                 "Ünïcödé ✓ 🙂 emoji", "never seen: ქართული ენა"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids or tok.unk_token_id is None
        assert tok.decode(ids) == text
    for t in SPECIAL_TOKENS:  # each special token is one id
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t


def test_tokenizer_extra_corpus_is_fast():
    from videosafety.models.tiny import train_tokenizer

    t0 = time.perf_counter()
    tok = train_tokenizer(["a brand new corpus line " * 20], vocab_size=600)
    assert time.perf_counter() - t0 < 2.0
    assert len(tok) <= 600


def test_tiny_checkpoint_reloads_offline(family, tiny_dir, no_network):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import huggingface_hub.constants

    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE
    files = {p.name for p in tiny_dir.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    proc = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, use_safetensors=True)
    expected = {"qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLForConditionalGeneration"),
                "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2_5_VLForConditionalGeneration"),
                "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLForConditionalGeneration"),
                "video_llama_3": ("VideoLlama3Processor", "VideoLlama3ForConditionalGeneration")}[family]
    assert (type(proc).__name__, type(model).__name__) == expected
    assert proc.chat_template and proc.video_processor is not None
    assert type(proc.tokenizer).__name__ == "Qwen2Tokenizer"
    assert model.config.video_token_id == proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_tiny_build_is_deterministic_and_fast(tmp_path, tiny_tokenizer, family):
    from safetensors.numpy import load_file

    from videosafety.models.tiny import build_tiny_model

    t0 = time.perf_counter()
    a = build_tiny_model(family, tmp_path / "a", tokenizer=tiny_tokenizer, seed=3)
    assert time.perf_counter() - t0 < 5.0
    b = build_tiny_model(family, tmp_path / "b", tokenizer=tiny_tokenizer, seed=3)
    c = build_tiny_model(family, tmp_path / "c", tokenizer=tiny_tokenizer, seed=4)
    wa, wb, wc = (load_file(str(d / "model.safetensors")) for d in (a, b, c))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)


# ------------------------------------------------------------------------------ HFVideoLLM


def test_protocol_name_revision(tiny_llm, tiny_dir):
    assert isinstance(tiny_llm, VideoLLM)
    assert tiny_llm.name == f"hf:{tiny_dir}"
    assert tiny_llm.revision.startswith("sha256:") and len(tiny_llm.revision) == 7 + 16
    assert tiny_llm.video_token == "<|video_pad|>"


def test_end_to_end_three_situations(tiny_llm):
    inputs = three_situations()
    out = tiny_llm.generate(inputs, GREEDY)
    assert isinstance(out, list) and len(out) == len(inputs)
    assert all(isinstance(o, str) for o in out)
    assert all("<|im_end|>" not in o and "<|video_pad|>" not in o for o in out)  # special tokens skipped
    assert tiny_llm.generate(inputs, GREEDY) == out  # greedy is deterministic


def test_batched_left_padding_matches_one_by_one(family, _tiny_llm_cache):
    batched = _tiny_llm_cache(family, batch_size=3)
    single = _tiny_llm_cache(family, batch_size=1)
    inputs = three_situations() + [ModelInput("Short?", frames=random_frames(6, 64, seed=1), video_fps=2.0)]
    batch = batched.prepare_batch(inputs[:3])
    mask = batch["attention_mask"]
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).any()  # left padded
    assert batched.generate(inputs, GREEDY) == single.generate(inputs, GREEDY)


def test_visual_tokens_present_in_video_rows_absent_in_text(tiny_llm):
    batch = tiny_llm.prepare_batch(three_situations())
    counts = video_token_counts(tiny_llm, batch)
    assert counts[0] > 0 and counts[2] > 0 and counts[1] == 0
    assert batch["pixel_values_videos"].shape[0] > 0
    assert batch["video_grid_thw"].shape[0] == 2  # one grid per video, none for the text row

    text_only = tiny_llm.prepare_batch([ModelInput("Hello?"), ModelInput("Tell me a story.", system="Hi.")])
    assert video_token_counts(tiny_llm, text_only) == [0, 0]
    assert "pixel_values_videos" not in text_only


def test_frames_are_not_resampled(tiny_llm):
    """Our frames are already sampled: the processor keeps every one (do_sample_frames=False)."""
    vp = tiny_llm.video_processor
    tps = int(getattr(vp, "temporal_patch_size", 1) or 1)
    for t in (4, 8):
        batch = tiny_llm.prepare_batch([ModelInput("Q", frames=random_frames(t, 64), video_fps=1.0)])
        assert int(batch["video_grid_thw"][0, 0]) == -(-t // tps)


def test_fps_and_timestamps_reach_the_processor(family, tiny_llm):
    frames = random_frames(4, 64)
    on_grid = tiny_llm.prepare_batch([ModelInput("Q", frames=frames, video_fps=2.0)])
    off_grid = tiny_llm.prepare_batch(
        [ModelInput("Q", frames=frames, timestamps=np.array([0.5, 1.5, 2.5, 3.5]), video_fps=1.0)])
    text = tiny_llm.processor.tokenizer.decode(off_grid["input_ids"][0])
    if family == "qwen3_vl":  # per temporal patch: mean time of its 2 frames
        assert "<1.0 seconds>" in text and "<3.0 seconds>" in text
        assert "<0.2 seconds>" in tiny_llm.processor.tokenizer.decode(on_grid["input_ids"][0])
    elif family == "video_llama_3":  # per frame
        assert "Time 0.5s:" in text and "Time 3.5s:" in text
        assert "Time 1.5s:" in tiny_llm.processor.tokenizer.decode(on_grid["input_ids"][0])
    elif family == "qwen2_5_vl":  # temporal_patch_size / fps seconds per temporal grid step
        assert on_grid["second_per_grid_ts"].tolist() == [1.0]
        assert off_grid["second_per_grid_ts"].tolist() == [2.0]
    elif family == "qwen2_vl":  # takes no time information: both timings give the same batch
        assert "second_per_grid_ts" not in on_grid and "seconds" not in text and "Time" not in text
        assert sorted(on_grid) == sorted(off_grid)
        assert all((on_grid[k] == off_grid[k]).all() for k in on_grid)
    else:
        raise AssertionError(f"no expectation for family {family!r}")


def test_one_frame_clip_is_padded_to_a_temporal_patch(family, tiny_llm):
    """A clip that samples to one frame (a 1 s video at 1 fps, an image as a video) works in every
    family: Qwen3-VL's processor alone would refuse it (t:1 < temporal_factor:2)."""
    tps = int(getattr(tiny_llm.video_processor, "temporal_patch_size", 1) or 1)
    one = ModelInput("What is shown?", frames=random_frames(1, 64), video_fps=1.0)
    stamped = ModelInput("What is shown?", frames=random_frames(1, 64), timestamps=np.array([3.0]), video_fps=1.0)
    batch = tiny_llm.prepare_batch([one, stamped])
    assert all(c > 0 for c in video_token_counts(tiny_llm, batch))
    assert batch["video_grid_thw"][:, 0].tolist() == [1, 1]  # one temporal patch each
    padded = tiny_llm._pad_short_clip(stamped)
    assert len(padded.frames) == max(1, tps) and (padded.frames == stamped.frames[-1]).all()
    assert padded.timestamps.tolist() == [3.0 + k for k in range(max(1, tps))]
    out = tiny_llm.generate([one, stamped, ModelInput("Hi?")], GREEDY)
    assert len(out) == 3 and all(isinstance(o, str) for o in out)


def test_missing_fps_is_an_error_unless_inferable(tiny_llm):
    with pytest.raises(ValueError, match="video_fps"):
        tiny_llm.prepare_batch([ModelInput("Q", frames=random_frames(4, 64))])
    meta = tiny_llm.video_metadata(ModelInput("Q", frames=random_frames(4, 64), timestamps=np.arange(4) * 0.5))
    assert meta["fps"] == 2.0 and meta["frames_indices"] == [0, 1, 2, 3]


def test_frames_must_be_uint8_arrays(tiny_llm):
    with pytest.raises(ValueError, match="uint8"):
        tiny_llm.prepare_batch([ModelInput("Q", frames=random_frames(4, 64).astype(np.float32), video_fps=1.0)])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        tiny_llm.prepare_batch([ModelInput("Q", frames=random_frames(4, 64)[..., 0], video_fps=1.0)])


def test_pixel_budget_bounds_each_frame(family, tiny_dir):
    """FrameBudget.max_pixels bounds every frame's area, whatever the processor's size convention."""
    from videosafety.models.hf import HFVideoLLM

    llm = HFVideoLLM(tiny_dir, dtype="float32", budget=FrameBudget.uniform(8, max_pixels=28 * 28))
    vp = llm.video_processor
    merge = int(vp.merge_size)
    # Clips of different lengths: per-frame grids are the same (generate groups by frame count
    # when the processor's bound spans all frames).
    for t in (4, 8):
        batch = llm.prepare_batch([ModelInput("Q", frames=random_frames(t, 112), video_fps=1.0)])
        _, gh, gw = batch["video_grid_thw"][0].tolist()
        patch = int(vp.patch_size)
        assert (gh // merge) * (gw // merge) == 1, (t, gh, gw)  # one merged token per frame (group)
        assert gh * gw * patch * patch <= max(28 * 28, (patch * merge) ** 2)
    mixed = [ModelInput("a", frames=random_frames(4, 112), video_fps=1.0),
             ModelInput("b", frames=random_frames(8, 112), video_fps=1.0), ModelInput("c")]
    assert len(llm.generate(mixed, GREEDY)) == 3


# ------------------------------------------------------------------------------ refusing blind runs

VIDEO_BLIND_TEMPLATE = (  # a ChatML template that silently ignores non-text content parts
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_template_that_drops_the_video_raises(tiny_dir):
    from videosafety.models.hf import HFVideoLLM

    llm = HFVideoLLM(tiny_dir, dtype="float32")
    llm.processor.chat_template = VIDEO_BLIND_TEMPLATE
    assert llm.generate([ModelInput("text only")], GREEDY)  # text-only still runs
    with pytest.raises(NoVisualTokensError, match="dropped the video"):
        llm.generate([ModelInput("Q", frames=random_frames(4, 64), video_fps=1.0)], GREEDY)


def test_conversation_that_drops_the_video_raises(tiny_dir):
    from videosafety.models.hf import HFVideoLLM

    class Blind(HFVideoLLM):
        def build_conversation(self, inp):
            return [{"role": "user", "content": [{"type": "text", "text": inp.query}]}]

    llm = Blind(tiny_dir, dtype="float32")
    with pytest.raises(NoVisualTokensError):
        llm.prepare_batch([ModelInput("Q"), ModelInput("Q", frames=random_frames(4, 64), video_fps=1.0)])


def test_processed_batch_without_video_tokens_raises(tiny_llm):
    batch = tiny_llm.prepare_batch(three_situations())
    ids = batch["input_ids"].clone()
    ids[2][ids[2] == tiny_llm.video_token_id] = tiny_llm.processor.tokenizer.pad_token_id
    batch["input_ids"] = ids
    with pytest.raises(NoVisualTokensError, match="row 2"):
        tiny_llm.check_visual_tokens(batch, [True, False, True])
    fresh = tiny_llm.prepare_batch(three_situations())
    del fresh["pixel_values_videos"]
    with pytest.raises(NoVisualTokensError, match="pixel_values_videos"):
        tiny_llm.check_visual_tokens(fresh, [True, False, True])


def test_control_token_in_text_query_is_refused(tiny_llm):
    with pytest.raises(ValueError, match="text-only"):
        tiny_llm.prepare_batch([ModelInput("ignore this <|video_pad|> placeholder")])


# ------------------------------------------------------------------------------ loading policy


def test_loading_policy(monkeypatch, tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from videosafety.models.hf import HFVideoLLM

    assert inspect.signature(HFVideoLLM).parameters["trust_remote_code"].default is False
    seen: dict = {}
    orig_model, orig_proc = AutoModelForImageTextToText.from_pretrained, AutoProcessor.from_pretrained

    def spy_model(*a, **kw):
        seen["model"] = kw
        return orig_model(*a, **kw)

    def spy_proc(*a, **kw):
        seen["proc"] = kw
        return orig_proc(*a, **kw)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy_model)
    monkeypatch.setattr(AutoProcessor, "from_pretrained", spy_proc)
    llm = HFVideoLLM(tiny_dir)
    assert llm.trust_remote_code is False
    assert seen["model"]["trust_remote_code"] is False and seen["proc"]["trust_remote_code"] is False
    assert seen["model"]["use_safetensors"] is True
    import torch

    assert llm.model.dtype == torch.float32  # "auto" on CPU


def test_revision_follows_weight_content(tmp_path, tiny_tokenizer, tiny_dir):
    import shutil

    from videosafety.models.hf import weights_digest
    from videosafety.models.tiny import build_tiny_model

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    assert weights_digest(copy) == weights_digest(tiny_dir)  # content, not path or mtime
    other = build_tiny_model("qwen2_vl", tmp_path / "other", tokenizer=tiny_tokenizer, seed=1)
    same_seed = build_tiny_model("qwen2_vl", tmp_path / "same", tokenizer=tiny_tokenizer, seed=0)
    assert weights_digest(other) != weights_digest(same_seed)


def test_sampling_is_seeded_and_leaves_global_rng_alone(tiny_llm):
    import torch

    inputs = three_situations()[:2]
    s = GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1.0, seed=123)
    state = torch.random.get_rng_state()
    a = tiny_llm.generate(inputs, s)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert tiny_llm.generate(inputs, s) == a
    assert len(a) == 2 and all(isinstance(x, str) for x in a)
