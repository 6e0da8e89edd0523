"""The SFT trainer for stages plain, 1, 2 and cot (spec §3.2-3.3), on accelerate.

`SFTTrainer` reads top to bottom: setup, the data (one chunk of micro-batches per optimizer
step), the step. The run around them (resume, log rows, checkpoints, final save) is
train/loop.py's, shared with the GRPO trainer. Each optimizer step gathers its micro-batches
first, so the loss is exact under gradient accumulation and data parallelism: the CE is the mean
over the step's supervised tokens on all ranks, each BCE the mean over the step's samples.

Data parallel (`accelerate launch`, DDP): gradients are summed across ranks once per step by
an explicit all-reduce (every micro-batch runs under no_sync). A rank whose micro-batch was
emptied by dropped samples still joins the reduce, so uneven drops never hang a run.
Under FSDP or DeepSpeed the engine reduces (averaging, so the loss is scaled by the number of
processes); there a rank whose last micro-batch is empty cannot join, and the run stops with
an error: use on_truncation=error or a larger per-device batch there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from transformers import get_scheduler

from videosafety.models.alarm import (AlarmModel, end_of_turn_id_of, is_alarm_checkpoint, language_parameters,
                                      register_alarm_tokens, visual_token_ids_of)
from videosafety.models.hf import HFVideoLLM
from videosafety.train.config import TrainConfig
from videosafety.train.data import AlarmSpec, Batch, EpochSampler, ExampleBuilder, RecordDataset, collate
from videosafety.train.lora import add_lora, lora_parameters
from videosafety.train.loop import FINAL_DIR, Chunk, DropTally, drop_summary, finish_run, train_loop
from videosafety.train.loss import at_sft_loss, supervised_token_count
from videosafety.train.records import CoTRecord, SFTRecord, read_records


@dataclass
class Loaded:
    llm: HFVideoLLM  # processor, prompt rendering, batching
    model: torch.nn.Module  # what is trained: the base model (plain) or an AlarmModel
    alarm: AlarmSpec | None


def load_for_stage(cfg: TrainConfig) -> Loaded:
    """The model of a stage: plain SFT trains the HF model itself; alarm stages wrap it in an
    AlarmModel, registering the alarm tokens when the checkpoint has none yet."""
    dtype = "bfloat16" if cfg.mixed_precision == "bf16" else "float32"
    llm = HFVideoLLM(cfg.model, device="cpu", dtype=dtype, budget=cfg.budget)
    alarm_ckpt = is_alarm_checkpoint(cfg.model)
    if not cfg.uses_alarms or (cfg.stage == "grpo" and not alarm_ckpt):
        return Loaded(llm, llm.model, None)
    if alarm_ckpt:
        model = llm.alarm_model if llm.alarm_model is not None else AlarmModel.from_pretrained(cfg.model, base=llm.model)
        ids = model.alarm
    elif cfg.stage == "cot":
        raise ValueError(f"{cfg.model}: stage cot starts from an alarm-token checkpoint (stage 2's output)")
    else:
        ids = register_alarm_tokens(llm.processor, llm.model)
        model = AlarmModel(llm.model, ids, init=cfg.alarm_init)
    spec = AlarmSpec(ids, frozenset(visual_token_ids_of(llm.processor, llm.model.config)),
                     end_of_turn_id_of(llm.processor))
    return Loaded(llm, model, spec)


def trainable_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Parameter groups with their learning rates; everything else frozen. The vision encoder
    and projector never train (spec §3.1)."""
    for param in model.parameters():
        param.requires_grad_(False)
    if hasattr(model, "param_groups"):  # an AlarmModel
        groups = model.param_groups()
    else:
        groups = {"llm": language_parameters(model)}
    if cfg.lora is not None:  # the LLM trains through its adapters only
        groups["llm"] = lora_parameters(model)
    out = []
    for name in cfg.trains:
        params = [param for param in groups[name] if param.is_floating_point()]
        for param in params:
            param.requires_grad_(True)
        out.append({"params": params, "lr": getattr(cfg.lr, name), "name": name,
                    "weight_decay": cfg.weight_decay if name == "llm" else 0.0})
    return out


def _forward(model, batch: Batch, uses_heads: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(logits, video_logit, query_logit) of a batch."""
    inputs = {k: v for k, v in batch.tensors.items() if k != "labels"}
    if batch.alarm_positions is not None:
        out = model(alarm_positions=batch.alarm_positions, **inputs)
        if uses_heads:
            return out.logits, out.video_logit, out.query_logit
        return out.logits, None, None
    return model(**inputs, use_cache=False).logits, None, None  # one pass: a KV cache is only memory


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    # accelerate keeps one process-wide state; stages run back to back in one process (the
    # pipeline, tests) may differ in precision, so each run starts from a fresh one.
    AcceleratorState._reset_state()
    return Accelerator(mixed_precision=cfg.mixed_precision,
                       cpu=cfg.device == "cpu" or not torch.cuda.is_available())


def make_optimizer(groups: list[dict], cfg: TrainConfig, total_steps: int):
    """AdamW over the parameter groups and the config's schedule over total_steps optimizer steps.
    The scheduler stays unprepared: accelerate would step it once per process per step."""
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_scheduler(cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler


def prepare_training(accelerator: Accelerator, model: torch.nn.Module, param_groups: list[dict], cfg: TrainConfig,
                     total_steps: int) -> tuple:
    """(model, optimizer, scheduler, manual_reduce) ready to train, for both trainers. The
    scheduler stays unprepared: accelerate would step it once per process per step, but
    total_steps already counts optimizer steps; it is registered so checkpoints carry it.
    manual_reduce: a multi-process DDP run, whose gradients the trainers all-reduce themselves."""
    optimizer, scheduler = make_optimizer(param_groups, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    manual_reduce = accelerator.num_processes > 1 and accelerator.distributed_type in (DistributedType.MULTI_CPU,
                                                                                       DistributedType.MULTI_GPU)
    return model, optimizer, scheduler, manual_reduce


def sum_over_processes(accelerator: Accelerator, values: Sequence[float], dtype: torch.dtype) -> list:
    """Element-wise sums over all processes (the values themselves in a one-process run)."""
    totals = torch.tensor(list(values), dtype=dtype, device=accelerator.device)
    if accelerator.num_processes > 1:
        totals = accelerator.reduce(totals, reduction="sum")
    return totals.tolist()


# ---------------------------------------------------------------- what a step reports

@dataclass(frozen=True)
class SFTStepStats:
    """One optimizer step, summed over all processes: its log row."""

    epoch: int
    loss: float
    ce: float
    bce_video: float
    bce_query: float
    video_correct: float  # samples whose harm head was right (heads only)
    query_correct: float
    tokens: int  # supervised tokens
    samples: int
    dropped: int  # samples dropped so far in this run (too long, bad video)
    lr: list[float]  # per parameter group, after the step
    grad_norm: float | None
    seconds: float
    uses_heads: bool

    def log_row(self, step: int) -> dict:
        row = {"step": step, "epoch": self.epoch, "loss": round(self.loss, 6), "ce": round(self.ce, 6),
               "lr": [round(rate, 10) for rate in self.lr], "tokens": self.tokens, "samples": self.samples,
               "dropped": self.dropped, "grad_norm": None if self.grad_norm is None else round(self.grad_norm, 6),
               "seconds": round(self.seconds, 4)}
        if self.uses_heads:
            row.update(bce_video=round(self.bce_video, 6), bce_query=round(self.bce_query, 6),
                       video_acc=round(self.video_correct / self.samples, 4),
                       query_acc=round(self.query_correct / self.samples, 4))
        return row


# ---------------------------------------------------------------- the trainer

class SFTTrainer:
    """Stages plain, 1, 2 and cot. `train` resumes from the newest complete checkpoint in
    output_dir and returns the folder of the final model."""

    def __init__(self, cfg: TrainConfig, *, progress: bool = True):
        if cfg.stage == "grpo":
            raise ValueError("stage grpo runs in GRPOTrainer (videosafety.train.grpo)")
        self.cfg = cfg
        self.progress = progress
        self.dropped = 0  # samples dropped so far (too long, bad video)
        self.drops = DropTally()

    # -- setup
    def setup(self) -> None:
        cfg = self.cfg
        self.accelerator = accelerator = make_accelerator(cfg)
        set_seed(cfg.seed)
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.accumulation = cfg.accumulation_for(self.world)

        loaded = load_for_stage(cfg)
        model, self.llm = loaded.model, loaded.llm
        # HFVideoLLM loads for inference (eval mode); activation checkpointing and dropout (LoRA's
        # included) act only in training mode.
        model.train()
        if cfg.lora is not None:
            add_lora(self.llm.model, cfg.lora)
        if cfg.gradient_checkpointing:
            getattr(model, "base", model).activation_checkpointing_enable({"use_reentrant": False})
        param_groups = trainable_groups(model, cfg)
        self.trainable = [param for group in param_groups for param in group["params"]]

        records = read_records(cfg.data, CoTRecord if cfg.stage == "cot" else SFTRecord)
        self.num_records = len(records)
        builder = ExampleBuilder(self.llm, root=Path(cfg.data).parent, budget=cfg.budget, max_length=cfg.max_length,
                                 alarm=loaded.alarm, on_truncation=cfg.on_truncation, on_bad_video=cfg.on_bad_video,
                                 instruction=cfg.instruction)
        self.sampler = EpochSampler(len(records), seed=cfg.seed, rank=self.rank, world=self.world)
        self.loader = torch.utils.data.DataLoader(
            RecordDataset(records, builder), batch_size=cfg.per_device_batch_size, sampler=self.sampler,
            collate_fn=partial(collate, pad_token_id=self.llm.processor.tokenizer.pad_token_id),
            num_workers=cfg.num_workers)
        micro_batches_per_epoch = math.ceil(len(self.sampler.order(0)) / cfg.per_device_batch_size)
        total_steps = math.ceil(micro_batches_per_epoch / self.accumulation) * cfg.epochs
        self.total_steps = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)

        self.model, self.optimizer, self.scheduler, self.manual_reduce = prepare_training(
            accelerator, model, param_groups, cfg, self.total_steps)
        self.engine_reduce = self.world > 1 and not self.manual_reduce

    # -- the data: one chunk per optimizer step, its micro-batches
    def chunks(self, epoch: int, offset: int) -> Iterator[Chunk[list[Batch]]]:
        """From micro-batch `offset` of `epoch` on (the loader decodes ahead in its workers)."""
        while epoch < self.cfg.epochs:
            self.sampler.set_position(epoch, offset * self.cfg.per_device_batch_size)
            batches = iter(self.loader)
            while micro_batches := list(islice(batches, self.accumulation)):
                offset += len(micro_batches)
                yield Chunk(micro_batches, epoch, offset)
            epoch, offset = epoch + 1, 0

    def train_on(self, chunk: Chunk[list[Batch]], step: int, steps_left: int) -> Iterator[SFTStepStats]:
        """One optimizer step per chunk (none when every sample of it was dropped)."""
        stats = self._step(chunk.data, chunk.epoch)
        if stats is not None:
            yield stats

    # -- one optimizer step
    def _step(self, micro_batches: list[Batch], epoch: int) -> SFTStepStats | None:
        """One optimizer step on the micro-batches; None when every sample of the step was
        dropped, on every process."""
        cfg, accelerator = self.cfg, self.accelerator
        started = time.perf_counter()
        tokens, samples, dropped = sum_over_processes(accelerator, [
            sum(supervised_token_count(batch.tensors["labels"]) for batch in micro_batches if batch.size),
            sum(batch.size for batch in micro_batches), sum(len(batch.dropped) for batch in micro_batches)], torch.long)
        self.dropped += dropped
        for batch in micro_batches:
            for d in batch.dropped:
                self.drops.add(d.record_id, d.reason)
        if tokens == 0:
            return None
        loss = ce = bce_video = bce_query = 0.0
        video_correct = query_correct = 0
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            if not batch.size:
                if self.engine_reduce and last:
                    raise RuntimeError(f"rank {self.rank}: every sample of the step's last micro-batch was dropped; "
                                       "FSDP/DeepSpeed cannot reduce without it (see the module docstring)")
                continue
            batch = batch.to(accelerator.device)
            engine_syncs = self.world == 1 or (self.engine_reduce and last)
            sync = nullcontext() if engine_syncs else accelerator.no_sync(self.model)
            with sync, accelerator.autocast():
                logits, video_logit, query_logit = _forward(self.model, batch, cfg.uses_heads)
                parts = at_sft_loss(logits, batch.tensors["labels"], num_tokens=tokens, video_logit=video_logit,
                                    video_label=batch.video_label, query_logit=query_logit,
                                    query_label=batch.query_label, num_samples=samples,
                                    lambda_v=cfg.lambda_v, lambda_t=cfg.lambda_t)
            accelerator.backward(parts.total * self.world if self.engine_reduce else parts.total)
            loss += float(parts.total.detach())
            ce += float(parts.ce)
            bce_video += float(parts.bce_video)
            bce_query += float(parts.bce_query)
            if video_logit is not None:
                video_correct += int(((video_logit.detach() > 0).float() == batch.video_label).sum())
                query_correct += int(((query_logit.detach() > 0).float() == batch.query_label).sum())
        if self.manual_reduce:
            for param in self.trainable:  # ranks with empty micro-batches contribute zeros
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.SUM)
        grad_norm = None
        if cfg.max_grad_norm is not None:
            grad_norm = float(accelerator.clip_grad_norm_(self.trainable, cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        loss, ce, bce_video, bce_query, video_correct, query_correct = sum_over_processes(
            accelerator, [loss, ce, bce_video, bce_query, video_correct, query_correct], torch.float64)
        return SFTStepStats(epoch=epoch, loss=loss, ce=ce, bce_video=bce_video, bce_query=bce_query,
                            video_correct=video_correct, query_correct=query_correct, tokens=tokens, samples=samples,
                            dropped=self.dropped, lr=[group["lr"] for group in self.optimizer.param_groups],
                            grad_norm=grad_norm, seconds=time.perf_counter() - started, uses_heads=cfg.uses_heads)

    # -- the run
    def train(self, *, stop_after_steps: int | None = None) -> Path:
        """stop_after_steps ends the process's work early (as a kill would) without saving a
        final model: for resume tests."""
        self.setup()
        out = Path(self.cfg.output_dir)
        if train_loop(self, desc=f"stage {self.cfg.stage}", show=("loss", "video_acc", "query_acc"),
                      progress=self.progress, stop_after_steps=stop_after_steps):
            reasons, times = self.drops.gathered(self.accelerator)
            finish_run(self.accelerator, out, self.trainable, self.accelerator.unwrap_model(self.model),
                       self.llm.processor, drops=drop_summary(self.cfg.stage, reasons, times, self.num_records))
        return out / FINAL_DIR


def run_training(cfg: TrainConfig, *, progress: bool = True, stop_after_steps: int | None = None) -> Path:
    """Train a SFT stage; returns the folder of the final model. Resumes from the newest complete
    checkpoint in output_dir. stop_after_steps: see `SFTTrainer.train`."""
    return SFTTrainer(cfg, progress=progress).train(stop_after_steps=stop_after_steps)
