"""The frame budget: how many frames are sampled from a video and how many pixels each may
keep. One object, used by evaluation, training and serving alike, so that a number can always
name the budget that produced it (the reference recipe changed it between SFT and RL; we don't).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Reference recipe (spec §3.4): 1 fps, at most 90 frames.
DEFAULT_FPS = 1.0
DEFAULT_MAX_FRAMES = 90


class FrameBudget(BaseModel):
    """Either a fixed frame count (uniform sampling) or a sampling rate capped by max_frames.

    max_pixels / min_pixels bound each frame's area; resizing itself is the model processor's
    job, these numbers are handed to it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fps: float | None = Field(default=DEFAULT_FPS, gt=0)
    num_frames: int | None = Field(default=None, ge=1)
    max_frames: int = Field(default=DEFAULT_MAX_FRAMES, ge=1)
    max_pixels: int | None = Field(default=None, ge=1)
    min_pixels: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_mode(self) -> "FrameBudget":
        if self.num_frames is not None and self.fps is not None:
            raise ValueError("give either num_frames (uniform sampling) or fps, not both")
        if self.num_frames is None and self.fps is None:
            raise ValueError("give num_frames or fps")
        if self.num_frames is not None and self.num_frames > self.max_frames:
            raise ValueError(f"num_frames={self.num_frames} exceeds max_frames={self.max_frames}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels exceeds max_pixels")
        return self

    @classmethod
    def uniform(cls, num_frames: int, **kw) -> "FrameBudget":
        kw.setdefault("max_frames", max(num_frames, DEFAULT_MAX_FRAMES))
        return cls(fps=None, num_frames=num_frames, **kw)

    def with_overrides(self, *, fps: float | None = None, num_frames: int | None = None,
                       max_frames: int | None = None, max_pixels: int | None = None) -> "FrameBudget":
        """This budget with a user's overrides: a frame count replaces the rate (and lifts
        max_frames to at least itself); a rate replaces a frame count; max_frames caps a rate;
        max_pixels bounds each frame. None leaves a setting as it is."""
        changed = self.model_dump()
        if num_frames is not None:
            changed.update(num_frames=num_frames, fps=None, max_frames=max(num_frames, max_frames or num_frames))
        elif fps is not None:
            changed.update(fps=fps, num_frames=None)
        if max_frames is not None and num_frames is None:
            changed["max_frames"] = max_frames
        if max_pixels is not None:
            changed["max_pixels"] = max_pixels
        return FrameBudget.model_validate(changed)

    def describe(self) -> str:
        """A short stable string for logs and reports."""
        mode = f"{self.num_frames}f" if self.num_frames else f"{self.fps:g}fps<= {self.max_frames}f"
        px = f",max_px={self.max_pixels}" if self.max_pixels else ""
        return mode.replace(" ", "") + px
