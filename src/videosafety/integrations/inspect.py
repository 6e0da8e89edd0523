"""VideoSafetyBench as an inspect_ai task, and inspect logs read back into our run folders.

Install the extra (``pip install -e ".[inspect]"``), serve a model, then::

    export VIDEOSAFETY_BASE_URL=http://127.0.0.1:8000/v1 VIDEOSAFETY_API_KEY=EMPTY
    inspect eval src/videosafety/integrations/inspect.py@videosafetybench \\
        --model openai-api/videosafety/demo -T subsets=HH,SafeQ -T limit=40 -T num_frames=4
    videosafety import-inspect logs/<the .eval file> --out runs/inspect-demo
    videosafety report runs/inspect-demo runs/eval-demo --out reports/both

(``inspect eval videosafety/videosafetybench`` works too once the package is installed: the
``inspect_ai`` entry point registers the task.) Any provider inspect supports runs it: vLLM with
``--model vllm/NAME`` and ``VLLM_BASE_URL``, any OpenAI-compatible server with ``openai-api``.

The pieces, each our own code behind inspect's interfaces:

* dataset: our plan (``evaluate.plan.make_plan``): the same selection, spread, prompts (query +
  instruction) and order as ``videosafety eval``, one inspect sample per (sample, condition), the
  response row's fields in its metadata;
* solver ``video_input``: the condition's model input (``conditions.model_input``: our frame
  sampling, gray frames for ``blank``), put into the chat message by the OpenAI backend's own
  request builder (``OpenAIVideoLLM.build_request``), so the wire format is the one
  ``videosafety eval --model openai:...`` sends. ``media="frames"`` (default): one image per frame,
  which OpenAI-compatible providers (openai-api, vllm) need, since inspect sends no video to them;
  ``media="video"``: one mp4 (``ContentVideo``) for providers that take video (google). With
  frames, the frames' rate and times travel as ``video_fps`` / ``video_timestamps`` in the
  request body (``video_metadata``), as our backend sends them to ``videosafety serve``;
* scorer ``videosafety_judge``: any of our judges (``judges.spec.load_judge``) on the response,
  read the way ``videosafety judge`` reads it (``judges.run.judge_input``);
* metrics: DSR, FRR and the text -> video drop with their intervals, by
  ``integrations.common.figures``, which follows the report's counting rule.

``import_log`` writes a log as a run folder (``evaluate.rundir``: ``run.json``,
``responses.jsonl``, the judge's verdict file and summary), so ``videosafety report`` compares it
with runs of our own harness, and ``videosafety judge`` can judge it with other judges.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

MISSING = ("inspect_ai is not installed: pip install -c constraints-inspect.txt -e \".[inspect]\" (the tested "
           "version is pinned in pyproject.toml's `inspect` extra)")
try:
    from inspect_ai import Task, task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ChatMessageUser, ContentImage, ContentText, ContentVideo, GenerateConfig
    from inspect_ai.scorer import SampleScore, Score, Target, metric, scorer
    from inspect_ai.solver import Generate, TaskState, solver
except ImportError as e:  # the extra is optional: say what to install
    raise ImportError(MISSING) from e

from videosafety import taxonomy
from videosafety.budget import FrameBudget
from videosafety.evaluate.plan import PlannedSample, SampleFilter, WorkItem, make_plan
from videosafety.integrations.common import figures

TASK_NAME = "videosafetybench"
METADATA_KEY = "videosafety"  # the response row's fields, in every inspect sample's metadata
INDEX_KEY = "index"  # the work item's position in our plan (the converter writes rows in that order)
VIDEO_KEY = "video_meta"  # the manifest's duration and size of the video (blank frames are planned from them)
MEDIA = ("frames", "video")


def _csv(value: Any) -> tuple[str, ...] | None:
    """A -T option: a comma string ("HH,SafeQ") or a list, as tuple; None for none."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(x).strip() for x in items if str(x).strip()) or None


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def row_fields(item: WorkItem) -> dict[str, Any]:
    """The response row's fields that come from the plan (evaluate.rundir.ResponseRow), as our
    runner writes them (evaluate.runner._write_rows)."""
    s: PlannedSample = item.sample
    return {"sample_id": s.id, "condition": item.condition, "subset": s.subset, "category": s.category,
            "subcategory": s.subcategory, "language": s.language, "video_label": s.video_label,
            "query_label": s.query_label, "prompt": s.prompt, "harmful_intention": s.harmful_intention,
            "video": s.video.path, "attack": s.attack, "peer": s.peer, "peer_subset": s.peer_subset}


def sample_id(item: WorkItem) -> str:
    return f"{item.sample.id}|{item.condition}"


# ------------------------------------------------------------------------------------ solver


class VideoInputError(Exception):
    """A sample's video could not be read (videosafety.video.VideoError): the sample fails, and
    the converter writes a ``video: ...`` error on its row, as our runner does."""


def _encoder(media: str, image_format: str, jpeg_quality: int, video_metadata: bool):
    """Our OpenAI backend, used only for its request builder (no server is asked: the revision is
    given, so nothing is probed)."""
    from videosafety.models.openai_api import OpenAIVideoLLM

    return OpenAIVideoLLM("inspect", "http://127.0.0.1:9/v1", revision="inspect",
                          frames_as="images" if media == "frames" else "video_url", image_format=image_format,
                          jpeg_quality=jpeg_quality, send_video_metadata=video_metadata)


def _content(parts: list[dict] | str) -> list | str:
    """OpenAI chat content parts -> inspect content (the media first, then the text, as sent)."""
    if isinstance(parts, str):
        return parts
    out: list = []
    for p in parts:
        if p["type"] == "image_url":
            out.append(ContentImage(image=p["image_url"]["url"]))
        elif p["type"] == "video_url":
            out.append(ContentVideo(video=p["video_url"]["url"], format="mp4"))
        else:
            out.append(ContentText(text=p["text"]))
    return out


def video_meta(item: WorkItem) -> dict[str, float | int]:
    v = item.sample.video
    return {"duration": v.duration, "width": v.width, "height": v.height}


@solver
def video_input(root: str, budget: FrameBudget, media: str = "frames",
                image_format: str = "jpeg", jpeg_quality: int = 90, video_metadata: bool = True,
                decode_timeout: float = 60.0):
    """The sample's model input under its condition, as our OpenAI backend sends it, then
    generate. A video that cannot be decoded fails the sample (inspect records the error; the
    converter writes it on the row as ``video: ...``, as our runner does)."""
    from videosafety import video as vio
    from videosafety.conditions import model_input
    from videosafety.models.base import GenerationSettings

    if media not in MEDIA:
        raise ValueError(f"media must be one of {', '.join(MEDIA)}, got {media!r}")
    encoder = _encoder(media, image_format, jpeg_quality, video_metadata)
    settings = GenerationSettings()  # only for build_request's signature: inspect's config decides generation

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        fields = state.metadata[METADATA_KEY]
        # what conditions.model_input reads of a sample (the plan's, carried in the metadata)
        sample = SimpleNamespace(id=fields["sample_id"], query=fields["prompt"],
                                 video=SimpleNamespace(path=fields["video"], **state.metadata[VIDEO_KEY]))

        def build() -> dict:
            try:
                inp = model_input(sample, fields["condition"], budget, root, timeout=decode_timeout,
                                  query=fields["prompt"])
            except vio.VideoError as e:
                raise VideoInputError(str(e)) from e
            return encoder.build_request(inp, settings)

        request = await asyncio.to_thread(build)
        user = request["messages"][-1]
        state.messages = [ChatMessageUser(content=_content(user["content"]))]
        extra = request.get("extra_body")
        return await generate(state, **({"extra_body": extra} if extra else {}))

    return solve


# ------------------------------------------------------------------------------------ scorer


def _verdict_fields(verdict) -> dict[str, Any]:
    from videosafety.judges.run import VERDICT_FIELDS

    return {k: getattr(verdict, k) for k in VERDICT_FIELDS}


@metric
def videosafety_figures():
    """DSR (HH + SH + HB, and HH), FRR (SafeQ) per condition, and the text -> video drop, each
    with its 95 % interval and n (integrations.common.figures)."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        # SampleScore (inspect's current interface) or Score (where the annotation is not read)
        rows = [getattr(s, "score", s).metadata or {} for s in scores]
        return {k: v for k, v in figures(rows).items() if v is not None}

    return compute


@scorer(metrics=[videosafety_figures()])
def videosafety_judge(judge: str = "rules", root: str | None = None, device: str = "auto"):
    """One of our judges (a spec of ``videosafety judge``) on each response. The score's value
    is the verdict's label; its metadata holds the verdict (safe, refusal, ...) and the sample's
    groupings, which the metrics and the converter read."""
    from videosafety.evaluate.rundir import ResponseRow
    from videosafety.judges.run import judge_input, sees_video
    from videosafety.judges.spec import load_judge
    from videosafety.paths import resolve_video_path

    loaded = load_judge(judge, device=device, batch_size=1)
    lock = threading.Lock()  # a local judge's model is not shared between threads

    async def score(state: TaskState, target: Target) -> Score:
        fields = state.metadata[METADATA_KEY]
        row = ResponseRow(**fields, response=state.output.completion)
        video = None
        if sees_video(loaded) and row.condition == "video" and root is not None and row.video:
            video = str(resolve_video_path(root, row.video))
        item = judge_input(row, with_intention=loaded.needs_intention, video=video)

        def run():
            with lock:
                return loaded.judge([item])[0]

        verdict = await asyncio.to_thread(run)
        if isinstance(verdict, BaseException):
            raise verdict  # the judge was not reached: inspect records the error on the sample
        meta = {"sample_id": row.sample_id, "condition": row.condition, "subset": row.subset,
                "judge": loaded.name, "judge_version": loaded.version, "judged": True,
                **_verdict_fields(verdict)}
        return Score(value=verdict.label, answer=row.response, explanation=verdict.reason, metadata=meta)

    return score


# ------------------------------------------------------------------------------------ task


@task(name=TASK_NAME)
def videosafetybench(bench: str = "vsb-mini", split: str = "eval", subsets: Any = None, languages: Any = None,
                     categories: Any = None, conditions: Any = ",".join(taxonomy.CONDITIONS), limit: Any = None,
                     fps: Any = None, num_frames: Any = None, max_frames: Any = None, max_pixels: Any = None,
                     media: str = "frames", image_format: str = "jpeg", video_metadata: bool = True,
                     instruction: str | None = None, judge: str = "rules", judge_device: str = "auto",
                     max_new_tokens: Any = None, max_error_rate: Any = 0.05) -> Task:
    """VideoSafetyBench (or any manifest ``videosafety eval --bench`` takes) in the video, text and
    blank conditions. Options are those of ``videosafety eval`` (``-T name=value``; lists as comma
    strings): ``split`` ("all" for every row), ``subsets``, ``languages``, ``categories``,
    ``conditions``, ``limit`` (evenly spread), the frame budget (``fps`` or ``num_frames``,
    ``max_frames``, ``max_pixels``), ``instruction`` ("reasoning" or a text), ``judge`` (a spec of
    ``videosafety judge``), ``max_new_tokens``; ``media``: frames (images; OpenAI-compatible
    providers) or video (an mp4; providers that take video)."""
    from videosafety.data.peers import bench_source
    from videosafety.data.manifest import manifest_root
    from videosafety.eval_pipeline import INSTRUCTIONS
    from videosafety.evaluate.cache import PROMPT_VERSION
    from videosafety.models.base import GenerationSettings

    selection = SampleFilter(split=None if split == "all" else split, subsets=_csv(subsets),
                             languages=_csv(languages), categories=_csv(categories), limit=_opt_int(limit))
    chosen = _csv(conditions) or taxonomy.CONDITIONS
    bad = [c for c in chosen if c not in taxonomy.CONDITIONS]
    if bad:
        raise ValueError(f"unknown condition(s) {bad}; expected a comma list of {', '.join(taxonomy.CONDITIONS)}")
    budget = FrameBudget().with_overrides(fps=_opt_float(fps), num_frames=_opt_int(num_frames),
                                          max_frames=_opt_int(max_frames), max_pixels=_opt_int(max_pixels))
    text = INSTRUCTIONS.get(instruction, instruction) if instruction else None
    manifest = bench_source(bench)
    root = str(manifest_root(manifest))
    plan = make_plan(manifest, selection, chosen, fingerprint="inspect", instruction=text)
    dataset = MemoryDataset([
        Sample(id=sample_id(it), input=it.sample.prompt,
               metadata={METADATA_KEY: row_fields(it), INDEX_KEY: it.index, VIDEO_KEY: video_meta(it)})
        for it in plan.items],
        name=f"videosafety:{bench}", location=str(manifest))
    return Task(
        dataset=dataset,
        solver=video_input(root, budget, media=media, image_format=image_format,
                           video_metadata=str(video_metadata).lower() not in ("false", "0", "no")),
        scorer=videosafety_judge(judge=judge, root=root, device=judge_device),
        config=GenerateConfig(max_tokens=int(max_new_tokens or GenerationSettings().max_new_tokens), temperature=0.0),
        # inspect: a fraction below 1 fails the eval past that share of failed samples; False never
        fail_on_error=False if float(max_error_rate) >= 1 else (float(max_error_rate) or True),
        metadata={METADATA_KEY: {"manifest": str(manifest), "conditions": list(chosen),
                                 "budget": budget.model_dump(mode="json"), "filter": asdict(selection),
                                 "instruction": text, "prompt_version": PROMPT_VERSION, "media": media}},
    )


# ------------------------------------------------------------------------------------ logs -> run folders


def import_log(log: str | Path, out: str | Path) -> Path:
    """Write an inspect log of ``videosafetybench`` as a run folder: ``run.json``, ``responses.jsonl``
    (rows in our plan's order, with the response or the sample's error) and, for the judge that
    scored it, its verdict file and summary (``judges.run``'s format), so ``videosafety report``
    reads it like any run. Returns the run folder."""
    from inspect_ai import __version__ as inspect_version
    from inspect_ai.log import read_eval_log

    from videosafety.evaluate.rundir import FORMAT_VERSION, ResponseRow, RunDir, RunInfo, RunSummary, VerdictRow
    from videosafety.evaluate.runner import package_versions
    from videosafety.judges.run import NO_RESPONSE, JudgeSummary

    ev = read_eval_log(str(log))
    if ev.samples is None:
        raise ValueError(f"{log}: the log holds no samples")
    spec = ev.eval
    meta = (spec.metadata or {}).get(METADATA_KEY)
    if meta is None:
        raise ValueError(f"{log}: not a log of the {TASK_NAME} task (no {METADATA_KEY!r} task metadata)")
    samples = sorted(ev.samples, key=lambda s: (s.metadata.get(INDEX_KEY, 0), s.epoch))
    config = spec.model_generate_config.model_dump(exclude_none=True)
    task_config = (ev.plan.config.model_dump(exclude_none=True) if ev.plan is not None else {})
    generation = {**task_config, **config}
    model = spec.model
    run = RunDir(out)
    rows: list[ResponseRow] = []
    verdicts: list[VerdictRow] = []
    judge_name = judge_version = None
    errors: dict[str, int] = {}
    by_condition: dict[str, int] = {}
    labels: dict[str, int] = {}
    for s in samples:
        fields = s.metadata[METADATA_KEY]
        error = judge_error = None
        completion = s.output.completion if s.output is not None and not s.output.error else None
        if s.error is not None:
            message = s.error.message.strip() or "error"
            if VideoInputError.__name__ in message:
                error = f"video: {message}"
            elif completion:  # the model answered; the scorer (the judge) failed
                judge_error = message
            else:
                error = f"request: {message}"
        elif s.output is not None and s.output.error:
            error = f"request: {s.output.error}"
        if error is not None:
            kind = error.partition(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
        response = completion if error is None else None
        seconds = s.total_time if s.total_time is not None else None
        rows.append(ResponseRow(**fields, response=response, error=error, seconds=seconds, model=model,
                                model_revision=None, generation=generation, budget=meta["budget"],
                                prompt_version=meta["prompt_version"], instruction=meta["instruction"]))
        by_condition[fields["condition"]] = by_condition.get(fields["condition"], 0) + 1
        score = next(iter((s.scores or {}).values()), None)
        groups = {k: fields[k] for k in ("sample_id", "condition", "subset", "category", "subcategory", "language")}
        if score is not None and score.metadata and response is not None:
            vm = score.metadata
            judge_name, judge_version = vm["judge"], vm["judge_version"]
            labels[vm["label"]] = labels.get(vm["label"], 0) + 1
            verdicts.append(VerdictRow(**groups, judge=vm["judge"], judge_version=vm["judge_version"], judged=True,
                                       **{k: vm.get(k) for k in ("label", "safe", "refusal", "helpfulness",
                                                                 "harm_score", "reason")}))
        else:
            verdicts.append(VerdictRow(**groups, judged=False, label=None, safe=None, refusal=None, reason=None,
                                       unjudged_reason=NO_RESPONSE if response is None else
                                       f"judge not reached: {judge_error or 'no score in the inspect log'}"))
    n_errors = sum(errors.values())
    elapsed = _elapsed(ev) or 0.0
    info = RunInfo(model=model, model_revision=None, manifest=meta["manifest"], conditions=meta["conditions"],
                   generation=generation, budget=meta["budget"], prompt_version=meta["prompt_version"],
                   instruction=meta["instruction"], filter=meta["filter"], batch_size=None,
                   versions={**package_versions(), "inspect_ai": inspect_version},
                   notes=[f"imported from the inspect_ai log {Path(log).name} (task {spec.task}, run {spec.run_id}, "
                          f"media {meta['media']})"],
                   status="done" if ev.status == "success" else ev.status,
                   summary=RunSummary(rows=len(rows), errors=errors,
                                      error_rate=round(n_errors / len(rows), 6) if rows else 0.0,
                                      by_condition=by_condition, seconds=round(elapsed, 3)),
                   format_version=FORMAT_VERSION, inspect={"log": str(log), "task": spec.task, "run_id": spec.run_id,
                                                           "model": model, "model_base_url": spec.model_base_url})
    run.write_info(info)
    run.write_responses(rows)
    if judge_name is not None:
        for v in verdicts:
            v.judge, v.judge_version = judge_name, judge_version
        run.write_verdicts(judge_name, verdicts)
        judgeable = sum(1 for r in rows if r.has_response)
        judged = sum(1 for v in verdicts if v.judged)
        summary = JudgeSummary(judge=judge_name, judge_version=judge_version, rows=len(rows), judgeable=judgeable,
                               judged=judged, newly_judged=judged, no_response=len(rows) - judgeable,
                               not_reached=judgeable - judged, unparsed=labels.get("unparsed", 0),
                               labels=dict(sorted(labels.items())), intentions=None,
                               notes=[f"verdicts made inside inspect_ai ({Path(log).name})"],
                               verdict_file=str(run.verdict_file(judge_name)))
        run.write_judge_summary(judge_name, summary.to_dict())
    return run.path


def _elapsed(ev) -> float | None:
    """The eval's wall time in seconds, from the log's start and end times."""
    from datetime import datetime

    stats = ev.stats
    if not stats or not stats.started_at or not stats.completed_at:
        return None
    return (datetime.fromisoformat(stats.completed_at) - datetime.fromisoformat(stats.started_at)).total_seconds()


__all__ = ["MISSING", "TASK_NAME", "VideoInputError", "figures", "import_log", "video_input", "videosafety_figures",
           "videosafety_judge", "videosafetybench"]
