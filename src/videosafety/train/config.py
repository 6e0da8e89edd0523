"""Training configuration: YAML files plus `key=value` overrides from the command line.

One config object per run; it is written beside the checkpoints so a run always says what
made it. The frame budget is the same `FrameBudget` evaluation uses (one budget for all
stages: the reference recipe changed it between SFT and RL, we don't)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from videosafety.budget import FrameBudget

# What each stage trains (spec §3.2-3.4). "plain" is ordinary SFT with no alarm tokens, used for
# baselines and the demo model; "grpo" is stage 4.
Stage = Literal["plain", "1", "2", "cot", "grpo"]
STAGE_TRAINS: dict[str, tuple[str, ...]] = {
    "plain": ("llm",),
    "1": ("llm", "alarm"),
    "2": ("llm", "alarm", "heads"),
    "cot": ("llm",),
    "grpo": ("llm",),
}


class LearningRates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    llm: float = Field(1e-6, gt=0)
    alarm: float = Field(1e-5, gt=0)
    heads: float = Field(1e-5, gt=0)


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class RewardSettings(BaseModel):
    """The safety reward's constants (spec §3.4 defaults), recipe keys for ablations."""

    model_config = ConfigDict(extra="forbid")
    alpha_min: float = Field(0.1, ge=0)
    alpha_max: float = Field(0.5, ge=0)
    gamma_v: float = Field(1.0, ge=0)
    gamma_t: float = Field(1.0, ge=0)
    rouge_stem: bool = False  # English stemming in ROUGE (needs snowballstemmer: the [stem] extra)

    @model_validator(mode="after")
    def _order(self) -> "RewardSettings":
        if self.alpha_min > self.alpha_max:
            raise ValueError(f"alpha_min={self.alpha_min} exceeds alpha_max={self.alpha_max}")
        return self

    def dra(self):
        from videosafety.rewards.safety import DRASettings

        return DRASettings(**self.model_dump())


class GRPOSettings(BaseModel):
    """Stage 4 (spec §3.4). Defaults are the reference recipe's."""

    model_config = ConfigDict(extra="forbid")
    num_generations: int = Field(6, ge=2)  # G completions per prompt
    prompts_per_step: int = Field(8, ge=1)  # global: split across processes
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(768, ge=1)
    epsilon: float = Field(0.2, ge=0)
    epsilon_high: float | None = Field(None, ge=0)  # upper clip; None = epsilon
    beta: float = Field(0.04, ge=0)  # k3 KL weight; 0 = no reference model
    # |log pi_ref - log pi| bound inside the k3 KL; None: unclamped (the spec's formula). The
    # reference recipe clamps at 10 (configs/paper-grpo.yaml).
    kl_clamp: float | None = Field(None, gt=0)
    reward: RewardSettings = Field(default_factory=RewardSettings)
    num_iterations: int = Field(1, ge=1)  # optimizer steps per generated batch
    loss_aggregation: Literal["sequence", "token"] = "sequence"
    log_completions: int = Field(2, ge=0)  # completions per group written to completions.jsonl


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Stage
    model: str  # HF checkpoint (stage plain/1) or an alarm checkpoint (stage 2/cot)
    data: str  # records JSONL (videosafety.train.records); videos relative to its folder
    output_dir: str

    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; caps epochs (tests, smoke runs)
    per_device_batch_size: int = Field(1, ge=1)
    # Either a fixed accumulation, or a global batch the accumulation is derived from.
    gradient_accumulation_steps: int = Field(1, ge=1)
    global_batch_size: int | None = Field(None, ge=1)
    lr: LearningRates = Field(default_factory=LearningRates)
    lambda_v: float = Field(0.1, ge=0)
    lambda_t: float = Field(0.1, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0

    budget: FrameBudget = Field(default_factory=FrameBudget)
    max_length: int = Field(4096, ge=8)
    on_truncation: Literal["drop", "error"] = "drop"
    on_bad_video: Literal["error", "drop"] = "error"

    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    alarm_init: Literal["zeros", "copy"] = "zeros"

    save_every: int = Field(0, ge=0)  # optimizer steps between checkpoints; 0 = end only
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(1, ge=1)
    num_workers: int = Field(0, ge=0)  # data loading processes (decoding runs there)
    device: str = "auto"
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)  # stage grpo only
    # Stage cot appends the tagged-answer instruction to every query, the one GRPO's safety prompts
    # carry (tags.GRPO_INSTRUCTION): stages 3 and 4 see one prompt format. Off for data whose
    # queries already hold an instruction.
    cot_instruction: bool = True

    @property
    def instruction(self) -> str | None:
        from videosafety.tags import GRPO_INSTRUCTION

        return GRPO_INSTRUCTION if self.stage == "cot" and self.cot_instruction else None

    @property
    def trains(self) -> tuple[str, ...]:
        return STAGE_TRAINS[self.stage]

    @property
    def uses_alarms(self) -> bool:
        # GRPO takes an alarm checkpoint (stage 4) or a plain model: the checkpoint decides.
        return self.stage != "plain"

    @property
    def uses_heads(self) -> bool:
        return "heads" in self.trains

    def accumulation_for(self, world_size: int) -> int:
        if self.global_batch_size is None:
            return self.gradient_accumulation_steps
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(f"global_batch_size={self.global_batch_size} is not a multiple of "
                             f"per_device_batch_size x processes = {per_step}")
        return self.global_batch_size // per_step


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`a.b=value` pairs (value parsed as YAML) set nested keys."""
    out = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        node[parts[-1]] = _parse_value(value)
    return out


def load_config(path: str | Path | None, overrides: list[str] = (), **base: Any) -> TrainConfig:
    """A config from a YAML file (optional), keyword defaults, and overrides, in that order of
    precedence: overrides win. Errors name the file and the field."""
    data: dict = dict(base)
    name = "<command line>"
    if path is not None:
        name = str(path)
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{name}: a config must be a mapping")
        data.update(loaded)
    data = apply_overrides(data, list(overrides))
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_url=False))
        raise ValueError(f"{name}: {msgs}") from None
