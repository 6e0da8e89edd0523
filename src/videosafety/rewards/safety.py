"""The safety problem type's rewards (spec §3.4): the format reward and the DRA task reward.

Completions are the generated text with the end-of-turn token stripped by the caller (and
nothing else): the format reward is a full match, so a left-over ``<|im_end|>`` would make
every completion ill-formed. The TRL/verl/EasyR1 decoders skip special tokens already.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from videosafety import tags
from videosafety.rewards.rouge import rouge


def format_reward(completion: str) -> float:
    """1.0 iff the whole completion matches the spec's tag pattern (tags.is_well_formed)."""
    return 1.0 if tags.is_well_formed(completion) else 0.0


@dataclass(frozen=True)
class DRAComponents:
    """One DRA task reward and what it was made of, for logging without recomputing.

    video_correct and text_correct are c_v and c_t as 0.0/1.0; task is the reward itself,
    alpha · rouge + gamma_v · c_v + gamma_t · c_t."""

    rouge: float
    video_correct: float
    text_correct: float
    alpha: float
    task: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _reference(solution: str) -> tuple[str, int, int]:
    # A reference that cannot be read is a data bug, not a model failure: scoring against
    # it would still hand out plausible-looking label rewards and hide the bug.
    ref = tags.parse_tagged(solution)
    answer, video, query = ref.answer, ref.video_label, ref.query_label
    if not answer or video is None or query is None:
        checks = ((tags.ANSWER, not answer), (tags.VIDTYPE, video is None), (tags.TEXTTYPE, query is None))
        missing = [name for name, absent in checks if absent]
        raise ValueError(
            f"safety solution lacks a readable {', '.join(missing)} "
            f"(write it with tags.format_solution): {solution!r}"
        )
    return answer, video, query


@dataclass(frozen=True)
class DRASettings:
    """The DRA reward's constants (spec §3.4 defaults) and the ROUGE stemming switch, one
    object so that a recipe can set them (train.config GRPOSettings.reward) for ablations."""

    alpha_min: float = 0.1
    alpha_max: float = 0.5
    gamma_v: float = 1.0
    gamma_t: float = 1.0
    rouge_stem: bool = False  # English stemming in ROUGE (rouge.stem_english)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha_min <= self.alpha_max:
            raise ValueError(f"need 0 <= alpha_min <= alpha_max, got {self.alpha_min}, {self.alpha_max}")


DEFAULT_DRA = DRASettings()


def dra_components(
    completion: str,
    solution: str,
    alpha_min: float = 0.1,
    alpha_max: float = 0.5,
    gamma_v: float = 1.0,
    gamma_t: float = 1.0,
    *,
    rouge_stem: bool = False,
) -> DRAComponents:
    """The dynamic-reward-adaptation task reward of a completion against its reference.

    c_v (c_t) is 1 when the completion's <vidType> (<textType>) label equals the reference's;
    a missing or unreadable predicted label (anything but "0"/"1") is never equal.
    alpha = alpha_min + (1 − c_v·c_t)(alpha_max − alpha_min): the answer's ROUGE weighs more
    while a label is wrong. ROUGE is 0 when the completion has no <answer> block. The
    solution is ``tags.format_solution(answer, video_label, query_label)``; one without an
    answer or both labels raises ValueError."""
    if not 0.0 <= alpha_min <= alpha_max:
        raise ValueError(f"need 0 <= alpha_min <= alpha_max, got {alpha_min}, {alpha_max}")
    ref_answer, ref_video, ref_query = _reference(solution)
    pred = tags.parse_tagged(completion)
    c_v = 1.0 if pred.video_label == ref_video else 0.0
    c_t = 1.0 if pred.query_label == ref_query else 0.0
    alpha = alpha_min + (1.0 - c_v * c_t) * (alpha_max - alpha_min)
    r = rouge(pred.answer, ref_answer, stem=rouge_stem) if pred.answer is not None else 0.0
    return DRAComponents(
        rouge=r,
        video_correct=c_v,
        text_correct=c_t,
        alpha=alpha,
        task=alpha * r + gamma_v * c_v + gamma_t * c_t,
    )


def dra_with(completion: str, solution: str, settings: DRASettings = DEFAULT_DRA) -> DRAComponents:
    """dra_components under a DRASettings."""
    return dra_components(completion, solution, settings.alpha_min, settings.alpha_max, settings.gamma_v,
                          settings.gamma_t, rouge_stem=settings.rouge_stem)


def dra_reward(
    completion: str,
    solution: str,
    alpha_min: float = 0.1,
    alpha_max: float = 0.5,
    gamma_v: float = 1.0,
    gamma_t: float = 1.0,
) -> float:
    """r_task = alpha · ROUGE(answer, reference) + gamma_v · c_v + gamma_t · c_t (see dra_components)."""
    return dra_components(completion, solution, alpha_min, alpha_max, gamma_v, gamma_t).task
