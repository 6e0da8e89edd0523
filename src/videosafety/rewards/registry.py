"""Problem types and the one scoring entry point, r = r_format + r_task (spec §3.4).

A problem type says how to score a completion (its task reward, with named components),
whether its prompt asks for the reasoning tags (only then does the format reward apply),
and what its prompt appends to the user's query. The GRPO trainer and the engine adapters
all go through `score`, so every engine trains on the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from videosafety import tags
from videosafety.rewards import general
from videosafety.rewards.safety import DEFAULT_DRA, DRASettings, dra_with, format_reward

TaskFn = Callable[[str, str], Mapping[str, float]]

FORMAT: Final = "format"
TASK: Final = "task"


@dataclass(frozen=True)
class ProblemType:
    """How one kind of prompt is scored.

    task(completion, solution) returns the task reward's components, the reward itself
    under "task"; "format" is reserved for `score`. instruction is appended to the user's
    query so the model knows which answer form is scored."""

    name: str
    task: TaskFn
    uses_format: bool
    instruction: str


@dataclass(frozen=True)
class RewardResult:
    """total = components["format"] (present only for types that use it) + components["task"]."""

    total: float
    components: dict[str, float]


def _safety_task(completion: str, solution: str, settings: DRASettings = DEFAULT_DRA) -> dict[str, float]:
    # alpha is left out: it is fixed by the two label components, so logging it adds nothing.
    c = dra_with(completion, solution, settings)
    return {"rouge": c.rouge, "video_correct": c.video_correct, "text_correct": c.text_correct, TASK: c.task}


def _single(fn: Callable[[str, str], float]) -> TaskFn:
    def task(completion: str, solution: str) -> dict[str, float]:
        return {TASK: fn(completion, solution)}

    task.__name__ = fn.__name__
    return task


PROBLEM_TYPES: dict[str, ProblemType] = {
    pt.name: pt
    for pt in (
        ProblemType("safety", _safety_task, True, tags.GRPO_INSTRUCTION),
        ProblemType(
            "multiple_choice", _single(general.multiple_choice_reward), False, "Answer with the option's letter."
        ),
        ProblemType("numerical", _single(general.numerical_reward), False, "Answer with a number."),
        ProblemType("ocr", _single(general.ocr_reward), False, "Answer with the text exactly as it is written."),
        ProblemType("free_form", _single(general.free_form_reward), False, "Answer in one or two sentences."),
    )
}


def register_problem_type(pt: ProblemType, *, replace: bool = False) -> ProblemType:
    """Add a problem type to PROBLEM_TYPES; an existing name is refused unless replace=True."""
    if not isinstance(pt, ProblemType):
        raise TypeError(f"expected a ProblemType, got {type(pt).__name__}")
    if not isinstance(pt.name, str) or not pt.name:
        raise ValueError(f"problem type name must be non-empty text, got {pt.name!r}")
    if not callable(pt.task):
        raise TypeError(f"problem type {pt.name!r}: task must be callable")
    if pt.name in PROBLEM_TYPES and not replace:
        raise ValueError(f"problem type {pt.name!r} is already registered (pass replace=True to overwrite)")
    PROBLEM_TYPES[pt.name] = pt
    return pt


def get_problem_type(problem_type: str | ProblemType) -> ProblemType:
    """The registered type of that name (a ProblemType passes through); KeyError naming the known ones."""
    if isinstance(problem_type, ProblemType):
        return problem_type
    try:
        return PROBLEM_TYPES[problem_type]
    except (KeyError, TypeError):
        raise KeyError(
            f"unknown problem type {problem_type!r}; known: {', '.join(sorted(PROBLEM_TYPES))}"
        ) from None


def score(problem_type: str | ProblemType, completion: str, solution: str,
          dra: DRASettings | None = None) -> RewardResult:
    """Reward of one completion: format reward (types whose prompt asks for the tags) + task reward.

    For "safety" the components are format, rouge, video_correct, text_correct and task; `dra`
    sets its constants (a recipe's ablation; default the spec's). Other types ignore it."""
    pt = get_problem_type(problem_type)
    if dra is not None and pt.task is _safety_task:
        task = dict(_safety_task(completion, solution, dra))
    else:
        task = dict(pt.task(completion, solution))
    if TASK not in task:
        raise ValueError(f"problem type {pt.name!r}: task() must return a {TASK!r} component, got {sorted(task)}")
    if FORMAT in task:
        raise ValueError(f"problem type {pt.name!r}: {FORMAT!r} is reserved for the format reward")
    components = {FORMAT: format_reward(completion)} if pt.uses_format else {}
    components.update((k, float(v)) for k, v in task.items())
    return RewardResult(total=components.get(FORMAT, 0.0) + components[TASK], components=components)
