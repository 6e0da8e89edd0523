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
   ``KL = exp(x) - x - 1``, x = log pi_ref - log pi; mean over each completion's tokens then
   over completions ("sequence"), or over all tokens ("token"), across all processes.
   With num_iterations == 1 pi_old is pi detached: rho is 1 and the clip never acts, which
   is exact for one update per batch (the reference code's behaviour, said here openly).

The reference is a frozen copy of the starting model (β > 0), or the same model with its LoRA
adapters disabled. Data parallel works like the SFT trainer: each process rewards its own
groups (a group never spans processes), gradients are summed by one explicit all-reduce per
step, and loss normalisers are global counts.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from videosafety import video as vio
from videosafety.models.alarm import (
    alarm_positions_of,
    end_of_turn_id_of,
    prepare_alarm_batch,
    vision_parameters,
    visual_token_ids_of,
)
from videosafety.models.base import ModelInput
from videosafety.rewards import PROBLEM_TYPES, score
from videosafety.train.config import TrainConfig
from videosafety.train.data import EpochSampler, record_input
from videosafety.train.lora import adapters_disabled, add_lora
from videosafety.train.records import GRPORecord, read_records
from videosafety.train.trainer import (FINAL_DIR, finish_run, latest_checkpoint, load_checkpoint, load_for_stage,
                                       make_accelerator, make_optimizer, save_checkpoint, trainable_groups)

# accelerate, transformers and tqdm are imported where used: they take seconds to import, and
# the pure parts (advantages, KL, aggregation) do not need them.

ADV_EPS = 1e-4  # spec: A = (r - mean) / (std + 1e-4)


# ---------------------------------------------------------------- pure parts (tested by hand)

def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) rewards, N a multiple of group_size, consecutive rows one group -> (N,) advantages."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    adv = (grouped - grouped.mean(dim=1, keepdim=True)) / (grouped.std(dim=1, keepdim=True) + ADV_EPS)
    return adv.view(-1)


def completion_mask(completion_ids: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """(N, T) ids -> (N, T) 0/1 mask: tokens up to and including the first stop token; a row
    without one keeps all T tokens (cut at max_new_tokens)."""
    is_stop = torch.zeros_like(completion_ids, dtype=torch.bool)
    for s in stop_ids:
        is_stop |= completion_ids == s
    n, t = completion_ids.shape
    first = torch.where(is_stop.any(dim=1), is_stop.float().argmax(dim=1), torch.full((n,), t - 1))
    return (torch.arange(t).unsqueeze(0) <= first.unsqueeze(1)).long()


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ids, (N, T, V) -> (N, T), one row at a time in float32:
    the full (N, T, V) float32 log-softmax would be G x 768 x 152k floats (~2.8 GB) at the
    recipe's scale."""
    rows = []
    for row_logits, row_ids in zip(logits, ids):
        x = row_logits.float() / temperature
        rows.append(x.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(x, dim=-1))
    return torch.stack(rows)


def grpo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                    advantages: torch.Tensor, *, epsilon: float, epsilon_high: float | None,
                    beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token loss (N, T), per-token KL (N, T; zeros without a reference) and a (N, T) 0/1
    tensor of where the clip acted. logp carries the gradient."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    hi = epsilon if epsilon_high is None else epsilon_high
    clipped_ratio = torch.clamp(ratio, 1 - epsilon, 1 + hi)
    unclipped, clipped = ratio * adv, clipped_ratio * adv
    objective = torch.minimum(unclipped, clipped)
    if ref_logp is not None and beta:
        x = ref_logp - logp
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
    mods = [child for _, child in inner.named_children()
            if any(True for _ in child.parameters()) and all(id(p) in vision for p in child.parameters())]
    if not mods:
        raise TypeError(f"cannot find the vision modules of {type(base).__name__}")
    return mods


class VisualCheck:
    """Counts vision-encoder calls; `expect` raises if a batch holding video went through a
    forward pass without them (one public GRPO fork silently dropped the video there)."""

    def __init__(self, *bases):
        self.calls = 0
        self._handles = [m.register_forward_hook(self._hook) for b in bases for m in vision_modules(b)]

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
        for h in self._handles:
            h.remove()


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
    for k in _per_token_keys(prompt, rows, length):
        v = prompt[k]
        if k == "input_ids":
            tail = completion_ids.to(v.dtype)
        elif k == "attention_mask":
            tail = mask.to(v.dtype)
        else:
            tail = v.new_zeros((rows, completion_ids.shape[1], *v.shape[2:]))
        out[k] = torch.cat([v, tail], dim=1)
    if "attention_mask" not in out:
        out["attention_mask"] = torch.cat([torch.ones_like(ids), mask.to(ids.dtype)], dim=1)
    return out


@dataclass
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


# ---------------------------------------------------------------- the trainer

class GRPOTrainer:
    def __init__(self, cfg: TrainConfig, *, progress: bool = True):
        if cfg.stage != "grpo":
            raise ValueError(f"GRPOTrainer runs stage grpo, got {cfg.stage!r}")
        self.cfg, self.grpo = cfg, cfg.grpo
        self.progress = progress
        self.dropped = 0  # prompts whose video could not be read (on_bad_video: drop)

    # -- setup
    def _setup(self):
        from accelerate.utils import DistributedType, set_seed

        cfg, grpo = self.cfg, self.grpo
        accelerator = self.accelerator = make_accelerator(cfg)
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
            for p in self.ref.parameters():
                p.requires_grad_(False)
        if cfg.gradient_checkpointing:
            getattr(model, "base", model).activation_checkpointing_enable({"use_reentrant": False})
        groups = trainable_groups(model, cfg)
        self.trainable = [p for grp in groups for p in grp["params"]]

        self.records = read_records(cfg.data, GRPORecord)
        if not self.records:
            raise ValueError(f"{cfg.data}: no records")

        self.sampler = EpochSampler(len(self.records), seed=cfg.seed, rank=self.rank, world=self.world)
        rounds_per_epoch = len(self.sampler.order(0)) // self.per_rank
        if rounds_per_epoch == 0:
            raise ValueError(f"{cfg.data}: {len(self.records)} records give no full round of "
                             f"{grpo.prompts_per_step} prompts")
        self.rounds_per_epoch = rounds_per_epoch
        total = rounds_per_epoch * cfg.epochs * grpo.num_iterations
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        self.total_steps = total

        self.optimizer, self.scheduler = make_optimizer(groups, cfg, total)
        self.model, self.optimizer = accelerator.prepare(model, self.optimizer)
        accelerator.register_for_checkpointing(self.scheduler)
        self.manual_reduce = self.world > 1 and accelerator.distributed_type in (DistributedType.MULTI_CPU,
                                                                         DistributedType.MULTI_GPU)
        if self.world > 1 and not self.manual_reduce:
            raise NotImplementedError("stage grpo supports single-process and DDP runs; FSDP/DeepSpeed "
                                      "would need the engine's own gradient reduction here")
        self.unwrapped = accelerator.unwrap_model(self.model)
        base = getattr(self.unwrapped, "base", self.unwrapped)
        self.visual = VisualCheck(base, *([] if self.ref is None else [getattr(self.ref, "base", self.ref)]))
        tok = self.llm.processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

        eos = base.generation_config.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        self.stop_ids = {end_of_turn_id_of(self.llm.processor), *eos}

        # A sampled media placeholder would make the next forward's placeholder count disagree
        # with the pixel values; trained models never emit them, random ones do.
        self.never = sorted(visual_token_ids_of(self.llm.processor, base.config))

    # -- one round's data
    def _inputs(self, records) -> tuple[list, list[ModelInput]]:
        root = Path(self.cfg.data).parent
        kept, inputs = [], []
        for rec in records:
            try:
                inp = record_input(rec, root, self.cfg.budget, PROBLEM_TYPES[rec.problem_type].instruction)
            except vio.VideoError as e:
                if self.cfg.on_bad_video == "error":
                    raise RuntimeError(f"record {rec.id!r}: {e}") from e
                self.dropped += 1
                continue
            kept.append(rec)
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

    @torch.no_grad()
    def _generate(self, batch: dict, has_video: bool, seed: int) -> torch.Tensor:
        grpo = self.grpo
        base = getattr(self.unwrapped, "base", self.unwrapped)
        from transformers import GenerationConfig

        # A fresh config: whatever else a checkpoint's generation_config sets (repetition penalty,
        # min_new_tokens, no_repeat_ngram_size, ...) would sample from a distribution other than the
        # one the loss scores. Only its suppressed tokens carry over (plus media placeholders).
        gen = GenerationConfig(
            do_sample=True, temperature=grpo.temperature, top_p=grpo.top_p, top_k=0, max_new_tokens=grpo.max_new_tokens,
            eos_token_id=sorted(self.stop_ids), pad_token_id=self.pad_id,
            bos_token_id=base.generation_config.bos_token_id,
            suppress_tokens=sorted({*(base.generation_config.suppress_tokens or []), *self.never}))
        self.unwrapped.eval()  # no dropout while sampling; KV cache on (checkpointing turns it off in train mode)
        try:
            devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), self.visual.expect(batch, has_video, "generation"):
                torch.manual_seed(seed)
                out = self.unwrapped.generate(**self._to_device(batch), generation_config=gen)
        finally:
            self.unwrapped.train()
        return out[:, batch["input_ids"].shape[1]:].cpu()

    def _logp(self, module, grp: Group, what: str) -> torch.Tensor:
        """Per-token log-probabilities (G, T) of a group's completions under `module`, computed on
        the full multimodal input (video and alarm embeddings included)."""
        comp = grp.completion_ids.to(self.accelerator.device)
        kw = dict(self._to_device(grp.full), use_cache=False, logits_to_keep=comp.shape[1] + 1)
        with self.visual.expect(grp.full, grp.has_video, what), self.accelerator.autocast():
            if grp.alarm_positions is not None:
                logits = module(alarm_positions=grp.alarm_positions.to(self.accelerator.device), heads=False, **kw).logits
            else:
                logits = module(**kw).logits
        return token_logprobs(logits[:, :-1], comp, self.grpo.temperature)

    @torch.no_grad()
    def _fixed_logps(self, grp: Group) -> None:
        """pi_old (only when the batch is reused: num_iterations > 1) and pi_ref, once per batch."""
        if self.grpo.num_iterations > 1:
            grp.old_logp = self._logp(self.unwrapped, grp, "old log-probs").cpu()
        if self.grpo.beta:
            if self.ref is not None:
                grp.ref_logp = self._logp(self.ref, grp, "reference log-probs").cpu()
            else:
                with adapters_disabled(self.unwrapped):
                    grp.ref_logp = self._logp(self.unwrapped, grp, "reference log-probs").cpu()

    def _make_group(self, rec, inp: ModelInput, comp: torch.Tensor) -> Group:
        """A prompt's group from its G sampled completions: rewards, advantages, the group's own
        batch (prompt + completions) and its fixed log-probabilities."""
        mask = completion_mask(comp, self.stop_ids)
        width = int(mask.sum(dim=1).max())  # drop columns no completion of this group reached
        comp, mask = comp[:, :width], mask[:, :width]
        comp = torch.where(mask.bool(), comp, torch.full_like(comp, self.pad_id))
        texts = []
        for row, m in zip(comp, mask):
            ids = row[: int(m.sum())].tolist()
            if ids and ids[-1] in self.stop_ids:
                ids = ids[:-1]  # the format reward checks the text without the end-of-turn token
            texts.append(self.llm.processor.tokenizer.decode(ids, skip_special_tokens=True))
        results = [score(rec.problem_type, t, rec.solution) for t in texts]
        rewards = torch.tensor([x.total for x in results], dtype=torch.float32)
        batch, pos = self._rows_batch([inp] * self.grpo.num_generations)
        grp = Group(rec.id, extend_with_completions(batch, comp, mask), pos, comp, mask, inp.has_video, texts,
                    rewards, [dict(x.components) for x in results], group_advantages(rewards, len(texts)))
        self._fixed_logps(grp)
        return grp

    def _make_round(self, records, round_seed: int) -> list[Group]:
        """Sample G completions for every prompt of the round — one generate call for all prompts
        the processor can batch (equal frame counts), since decoding is the step's longest part —
        then build each prompt's group."""
        records, inputs = self._inputs(records)
        n_gen = self.grpo.num_generations
        buckets: dict = {}
        for i, inp in enumerate(inputs):
            buckets.setdefault(self.llm.batch_key(inp), []).append(i)
        completions: list[torch.Tensor | None] = [None] * len(inputs)
        for b, idx in enumerate(buckets.values()):
            batch, _ = self._rows_batch([inputs[i] for i in idx for _ in range(n_gen)])
            out = self._generate(batch, any(inputs[i].has_video for i in idx), round_seed + 7919 * b)
            for k, i in enumerate(idx):
                completions[i] = out[k * n_gen:(k + 1) * n_gen]
        return [self._make_group(rec, inp, comp) for rec, inp, comp in zip(records, inputs, completions)]

    # -- one optimizer step on a round
    def _step(self, groups: list[Group]) -> dict:
        accelerator, grpo = self.accelerator, self.grpo
        counts = torch.tensor([sum(len(x.texts) for x in groups), sum(int(x.mask.sum()) for x in groups)],
                              dtype=torch.long, device=accelerator.device)
        if self.world > 1:
            counts = accelerator.reduce(counts, reduction="sum")
        num_completions, num_tokens = (int(x) for x in counts)
        sums = torch.zeros(4, dtype=torch.float64)  # loss, KL token sum, clipped token sum, tokens
        for grp in groups:
            sync = accelerator.no_sync(self.model) if self.world > 1 else nullcontext()
            with sync:
                logp = self._logp(self.model, grp, "policy log-probs")
                old = grp.old_logp.to(logp.device) if grp.old_logp is not None else logp.detach()
                ref = grp.ref_logp.to(logp.device) if grp.ref_logp is not None else None
                mask = grp.mask.to(logp.device)
                per_token, kl, clipped = grpo_token_loss(logp, old, ref, grp.advantages.to(logp.device),
                                                         epsilon=grpo.epsilon, epsilon_high=grpo.epsilon_high, beta=grpo.beta)
                loss = aggregate(per_token, mask, grpo.loss_aggregation, num_completions=num_completions,
                                 num_tokens=num_tokens)
                accelerator.backward(loss)
            m = mask.float()
            sums += torch.tensor([float(loss.detach()), float((kl.detach() * m).sum()),
                                  float((clipped * m).sum()), float(m.sum())], dtype=torch.float64)
        if self.manual_reduce:
            for p in self.trainable:  # a process without prompts this round contributes zeros
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
        grad_norm = None
        if self.cfg.max_grad_norm is not None:
            grad_norm = float(accelerator.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.world > 1:
            sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
        return {"sums": sums, "grad_norm": grad_norm}

    # -- logging
    _COMPONENTS = ("format", "rouge", "video_correct", "text_correct", "task")
    _COUNTS = ("reward", "completions", "length", "groups", "all_correct", "all_wrong", "zero_std")

    def _round_stats(self, groups: list[Group]) -> dict[str, float]:
        """Sums over every process's completions and groups (max for the longest completion)."""
        keys = (*self._COMPONENTS, *self._COUNTS)
        out = torch.zeros(len(keys), dtype=torch.float64)
        longest = 0
        for grp in groups:
            lengths = grp.mask.sum(dim=1).float()
            longest = max(longest, int(lengths.max()))
            labelled = all("video_correct" in c for c in grp.components)
            both = [c.get("video_correct", 0.0) * c.get("text_correct", 0.0) for c in grp.components]
            out += torch.tensor(
                [sum(c.get(k, 0.0) for c in grp.components) for k in self._COMPONENTS]
                + [float(grp.rewards.sum()), len(grp.texts), float(lengths.sum()), 1.0,
                   float(labelled and all(b == 1 for b in both)), float(labelled and all(b == 0 for b in both)),
                   float(grp.rewards.std() == 0)], dtype=torch.float64)
        if self.world > 1:
            out = self.accelerator.reduce(out.to(self.accelerator.device), reduction="sum").cpu()
            longest = int(self.accelerator.reduce(torch.tensor([longest], device=self.accelerator.device), reduction="max"))
        stats = dict(zip(keys, out.tolist()))
        stats["longest"] = longest
        return stats

    def train(self, *, stop_after_steps: int | None = None) -> Path:
        self._setup()
        cfg, grpo, accelerator = self.cfg, self.grpo, self.accelerator
        out = Path(cfg.output_dir)
        step, epoch, pos = 0, 0, 0
        resume = latest_checkpoint(out)
        if resume is not None:
            state = load_checkpoint(accelerator, resume)
            step, epoch, pos = state["step"], state["epoch"], state["position"]
            accelerator.print(f"resumed from {resume} at step {step}")
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
        log_file, samples_file = out / "train_log.jsonl", out / "completions.jsonl"
        bar = None
        if self.progress and accelerator.is_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=step, desc="stage grpo", unit="step")

        stopped = False
        while step < self.total_steps and epoch < cfg.epochs:
            order = self.sampler.order(epoch)
            while step < self.total_steps and pos + self.per_rank <= len(order):
                t0 = time.perf_counter()
                records = [self.records[i] for i in order[pos:pos + self.per_rank]]
                # Sampling seeds depend on the round and the process only: a resumed run draws
                # the completions the uninterrupted run drew.
                rnd = self._make_round(records, cfg.seed * 1_000_003 + (step // grpo.num_iterations) * 997 + self.rank)
                t_gen = time.perf_counter() - t0
                stats = self._round_stats(rnd)
                for it in range(grpo.num_iterations):
                    if step >= self.total_steps:
                        break
                    res = self._step(rnd)
                    step += 1
                    if accelerator.is_main_process and (step % cfg.log_every == 0 or step == self.total_steps):
                        row = self._log_row(step, epoch, it, res, stats, t0, t_gen)
                        with open(log_file, "a", encoding="utf-8") as f:
                            f.write(json.dumps(row) + "\n")
                        if bar is not None:
                            bar.set_postfix(reward=row["reward"], format=row["reward_format"])
                    if bar is not None:
                        bar.update(1)
                if accelerator.is_main_process and rnd and grpo.log_completions:
                    self._log_completions(samples_file, step, rnd)
                pos += self.per_rank
                if cfg.save_every and step % cfg.save_every < grpo.num_iterations and step < self.total_steps:
                    save_checkpoint(accelerator, out, step, {"step": step, "epoch": epoch, "position": pos},
                                    keep=cfg.keep_checkpoints)
                if stop_after_steps is not None and step >= stop_after_steps:
                    stopped = True
                    break
            if stopped:
                break
            if pos + self.per_rank > len(order):
                epoch, pos = epoch + 1, 0
        if bar is not None:
            bar.close()
        self.visual.close()
        final = out / FINAL_DIR
        if stopped:
            return final
        return finish_run(accelerator, out, self.trainable, self.unwrapped, self.llm.processor,
                          note=f"dropped {self.dropped} prompt(s) with bad videos" if self.dropped else None)

    def _log_row(self, step: int, epoch: int, iteration: int, res: dict, st: dict, t0: float, t_gen: float) -> dict:
        sums = res["sums"]
        n, groups, tokens = max(st["completions"], 1.0), max(st["groups"], 1.0), max(float(sums[3]), 1.0)
        return {
            "step": step, "epoch": epoch, "iteration": iteration,
            "loss": round(float(sums[0]), 6),
            "reward": round(st["reward"] / n, 4),
            **{f"reward_{k}" if k in ("format", "rouge", "task") else k: round(st[k] / n, 4) for k in self._COMPONENTS},
            "groups_all_correct": round(st["all_correct"] / groups, 4),
            "groups_all_wrong": round(st["all_wrong"] / groups, 4),
            "groups_zero_std": round(st["zero_std"] / groups, 4),
            "kl": round(float(sums[1]) / tokens, 6),
            "clip_fraction": round(float(sums[2]) / tokens, 4),
            "completion_length_mean": round(st["length"] / n, 2),
            "completion_length_max": st["longest"],
            "completions": int(st["completions"]),
            "lr": [round(grp["lr"], 10) for grp in self.optimizer.param_groups],
            "grad_norm": None if res["grad_norm"] is None else round(res["grad_norm"], 6),
            "generation_seconds": round(t_gen, 3),
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def _log_completions(self, path: Path, step: int, groups: list[Group]) -> None:
        with open(path, "a", encoding="utf-8") as f:
            grp = groups[0]
            for i in range(min(self.grpo.log_completions, len(grp.texts))):
                f.write(json.dumps({"step": step, "record_id": grp.record_id, "completion": grp.texts[i],
                                    "reward": round(float(grp.rewards[i]), 4),
                                    "advantage": round(float(grp.advantages[i]), 4),
                                    "components": grp.components[i]}, ensure_ascii=False) + "\n")


def run_grpo(cfg: TrainConfig, *, progress: bool = True, stop_after_steps: int | None = None) -> Path:
    """Train stage 4; returns the folder of the final model. Resumes from the newest complete
    checkpoint in output_dir."""
    return GRPOTrainer(cfg, progress=progress).train(stop_after_steps=stop_after_steps)
