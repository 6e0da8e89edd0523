"""VideoSafety-R1's four stages chained (spec §3.2-3.4): 1 (AT-SFT warm-up) -> 2 (AT-SFT with
heads) -> cot (CoT cold start) -> grpo (safety-guided GRPO). Each stage's final model is the
next one's input; a finished stage (its `stage_done.json` beside a saved model) is skipped on
rerun, and an interrupted one resumes from its own checkpoints.

A recipe is a YAML file::

    model: Qwen/Qwen2.5-VL-3B-Instruct     # the base model of stage 1
    output_dir: runs/r1                     # stage s writes output_dir/stage-s/
    bench: path/to/manifest.jsonl           # records are built from it where a stage has no data
    split: train
    set: {mixed_precision: bf16}            # config keys for every stage
    stages:
      "1":  {config: paper-stage1}
      "2":  {config: paper-stage2}
      cot:  {config: paper-cot}
      grpo: {config: paper-grpo, set: {grpo.max_new_tokens: 512}}

Per stage: `config` (a path or a shipped name), `data` (a records file; else built from
`bench`: the AT-SFT mixture for 1 and 2, CoT targets for cot, GRPO records for grpo, written
beside the manifest since record video paths may not leave their folder), `limit` (an evenly
seeded subset of the records, for toy runs) and `set` (config keys).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

STAGE_ORDER = ("1", "2", "cot", "grpo")
DONE_FILE = "stage_done.json"
_RECORD_KIND = {"1": "at-sft", "2": "at-sft", "cot": "cot", "grpo": "grpo"}


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str
    data: str | None = None
    limit: int | None = Field(None, ge=1)
    set: dict[str, Any] = Field(default_factory=dict)


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    output_dir: str
    bench: str | None = None
    split: str = "train"
    seed: int = 0
    set: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageSpec]

    def ordered(self) -> list[tuple[str, StageSpec]]:
        unknown = sorted(set(self.stages) - set(STAGE_ORDER))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGE_ORDER)}")
        return [(s, self.stages[s]) for s in STAGE_ORDER if s in self.stages]


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """A recipe from YAML (a path or a shipped config name) with `key=value` overrides."""
    from videosafety.configs import resolve_config
    from videosafety.train.config import apply_overrides

    p = resolve_config(str(path))
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a recipe must be a mapping")
    data = apply_overrides(data, list(overrides))
    data["stages"] = {str(k): v for k, v in (data.get("stages") or {}).items()}  # YAML reads 1 as an int
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_url=False))
        raise ValueError(f"{p}: {msgs}") from None


def _flatten(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        else:
            out.append(f"{key}={json.dumps(v)}")
    return out


def stage_records(recipe: Recipe, stage: str, spec: StageSpec) -> Path:
    """The stage's records file: given, or built from the recipe's bench (once; reused after)."""
    from videosafety.data.manifest import resolve_manifest
    from videosafety.train import builders
    from videosafety.train.records import write_records

    if spec.data is not None:
        return Path(spec.data)
    if recipe.bench is None:
        raise ValueError(f"stage {stage}: no data and no bench to build records from")
    manifest = resolve_manifest(recipe.bench)
    kind = _RECORD_KIND[stage]
    suffix = f"-{spec.limit}-seed{recipe.seed}" if spec.limit else ""
    path = manifest.parent / f"records-{kind}-{recipe.split}{suffix}.jsonl"
    if path.exists():
        return path
    build = {"at-sft": builders.build_at_sft, "cot": builders.build_cot, "grpo": builders.build_grpo}[kind]
    records = build(manifest, split=recipe.split)
    if spec.limit and spec.limit < len(records):
        records = random.Random(recipe.seed).sample(records, spec.limit)
    write_records(records, path)
    return path


def run_pipeline(recipe: Recipe, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> Path:
    """Run the recipe's stages in order; returns the last stage's final model."""
    from videosafety.train.config import load_config
    from videosafety.configs import resolve_config
    from videosafety.train.loop import DROPS_FILE

    out = Path(recipe.output_dir)
    model = recipe.model
    final: Path | None = None
    for stage, spec in recipe.ordered():
        stage_dir = out / f"stage-{stage}"
        done = stage_dir / DONE_FILE
        if done.exists():
            final = Path(json.loads(done.read_text())["final"])
            if final.is_dir():
                log(f"stage {stage}: done before, skipped ({final})")
                model = str(final)
                continue
        data = stage_records(recipe, stage, spec)
        overrides = _flatten(recipe.set) + _flatten(spec.set)
        cfg = load_config(resolve_config(spec.config), overrides, stage=stage, model=model, data=str(data),
                          output_dir=str(stage_dir), seed=recipe.seed)
        cfg = cfg.model_copy(update={"stage": stage, "model": model, "data": str(data), "output_dir": str(stage_dir)})
        log(f"stage {stage}: {model} on {data} -> {stage_dir}")
        t0 = time.perf_counter()
        final = run_stage(cfg, progress=progress)
        drops_file = stage_dir / DROPS_FILE
        drops = json.loads(drops_file.read_text(encoding="utf-8")) if drops_file.exists() else None
        done.write_text(json.dumps({"stage": stage, "final": str(final), "model": model, "data": str(data),
                                    "seconds": round(time.perf_counter() - t0, 1),
                                    "dropped": None if drops is None else drops["dropped"]}, indent=2) + "\n")
        model = str(final)
    if final is None:
        raise ValueError("the recipe has no stages")
    return final


def run_stage(cfg, *, progress: bool = True, stop_after_steps: int | None = None) -> Path:
    """One stage with its trainer: GRPO for stage grpo, the SFT trainer otherwise."""
    if cfg.stage == "grpo":
        from videosafety.train.grpo import run_grpo

        return run_grpo(cfg, progress=progress, stop_after_steps=stop_after_steps)
    from videosafety.train.trainer import run_training

    return run_training(cfg, progress=progress, stop_after_steps=stop_after_steps)
