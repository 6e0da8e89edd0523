"""The run both trainers share (SFT stages in train/trainer.py, GRPO in train/grpo.py):

    resume from the newest complete checkpoint
    for each chunk of data:   the trainer's optimizer steps on it, a log row per step,
                              then a checkpoint where one is due
    final save (the trainer's, once the loop ran to the end)

A chunk is the data between two places a run can be checkpointed: one optimizer step's
micro-batches (SFT) or one round's prompts (GRPO, which takes num_iterations steps on them).
A checkpoint records the position after its chunk, so a resumed run sees the data, and draws
the samples, the uninterrupted run would have.

Killed at any moment and started again, a run ends as the uninterrupted one would: the same
weights, bit for bit, and the same log. A checkpoint counts once its state file stands (written
last, by rename), and on resume the step-keyed logs (train_log.jsonl and the trainer's own, e.g.
GRPO's completions.jsonl) lose the rows of steps after the checkpoint, which are about to be
redone, and a line a kill cut off.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from videosafety.train.config import TrainConfig
from videosafety.train.lora import merge_lora

CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
STATE_FILE = "trainer_state.json"
LOG_FILE = "train_log.jsonl"
DROPS_FILE = "dropped.json"  # what the stage left out of training, written at its end

Data = TypeVar("Data")


@dataclass(frozen=True)
class Position:
    """Where a run stands; saved with every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    offset: int = 0  # the epoch's data this process has used, in the trainer's unit (SFT micro-batches, GRPO prompts)

    @classmethod
    def from_state(cls, state: dict) -> Position:
        # Checkpoints written before the trainers shared this loop name the offset by trainer.
        offset = state.get("offset", state.get("micro_in_epoch", state.get("position", 0)))
        return cls(step=state["step"], epoch=state["epoch"], offset=offset)


@dataclass(frozen=True)
class Chunk(Generic[Data]):
    """A piece of an epoch's data, and the epoch's offset once it is used."""

    data: Data
    epoch: int
    end: int


class StepStats(Protocol):
    def log_row(self, step: int) -> dict[str, Any]: ...


class Trainer(Protocol):
    """What `train_loop` needs of a trainer (set up before the loop starts)."""

    cfg: TrainConfig
    accelerator: Any
    total_steps: int

    def chunks(self, epoch: int, offset: int) -> Iterator[Chunk]:
        """The data from (epoch, offset) to the end of the last epoch."""

    def train_on(self, chunk: Chunk, step: int, steps_left: int) -> Iterator[StepStats]:
        """At most steps_left optimizer steps on the chunk (none when all its samples were dropped),
        the stats of each; step: the optimizer steps done before the chunk."""

    # Optional: `step_logs`, names of JSONL files in output_dir whose rows carry a "step" and are
    # written as steps finish (the loop trims them on resume, as it trims LOG_FILE).


def train_loop(trainer: Trainer, *, desc: str, show: tuple[str, ...], progress: bool = True,
               stop_after_steps: int | None = None) -> bool:
    """Run the trainer from where output_dir's newest complete checkpoint left off to the last
    step. Returns False when stop_after_steps ended the run early (as a kill would: no final
    model), True when it ran to the end. show: log-row keys for the progress bar."""
    cfg, accelerator, total_steps = trainer.cfg, trainer.accelerator, trainer.total_steps
    out = Path(cfg.output_dir)
    position = Position()
    resume = latest_checkpoint(out)
    if resume is not None:
        position = Position.from_state(load_checkpoint(accelerator, resume))
        accelerator.print(f"resumed from {resume} at step {position.step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(cfg.model_dump_json(indent=2))
        for name in (LOG_FILE, *getattr(trainer, "step_logs", ())):
            trim_step_log(out / name, position.step)
    bar = None
    if progress and accelerator.is_main_process:
        bar = tqdm(total=total_steps, initial=position.step, desc=desc, unit="step")

    finished = True
    chunks = trainer.chunks(position.epoch, position.offset) if position.step < total_steps else iter(())
    for chunk in chunks:
        step = position.step
        for stats in trainer.train_on(chunk, step, total_steps - step):
            step += 1
            if accelerator.is_main_process and (step % cfg.log_every == 0 or step == total_steps):
                row = stats.log_row(step)
                with open(out / LOG_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                if bar is not None:
                    bar.set_postfix({k: row[k] for k in show if k in row})
            if bar is not None:
                bar.update(1)
        crossed_save_point = cfg.save_every and step // cfg.save_every > position.step // cfg.save_every
        position = Position(step, chunk.epoch, chunk.end)
        if crossed_save_point and step < total_steps:
            save_checkpoint(accelerator, out, position, keep=cfg.keep_checkpoints)
        if stop_after_steps is not None and step >= stop_after_steps:
            finished = False
            break
        if step >= total_steps:
            break
    if bar is not None:
        bar.close()
    return finished


# ---------------------------------------------------------------- checkpoints

def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / CHECKPOINT_DIR).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint whose state file stands and reads; one without it was cut off."""
    for c in reversed(_checkpoints(out)):
        try:
            json.loads((c / STATE_FILE).read_text())
        except (OSError, ValueError):
            continue
        return c
    return None


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore accelerate's state from a checkpoint; returns the trainer's position saved with it."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())


def save_checkpoint(accelerator, out: Path, position: Position, *, keep: int) -> None:
    """accelerate's state (model, optimizer, scheduler, RNG) plus the run's position; the state
    file is written last, so a checkpoint cut off mid-save is never resumed from."""
    path = out / CHECKPOINT_DIR / f"step-{position.step}"
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"step": position.step, "epoch": position.epoch, "offset": position.offset}
        _write_atomic(path / STATE_FILE, json.dumps(state))
        for old in _checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def trim_step_log(path: Path, step: int) -> None:
    """Keep the rows of steps up to `step` (the run resumes after it: later steps are redone and
    logged again) and drop lines a kill cut off; a file with nothing to drop is left alone."""
    if not path.exists():
        return
    kept, dropped = [], 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            row_step = None
        if isinstance(row_step, int) and row_step <= step:
            kept.append(line + b"\n")
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        tmp.replace(path)


# ---------------------------------------------------------------- the end of a stage

class DropTally:
    """The records a stage could not train on (too long, unreadable video): each record once,
    with its reason, and how many times it came up (a too-long record comes up every epoch).
    Counted since the process started: after a resume, drops before the checkpoint are not
    recounted unless their records come up again."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self.times = 0

    def add(self, record_id: str, reason: str) -> None:
        self.reasons.setdefault(record_id, reason)
        self.times += 1

    def gathered(self, accelerator) -> tuple[dict[str, str], int]:
        """Every rank's drops together (a collective: all ranks call it)."""
        if accelerator.num_processes == 1:
            return dict(self.reasons), self.times
        from accelerate.utils import gather_object

        reasons: dict[str, str] = {}
        times = 0
        for part_reasons, part_times in gather_object([(self.reasons, self.times)]):
            reasons.update(part_reasons)
            times += part_times
        return reasons, times


def drop_summary(stage: str, reasons: dict[str, str], times: int, of: int, unit: str = "record") -> dict:
    """The stage's drops as written to DROPS_FILE; `line` is what the stage prints."""
    by_reason: dict[str, int] = {}
    for reason in reasons.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    if reasons:
        line = (f"stage {stage}: dropped {len(reasons)} of {of} {unit}(s) ("
                + ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items())) + f"; {times} time(s) in all)")
    else:
        line = f"stage {stage}: dropped none of {of} {unit}(s)"
    return {"stage": stage, "of": of, "dropped": len(reasons), "times": times, "by_reason": by_reason,
            "records": dict(sorted(reasons.items())), "line": line}

def finish_run(accelerator, out: Path, trainable, model, processor, *, drops: dict | None = None) -> Path:
    """The end of a stage: every rank records a fingerprint of its trainable weights (equal files
    prove the ranks stayed in lock-step: data-parallel runs must end with identical replicas),
    then the main process saves the final model, writes `drops` (drop_summary) to DROPS_FILE and
    prints its line."""
    out.mkdir(parents=True, exist_ok=True)
    if drops is not None and accelerator.is_main_process:
        (out / DROPS_FILE).write_text(json.dumps(drops, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        accelerator.print(drops["line"])
    (out / f"weights_rank{accelerator.process_index}.sha256").write_text(weights_fingerprint(trainable) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model(model, processor, out / FINAL_DIR)
    accelerator.wait_for_everyone()
    return out / FINAL_DIR


def weights_fingerprint(params) -> str:
    digest = hashlib.sha256()
    for p in params:
        digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
