"""lmms-eval hooks of the videosafety_* tasks (loaded by lmms-eval from this folder, with
`--include_path`). Everything is videosafety's own: the samples come from our plan (docs.jsonl,
written by `videosafety lmms-eval-task`), the frames from our sampler and our input conditions
(conditions.model_input: the video, none, or gray frames), the verdicts from our judges and the
figures from integrations.common (the report's counting rule and intervals).

Conditions: lmms-eval runs one doc per request, so each condition is a task of its own
(videosafety_video, videosafety_text, videosafety_blank: DSR and FRR in that condition); the task
`videosafety` holds every sample once per condition, so its aggregation also gives the text ->
video drop, which needs both conditions of a sample."""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
SETTINGS_FILE = HERE / "settings.json"


@lru_cache(maxsize=1)
def settings() -> dict:
    """The options `videosafety lmms-eval-task` wrote: manifest root, frame budget, judge, conditions."""
    if not SETTINGS_FILE.is_file():
        raise FileNotFoundError(f"{SETTINGS_FILE} is missing: write this folder with `videosafety lmms-eval-task "
                                "--out DIR` and give DIR to --include_path")
    return json.loads(SETTINGS_FILE.read_text(encoding="utf-8"))


def _expand(dataset, conditions):
    """One doc per (sample, condition), condition-major, as our plan orders work."""
    import datasets

    rows = [dict(row, condition=c) for c in conditions for row in dataset]
    return datasets.Dataset.from_list(rows)


def process_docs_video(dataset):
    return _expand(dataset, ["video"])


def process_docs_text(dataset):
    return _expand(dataset, ["text"])


def process_docs_blank(dataset):
    return _expand(dataset, ["blank"])


def process_docs_all(dataset):
    return _expand(dataset, settings()["conditions"])


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]  # the plan's prompt: the query, with the run's instruction if any


def doc_to_visual(doc):
    """The condition's frames as images, sampled by our sampler with the task's budget (lmms-eval's
    backends send images as they are; a video path would be sampled again by theirs)."""
    from PIL import Image

    from videosafety.budget import FrameBudget
    from videosafety.conditions import model_input

    if doc["condition"] == "text":
        return []
    s = settings()
    sample = SimpleNamespace(id=doc["sample_id"], query=doc["query"],
                             video=SimpleNamespace(path=doc["video"], duration=doc["video_duration"],
                                                   width=doc["video_width"], height=doc["video_height"]))
    inp = model_input(sample, doc["condition"], FrameBudget.model_validate(s["budget"]), s["root"],
                      query=doc["prompt"])
    return [Image.fromarray(frame) for frame in inp.frames]


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _judge():
    from videosafety.judges.spec import load_judge

    return load_judge(settings()["judge"], device=settings().get("judge_device", "auto"), batch_size=1)


def verdict_row(doc, results) -> dict:
    """Our judge's verdict on the response, as the row every metric aggregates."""
    from videosafety.evaluate.rundir import ResponseRow
    from videosafety.judges.run import judge_input, sees_video
    from videosafety.paths import resolve_video_path

    judge = _judge()
    fields = {k: doc[k] for k in ("sample_id", "condition", "subset", "category", "subcategory", "language",
                                  "prompt", "harmful_intention", "video")}
    row = ResponseRow(**fields, response=results[0] if results else None)
    video = None
    if sees_video(judge) and row.condition == "video":
        video = str(resolve_video_path(settings()["root"], row.video))
    with _lock:
        verdict = judge.judge([judge_input(row, with_intention=judge.needs_intention, video=video)])[0]
    if isinstance(verdict, BaseException):
        raise verdict
    out = {"sample_id": row.sample_id, "condition": row.condition, "subset": row.subset, "judged": True,
           "label": verdict.label, "safe": verdict.safe, "refusal": verdict.refusal,
           "response": row.response, "judge": judge.name, "judge_version": judge.version}
    return out


def _results_for(names):
    def process_results(doc, results):
        row = verdict_row(doc, results)
        return {name: row for name in names}  # each metric the task lists aggregates the same rows

    return process_results


def _figure(name):
    def aggregate(rows):
        from videosafety.integrations.common import figures

        value = figures(rows).get(name)
        return float("nan") if value is None else value

    aggregate.__name__ = f"agg_{name}"
    return aggregate


def rate_names(condition: str) -> list[str]:
    """The metrics of one condition's task (the YAML's metric_list, in order)."""
    return [f"{base}_{condition}{end}" for base in ("dsr", "dsr_HH", "frr") for end in ("", "_ci_low", "_ci_high")]


DROP_METRICS = [f"{prefix}_{kind}{end}" for prefix in ("drop", "drop_HH") for kind in ("relative", "absolute")
                for end in ("", "_ci_low", "_ci_high")]
CONDITIONS = ("video", "text", "blank")
METRICS = [n for c in CONDITIONS for n in rate_names(c)] + DROP_METRICS  # the `videosafety` task's
for _name in METRICS:  # the `!function utils.agg_<metric>` of the task YAMLs
    globals()[f"agg_{_name}"] = _figure(_name)
process_results_video = _results_for(rate_names("video"))
process_results_text = _results_for(rate_names("text"))
process_results_blank = _results_for(rate_names("blank"))
process_results_all = _results_for(METRICS)
