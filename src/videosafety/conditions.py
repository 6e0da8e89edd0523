"""Input conditions (spec §2.1): what a model sees of a sample.

- video: the sampled frames and the query;
- text:  the query alone (the video removed), the text-only baseline;
- blank: the query with uniform gray frames, as many and as large as the video condition's,
         which separates "more visual tokens" from "harmful visual content".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videosafety import taxonomy
from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.models.base import ModelInput
from videosafety.schema import Sample
from videosafety.tags import with_instruction

BLANK_GRAY = 128


def _check(condition: str) -> None:
    if condition not in taxonomy.CONDITIONS:
        raise ValueError(f"unknown condition {condition!r} (expected one of {', '.join(taxonomy.CONDITIONS)})")


def blank_frames(sample: Sample, budget: FrameBudget) -> tuple[np.ndarray, np.ndarray]:
    """Gray frames with the count the budget gives the real video, at its size; planned from
    the manifest's metadata, so nothing is decoded."""
    times = vio.plan_timestamps(sample.video.duration, num_frames=budget.num_frames,
                                fps=None if budget.num_frames else budget.fps, max_frames=budget.max_frames)
    width, height = vio.decode_size(sample.video.width, sample.video.height)  # as big as decoded frames
    frames = np.full((len(times), height, width, 3), BLANK_GRAY, dtype=np.uint8)
    return frames, times


def model_input(sample: Sample, condition: str, budget: FrameBudget, root: str | Path,
                *, timeout: float = 60.0, instruction: str | None = None, query: str | None = None) -> ModelInput:
    """The model input of one sample under one condition; `instruction` (e.g. a reasoning model's
    answer-format request) follows the query, or `query` is the prompt already built (the
    runner's plan builds each once). Raises vio.VideoError for a bad video in the video
    condition (the caller records it on the sample's row)."""
    _check(condition)
    meta = {"sample_id": sample.id, "condition": condition}
    query = query if query is not None else with_instruction(sample.query, instruction)
    if condition == "text":
        return ModelInput(query=query, meta=meta)
    if condition == "blank":
        frames, times = blank_frames(sample, budget)
        rate = len(times) / sample.video.duration
        return ModelInput(query=query, frames=frames, timestamps=times, video_fps=rate, meta=meta)
    sampled = vio.sample_with_budget(vio.path_inside(root, sample.video.path), budget, timeout=timeout)
    return ModelInput(query=query, frames=sampled.frames, timestamps=sampled.timestamps,
                      video_fps=sampled.sampled_fps, meta=meta)
