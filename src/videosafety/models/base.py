"""The one interface every video LLM backend implements (HF, OpenAI-compatible, reference
policies). Backends receive frames as arrays, never paths: decoding and sampling are ours
(videosafety.video), resizing and patching are the model processor's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy by default: evaluation numbers must be reproducible."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class ModelInput:
    """One prompt: a query and, unless the condition is text-only, sampled video frames.

    frames: uint8 array (T, H, W, 3); timestamps: seconds of each frame in the source video;
    video_fps: the rate the frames were sampled at (processors use it for temporal position
    ids and timestamps)."""

    query: str
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    video_fps: float | None = None
    system: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def has_video(self) -> bool:
        return self.frames is not None


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Frames as every backend takes them: a non-empty uint8 (T, H, W, 3) array."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be a (T, H, W, 3) array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    if len(arr) == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"frames is empty (shape {arr.shape})")
    return arr


@dataclass(frozen=True)
class FailedResponse:
    """A request that failed (server error, timeout after retries, refused input). Backends
    return it in place of a response so that one bad row never stops a run; the evaluation
    records the error on that row."""

    error: str


class NoVisualTokensError(RuntimeError):
    """The processor produced no visual tokens for an input that carries a video: running
    anyway would silently evaluate a text-only model."""


@runtime_checkable
class VideoLLM(Protocol):
    name: str  # model spec as given by the user, e.g. "hf:Qwen/Qwen2-VL-2B-Instruct"
    revision: str  # content revision (commit hash or weights digest), for cache keys
    reads_inputs: bool  # False for reference policies: the runner then decodes no frames for them
    cpu_bound: bool  # True when it generates on this machine's CPU (decoding then competes with it)

    def generate(self, inputs: Sequence[ModelInput], settings: GenerationSettings) -> list[str | FailedResponse]:
        """One response per input, in order; a FailedResponse where that input's request failed."""
        ...
