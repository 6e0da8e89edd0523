"""Frame-budget sweeps: one evaluation per frame rate (or frame count), then one report over
them with DSR plotted against the budget (beyond the paper, which observes that denser
sampling lowers safety).

    videosafety eval --fps 0.5,1,2,4 --out runs/sweep
    -> runs/sweep/fps-0.5/, fps-1/, fps-2/, fps-4/   (each a normal, resumable run, judged)
       runs/sweep/results.json, report.md, report.html (one report over the runs)
       runs/sweep/sweep-dsr.png, sweep.json            (DSR on HH, video, per budget, 95 % CI)

Each point is run by :func:`videosafety.evaluate.runner.run_eval` with its own budget, so a
killed sweep resumes where it stopped and a finished point is taken from its cache; the
judging and the report over the points are videosafety.eval_pipeline's (they sit above the runner).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from videosafety.budget import FrameBudget
from videosafety.evaluate.plan import SampleFilter
from videosafety.evaluate.runner import EvalConfig, EvalSummary, run_eval
from videosafety.models.base import VideoLLM

PLOT = "sweep-dsr.png"
SUMMARY = "sweep.json"


@dataclass(frozen=True)
class SweepPoint:
    name: str  # the run's sub-folder, e.g. "fps-0.5" or "frames-8"
    budget: FrameBudget


@dataclass
class SweepResult:
    out: Path
    runs: list[tuple[SweepPoint, Path, EvalSummary]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        """The worst run's share of failed rows."""
        return max((s.error_rate for _, _, s in self.runs), default=0.0)


def parse_values(text: str | float | int | None, kind: type, option: str) -> list | None:
    """A comma list of numbers (``"0.5,1,2"``) as a list of ``kind``; None for None. Raises
    ValueError naming the option for anything that is not a positive number, or a repeat."""
    if text is None:
        return None
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ValueError(f"{option}: give a number or a comma list of numbers")
    out = []
    for x in items:
        try:
            v = kind(x)
        except ValueError:
            raise ValueError(f"{option}: {x!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not (isinstance(v, int) or math.isfinite(v)) or v <= 0:
            raise ValueError(f"{option}: {x!r} must be positive")
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"{option}: a value is repeated in {text!r}")
    return out


def point_name(budget: FrameBudget) -> str:
    return f"frames-{budget.num_frames}" if budget.num_frames else f"fps-{budget.fps:g}"


def sweep_points(base: FrameBudget, *, fps: Sequence[float] | None = None, num_frames: Sequence[int] | None = None,
                 max_frames: int | None = None) -> list[SweepPoint]:
    """One budget per value, each made from ``base`` as a single ``--fps`` / ``--num-frames``
    would be: a frame count lifts max_frames to at least itself; a rate keeps ``max_frames``
    (given) or base's cap; pixel bounds stay base's."""
    if (fps is None) == (num_frames is None):
        raise ValueError("sweep over --fps or over --num-frames, not both (nor neither)")
    points = []
    for value in (fps or num_frames or ()):
        if num_frames is not None:
            budget = base.with_overrides(num_frames=int(value), max_frames=max_frames)
        else:
            budget = base.with_overrides(fps=float(value), max_frames=max_frames)
        points.append(SweepPoint(point_name(budget), budget))
    return points


def reusing_loader(load: Callable[[FrameBudget], VideoLLM]) -> Callable[[FrameBudget], VideoLLM]:
    """A model loader for a sweep that loads once: a model that keeps its frame budget as a
    plain ``budget`` attribute (the HF backend: the budget only sets processor pixel bounds and
    the fps handed to it; frames are sampled by the runner) gets the new budget in place;
    others (reference policies, OpenAI-compatible servers) do not depend on it."""
    loaded: list[VideoLLM] = []

    def get(budget: FrameBudget) -> VideoLLM:
        if not loaded:
            loaded.append(load(budget))
        model = loaded[0]
        if hasattr(model, "budget"):
            model.budget = budget
        return model
    return get


def run_sweep(
    load_model: Callable[[FrameBudget], VideoLLM],
    manifest: str | Path,
    out_dir: str | Path,
    cfg: EvalConfig,
    points: Sequence[SweepPoint],
    selection: SampleFilter = SampleFilter(),
    *,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: bool = True,
    extra_run_info: dict | None = None,
) -> SweepResult:
    """Evaluate at every point into OUT/<point.name> (judging and the report over the points:
    videosafety.eval_pipeline.report_sweep)."""
    if not points:
        raise ValueError("a sweep needs at least one point")
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep points share a name: {names}")
    out = Path(out_dir)
    result = SweepResult(out=out)
    for point in points:
        run_dir = out / point.name
        summary = run_eval(load_model(point.budget), manifest, run_dir, replace(cfg, budget=point.budget), selection,
                           rank=rank, world=world, barrier=barrier, progress=progress,
                           extra_run_info={**(extra_run_info or {}), "sweep": {"point": point.name, "points": names}})
        result.runs.append((point, run_dir, summary))
    return result
