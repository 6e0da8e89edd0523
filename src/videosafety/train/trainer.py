"""The SFT trainer for stages plain, 1, 2 and cot (spec §3.2-3.3), on accelerate.

One loop, readable top to bottom. Each optimizer step gathers its micro-batches first, so the
loss is exact under gradient accumulation and data parallelism: the CE is the mean over the
step's supervised tokens on all ranks, each BCE the mean over the step's samples.

Data parallel (`accelerate launch`, DDP): gradients are summed across ranks once per step by
an explicit all-reduce (every micro-batch runs under no_sync). A rank whose micro-batch was
emptied by dropped samples still joins the reduce, so uneven drops never hang a run.
Under FSDP or DeepSpeed the engine reduces (averaging, so the loss is scaled by the number of
processes); there a rank whose last micro-batch is empty cannot join, and the run stops with
an error: use on_truncation=error or a larger per-device batch there.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from videosafety.models.alarm import (IGNORE_INDEX, AlarmModel, end_of_turn_id_of, is_alarm_checkpoint,
                                      language_parameters, register_alarm_tokens, visual_token_ids_of)
from videosafety.models.hf import HFVideoLLM
from videosafety.train.config import TrainConfig
from videosafety.train.data import AlarmSpec, Batch, EpochSampler, ExampleBuilder, RecordDataset, collate
from videosafety.train.loss import at_sft_loss
from videosafety.train.lora import add_lora, lora_parameters, merge_lora
from videosafety.train.records import CoTRecord, SFTRecord, read_records

# accelerate, transformers and tqdm are imported where used: they take seconds to import, and
# the run helpers here (checkpoint paths, fingerprints) do not need them.

CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
STATE_FILE = "trainer_state.json"


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
    for p in model.parameters():
        p.requires_grad_(False)
    if hasattr(model, "param_groups"):  # an AlarmModel
        groups = model.param_groups()
    else:
        groups = {"llm": language_parameters(model)}
    if cfg.lora is not None:  # the LLM trains through its adapters only

        groups["llm"] = lora_parameters(model)
    out = []
    for name in cfg.trains:
        params = [p for p in groups[name] if p.is_floating_point()]
        for p in params:
            p.requires_grad_(True)
        out.append({"params": params, "lr": getattr(cfg.lr, name), "name": name,
                    "weight_decay": cfg.weight_decay if name == "llm" else 0.0})
    return out


def _forward(model, batch: Batch, uses_heads: bool):
    """(logits, video_logit, query_logit) of a batch."""
    inputs = {k: v for k, v in batch.tensors.items() if k != "labels"}
    if batch.alarm_positions is not None:
        out = model(alarm_positions=batch.alarm_positions, **inputs)
        if uses_heads:
            return out.logits, out.video_logit, out.query_logit
        return out.logits, None, None
    return model(**inputs, use_cache=False).logits, None, None  # one pass: a KV cache is only memory


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state; stages run back to back in one process (the
    # pipeline, tests) may differ in precision, so each run starts from a fresh one.
    AcceleratorState._reset_state()
    return Accelerator(mixed_precision=cfg.mixed_precision,
                       cpu=cfg.device == "cpu" or not torch.cuda.is_available())


def make_optimizer(groups: list[dict], cfg: TrainConfig, total_steps: int):
    """AdamW over the parameter groups and the config's schedule over total_steps optimizer steps.
    The scheduler stays unprepared: accelerate would step it once per process per step."""
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_scheduler(cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / CHECKPOINT_DIR).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out: Path) -> Path | None:
    done = [c for c in _checkpoints(out) if (c / STATE_FILE).exists()]  # a checkpoint without state was cut off
    return done[-1] if done else None


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore accelerate's state from a checkpoint; returns the trainer's position saved with it."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())


def save_checkpoint(accelerator, out: Path, step: int, state: dict, *, keep: int) -> None:
    """accelerate's state (model, optimizer, scheduler, RNG) plus the trainer's position; the
    state file is written last, so a checkpoint cut off mid-save is never resumed from."""
    path = out / CHECKPOINT_DIR / f"step-{step}"
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (path / STATE_FILE).write_text(json.dumps(state))
        for old in _checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def run_training(cfg: TrainConfig, *, progress: bool = True, stop_after_steps: int | None = None) -> Path:
    """Train; returns the folder of the final model. Resumes from the newest complete
    checkpoint in output_dir. stop_after_steps ends the process's work early (as a kill would)
    without saving a final model: for resume tests."""
    from accelerate.utils import set_seed

    out = Path(cfg.output_dir)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    world, rank = accelerator.num_processes, accelerator.process_index
    accum = cfg.accumulation_for(world)

    loaded = load_for_stage(cfg)
    model, llm = loaded.model, loaded.llm
    # HFVideoLLM loads for inference (eval mode); activation checkpointing and dropout (LoRA's
    # included) act only in training mode.
    model.train()
    if cfg.lora is not None:
        add_lora(llm.model, cfg.lora)
    if cfg.gradient_checkpointing:
        base = getattr(model, "base", model)
        base.activation_checkpointing_enable({"use_reentrant": False})
    groups = trainable_groups(model, cfg)
    trainable = [p for g in groups for p in g["params"]]

    records = read_records(cfg.data, CoTRecord if cfg.stage == "cot" else SFTRecord)
    builder = ExampleBuilder(llm, root=Path(cfg.data).parent, budget=cfg.budget, max_length=cfg.max_length,
                             alarm=loaded.alarm, on_truncation=cfg.on_truncation, on_bad_video=cfg.on_bad_video,
                             instruction=cfg.instruction)
    sampler = EpochSampler(len(records), seed=cfg.seed, rank=rank, world=world)
    pad_id = llm.processor.tokenizer.pad_token_id
    loader = torch.utils.data.DataLoader(
        RecordDataset(records, builder), batch_size=cfg.per_device_batch_size, sampler=sampler,
        collate_fn=partial(collate, pad_token_id=pad_id), num_workers=cfg.num_workers)
    micro_per_epoch = math.ceil(len(sampler.order(0)) / cfg.per_device_batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / accum)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    optimizer, scheduler = make_optimizer(groups, cfg, total_steps)
    # The scheduler stays unprepared: accelerate would step it once per process per step, but
    # total_steps already counts optimizer steps. It is registered so checkpoints carry it.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    from accelerate.utils import DistributedType

    manual_reduce = world > 1 and accelerator.distributed_type in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    engine_reduce = world > 1 and not manual_reduce

    step, epoch, micro_done = 0, 0, 0
    resume = latest_checkpoint(out)
    if resume is not None:
        state = load_checkpoint(accelerator, resume)
        step, epoch, micro_done = state["step"], state["epoch"], state["micro_in_epoch"]
        accelerator.print(f"resumed from {resume} at step {step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
    log_file = out / "train_log.jsonl"

    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_steps, initial=step, desc=f"stage {cfg.stage}", unit="step")

    dropped_total = 0
    stopped_early = False
    while step < total_steps and epoch < cfg.epochs:
        sampler.set_position(epoch, micro_done * cfg.per_device_batch_size)
        it = iter(loader)
        exhausted = False
        while step < total_steps and not exhausted:
            micro: list[Batch] = []
            for _ in range(accum):
                try:
                    micro.append(next(it))
                except StopIteration:
                    exhausted = True
                    break
            if not micro:
                break
            t0 = time.perf_counter()
            counts = torch.tensor([sum(int((b.tensors["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro if b.size),
                                   sum(b.size for b in micro), sum(len(b.dropped) for b in micro)],
                                  dtype=torch.long, device=accelerator.device)
            counts = accelerator.reduce(counts, reduction="sum") if world > 1 else counts
            n_tokens, n_samples, n_dropped = (int(x) for x in counts)
            dropped_total += n_dropped
            sums = {"loss": 0.0, "ce": 0.0, "bce_video": 0.0, "bce_query": 0.0, "video_correct": 0, "query_correct": 0}
            if n_tokens == 0:  # every sample of the step was dropped, on every rank
                micro_done += len(micro)
                continue
            for i, b in enumerate(micro):
                last = i == len(micro) - 1
                if not b.size:
                    if engine_reduce and last:
                        raise RuntimeError(f"rank {rank}: every sample of the step's last micro-batch was dropped; "
                                           "FSDP/DeepSpeed cannot reduce without it (see the module docstring)")
                    continue
                b = b.to(accelerator.device)
                sync = nullcontext() if world == 1 or (engine_reduce and last) else accelerator.no_sync(model)
                with sync, accelerator.autocast():
                    logits, v_logit, q_logit = _forward(model, b, cfg.uses_heads)
                    parts = at_sft_loss(logits, b.tensors["labels"], num_tokens=n_tokens, video_logit=v_logit,
                                        video_label=b.video_label, query_logit=q_logit, query_label=b.query_label,
                                        num_samples=n_samples, lambda_v=cfg.lambda_v, lambda_t=cfg.lambda_t)
                accelerator.backward(parts.total * world if engine_reduce else parts.total)
                sums["loss"] += float(parts.total.detach())
                sums["ce"] += float(parts.ce)
                sums["bce_video"] += float(parts.bce_video)
                sums["bce_query"] += float(parts.bce_query)
                if v_logit is not None:
                    sums["video_correct"] += int(((v_logit.detach() > 0).float() == b.video_label).sum())
                    sums["query_correct"] += int(((q_logit.detach() > 0).float() == b.query_label).sum())
            if manual_reduce:
                for p in trainable:  # ranks with empty micro-batches contribute zeros
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
            grad_norm = None
            if cfg.max_grad_norm is not None:
                grad_norm = float(accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            micro_done += len(micro)

            stats = torch.tensor([sums["loss"], sums["ce"], sums["bce_video"], sums["bce_query"],
                                  sums["video_correct"], sums["query_correct"]], dtype=torch.float64,
                                 device=accelerator.device)
            if world > 1:
                stats = accelerator.reduce(stats, reduction="sum")
            if accelerator.is_main_process and (step % cfg.log_every == 0 or step == total_steps):
                row = {"step": step, "epoch": epoch, "loss": round(float(stats[0]), 6), "ce": round(float(stats[1]), 6),
                       "lr": [round(g["lr"], 10) for g in optimizer.param_groups], "tokens": n_tokens,
                       "samples": n_samples, "dropped": dropped_total,
                       "grad_norm": None if grad_norm is None else round(grad_norm, 6),
                       "seconds": round(time.perf_counter() - t0, 4)}
                if cfg.uses_heads:
                    row.update(bce_video=round(float(stats[2]), 6), bce_query=round(float(stats[3]), 6),
                               video_acc=round(float(stats[4]) / n_samples, 4),
                               query_acc=round(float(stats[5]) / n_samples, 4))
                with open(log_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                if bar is not None:
                    bar.set_postfix({k: row[k] for k in ("loss", "video_acc", "query_acc") if k in row})
            if bar is not None:
                bar.update(1)
            if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
                save_checkpoint(accelerator, out, step, {"step": step, "epoch": epoch, "micro_in_epoch": micro_done},
                                keep=cfg.keep_checkpoints)
            if stop_after_steps is not None and step >= stop_after_steps:
                stopped_early = True
                break
        if stopped_early:
            break
        if exhausted or micro_done >= micro_per_epoch:
            epoch, micro_done = epoch + 1, 0
    if bar is not None:
        bar.close()
    final = out / FINAL_DIR
    if stopped_early:
        return final
    finish_run(accelerator, out, trainable, accelerator.unwrap_model(model), llm.processor,
               note=f"dropped {dropped_total} sample(s) (too long or bad video): see {log_file}"
               if dropped_total else None)
    return final


def finish_run(accelerator, out: Path, trainable, model, processor, *, note: str | None = None) -> Path:
    """The end of a stage: every rank records a fingerprint of its trainable weights (equal files
    prove the ranks stayed in lock-step: data-parallel runs must end with identical replicas),
    then the main process saves the final model."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"weights_rank{accelerator.process_index}.sha256").write_text(weights_fingerprint(trainable) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(model, processor, out / FINAL_DIR)
        if note:
            accelerator.print(note)
    accelerator.wait_for_everyone()
    return out / FINAL_DIR


def weights_fingerprint(params) -> str:
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_model(model: torch.nn.Module, processor, path: Path) -> None:
    """A stage's output, loadable by the next stage and by evaluation (safetensors); LoRA
    adapters are merged first."""
    merge_lora(model)
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "alarm_vectors"):
        model.save_pretrained(path, processor=processor)
    else:
        model.save_pretrained(path, safe_serialization=True)
        processor.save_pretrained(path)
