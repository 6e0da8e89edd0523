"""Training examples: record -> frames (the run's one frame budget) -> the model's processor
-> alarm tokens placed -> labels. Each example is processed on its own (in DataLoader workers
when asked), so a too-long sample can be dropped before it reaches a batch; `collate` merges
examples into a left-padded batch.

Truncation never cuts silently: an example longer than max_length is dropped and counted, or
stops the run with an error naming the record (on_truncation). Cutting from either end would
remove the video, the alarm tokens or the target."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.models.alarm import IGNORE_INDEX, AlarmTokenIds, end_of_turn_id_of, insert_alarm_tokens
from videosafety.models.base import ModelInput
from videosafety.tags import with_instruction
from videosafety.train.records import SFTRecord


class TrainDataError(RuntimeError):
    pass


@dataclass(frozen=True)
class AlarmSpec:
    """What alarm placement needs to know about a model; None on plain SFT."""

    ids: AlarmTokenIds
    visual_token_ids: frozenset[int]
    end_of_turn_id: int


@dataclass
class Dropped:
    record_id: str
    reason: str  # "too_long" | "bad_video"
    detail: str = ""


@dataclass
class Example:
    record_id: str
    tensors: dict[str, torch.Tensor]  # per-token tensors (1, L) and media tensors
    alarm_positions: torch.Tensor | None  # (2,) in the example's own coordinates
    video_label: int
    query_label: int


def record_input(record: SFTRecord, root: Path, budget: FrameBudget, instruction: str | None = None) -> ModelInput:
    """The model input of a record; `instruction` (an answer-format request) follows the query."""
    query = with_instruction(record.query, instruction)
    if record.video is None:
        return ModelInput(query=query, system=record.system)
    clip = vio.sample_with_budget(vio.path_inside(root, record.video), budget)
    return ModelInput(query=query, frames=clip.frames, timestamps=clip.timestamps,
                      video_fps=clip.sampled_fps, system=record.system)


def _is_token_tensor(value: Any, ids: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.shape == ids.shape


def supervise(ids: torch.Tensor, prompt_len: int, end_of_turn_id: int | None) -> torch.Tensor:
    """Labels for one row (1, L): the answer up to and including its first end-of-turn token;
    the prompt and whatever the template appends after the turn are masked."""
    labels = ids.clone()
    labels[:, :prompt_len] = IGNORE_INDEX
    if end_of_turn_id is not None:
        tail = (ids[0, prompt_len:] == end_of_turn_id).nonzero()
        if len(tail):
            labels[:, prompt_len + int(tail[0]) + 1:] = IGNORE_INDEX
    return labels


class ExampleBuilder:
    """Turns records into examples for one model (its processor and alarm placement)."""

    def __init__(self, llm, *, root: Path, budget: FrameBudget, max_length: int, alarm: AlarmSpec | None,
                 on_truncation: str = "drop", on_bad_video: str = "error", instruction: str | None = None):
        self.llm, self.root, self.budget = llm, Path(root), budget
        self.instruction = instruction
        self.max_length, self.alarm = max_length, alarm
        self.on_truncation, self.on_bad_video = on_truncation, on_bad_video
        self.pad_id = llm.processor.tokenizer.pad_token_id
        self.eot_id = alarm.end_of_turn_id if alarm else _end_of_turn_id(llm)

    def __call__(self, record: SFTRecord) -> Example | Dropped:
        try:
            inp = record_input(record, self.root, self.budget, self.instruction)
        except vio.VideoError as e:
            if self.on_bad_video == "error":
                raise TrainDataError(f"record {record.id!r}: {e}") from e
            return Dropped(record.id, "bad_video", str(e))
        batch, prompt_lens = self.llm.prepare_training_batch([inp], [record.response])
        positions = None
        if self.alarm is not None:
            batch, pos = insert_alarm_tokens(
                batch, has_video=[inp.has_video], visual_token_ids=self.alarm.visual_token_ids,
                end_of_turn_id=self.alarm.end_of_turn_id, alarm=self.alarm.ids, pad_token_id=self.pad_id,
                prompt_lens=prompt_lens)
            positions = pos[0]
            prompt_lens = [prompt_lens[0] + 2]
        tensors = dict(batch)
        ids = tensors["input_ids"]
        length = ids.shape[1]
        if length > self.max_length:
            msg = f"{length} tokens > max_length {self.max_length}"
            if self.on_truncation == "error":
                raise TrainDataError(f"record {record.id!r}: {msg}; raise max_length, lower the frame budget, "
                                     "or set on_truncation=drop")
            return Dropped(record.id, "too_long", msg)
        tensors["labels"] = supervise(ids, prompt_lens[0], self.eot_id)
        if int((tensors["labels"][:, 1:] != IGNORE_INDEX).sum()) == 0:
            raise TrainDataError(f"record {record.id!r}: empty target")
        return Example(record.id, tensors, positions, record.video_label, record.query_label)


def _end_of_turn_id(llm) -> int | None:
    return end_of_turn_id_of(llm.processor)


@dataclass
class Batch:
    tensors: dict[str, torch.Tensor]
    alarm_positions: torch.Tensor | None
    video_label: torch.Tensor
    query_label: torch.Tensor
    record_ids: list[str]
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.record_ids)

    def to(self, device) -> "Batch":
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.tensors.items()}
        pos = None if self.alarm_positions is None else self.alarm_positions.to(device)
        return Batch(moved, pos, self.video_label.to(device), self.query_label.to(device), self.record_ids, self.dropped)


def collate(items: Sequence[Example | Dropped], *, pad_token_id: int) -> Batch:
    """Left-pad per-token tensors; concatenate media tensors (per-video or per-patch rows)."""
    examples = [x for x in items if isinstance(x, Example)]
    dropped = [x for x in items if isinstance(x, Dropped)]
    if not examples:
        return Batch({}, None, torch.zeros(0), torch.zeros(0), [], dropped)
    width = max(e.tensors["input_ids"].shape[1] for e in examples)
    fill = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
    merged: dict[str, list[torch.Tensor]] = {}
    positions = []
    for e in examples:
        ids = e.tensors["input_ids"]
        pad = width - ids.shape[1]
        for key, value in e.tensors.items():
            if _is_token_tensor(value, ids):
                if pad:
                    value = torch.cat([value.new_full((1, pad), fill.get(key, 0)), value], dim=1)
            elif not isinstance(value, torch.Tensor):
                raise TrainDataError(f"unexpected non-tensor processor output {key!r}")
            merged.setdefault(key, []).append(value)
        if e.alarm_positions is not None:
            positions.append(e.alarm_positions + pad)
    tensors = {k: torch.cat(v, dim=0) for k, v in merged.items()}
    return Batch(
        tensors=tensors,
        alarm_positions=torch.stack(positions) if positions else None,
        video_label=torch.tensor([e.video_label for e in examples], dtype=torch.float32),
        query_label=torch.tensor([e.query_label for e in examples], dtype=torch.float32),
        record_ids=[e.record_id for e in examples],
        dropped=dropped,
    )


class RecordDataset(torch.utils.data.Dataset):
    def __init__(self, records: Sequence[SFTRecord], builder: ExampleBuilder):
        self.records, self.builder = list(records), builder

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Example | Dropped:
        return self.builder(self.records[i])


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, sharded across ranks, that can start mid-epoch: the
    data order of a resumed run is the uninterrupted run's order."""

    def __init__(self, n: int, *, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        self.n, self.seed, self.rank, self.world, self.shuffle = n, seed, rank, world, shuffle
        self.epoch, self.start = 0, 0

    def order(self, epoch: int) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=generator).tolist()
        else:
            perm = list(range(self.n))
        usable = (self.n // self.world) * self.world  # equal shards keep ranks in lock-step
        return perm[:usable][self.rank::self.world]

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        return iter(self.order(self.epoch)[self.start:])

    def __len__(self) -> int:
        return len(self.order(self.epoch)) - self.start
