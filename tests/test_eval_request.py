"""The evaluation request (videosafety.eval_pipeline.EvalRequest) and the frame-budget overrides it
applies: how user options become one run's settings."""

from __future__ import annotations

import pytest

from videosafety.budget import FrameBudget
from videosafety.evaluate.plan import SampleFilter
from videosafety.eval_pipeline import DEMO_DEFAULT_LIMIT, EvalRequest, default_out, evaluate


def test_budget_overrides():
    base = FrameBudget()  # 1 fps, at most 90 frames
    assert base.with_overrides() == base
    eight = base.with_overrides(num_frames=8)
    assert (eight.num_frames, eight.fps, eight.max_frames) == (8, None, 8)
    assert base.with_overrides(num_frames=8, max_frames=32).max_frames == 32
    assert base.with_overrides(num_frames=8, max_frames=4).max_frames == 8  # lifted to the count
    two = FrameBudget.uniform(16).with_overrides(fps=2.0, max_frames=10)
    assert (two.fps, two.num_frames, two.max_frames) == (2.0, None, 10)
    assert base.with_overrides(max_pixels=112 * 112).max_pixels == 12544


def test_demo_defaults_fill_only_what_the_user_left():
    from videosafety.models.demo import DEMO_BUDGET, DEMO_MAX_NEW_TOKENS

    req, notes = EvalRequest().with_model_defaults()
    assert req.selection.limit == DEMO_DEFAULT_LIMIT and req.budget == DEMO_BUDGET
    assert (req.max_new_tokens, req.batch_size) == (DEMO_MAX_NEW_TOKENS, 16) and len(notes) == 2
    req, _ = EvalRequest(selection=SampleFilter(limit=7), max_new_tokens=5, batch_size=2).with_model_defaults()
    assert (req.selection.limit, req.max_new_tokens, req.batch_size) == (7, 5, 2)
    req, notes = EvalRequest(bench="some/manifest.jsonl").with_model_defaults()
    assert req.selection.limit is None and len(notes) == 1  # no default subset outside VSB-mini
    ref = EvalRequest(model="ref:comply-all")
    assert ref.with_model_defaults() == (ref, [])
    assert ref.frame_budget() == FrameBudget()
    assert EvalRequest(model="ref:comply-all", fps=(2.0,)).frame_budget().fps == 2.0
    assert EvalRequest(model="ref:comply-all", fps=(1.0, 2.0)).sweep_values


def test_bad_requests_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown condition"):
        evaluate(EvalRequest(model="ref:comply-all", conditions=("audio",), out=tmp_path / "x"))
    with pytest.raises(ValueError, match="not both"):
        evaluate(EvalRequest(model="ref:comply-all", fps=(1.0, 2.0), num_frames=(4, 8), out=tmp_path / "x"))
    with pytest.raises(ValueError):
        evaluate(EvalRequest(model="nonsense:thing", out=tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    assert str(default_out("hf:Qwen/Qwen2-VL-2B")) == "runs/eval-hf_Qwen_Qwen2-VL-2B"
