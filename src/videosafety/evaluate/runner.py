"""The evaluation runner: conditions x samples -> responses, stored, resumable, sharded.

The manifest is read once into a plan (evaluate.plan: sample, condition, cache key, prompt per
work item); frames are decoded in background threads while the model computes; finished work
lives in the SQLite cache, so a run killed at any moment and started again ends with every row
exactly once. The run folder's files and rows are evaluate.rundir's.
With N processes (`accelerate launch` / `torchrun`), work item i belongs to rank i mod N;
rank 0 writes the merged outputs once all ranks are done."""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from videosafety import __version__, taxonomy
from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.conditions import model_input
from videosafety.evaluate.cache import PROMPT_VERSION, ResponseCache, run_fingerprint
from videosafety.evaluate.plan import Plan, SampleFilter, WorkItem, condition_runs, make_plan
from videosafety.evaluate.rundir import FORMAT_VERSION, ResponseRow, RunDir, RunInfo, RunSummary
from videosafety.models.base import FailedResponse, GenerationSettings, ModelInput, VideoLLM


@dataclass
class EvalConfig:
    conditions: tuple[str, ...] = taxonomy.CONDITIONS
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    budget: FrameBudget = field(default_factory=FrameBudget)
    batch_size: int = 8
    prefetch_batches: int = 2
    decode_workers: int = 2
    force: bool = False
    max_error_rate: float = 0.05
    instruction: str | None = None  # appended to every query (tags.with_instruction), e.g. a reasoning format


@dataclass
class EvalSummary:
    rows: int = 0
    generated: int = 0  # by this process in this run
    cached: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error kind -> count
    error_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    by_condition: dict[str, int] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.n_errors / self.rows if self.rows else 0.0


def _chunks(it: Iterable, n: int) -> Iterator[list]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


def _error_kind(text: str) -> str:
    return text.split(":", 1)[0] if text.startswith(("video", "request")) else "error"


def package_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "videosafety": __version__}
    for pkg in ("torch", "transformers", "av", "numpy", "openai", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_eval(model: VideoLLM, manifest: str | Path, out_dir: str | Path, cfg: EvalConfig,
             selection: SampleFilter = SampleFilter(), *, rank: int = 0, world: int = 1,
             barrier: Callable[[], None] = lambda: None, progress: bool = True,
             extra_run_info: dict | None = None) -> EvalSummary:
    run = RunDir(out_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    fingerprint = run_fingerprint(model.name, model.revision, cfg.settings, cfg.budget, cfg.instruction)
    plan = make_plan(manifest, selection, cfg.conditions, fingerprint, cfg.instruction)
    summary = EvalSummary()
    t_start = time.perf_counter()
    info = RunInfo(
        model=model.name, model_revision=model.revision, manifest=str(manifest), conditions=list(cfg.conditions),
        generation=asdict(cfg.settings), budget=cfg.budget.model_dump(mode="json"), prompt_version=PROMPT_VERSION,
        instruction=cfg.instruction, filter=asdict(selection), batch_size=cfg.batch_size, processes=world,
        fingerprint=fingerprint, versions=package_versions(), format_version=FORMAT_VERSION,
        **(extra_run_info or {}))
    if rank == 0:
        run.write_info(info)

    cache = ResponseCache(run.cache_file)
    mine = [it for it in plan.items if it.index % world == rank]
    if cfg.force:
        cache.forget([it.key for it in mine])
        done: set[str] = set()
    else:
        done = cache.done([it.key for it in mine])
    summary.cached = sum(1 for it in mine if it.key in done)
    todo = [it for it in mine if it.key not in done]
    batches = [batch for items in condition_runs(todo) for batch in _chunks(items, cfg.batch_size)]

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm  # only when a bar is shown

        bar = tqdm(desc=f"eval {model.name}", unit="resp", dynamic_ncols=True, mininterval=1.0,
                   total=len(mine), initial=summary.cached)
    threads = decode_threads(model, cfg.decode_workers)
    with ThreadPoolExecutor(max(1, threads)) as decoder, ThreadPoolExecutor(1) as prefetcher:
        prepare = _preparer(model, plan.root, cfg, decoder if threads else None)
        ahead = cfg.prefetch_batches + 1 if threads else 0
        in_flight = [prefetcher.submit(prepare, batch) for batch in batches[:ahead]]
        for i, batch in enumerate(batches):
            if threads and i + ahead < len(batches):  # decode a later batch while this one generates
                in_flight.append(prefetcher.submit(prepare, batches[i + ahead]))
            prepared = in_flight.pop(0).result() if threads else prepare(batch)
            summary.generated += _generate(model, cfg.settings, batch, prepared, cache)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    barrier()
    if rank == 0:
        _write_rows(run, plan, cfg, model, cache, summary)
        summary.seconds = time.perf_counter() - t_start
        info.status = "failed" if summary.error_rate > cfg.max_error_rate else "done"
        info.summary = RunSummary(rows=summary.rows, errors=summary.errors, error_rate=round(summary.error_rate, 6),
                                  by_condition=summary.by_condition, seconds=round(summary.seconds, 3))
        run.write_info(info)
    cache.close()
    return summary


def decode_threads(model: VideoLLM, requested: int) -> int:
    """Background decoding threads worth having. While a GPU or a server computes, this
    machine's cores are free: `requested`. A model computing on this CPU leaves only the cores
    torch's threads do not use; with none spare (2 cores, torch's 2 threads) frames are decoded
    in line before each batch, since decoding beside generation slowed generation by more than
    the decoding cost (torch's threads wait for each other at every operation; measured in
    benchmarks/RESULTS.md, "Evaluation harness")."""
    if not model.reads_inputs or not model.cpu_bound:
        return requested
    import torch  # only for a model that runs on torch here

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(requested, cores - torch.get_num_threads()))


def _preparer(model: VideoLLM, root: Path, cfg: EvalConfig, decoder: ThreadPoolExecutor | None
              ) -> Callable[[list[WorkItem]], list[ModelInput | vio.VideoError]]:
    """Model inputs of a batch (decoded by `decoder`'s threads, or in line without one); a bad
    video becomes its VideoError (recorded on its row)."""
    if not model.reads_inputs:  # reference policies: no frames to decode
        return lambda batch: [ModelInput(query=it.sample.prompt, meta={"sample_id": it.sample.id,
                                                                       "condition": it.condition})
                              for it in batch]

    def one(it: WorkItem) -> ModelInput | vio.VideoError:
        try:
            return model_input(it.sample, it.condition, cfg.budget, root, query=it.sample.prompt)
        except vio.VideoError as e:
            return e
    return lambda batch: list(decoder.map(one, batch) if decoder is not None else map(one, batch))


def _generate_isolated(model: VideoLLM, inputs: list[ModelInput], settings: GenerationSettings) -> list:
    """model.generate over a batch; when the batch raises, each input is tried alone, so one bad
    input (a query far past the context, a frame the processor rejects) fails on its own row
    instead of failing its batch-mates too."""
    if not inputs:
        return []
    try:
        return model.generate(inputs, settings)
    except Exception as e:  # noqa: BLE001 - recorded on the rows, the run goes on
        if len(inputs) == 1:
            return [FailedResponse(f"{type(e).__name__}: {e}")]
    return [r for x in inputs for r in _generate_isolated(model, [x], settings)]


def _generate(model: VideoLLM, settings: GenerationSettings, batch: list[WorkItem],
              prepared: list[ModelInput | vio.VideoError], cache: ResponseCache) -> int:
    """Generate one batch and commit its responses and failures; returns the successes."""
    ok = [(it.key, x) for it, x in zip(batch, prepared) if isinstance(x, ModelInput)]
    failures = [(it.key, f"video: {x}") for it, x in zip(batch, prepared) if not isinstance(x, ModelInput)]
    t0 = time.perf_counter()
    responses = _generate_isolated(model, [x for _, x in ok], settings)
    per_item = (time.perf_counter() - t0) / max(1, len(ok))
    successes = []
    for (key, _), r in zip(ok, responses):
        if isinstance(r, FailedResponse):
            failures.append((key, f"request: {r.error}"))
        else:
            successes.append((key, r, per_item))
    cache.put(successes, failures)
    return len(successes)


def _write_rows(run: RunDir, plan: Plan, cfg: EvalConfig, model: VideoLLM, cache: ResponseCache,
                summary: EvalSummary) -> None:
    """responses.jsonl from the cache, in the plan's order, atomically."""
    errors: Counter = Counter()
    by_condition: Counter = Counter()
    generation, budget = asdict(cfg.settings), cfg.budget.model_dump(mode="json")

    def rows() -> Iterator[ResponseRow]:
        for chunk in _chunks(plan.items, 512):
            found = cache.get([it.key for it in chunk])
            for it in chunk:
                s = it.sample
                response, error, seconds = found.get(it.key, (None, "missing: no response recorded", None))
                if error is not None:
                    errors[_error_kind(error)] += 1
                    if len(summary.error_examples) < 20:
                        summary.error_examples.append(f"{s.id} [{it.condition}] {error}")
                by_condition[it.condition] += 1
                yield ResponseRow(
                    sample_id=s.id, condition=it.condition, subset=s.subset, category=s.category,
                    subcategory=s.subcategory, language=s.language, video_label=s.video_label,
                    query_label=s.query_label, prompt=s.prompt, harmful_intention=s.harmful_intention,
                    video=s.video.path, response=response, error=error, seconds=seconds, cache_key=it.key, model=model.name,
                    model_revision=model.revision, generation=generation, budget=budget,
                    prompt_version=PROMPT_VERSION, instruction=cfg.instruction, attack=s.attack, peer=s.peer,
                    peer_subset=s.peer_subset)

    summary.rows = run.write_responses(rows())
    summary.errors = dict(errors)
    summary.by_condition = dict(by_condition)
