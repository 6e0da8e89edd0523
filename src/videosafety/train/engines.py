"""Stage 4 scaled out: GRPO records in the dataset formats of verl and EasyR1.

Our own trainer (train/grpo.py) runs stage 4 on one machine; verl and EasyR1 run it on a
cluster (vLLM rollouts, FSDP actors, Ray). Both read a table of prompts and hand each
completion with the row's ground truth to a reward function; the reward functions are
videosafety.rewards.adapters, so the numbers are the ones our trainer logs. The shipped
recipes (configs/verl/stage4_grpo.sh, configs/easyr1/stage4_grpo.yaml) carry the paper's
stage-4 settings.

A row's prompt is the record's query with its problem type's answer-format instruction
appended (`tags.with_instruction`, as our trainer builds it), after the video:

- verl (RLHFDataset, verl/utils/dataset/rl_dataset.py; the schema of
  examples/data_preprocess/*.py): ``data_source`` (the record's source), ``prompt`` (a chat
  list: an optional system message, then the user message whose content holds one ``<video>``
  placeholder per entry of ``videos``), ``videos`` (a list of qwen-vl-utils video dicts: the
  path and the frame budget, so every row samples frames as our stage 4 does), ``ability``
  (the problem type), ``reward_model`` {``style``: "rule", ``ground_truth``: the solution},
  ``extra_info`` (``index``, ``id``, ``problem_type``, which `adapters.compute_score` reads,
  ``split``, ``language``, ``subcategory``, the two labels).
- EasyR1 (RLHFDataset, verl/utils/dataset.py of hiyouga/EasyR1): ``prompt`` (text with
  ``<video>`` where the video goes; EasyR1 builds a single user message, so a record with a
  system prompt is refused), ``answer`` (`adapters.easyr1_ground_truth`: EasyR1 hands the
  reward only the response and this string, so a problem type other than "safety" travels
  inside it), ``videos`` (a list of paths). The frame rate is the recipe's ``data.video_fps``;
  EasyR1 has no per-video frame cap.

Video paths are absolute: neither engine resolves them against the data file's folder (verl
reads them from the working directory of each worker). `video_root` rewrites the prefix for a
cluster that mounts the data elsewhere: it stands for the folder the records' paths are relative
to (the manifest's, with `export_grpo`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal

from videosafety import tags
from videosafety.budget import FrameBudget
from videosafety.train.records import GRPORecord

Engine = Literal["verl", "easyr1"]
ENGINES: Final[tuple[str, ...]] = ("verl", "easyr1")
VIDEO_PLACEHOLDER: Final = "<video>"  # both engines split the prompt text on this
# File types each engine's dataset class opens (it picks the reader from the extension).
SUFFIXES: Final[dict[str, tuple[str, ...]]] = {"verl": (".parquet", ".json"), "easyr1": (".parquet", ".json", ".jsonl")}
DEFAULT_CONFIG: Final = "paper-grpo"  # the frame budget of stage 4 comes from here


class EngineExportError(ValueError):
    pass


def stage4_budget(config: str = DEFAULT_CONFIG) -> FrameBudget:
    """The frame budget of a GRPO config (a shipped name or a path): one budget for every stage."""
    from videosafety.configs import resolve_config
    from videosafety.train.config import load_config

    return load_config(resolve_config(config), model="-", data="-", output_dir="-").budget


def prompt_text(record: GRPORecord) -> str:
    """The user text: <video> (when there is one), the query, the problem type's instruction."""
    from videosafety.rewards.registry import get_problem_type

    text = tags.with_instruction(record.query, get_problem_type(record.problem_type).instruction)
    if VIDEO_PLACEHOLDER in text:
        raise EngineExportError(f"record {record.id!r}: query: contains {VIDEO_PLACEHOLDER}, which the engines "
                                f"read as the video's place")
    return (VIDEO_PLACEHOLDER if record.video else "") + text


def video_dict(path: str, budget: FrameBudget) -> dict:
    """A video entry as qwen-vl-utils' fetch_video reads it (verl): path and sampling rule."""
    entry: dict = {"video": path}
    if budget.num_frames is not None:
        entry["nframes"] = budget.num_frames
    else:
        entry["fps"] = budget.fps
        entry["max_frames"] = budget.max_frames
    for key in ("min_pixels", "max_pixels"):
        if getattr(budget, key) is not None:
            entry[key] = getattr(budget, key)
    return entry


def _video_path(record: GRPORecord, records_dir: Path, video_root: str | None) -> str | None:
    if record.video is None:
        return None
    if video_root is not None:
        return str(PurePosixPath(video_root) / record.video)
    from videosafety.paths import resolve_video_path

    return str(resolve_video_path(records_dir, record.video).resolve())


def verl_row(record: GRPORecord, index: int, *, records_dir: Path, budget: FrameBudget,
             video_root: str | None = None) -> dict:
    video = _video_path(record, records_dir, video_root)
    prompt = ([{"role": "system", "content": record.system}] if record.system else [])
    prompt.append({"role": "user", "content": prompt_text(record)})
    return {
        "data_source": record.source,
        "prompt": prompt,
        "videos": [video_dict(video, budget)] if video else [],
        "ability": record.problem_type,
        "reward_model": {"style": "rule", "ground_truth": record.solution},
        "extra_info": {"index": index, "id": record.id, "problem_type": record.problem_type, "split": "train",
                       "language": record.language, "subcategory": record.subcategory,
                       "video_label": record.video_label, "query_label": record.query_label},
    }


def easyr1_row(record: GRPORecord, *, records_dir: Path, video_root: str | None = None) -> dict:
    from videosafety.rewards.adapters import easyr1_ground_truth

    if record.system:
        raise EngineExportError(f"record {record.id!r}: system: EasyR1 builds a single user message and has no "
                                f"place for a system prompt; use --format verl")
    video = _video_path(record, records_dir, video_root)
    return {"prompt": prompt_text(record), "answer": easyr1_ground_truth(record.problem_type, record.solution),
            "videos": [video] if video else []}


def engine_rows(records: Iterable[GRPORecord], engine: Engine, *, records_dir: str | Path,
                budget: FrameBudget | None = None, video_root: str | None = None) -> list[dict]:
    """One row per record, in order. `records_dir`: the folder the records' video paths are
    relative to (the records file's)."""
    if engine not in ENGINES:
        raise EngineExportError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    records_dir = Path(records_dir)
    if engine == "verl":
        budget = budget or stage4_budget()
        return [verl_row(r, i, records_dir=records_dir, budget=budget, video_root=video_root)
                for i, r in enumerate(records)]
    return [easyr1_row(r, records_dir=records_dir, video_root=video_root) for r in records]


@dataclass(frozen=True)
class EngineFile:
    path: Path
    engine: str
    rows: int
    bytes: int


def _write_table(rows: Sequence[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            raise EngineExportError("no records to write")
        pq.write_table(pa.Table.from_pylist(list(rows)), tmp)
    else:  # JSON lines: what datasets' "json" reader (both engines' choice for .json/.jsonl) takes
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_engine_file(records: Iterable[GRPORecord], path: str | Path, engine: Engine, *, records_dir: str | Path,
                      budget: FrameBudget | None = None, video_root: str | None = None) -> EngineFile:
    """Write the engine's dataset file (parquet, or JSON lines for .json/.jsonl)."""
    path = Path(path)
    if engine in SUFFIXES and path.suffix not in SUFFIXES[engine]:
        raise EngineExportError(f"{path}: {engine} reads {', '.join(SUFFIXES[engine])} files")
    rows = engine_rows(records, engine, records_dir=records_dir, budget=budget, video_root=video_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_table(rows, path)
    return EngineFile(path=path, engine=engine, rows=len(rows), bytes=path.stat().st_size)



def export_grpo(manifest: str | Path, out: str | Path, engine: Engine, *, split: str = "train",
                budget: FrameBudget | None = None, video_root: str | None = None) -> EngineFile:
    """`build_grpo` of the manifest's split, written as the engine's dataset file at `out` (any
    folder: the engine file names videos absolutely, or under `video_root`, which stands for the
    manifest's folder)."""
    from videosafety.data.manifest import resolve_manifest
    from videosafety.train.builders import build_grpo

    path = resolve_manifest(manifest)
    return write_engine_file(build_grpo(path, split=split), out, engine, records_dir=path.parent, budget=budget,
                             video_root=video_root)
