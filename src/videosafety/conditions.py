"""Input conditions (spec §2.1): what a model sees of a sample.

- video: the sampled frames and the query;
- text:  the query alone (the video removed), the text-only baseline;
- blank: the query with gray frames that stand in for the video's frames one for one: the same
         count, size, decoded timestamps and fps metadata as the video condition's, so that the
         model gets the same visual-token count and the same temporal positions. It separates
         "more visual tokens" from "harmful visual content".

The blank is planned from the decoded clip, never from the manifest's metadata (a manifest's
duration may be off by a frame or two, which changes the frame count and the time grid): the
clip is sampled once per (file, budget) and its timing kept (`clip_timing`), so the video and
blank conditions of a run decode it once between them.

Why the blank flickers: processors that compress static content (VideoLLaMA3 drops every
merged patch whose mean change from the previous frame is at most 0.1 on a 0-255 scale of the
normalized pixels) would collapse uniform gray frames to one token row per frame (4 gray frames:
7 video tokens where 4 changing frames give 16). Alternating gray levels 128 and 129 change every
patch of every frame by one level (2.0 on that scale with VideoLLaMA3's std of 0.5): invisible,
yet no patch is dropped. For the HF backend compression is also switched off for both conditions
(models.hf, `token_compression`), so a real clip's static patches are not dropped either and the
counts are equal; a served model whose server compresses still sees every blank patch, while
the video's static patches may go (a known limit of served runs).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import numpy as np

from videosafety import taxonomy
from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.models.base import ModelInput
from videosafety.schema import Sample
from videosafety.tags import with_instruction

BLANK_GRAY = 128  # frames alternate BLANK_GRAY, BLANK_GRAY + 1, ... (see the module's docstring)


@dataclass(frozen=True, eq=False)
class ClipTiming:
    """What the blank takes from the decoded clip: its sampled frames' times (float64, read-only:
    0.7 kB for 90 frames, so a run's worth stays small), the sampling rate handed to processors,
    and the decoded frame size (rotation and 1080p scaling applied)."""

    timestamps: np.ndarray
    fps: float
    height: int
    width: int


_TIMING_CACHE_SIZE = 65536
_timings: OrderedDict[tuple, ClipTiming] = OrderedDict()
_timings_lock = Lock()


def _timing_key(path: str, budget: FrameBudget) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, budget.num_frames, budget.fps, budget.max_frames)


def _remember(key: tuple, timing: ClipTiming) -> ClipTiming:
    with _timings_lock:
        _timings[key] = timing
        _timings.move_to_end(key)
        while len(_timings) > _TIMING_CACHE_SIZE:
            _timings.popitem(last=False)
    return timing


def _timing_of(sampled: vio.SampledFrames) -> ClipTiming:
    times = np.array(sampled.timestamps, dtype=np.float64)
    times.flags.writeable = False
    return ClipTiming(times, float(sampled.sampled_fps), int(sampled.frames.shape[1]), int(sampled.frames.shape[2]))


def sample_clip(path: str, budget: FrameBudget, *, timeout: float = 60.0) -> vio.SampledFrames:
    """vio.sample_with_budget, remembering the clip's timing for its blank."""
    sampled = vio.sample_with_budget(path, budget, timeout=timeout)
    try:
        _remember(_timing_key(path, budget), _timing_of(sampled))
    except OSError:
        pass
    return sampled


def clip_timing(path: str, budget: FrameBudget, *, timeout: float = 60.0) -> ClipTiming:
    """The decoded clip's timing under `budget`: sampled once per (file, size, mtime, budget) and
    kept. Raises vio.VideoError when the file cannot be decoded (the blank needs it)."""
    try:
        key = _timing_key(path, budget)
    except OSError:
        key = None
    if key is not None:
        with _timings_lock:
            hit = _timings.get(key)
        if hit is not None:
            return hit
    sampled = vio.sample_with_budget(path, budget, timeout=timeout)
    timing = _timing_of(sampled)
    return _remember(key, timing) if key is not None else timing


def blank_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """Gray frames alternating BLANK_GRAY and BLANK_GRAY + 1 (frame k: BLANK_GRAY + k % 2)."""
    levels = BLANK_GRAY + (np.arange(num_frames) % 2).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


def _check(condition: str) -> None:
    if condition not in taxonomy.CONDITIONS:
        raise ValueError(f"unknown condition {condition!r} (expected one of {', '.join(taxonomy.CONDITIONS)})")


def model_input(sample: Sample, condition: str, budget: FrameBudget, root: str | Path,
                *, timeout: float = 60.0, instruction: str | None = None, query: str | None = None) -> ModelInput:
    """The model input of one sample under one condition; `instruction` (e.g. a reasoning model's
    answer-format request) follows the query, or `query` is the prompt already built (the
    runner's plan builds each once). Raises vio.VideoError for a bad video in the video and
    blank conditions (the caller records it on the sample's row): the blank is timed from the
    decoded clip."""
    _check(condition)
    meta = {"sample_id": sample.id, "condition": condition}
    query = query if query is not None else with_instruction(sample.query, instruction)
    if condition == "text":
        return ModelInput(query=query, meta=meta)
    path = vio.path_inside(root, sample.video.path)
    if condition == "blank":
        t = clip_timing(path, budget, timeout=timeout)
        return ModelInput(query=query, frames=blank_frames(len(t.timestamps), t.height, t.width),
                          timestamps=t.timestamps.copy(), video_fps=t.fps, meta=meta)
    sampled = sample_clip(path, budget, timeout=timeout)
    return ModelInput(query=query, frames=sampled.frames, timestamps=sampled.timestamps,
                      video_fps=sampled.sampled_fps, meta=meta)
