"""Safety-guided GRPO, stage 4 (spec §3.4), on accelerate: the project's own trainer.

TRL's GRPOTrainer (1.16) leaves the video out of the loss forward when prompts carry video, so
its loss is computed on a context without the video. Here every forward pass (generation,
old, reference and policy log-probabilities) gets the full multimodal batch — frames and alarm
tokens — and `VisualCheck` fails loudly if a video batch ever reaches one without the vision
encoder running.

One round, readable top to bottom:
1. P prompts (prompts_per_step / processes) become G·P rows: each prompt G times, with its
   problem type's answer-format instruction appended, alarm tokens placed when the model
   has them.
2. Sample one completion per row (temperature, top_p, max_new_tokens); a completion ends at
   and includes its first end-of-turn (or eos) token, everything after is masked.
3. Reward each completion with `videosafety.rewards.score` (format + task, per problem type);
   advantages `(r - mean_group) / (std_group + 1e-4)` per group of G (std with Bessel's
   correction, as TRL computes it).
4. num_iterations optimizer steps on that batch. Per token:
   ``-[min(rho*A, clip(rho, 1-eps, 1+eps_high)*A) - beta*KL]``, rho = pi/pi_old,
   ``KL = exp(x) - x - 1``, x = log pi_ref - log pi (clamped to ±kl_clamp when set); mean over each completion's tokens then
   over completions ("sequence"), or over all tokens ("token"), across all processes.
   With num_iterations == 1 pi_old is pi detached: rho is 1 and the clip never acts, which
   is exact for one update per batch (the reference code's behaviour, said here openly).

The reference is a frozen copy of the starting model (β > 0), or the same model with its LoRA
adapters disabled. Data parallel works like the SFT trainer: each process rewards its own
groups (a group never spans processes), gradients are summed by one explicit all-reduce per
step, and loss normalisers are global counts.

The file reads: the pure parts (advantages, masks, the per-token objective, aggregation), the
visual check, batches and groups, what a round and a step report (one log row per step), then
the trainer: setup, one round's data, one optimizer step. Resume, log rows, checkpoints and the
final save are the run loop's (train/loop.py), shared with the SFT trainer. `GRPOCallback`s see
each pass and each round (tests and benchmarks observe the trainer through them).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from accelerate.utils import set_seed
from transformers import GenerationConfig

# rewards.score is looked up at call time: benchmarks/bench_grpo.py times it by replacing it.
from videosafety import rewards as reward_registry
from videosafety import video as vio
from videosafety.models.alarm import (alarm_positions_of, end_of_turn_id_of, prepare_alarm_batch, vision_parameters,
                                      visual_token_ids_of)
from videosafety.models.base import ModelInput
from videosafety.train.config import TrainConfig
from videosafety.train.data import EpochSampler, record_input
from videosafety.train.lora import adapters_disabled, add_lora
from videosafety.train.loop import FINAL_DIR, Chunk, DropTally, drop_summary, finish_run, train_loop
from videosafety.train.records import GRPORecord, read_records
from videosafety.train.trainer import (
    load_for_stage,
    make_accelerator,
    prepare_training,
    sum_over_processes,
    trainable_groups,
)

COMPLETIONS_FILE = "completions.jsonl"
ADV_EPS = 1e-4  # spec: A = (r - mean) / (std + 1e-4)


# ---------------------------------------------------------------- pure parts (tested by hand)

def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) rewards, N a multiple of group_size, consecutive rows one group -> (N,) advantages."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)) / (grouped.std(dim=1, keepdim=True) + ADV_EPS)
    return advantages.view(-1)


def completion_mask(completion_ids: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """(N, T) ids -> (N, T) 0/1 mask: tokens up to and including the first stop token; a row
    without one keeps all T tokens (cut at max_new_tokens)."""
    is_stop = torch.zeros_like(completion_ids, dtype=torch.bool)
    for stop_id in stop_ids:
        is_stop |= completion_ids == stop_id
    rows, width = completion_ids.shape
    first = torch.where(is_stop.any(dim=1), is_stop.float().argmax(dim=1), torch.full((rows,), width - 1))
    return (torch.arange(width).unsqueeze(0) <= first.unsqueeze(1)).long()


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ids, (N, T, V) -> (N, T), one row at a time in float32:
    the full (N, T, V) float32 log-softmax would be G x 768 x 152k floats (~2.8 GB) at the
    recipe's scale."""
    rows = []
    for row_logits, row_ids in zip(logits, ids):
        scaled = row_logits.float() / temperature
        rows.append(scaled.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(scaled, dim=-1))
    return torch.stack(rows)


def grpo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                    advantages: torch.Tensor, *, epsilon: float, epsilon_high: float | None,
                    beta: float, kl_clamp: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token loss (N, T), per-token KL (N, T; zeros without a reference) and a (N, T) 0/1
    tensor of where the clip acted. logp carries the gradient. kl_clamp: the log-ratio
    x = log pi_ref - log pi is clamped to [-kl_clamp, kl_clamp] before the k3 estimate (the
    reference recipe's ±10 keeps exp(x) finite where the policy drifted far); None: no clamp."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    upper = epsilon if epsilon_high is None else epsilon_high
    clipped_ratio = torch.clamp(ratio, 1 - epsilon, 1 + upper)
    unclipped, clipped = ratio * adv, clipped_ratio * adv
    objective = torch.minimum(unclipped, clipped)
    if ref_logp is not None and beta:
        x = ref_logp - logp
        if kl_clamp is not None:
            x = torch.clamp(x, -kl_clamp, kl_clamp)
        kl = torch.exp(x) - x - 1
        objective = objective - beta * kl
    else:
        kl = torch.zeros_like(logp)
    return -objective, kl, (clipped < unclipped).float()


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str, *, num_completions: int,
              num_tokens: int) -> torch.Tensor:
    """Sum of this chunk's share of the global loss: "sequence" averages each completion's tokens
    and divides by the global number of completions; "token" divides the token sum by the global
    number of tokens. Summing the chunks of all processes gives the loss of the whole batch."""
    mask = mask.to(per_token.dtype)
    if how == "sequence":
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_seq.sum() / num_completions
    if how == "token":
        return (per_token * mask).sum() / num_tokens
    raise ValueError(f"loss_aggregation must be 'sequence' or 'token', got {how!r}")


# ---------------------------------------------------------------- the visual-feature check

def vision_modules(base) -> list[torch.nn.Module]:
    """The top-level modules of a video LLM that hold only vision-side parameters (encoder,
    projector): the ones a video batch must run through."""
    vision = {id(p) for p in vision_parameters(base)}
    inner = getattr(base, "model", base)
    modules = [child for _, child in inner.named_children()
               if any(True for _ in child.parameters()) and all(id(p) in vision for p in child.parameters())]
    if not modules:
        raise TypeError(f"cannot find the vision modules of {type(base).__name__}")
    return modules


class VisualCheck:
    """Counts vision-encoder calls; `expect` raises if a batch holding video went through a
    forward pass without them (one public GRPO fork silently dropped the video there)."""

    def __init__(self, *bases):
        self.calls = 0
        self._handles = [module.register_forward_hook(self._hook) for base in bases for module in vision_modules(base)]

    def _hook(self, *_):
        self.calls += 1

    @contextmanager
    def expect(self, batch: dict, has_video: bool, what: str):
        if has_video and not any(k.startswith("pixel_values") for k in batch):
            raise RuntimeError(f"{what}: the batch holds video rows but no pixel values: the model would "
                               "compute this pass without the video")
        before = self.calls
        yield
        if has_video and self.calls == before:
            raise RuntimeError(f"{what}: a video batch went through the model but the vision encoder never "
                               "ran: the pass was computed without the video")

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


# ---------------------------------------------------------------- batches

def _per_token_keys(batch: dict, rows: int, length: int) -> list[str]:
    return [k for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() >= 2
            and tuple(v.shape[:2]) == (rows, length) and not k.startswith("pixel_values")]


def extend_with_completions(prompt: dict, completion_ids: torch.Tensor, mask: torch.Tensor) -> dict:
    """The prompt batch with each row's completion appended: ids, the attention mask (0 past the
    end of a completion), and zeros for other per-token tensors (e.g. mm_token_type_ids:
    completions are text). Media tensors pass through untouched."""
    ids = prompt["input_ids"]
    rows, length = ids.shape
    out = dict(prompt)
    for key in _per_token_keys(prompt, rows, length):
        tensor = prompt[key]
        if key == "input_ids":
            tail = completion_ids.to(tensor.dtype)
        elif key == "attention_mask":
            tail = mask.to(tensor.dtype)
        else:
            tail = tensor.new_zeros((rows, completion_ids.shape[1], *tensor.shape[2:]))
        out[key] = torch.cat([tensor, tail], dim=1)
    if "attention_mask" not in out:
        out["attention_mask"] = torch.cat([torch.ones_like(ids), mask.to(ids.dtype)], dim=1)
    return out


@dataclass(frozen=True)
class Group:
    """One prompt's G rows: the prompt batch with the completions appended. Groups are the unit
    of every log-probability pass: processor outputs are never split or merged across prompts,
    so the trainer needs no knowledge of a family's media-tensor layout (generation, which only
    needs the sampled ids back, runs on all prompts at once)."""

    record_id: str
    full: dict  # prompt + completion tensors (G rows)
    alarm_positions: torch.Tensor | None  # (G, 2)
    completion_ids: torch.Tensor  # (G, T)
    mask: torch.Tensor  # (G, T)
    has_video: bool
    texts: list[str]
    rewards: torch.Tensor  # (G,)
    components: list[dict]
    advantages: torch.Tensor  # (G,)
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None


# ---------------------------------------------------------------- what a round and a step report

REWARD_COMPONENTS = ("format", "rouge", "video_correct", "text_correct", "task")  # as rewards.score names them


@dataclass(frozen=True)
class RoundStats:
    """A round's completions and groups, summed over every process (longest: the maximum)."""

    reward: float
    format: float  # reward components (REWARD_COMPONENTS), 0 where a problem type has none
    rouge: float
    video_correct: float
    text_correct: float
    task: float
    completions: float
    length: float  # completion tokens
    groups: float
    all_correct: float  # groups whose every completion got both labels right
    all_wrong: float  # groups whose every completion got both labels wrong
    zero_std: float  # groups of equal rewards: zero advantages, no learning signal
    longest: int  # the longest completion, in tokens


@dataclass(frozen=True)
class PolicyUpdate:
    """One optimizer step on a round, summed over every process."""

    loss: float
    kl: float  # summed over completion tokens
    clipped: float  # completion tokens where the clip acted
    tokens: float  # completion tokens
    grad_norm: float | None
    lr: list[float]  # per parameter group, after the step


@dataclass(frozen=True)
class GRPOStepStats:
    """One optimizer step and the round it trained on: its log row."""

    epoch: int
    iteration: int  # which of the round's num_iterations steps
    update: PolicyUpdate
    round_stats: RoundStats
    generation_seconds: float  # the round's sampling, rewards and fixed log-probabilities
    seconds: float  # since the round began

    def log_row(self, step: int) -> dict:
        update, stats = self.update, self.round_stats
        completions, groups, tokens = max(stats.completions, 1.0), max(stats.groups, 1.0), max(update.tokens, 1.0)
        return {
            "step": step, "epoch": self.epoch, "iteration": self.iteration,
            "loss": round(update.loss, 6),
            "reward": round(stats.reward / completions, 4),
            "reward_format": round(stats.format / completions, 4),
            "reward_rouge": round(stats.rouge / completions, 4),
            "video_correct": round(stats.video_correct / completions, 4),
            "text_correct": round(stats.text_correct / completions, 4),
            "reward_task": round(stats.task / completions, 4),
            "groups_all_correct": round(stats.all_correct / groups, 4),
            "groups_all_wrong": round(stats.all_wrong / groups, 4),
            "groups_zero_std": round(stats.zero_std / groups, 4),
            "kl": round(update.kl / tokens, 6),
            "clip_fraction": round(update.clipped / tokens, 4),
            "completion_length_mean": round(stats.length / completions, 2),
            "completion_length_max": stats.longest,
            "completions": int(stats.completions),
            "lr": [round(rate, 10) for rate in update.lr],
            "grad_norm": None if update.grad_norm is None else round(update.grad_norm, 6),
            "generation_seconds": round(self.generation_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


def round_seed(seed: int, round_index: int, rank: int) -> int:
    """The sampling seed of a round on a process. It depends on these only, so a resumed run
    draws the completions the uninterrupted run drew."""
    return seed * 1_000_003 + round_index * 997 + rank


# ---------------------------------------------------------------- the trainer

class GRPOCallback:
    """Hooks into a run, in the manner of TRL's callbacks: for inspection, tests and benchmarks.
    Every method is optional; each runs on every process."""

    def on_setup(self, trainer: GRPOTrainer) -> None:
        """After setup, before the first round: models, optimizer and VisualCheck exist."""

    def on_pass_begin(self, what: str, has_video: bool) -> None:
        """Before a forward pass ("generation", "old log-probs", "reference log-probs", "policy
        log-probs"), once VisualCheck has found the batch's pixel values."""

    def on_pass_end(self, what: str) -> None:
        """After the pass, before VisualCheck checks the vision encoder ran."""

    def on_round(self, groups: list[Group]) -> None:
        """A round's groups (completions, rewards, advantages, fixed log-probabilities), before the
        optimizer steps on them."""


class GRPOTrainer:
    """Stage 4. `train` resumes from the newest complete checkpoint in output_dir and returns the
    folder of the final model."""

    step_logs = (COMPLETIONS_FILE,)  # rows keyed by step: trimmed on resume like the log (train/loop.py)

    def __init__(self, cfg: TrainConfig, *, progress: bool = True, callbacks: Sequence[GRPOCallback] = ()):
        if cfg.stage != "grpo":
            raise ValueError(f"GRPOTrainer runs stage grpo, got {cfg.stage!r}")
        self.cfg, self.grpo = cfg, cfg.grpo
        self.progress = progress
        self.callbacks = list(callbacks)
        self.dropped = 0  # prompts whose video could not be read (on_bad_video: drop)
        self.drops = DropTally()

    # -- setup
    def setup(self) -> None:
        cfg, grpo = self.cfg, self.grpo
        self.accelerator = accelerator = make_accelerator(cfg)
        set_seed(cfg.seed)
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        if grpo.prompts_per_step % self.world:
            raise ValueError(f"grpo.prompts_per_step={grpo.prompts_per_step} is not a multiple of the "
                             f"{self.world} processes")
        self.per_rank = grpo.prompts_per_step // self.world

        loaded = load_for_stage(cfg)
        self.llm, self.alarm = loaded.llm, loaded.alarm
        model = loaded.model
        model.train()
        if cfg.lora is not None:
            add_lora(self.llm.model, cfg.lora)
        self.ref = None
        if grpo.beta and cfg.lora is None:
            self.ref = copy.deepcopy(model).eval()  # frozen copy of the starting model
            for param in self.ref.parameters():
                param.requires_grad_(False)
        if cfg.gradient_checkpointing:
            getattr(model, "base", model).activation_checkpointing_enable({"use_reentrant": False})
        param_groups = trainable_groups(model, cfg)
        self.trainable = [param for group in param_groups for param in group["params"]]

        self.records = read_records(cfg.data, GRPORecord)
        if not self.records:
            raise ValueError(f"{cfg.data}: no records")
        self.sampler = EpochSampler(len(self.records), seed=cfg.seed, rank=self.rank, world=self.world)
        rounds_per_epoch = len(self.sampler.order(0)) // self.per_rank
        if rounds_per_epoch == 0:
            raise ValueError(f"{cfg.data}: {len(self.records)} records give no full round of "
                             f"{grpo.prompts_per_step} prompts")
        total_steps = rounds_per_epoch * cfg.epochs * grpo.num_iterations
        self.total_steps = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)

        self.model, self.optimizer, self.scheduler, self.manual_reduce = prepare_training(
            accelerator, model, param_groups, cfg, self.total_steps)
        if self.world > 1 and not self.manual_reduce:
            raise NotImplementedError("stage grpo supports single-process and DDP runs; FSDP/DeepSpeed "
                                      "would need the engine's own gradient reduction here")
        self.unwrapped = accelerator.unwrap_model(self.model)
        base = getattr(self.unwrapped, "base", self.unwrapped)
        self.visual_check = VisualCheck(base, *([] if self.ref is None else [getattr(self.ref, "base", self.ref)]))
        tokenizer = self.llm.processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = base.generation_config.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        self.stop_ids = {end_of_turn_id_of(self.llm.processor), *eos}
        # A sampled media placeholder would make the next forward's placeholder count disagree
        # with the pixel values; trained models never emit them, random ones do.
        self.media_placeholder_ids = sorted(visual_token_ids_of(self.llm.processor, base.config))
        for callback in self.callbacks:
            callback.on_setup(self)

    # -- one round's data
    def _inputs(self, records) -> tuple[list, list[ModelInput]]:
        root = Path(self.cfg.data).parent
        kept, inputs = [], []
        for record in records:
            try:
                instruction = reward_registry.PROBLEM_TYPES[record.problem_type].instruction
                inp = record_input(record, root, self.cfg.budget, instruction)
            except vio.VideoError as e:
                if self.cfg.on_bad_video == "error":
                    raise RuntimeError(f"record {record.id!r}: {e}") from e
                self.dropped += 1
                self.drops.add(record.id, "bad_video")
                continue
            kept.append(record)
            inputs.append(inp)
        return kept, inputs

    def _rows_batch(self, rows: list[ModelInput]) -> tuple[dict, torch.Tensor | None]:
        """One processor call over the rows, alarm tokens placed when the model has them."""
        if self.alarm is not None:
            batch, _ = prepare_alarm_batch(self.llm, rows, self.alarm.ids)
        else:
            batch = self.llm.prepare_batch(rows)
        batch = dict(batch)
        pos = alarm_positions_of(batch["input_ids"], self.alarm.ids) if self.alarm is not None else None
        return batch, pos

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    @contextmanager
    def _forward_pass(self, batch: dict, has_video: bool, what: str):
        """VisualCheck around one forward pass, announced to the callbacks."""
        with self.visual_check.expect(batch, has_video, what):
            for callback in self.callbacks:
                callback.on_pass_begin(what, has_video)
            try:
                yield
            finally:
                for callback in self.callbacks:
                    callback.on_pass_end(what)

    @torch.no_grad()
    def _generate(self, batch: dict, has_video: bool, seed: int) -> torch.Tensor:
        grpo = self.grpo
        base = getattr(self.unwrapped, "base", self.unwrapped)
        # A fresh config: whatever else a checkpoint's generation_config sets (repetition penalty,
        # min_new_tokens, no_repeat_ngram_size, ...) would sample from a distribution other than the
        # one the loss scores. Only its suppressed tokens carry over (plus media placeholders).
        generation_config = GenerationConfig(
            do_sample=True, temperature=grpo.temperature, top_p=grpo.top_p, top_k=0,
            max_new_tokens=grpo.max_new_tokens, eos_token_id=sorted(self.stop_ids), pad_token_id=self.pad_id,
            bos_token_id=base.generation_config.bos_token_id,
            suppress_tokens=sorted({*(base.generation_config.suppress_tokens or []), *self.media_placeholder_ids}))
        self.unwrapped.eval()  # no dropout while sampling; KV cache on (checkpointing turns it off in train mode)
        try:
            devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), self._forward_pass(batch, has_video, "generation"):
                torch.manual_seed(seed)
                out = self.unwrapped.generate(**self._to_device(batch), generation_config=generation_config)
        finally:
            self.unwrapped.train()
        return out[:, batch["input_ids"].shape[1]:].cpu()

    def _logp(self, module, group: Group, what: str) -> torch.Tensor:
        """Per-token log-probabilities (G, T) of a group's completions under `module`, computed on
        the full multimodal input (video and alarm embeddings included)."""
        device = self.accelerator.device
        completion_ids = group.completion_ids.to(device)
        kwargs = dict(self._to_device(group.full), use_cache=False, logits_to_keep=completion_ids.shape[1] + 1)
        with self._forward_pass(group.full, group.has_video, what), self.accelerator.autocast():
            if group.alarm_positions is not None:
                logits = module(alarm_positions=group.alarm_positions.to(device), heads=False, **kwargs).logits
            else:
                logits = module(**kwargs).logits
        return token_logprobs(logits[:, :-1], completion_ids, self.grpo.temperature)

    @torch.no_grad()
    def _fixed_logps(self, group: Group) -> Group:
        """The group with pi_old (only when the batch is reused: num_iterations > 1) and pi_ref,
        computed once per batch."""
        old_logp = ref_logp = None
        if self.grpo.num_iterations > 1:
            old_logp = self._logp(self.unwrapped, group, "old log-probs").cpu()
        if self.grpo.beta:
            if self.ref is not None:
                ref_logp = self._logp(self.ref, group, "reference log-probs").cpu()
            else:
                with adapters_disabled(self.unwrapped):
                    ref_logp = self._logp(self.unwrapped, group, "reference log-probs").cpu()
        return replace(group, old_logp=old_logp, ref_logp=ref_logp)

    def _make_group(self, record, inp: ModelInput, completion_ids: torch.Tensor) -> Group:
        """A prompt's group from its G sampled completions: rewards, advantages, the group's own
        batch (prompt + completions) and its fixed log-probabilities."""
        mask = completion_mask(completion_ids, self.stop_ids)
        width = int(mask.sum(dim=1).max())  # drop columns no completion of this group reached
        completion_ids, mask = completion_ids[:, :width], mask[:, :width]
        completion_ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids, self.pad_id))
        texts = []
        for row, row_mask in zip(completion_ids, mask):
            ids = row[: int(row_mask.sum())].tolist()
            if ids and ids[-1] in self.stop_ids:
                ids = ids[:-1]  # the format reward checks the text without the end-of-turn token
            texts.append(self.llm.processor.tokenizer.decode(ids, skip_special_tokens=True))
        dra = self.grpo.reward.dra()
        results = [reward_registry.score(record.problem_type, text, record.solution, dra) for text in texts]
        reward = torch.tensor([result.total for result in results], dtype=torch.float32)
        batch, alarm_positions = self._rows_batch([inp] * self.grpo.num_generations)
        group = Group(record.id, extend_with_completions(batch, completion_ids, mask), alarm_positions,
                      completion_ids, mask, inp.has_video, texts, reward,
                      [dict(result.components) for result in results], group_advantages(reward, len(texts)))
        return self._fixed_logps(group)

    def _make_round(self, records, seed: int) -> list[Group]:
        """Sample G completions for every prompt of the round — one generate call for all prompts
        the processor can batch (equal frame counts), since decoding is the step's longest part —
        then build each prompt's group."""
        records, inputs = self._inputs(records)
        num_generations = self.grpo.num_generations
        buckets: dict = {}
        for i, inp in enumerate(inputs):
            buckets.setdefault(self.llm.batch_key(inp), []).append(i)
        completions: list[torch.Tensor | None] = [None] * len(inputs)
        for bucket, indices in enumerate(buckets.values()):
            batch, _ = self._rows_batch([inputs[i] for i in indices for _ in range(num_generations)])
            has_video = any(inputs[i].has_video for i in indices)
            out = self._generate(batch, has_video, seed + 7919 * bucket)  # a seed per generate call
            for slot, i in enumerate(indices):
                completions[i] = out[slot * num_generations:(slot + 1) * num_generations]
        return [self._make_group(record, inp, completion_ids)
                for record, inp, completion_ids in zip(records, inputs, completions)]

    def _round_stats(self, groups: list[Group]) -> RoundStats:
        summed = [f.name for f in fields(RoundStats) if f.name != "longest"]
        totals = dict.fromkeys(summed, 0.0)
        longest = 0
        for group in groups:
            lengths = group.mask.sum(dim=1).float()
            longest = max(longest, int(lengths.max()))
            labelled = all("video_correct" in scores for scores in group.components)
            both_right = [scores.get("video_correct", 0.0) * scores.get("text_correct", 0.0)
                          for scores in group.components]
            of_group = {
                **{name: sum(scores.get(name, 0.0) for scores in group.components) for name in REWARD_COMPONENTS},
                "reward": float(group.rewards.sum()), "completions": len(group.texts), "length": float(lengths.sum()),
                "groups": 1.0, "all_correct": float(labelled and all(right == 1 for right in both_right)),
                "all_wrong": float(labelled and all(right == 0 for right in both_right)),
                "zero_std": float(group.rewards.std() == 0)}
            for name in summed:
                totals[name] += of_group[name]
        values = sum_over_processes(self.accelerator, [totals[name] for name in summed], torch.float64)
        if self.world > 1:
            device = self.accelerator.device
            longest = int(self.accelerator.reduce(torch.tensor([longest], device=device), reduction="max"))
        return RoundStats(**dict(zip(summed, values)), longest=longest)

    # -- one optimizer step on a round
    def _step(self, groups: list[Group]) -> PolicyUpdate:
        accelerator, grpo = self.accelerator, self.grpo
        num_completions, num_tokens = sum_over_processes(accelerator, [
            sum(len(group.texts) for group in groups), sum(int(group.mask.sum()) for group in groups)], torch.long)
        loss_sum = kl_sum = clipped_sum = token_sum = 0.0
        for group in groups:
            sync = accelerator.no_sync(self.model) if self.world > 1 else nullcontext()
            with sync:
                logp = self._logp(self.model, group, "policy log-probs")
                old = group.old_logp.to(logp.device) if group.old_logp is not None else logp.detach()
                ref = group.ref_logp.to(logp.device) if group.ref_logp is not None else None
                mask = group.mask.to(logp.device)
                per_token, kl, clipped = grpo_token_loss(logp, old, ref, group.advantages.to(logp.device),
                                                         epsilon=grpo.epsilon, epsilon_high=grpo.epsilon_high,
                                                         beta=grpo.beta, kl_clamp=grpo.kl_clamp)
                loss = aggregate(per_token, mask, grpo.loss_aggregation, num_completions=num_completions,
                                 num_tokens=num_tokens)
                accelerator.backward(loss)
            token_mask = mask.float()
            loss_sum += float(loss.detach())
            kl_sum += float((kl.detach() * token_mask).sum())
            clipped_sum += float((clipped * token_mask).sum())
            token_sum += float(token_mask.sum())
        if self.manual_reduce:
            for param in self.trainable:  # a process without prompts this round contributes zeros
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.SUM)
        grad_norm = None
        if self.cfg.max_grad_norm is not None:
            grad_norm = float(accelerator.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, kl_sum, clipped_sum, token_sum = sum_over_processes(
            accelerator, [loss_sum, kl_sum, clipped_sum, token_sum], torch.float64)
        return PolicyUpdate(loss=loss_sum, kl=kl_sum, clipped=clipped_sum, tokens=token_sum, grad_norm=grad_norm,
                            lr=[group["lr"] for group in self.optimizer.param_groups])

    # -- the data: one chunk per round, its prompts
    def chunks(self, epoch: int, offset: int) -> Iterator[Chunk[list[GRPORecord]]]:
        """Rounds of this process's prompts from prompt `offset` of `epoch` on; an epoch's last
        prompts that fill no round are left out."""
        while epoch < self.cfg.epochs:
            order = self.sampler.order(epoch)
            while offset + self.per_rank <= len(order):
                records = [self.records[i] for i in order[offset:offset + self.per_rank]]
                offset += self.per_rank
                yield Chunk(records, epoch, offset)
            epoch, offset = epoch + 1, 0

    def train_on(self, chunk: Chunk[list[GRPORecord]], step: int, steps_left: int) -> Iterator[GRPOStepStats]:
        """A round: sample and score the groups, then num_iterations optimizer steps on them."""
        started = time.perf_counter()
        groups = self._make_round(chunk.data, round_seed(self.cfg.seed, step // self.grpo.num_iterations, self.rank))
        generation_seconds = time.perf_counter() - started
        for callback in self.callbacks:
            callback.on_round(groups)
        round_stats = self._round_stats(groups)
        iterations = min(self.grpo.num_iterations, steps_left)
        for iteration in range(iterations):
            update = self._step(groups)
            yield GRPOStepStats(epoch=chunk.epoch, iteration=iteration, update=update, round_stats=round_stats,
                                generation_seconds=generation_seconds, seconds=time.perf_counter() - started)
        if self.accelerator.is_main_process and groups and self.grpo.log_completions:
            self._log_completions(step + iterations, groups)

    def _log_completions(self, step: int, groups: list[Group]) -> None:
        """The first log_completions completions of every group of the round (this process's)."""
        with open(Path(self.cfg.output_dir) / COMPLETIONS_FILE, "a", encoding="utf-8") as f:
            for group in groups:
                for i in range(min(self.grpo.log_completions, len(group.texts))):
                    f.write(json.dumps({"step": step, "record_id": group.record_id, "completion": group.texts[i],
                                        "reward": round(float(group.rewards[i]), 4),
                                        "advantage": round(float(group.advantages[i]), 4),
                                        "components": group.components[i]}, ensure_ascii=False) + "\n")

    # -- the run
    def train(self, *, stop_after_steps: int | None = None) -> Path:
        """stop_after_steps ends the process's work early (as a kill would) without saving a
        final model: for resume tests."""
        self.setup()
        out = Path(self.cfg.output_dir)
        try:
            finished = train_loop(self, desc="stage grpo", show=("reward", "reward_format"), progress=self.progress,
                                  stop_after_steps=stop_after_steps)
        finally:
            self.visual_check.close()
        if finished:
            reasons, times = self.drops.gathered(self.accelerator)
            finish_run(self.accelerator, out, self.trainable, self.unwrapped, self.llm.processor,
                       drops=drop_summary("grpo", reasons, times, len(self.records), unit="prompt"))
        return out / FINAL_DIR


def run_grpo(cfg: TrainConfig, *, progress: bool = True, stop_after_steps: int | None = None,
             callbacks: Sequence[GRPOCallback] = ()) -> Path:
    """Train stage 4; returns the folder of the final model. Resumes from the newest complete
    checkpoint in output_dir."""
    return GRPOTrainer(cfg, progress=progress, callbacks=callbacks).train(stop_after_steps=stop_after_steps)
