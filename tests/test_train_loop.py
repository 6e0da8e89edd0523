"""The run loop both trainers share (train/loop.py), with a trainer and an accelerator of our
own: chunks of several optimizer steps (GRPO's rounds), checkpoints only between chunks and
where a chunk crossed a multiple of save_every, log rows every log_every steps and at the last,
a stopped run resumes from its newest checkpoint's position, and checkpoints written before
the shared loop still resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from videosafety.train.config import TrainConfig
from videosafety.train.loop import STATE_FILE, Chunk, Position, latest_checkpoint, train_loop


class FakeAccelerator:
    is_main_process = True
    num_processes = 1
    process_index = 0

    def __init__(self):
        self.loaded = []

    def save_state(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def load_state(self, path: str) -> None:
        self.loaded.append(Path(path).name)

    def wait_for_everyone(self) -> None:
        pass

    def print(self, *args) -> None:
        pass


@dataclass(frozen=True)
class Stats:
    epoch: int
    item: int

    def log_row(self, step: int) -> dict:
        return {"step": step, "epoch": self.epoch, "item": self.item}


class CountingTrainer:
    """Epochs of `items` data items, `per_chunk` items a chunk, `steps_per_chunk` steps on each."""

    def __init__(self, cfg: TrainConfig, *, items: int, per_chunk: int, steps_per_chunk: int, total_steps: int):
        self.cfg, self.accelerator, self.total_steps = cfg, FakeAccelerator(), total_steps
        self.items, self.per_chunk, self.steps_per_chunk = items, per_chunk, steps_per_chunk
        self.starts = []  # (epoch, offset) each run started from
        self.trained = []  # (epoch, first item of the chunk, step before it)

    def chunks(self, epoch, offset):
        self.starts.append((epoch, offset))
        while epoch < self.cfg.epochs:
            while offset + self.per_chunk <= self.items:
                offset += self.per_chunk
                yield Chunk(offset - self.per_chunk, epoch, offset)
            epoch, offset = epoch + 1, 0

    def train_on(self, chunk, step, steps_left):
        self.trained.append((chunk.epoch, chunk.data, step))
        for _ in range(min(self.steps_per_chunk, steps_left)):
            yield Stats(chunk.epoch, chunk.data)


def config(out: Path, **over) -> TrainConfig:
    return TrainConfig(stage="plain", model="m", data="d.jsonl", output_dir=str(out), **over)


def steps_logged(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]


def checkpoints(out: Path) -> list[str]:
    return sorted((p.name for p in (out / "checkpoints").iterdir()), key=lambda n: int(n.split("-")[1]))


def test_checkpoints_fall_between_chunks_where_a_save_point_was_crossed(tmp_path):
    # 2 steps a chunk, save every 3: chunks end at 2, 4, 6, 8; 4 crossed 3, 6 reached 6; 8 is the last step
    cfg = config(tmp_path, epochs=3, save_every=3, keep_checkpoints=5, log_every=3)
    trainer = CountingTrainer(cfg, items=6, per_chunk=2, steps_per_chunk=2, total_steps=8)
    assert train_loop(trainer, desc="test", show=(), progress=False)
    assert checkpoints(tmp_path) == ["step-4", "step-6"]
    state = json.loads((tmp_path / "checkpoints" / "step-6" / STATE_FILE).read_text())
    assert state == {"step": 6, "epoch": 0, "offset": 6}  # the end of epoch 0: the next run starts epoch 1
    assert steps_logged(tmp_path) == [3, 6, 8]  # every log_every steps, and the last
    assert [(e, item) for e, item, _ in trainer.trained] == [(0, 0), (0, 2), (0, 4), (1, 0)]
    assert (tmp_path / "train_config.json").exists()


def test_the_last_chunk_stops_at_total_steps(tmp_path):
    cfg = config(tmp_path, epochs=5)
    trainer = CountingTrainer(cfg, items=4, per_chunk=2, steps_per_chunk=3, total_steps=7)
    assert train_loop(trainer, desc="test", show=(), progress=False)
    assert steps_logged(tmp_path) == list(range(1, 8))
    assert [step for *_, step in trainer.trained] == [0, 3, 6]  # the third chunk gets one step


def test_a_stopped_run_resumes_from_its_newest_checkpoint(tmp_path):
    cfg = config(tmp_path, epochs=2, save_every=2, keep_checkpoints=1)
    first = CountingTrainer(cfg, items=3, per_chunk=1, steps_per_chunk=1, total_steps=6)
    assert not train_loop(first, desc="test", show=(), progress=False, stop_after_steps=3)  # "killed"
    assert checkpoints(tmp_path) == ["step-2"]
    second = CountingTrainer(cfg, items=3, per_chunk=1, steps_per_chunk=1, total_steps=6)
    assert train_loop(second, desc="test", show=(), progress=False)
    assert second.accelerator.loaded == ["step-2"] and second.starts == [(0, 2)]
    assert second.trained[0] == (0, 2, 2)  # step 3 redone on the same data
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 5, 6]  # the stopped run's row of step 3 gave way to the redone one


def test_checkpoints_of_either_trainer_from_before_the_shared_loop_resume(tmp_path):
    assert Position.from_state({"step": 4, "epoch": 1, "micro_in_epoch": 3}) == Position(4, 1, 3)  # SFT
    assert Position.from_state({"step": 4, "epoch": 1, "position": 6}) == Position(4, 1, 6)  # GRPO
    assert Position.from_state({"step": 4, "epoch": 1, "offset": 2}) == Position(4, 1, 2)
    cut_off = tmp_path / "checkpoints" / "step-9"
    cut_off.mkdir(parents=True)  # no state file: cut off mid-save, never resumed from
    done = tmp_path / "checkpoints" / "step-4"
    done.mkdir()
    (done / STATE_FILE).write_text("{}")
    assert latest_checkpoint(tmp_path) == done
