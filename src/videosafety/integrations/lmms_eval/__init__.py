"""VideoSafetyBench as lmms-eval tasks: the task folder (``task/``: YAMLs and ``utils.py``) and the
function that writes a ready copy of it for a selection of samples.

    videosafety lmms-eval-task --out tasks/vsb --num-frames 4 --limit 100
    python -m lmms_eval --model openai --model_args model=NAME,base_url=http://127.0.0.1:8000/v1 \\
        --tasks videosafety --include_path tasks/vsb --batch_size 1 --log_samples --output_path out/

lmms-eval reads a task's samples with ``datasets.load_dataset``, which needs a file path in the
YAML; so the folder is written per selection: ``docs.jsonl`` (one row per sample of our plan, in
its order), ``settings.json`` (manifest folder, frame budget, judge, conditions) and the YAMLs with
the absolute path of ``docs.jsonl``. Tasks: ``videosafety_video``, ``videosafety_text``,
``videosafety_blank`` (one condition each: DSR, DSR on HH and FRR with Wilson intervals) and
``videosafety`` (every sample once per condition, so it also gives the text -> video drop)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from videosafety import taxonomy
from videosafety.budget import FrameBudget
from videosafety.evaluate.plan import SampleFilter, make_plan

TEMPLATE = Path(__file__).resolve().parent / "task"
TASKS = ("videosafety", "videosafety_video", "videosafety_text", "videosafety_blank")
DOCS = "docs.jsonl"
SETTINGS = "settings.json"


def write_task_folder(out: str | Path, *, bench: str = "vsb-mini", selection: SampleFilter = SampleFilter(),
                      conditions: tuple[str, ...] = taxonomy.CONDITIONS, budget: FrameBudget | None = None,
                      judge: str = "rules", instruction: str | None = None, max_new_tokens: int | None = None) -> Path:
    """Write the lmms-eval task folder for a selection of a benchmark (``videosafety eval``'s
    options); returns the folder, to give to lmms-eval's ``--include_path``."""
    from videosafety.data.manifest import manifest_root
    from videosafety.data.peers import bench_source
    from videosafety.eval_pipeline import INSTRUCTIONS
    from videosafety.judges.spec import parse_judge_spec

    bad = [c for c in conditions if c not in taxonomy.CONDITIONS]
    if bad or not conditions:
        raise ValueError(f"unknown condition(s) {bad}; expected a comma list of {', '.join(taxonomy.CONDITIONS)}")
    parse_judge_spec(judge)  # a bad spec fails here, not inside lmms-eval
    from videosafety.models.base import GenerationSettings

    budget = budget or FrameBudget()
    max_new_tokens = max_new_tokens or GenerationSettings().max_new_tokens
    text = INSTRUCTIONS.get(instruction, instruction) if instruction else None
    manifest = bench_source(bench)
    plan = make_plan(manifest, selection, ("text",), fingerprint="lmms-eval", instruction=text)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / DOCS, "w", encoding="utf-8") as f:
        for s in plan.samples:
            f.write(json.dumps({
                "sample_id": s.id, "query": s.query, "prompt": s.prompt, "subset": s.subset, "category": s.category,
                "subcategory": s.subcategory, "language": s.language, "video_label": s.video_label,
                "query_label": s.query_label, "harmful_intention": s.harmful_intention, "video": s.video.path,
                "video_duration": s.video.duration, "video_width": s.video.width, "video_height": s.video.height,
            }, ensure_ascii=False) + "\n")
    (out / SETTINGS).write_text(json.dumps({
        "manifest": str(manifest), "root": str(manifest_root(manifest)), "conditions": list(conditions),
        "budget": budget.model_dump(mode="json"), "judge": judge, "instruction": text,
        "filter": asdict(selection), "samples": len(plan.samples)}, indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8")
    for src in TEMPLATE.iterdir():
        if src.name == "__pycache__" or src.is_dir():
            continue
        if src.name == "_default_template_yaml":
            # json.dumps: a quoted YAML string (JSON strings are YAML), whatever the path holds
            (out / src.name).write_text(src.read_text(encoding="utf-8").replace(
                '"@DOCS@"', json.dumps(str(out / DOCS))).replace("@MAX_NEW_TOKENS@", str(int(max_new_tokens))),
                encoding="utf-8")
        else:
            shutil.copyfile(src, out / src.name)
    return out


__all__ = ["DOCS", "SETTINGS", "TASKS", "TEMPLATE", "write_task_folder"]
