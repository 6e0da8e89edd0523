"""The same rewards in other RL engines: TRL, verl and EasyR1. None of them is imported.

Every adapter goes through `registry.score`, so an engine trains on exactly the numbers our
own trainer logs. The imports are absolute so that verl and EasyR1, which load a reward
function from a file path, can be pointed at this very file (videosafety must be importable
in their workers):

- TRL: ``GRPOTrainer(reward_funcs=[trl_reward], ...)``, or ``[trl_format_reward,
  trl_task_reward]`` to log the two parts separately (TRL sums its reward functions; do not
  combine trl_reward with the other two). The dataset needs a ``solution`` column and may
  have a ``problem_type`` column (default "safety").
- verl: ``custom_reward_function.path=<this file>`` and ``custom_reward_function.name=compute_score``
  (``reward.custom_reward_function.*`` in newer releases); the problem type comes from the
  row's ``extra_info["problem_type"]``.
- EasyR1: ``worker.reward.reward_function=<this file>:easyr1_compute_score`` (batch, the
  default ``REWARD_TYPE``); EasyR1 passes only the response and the row's answer, so the answer
  is `easyr1_ground_truth(problem_type, solution)`.

verl and EasyR1 keep every returned key as a per-sample list that must be as long as the
batch, so in a batch mixing problem types each result carries all of ENGINE_COMPONENTS,
0.0 where the type has no such component (filter by problem type when reading those logs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from videosafety.rewards.registry import FORMAT, TASK, RewardResult, score

DEFAULT_PROBLEM_TYPE: Final = "safety"
ENGINE_COMPONENTS: Final[tuple[str, ...]] = (FORMAT, "rouge", "video_correct", "text_correct", TASK)


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a str as is; for conversational data (a list of
    {"role", "content"} messages) the last message's content, its text parts joined when
    the content is a list of {"type": "text", "text": ...} parts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(
                part.get("text", "") for part in content if isinstance(part, Mapping) and part.get("type") == "text"
            )
    raise TypeError(f"cannot read a completion from {type(completion).__name__}: {completion!r:.200}")


def _problem_types(problem_type: Sequence[str | None] | str | None, n: int) -> list[str]:
    if problem_type is None or isinstance(problem_type, str):
        return [problem_type or DEFAULT_PROBLEM_TYPE] * n
    if len(problem_type) != n:
        raise ValueError(f"{len(problem_type)} problem types for {n} completions")
    return [pt or DEFAULT_PROBLEM_TYPE for pt in problem_type]


def _score_batch(
    completions: Sequence[Any], solution: Sequence[str], problem_type: Sequence[str | None] | str | None
) -> list[RewardResult]:
    if len(solution) != len(completions):
        raise ValueError(f"{len(solution)} solutions for {len(completions)} completions")
    types = _problem_types(problem_type, len(completions))
    return [score(pt, completion_text(c), s) for pt, c, s in zip(types, completions, solution)]


def trl_reward(
    completions: Sequence[Any], solution: Sequence[str], problem_type: Sequence[str | None] | None = None, **kwargs: Any
) -> list[float]:
    """TRL reward function: r = r_format + r_task per completion.

    TRL calls reward functions as ``f(prompts=..., completions=..., completion_ids=...,
    **dataset_columns)`` (newer releases add e.g. trainer_state); everything but the
    completions and the ``solution``/``problem_type`` columns is ignored."""
    return [r.total for r in _score_batch(completions, solution, problem_type)]


def trl_format_reward(
    completions: Sequence[Any], solution: Sequence[str], problem_type: Sequence[str | None] | None = None, **kwargs: Any
) -> list[float]:
    """TRL reward function: the format part alone (0.0 for types whose prompt has no tags)."""
    return [r.components.get(FORMAT, 0.0) for r in _score_batch(completions, solution, problem_type)]


def trl_task_reward(
    completions: Sequence[Any], solution: Sequence[str], problem_type: Sequence[str | None] | None = None, **kwargs: Any
) -> list[float]:
    """TRL reward function: the task part alone."""
    return [r.components[TASK] for r in _score_batch(completions, solution, problem_type)]


# TRL logs each reward function as rewards/<__name__>; these read well next to each other.
trl_reward.__name__ = "videosafety_reward"
trl_format_reward.__name__ = "videosafety_format"
trl_task_reward.__name__ = "videosafety_task"


def _engine_components(result: RewardResult) -> dict[str, float]:
    return {**dict.fromkeys(ENGINE_COMPONENTS, 0.0), **result.components}


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None) -> dict[str, float]:
    """verl custom reward function: {"score": total, **components}.

    Signature as in verl's docs/preparation/reward_function.rst and NaiveRewardManager
    (verl/workers/reward_manager/naive.py), which calls it with keywords data_source,
    solution_str (decoded with skip_special_tokens=True), ground_truth (the row's
    reward_model["ground_truth"]) and extra_info, uses result["score"] as the reward when a
    dict comes back and logs the other keys. data_source is not used."""
    pt = extra_info.get("problem_type") if isinstance(extra_info, Mapping) else None
    result = score(pt or DEFAULT_PROBLEM_TYPE, solution_str, ground_truth)
    return {"score": result.total, **_engine_components(result)}


def easyr1_ground_truth(problem_type: str, solution: str) -> str:
    """The EasyR1 answer column: the solution itself for "safety" (the default type), else a
    JSON object {"problem_type", "solution"}, since EasyR1's reward manager hands the reward
    function nothing of the row but this string."""
    if problem_type == DEFAULT_PROBLEM_TYPE:
        return solution
    return json.dumps({"problem_type": problem_type, "solution": solution}, ensure_ascii=False, sort_keys=True)


def _easyr1_unpack(ground_truth: str) -> tuple[str | None, str]:
    if ground_truth.startswith("{"):
        try:
            packed = json.loads(ground_truth)
        except ValueError:
            packed = None
        if isinstance(packed, dict) and set(packed) == {"problem_type", "solution"}:
            return packed["problem_type"], packed["solution"]
    return None, ground_truth


def easyr1_compute_score(reward_inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """EasyR1 batch reward function: [{"overall": total, **components}, ...].

    Signature as in EasyR1's verl/workers/reward/function.py (BatchFunctionRewardManager
    passes a list of {"response", "response_length", "ground_truth"} dicts and reads
    "overall" as the reward, logging the other keys) and examples/reward_function/math.py.
    EasyR1 does not pass a problem type: it comes from an input's "problem_type" key, else
    from a ground truth written by `easyr1_ground_truth`, else it is "safety". A single dict
    (reward_type=sequential) gets a single dict back."""
    if isinstance(reward_inputs, Mapping):
        return easyr1_compute_score([reward_inputs])[0]  # type: ignore[return-value]
    out = []
    for item in reward_inputs:
        packed_type, solution = _easyr1_unpack(item["ground_truth"])
        pt = item.get("problem_type") or packed_type or DEFAULT_PROBLEM_TYPE
        result = score(pt, item["response"], solution)
        out.append({"overall": result.total, **_engine_components(result)})
    return out
