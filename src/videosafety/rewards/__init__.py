"""Rewards of VideoSafety-R1's safety-guided GRPO (stage 4, spec §3.4): pure functions, no torch.

r = r_format + r_task. r_format = 1 when the whole completion is
<think>…</think><answer>…</answer><vidType>v</vidType><textType>t</textType> (tags.py).
Safety task (dynamic reward adaptation), against tags.format_solution(answer, v, t):
    r_task = α · ROUGE(answer, reference) + γ_v · c_v + γ_t · c_t,
    α = α_min + (1 − c_v · c_t)(α_max − α_min),  α_min = 0.1, α_max = 0.5, γ_v = γ_t = 1,
with c_v, c_t = 1 when the predicted video/text label is right, and ROUGE the mean of the
ROUGE-1/2/L F-measures over tokens that work in all ten languages (rouge.py).
General types (general.py): multiple choice, numerical, OCR (1 − WER), free-form (ROUGE);
their prompts do not ask for the tags, so they get no format reward. `score` is the one
entry point (registry.py); adapters.py runs the same numbers in TRL, verl and EasyR1.
"""

from videosafety.rewards.adapters import (
    compute_score,
    easyr1_compute_score,
    trl_format_reward,
    trl_reward,
    trl_task_reward,
)
from videosafety.rewards.registry import PROBLEM_TYPES, ProblemType, RewardResult, register_problem_type, score
from videosafety.rewards.rouge import rouge
from videosafety.rewards.safety import DRAComponents, DRASettings, dra_components, dra_reward, format_reward

__all__ = [
    "PROBLEM_TYPES",
    "DRAComponents",
    "DRASettings",
    "ProblemType",
    "RewardResult",
    "compute_score",
    "dra_components",
    "dra_reward",
    "easyr1_compute_score",
    "format_reward",
    "register_problem_type",
    "rouge",
    "score",
    "trl_format_reward",
    "trl_reward",
    "trl_task_reward",
]
