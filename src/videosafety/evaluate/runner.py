"""The evaluation runner: conditions x samples -> responses, stored, resumable, sharded.

Samples stream from the manifest (memory stays flat however large the benchmark); frames are
decoded in background threads while the model computes; finished work lives in the SQLite
cache, so a run killed at any moment and started again ends with every row exactly once.
With N processes (`accelerate launch` / `torchrun`), work item i belongs to rank i mod N;
rank 0 writes the merged outputs once all ranks are done."""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from videosafety import __version__, taxonomy
from videosafety import video as vio
from videosafety.budget import FrameBudget
from videosafety.conditions import model_input
from videosafety.tags import with_instruction
from videosafety.data.manifest import iter_samples, manifest_root
from videosafety.evaluate.cache import PROMPT_VERSION, ResponseCache, cache_key, run_fingerprint
from videosafety.models.base import FailedResponse, GenerationSettings, ModelInput, VideoLLM
from videosafety.schema import Sample

RESPONSES = "responses.jsonl"
RUN_FILE = "run.json"
CACHE_FILE = "cache.sqlite"


@dataclass(frozen=True)
class SampleFilter:
    split: str | None = "eval"
    subsets: tuple[str, ...] | None = None
    languages: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None  # categories or sub-categories
    limit: int | None = None  # evenly spread over the filtered samples, so every stratum shows

    def keeps(self, s: Sample) -> bool:
        return ((self.split is None or s.split == self.split)
                and (self.subsets is None or s.subset in self.subsets)
                and (self.languages is None or s.language in self.languages)
                and (self.categories is None or s.category in self.categories or s.subcategory in self.categories))


def select_samples(manifest: str | Path, flt: SampleFilter) -> Callable[[], Iterator[Sample]]:
    """A re-iterable stream of the selected samples (two passes at most; no list kept)."""
    if flt.limit is None:
        return lambda: (s for s in iter_samples(manifest) if flt.keeps(s))
    total = sum(1 for s in iter_samples(manifest) if flt.keeps(s))
    n = min(flt.limit, total)
    chosen = set(np.linspace(0, total - 1, n).round().astype(int).tolist()) if n else set()

    def stream() -> Iterator[Sample]:
        i = 0
        for s in iter_samples(manifest):
            if flt.keeps(s):
                if i in chosen:
                    yield s
                i += 1
    return stream


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
             flt: SampleFilter = SampleFilter(), *, rank: int = 0, world: int = 1,
             barrier: Callable[[], None] = lambda: None, progress: bool = True,
             extra_run_info: dict | None = None) -> EvalSummary:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = manifest_root(manifest)
    stream = select_samples(manifest, flt)
    fp = run_fingerprint(model.name, model.revision, cfg.settings, cfg.budget, cfg.instruction)
    summary = EvalSummary()
    t_start = time.perf_counter()
    run_info = {
        "model": model.name, "model_revision": model.revision, "manifest": str(manifest),
        "conditions": list(cfg.conditions), "generation": asdict(cfg.settings),
        "budget": cfg.budget.model_dump(mode="json"), "prompt_version": PROMPT_VERSION, "instruction": cfg.instruction,
        "filter": asdict(flt), "batch_size": cfg.batch_size, "processes": world,
        "fingerprint": fp, "versions": package_versions(), **(extra_run_info or {}),
    }
    if rank == 0:
        (out / RUN_FILE).write_text(json.dumps({**run_info, "status": "running"}, indent=2))

    cache = ResponseCache(out / CACHE_FILE)
    # Work items in a fixed order (condition-major, then manifest order); item i is rank i % world's.
    def my_pending() -> Iterator[tuple[str, list[Sample], list[str]]]:
        index = 0
        for condition in cfg.conditions:
            for chunk in _chunks(stream(), 256):
                keys = [cache_key(fp, s, condition) for s in chunk]
                mine = [(s, k) for j, (s, k) in enumerate(zip(chunk, keys)) if (index + j) % world == rank]
                index += len(chunk)
                if cfg.force:
                    cache.forget([k for _, k in mine])
                    done = set()
                else:
                    done = cache.done([k for _, k in mine])
                summary.cached += sum(1 for _, k in mine if k in done)
                todo = [(s, k) for s, k in mine if k not in done]
                for batch in _chunks(todo, cfg.batch_size):
                    yield condition, [s for s, _ in batch], [k for _, k in batch]

    # A model that never looks at its input (reference policies) gets no decoded frames.
    reads_inputs = getattr(model, "reads_inputs", True)

    def prepare(condition: str, samples: list[Sample]) -> list[ModelInput | vio.VideoError]:
        if not reads_inputs:
            return [ModelInput(query=s.query, meta={"sample_id": s.id, "condition": condition}) for s in samples]

        def one(s: Sample):
            try:
                return model_input(s, condition, cfg.budget, root, instruction=cfg.instruction)
            except vio.VideoError as e:
                return e
        return list(decoder.map(one, samples))

    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(desc=f"eval {model.name}", unit="resp", dynamic_ncols=True, mininterval=1.0)

    with ThreadPoolExecutor(cfg.decode_workers) as decoder, ThreadPoolExecutor(1) as prefetcher:
        pending_futures = []
        work = my_pending()

        def submit_next() -> bool:
            item = next(work, None)
            if item is None:
                return False
            condition, samples, keys = item
            pending_futures.append((condition, samples, keys, prefetcher.submit(prepare, condition, samples)))
            return True

        for _ in range(cfg.prefetch_batches + 1):
            if not submit_next():
                break
        while pending_futures:
            condition, samples, keys, fut = pending_futures.pop(0)
            submit_next()  # decode the next batch while this one generates
            prepared = fut.result()
            ok = [(k, x) for k, x in zip(keys, prepared) if isinstance(x, ModelInput)]
            failures = [(k, f"video: {x}") for k, x in zip(keys, prepared) if not isinstance(x, ModelInput)]
            t0 = time.perf_counter()
            try:
                responses = model.generate([x for _, x in ok], cfg.settings) if ok else []
            except Exception as e:  # a backend that raises loses this batch only
                responses = [FailedResponse(f"{type(e).__name__}: {e}")] * len(ok)
            per = (time.perf_counter() - t0) / max(1, len(ok))
            successes = []
            for (k, _), r in zip(ok, responses):
                if isinstance(r, FailedResponse):
                    failures.append((k, f"request: {r.error}"))
                else:
                    successes.append((k, r, per))
            cache.put(successes, failures)
            summary.generated += len(successes)
            if bar is not None:
                bar.update(len(keys))
    if bar is not None:
        bar.close()
    barrier()
    if rank == 0:
        _write_rows(out, stream, cfg, fp, model, cache, summary)
        summary.seconds = time.perf_counter() - t_start
        status = "failed" if summary.error_rate > cfg.max_error_rate else "done"
        (out / RUN_FILE).write_text(json.dumps({**run_info, "status": status, "summary": {
            "rows": summary.rows, "errors": summary.errors, "error_rate": round(summary.error_rate, 6),
            "by_condition": summary.by_condition, "seconds": round(summary.seconds, 3)}}, indent=2))
    cache.close()
    return summary


def _write_rows(out: Path, stream, cfg: EvalConfig, fp: str, model: VideoLLM, cache: ResponseCache,
                summary: EvalSummary) -> None:
    """responses.jsonl from the cache, in work order, atomically (a partial file never stands)."""
    tmp = out / (RESPONSES + ".tmp")
    errors: Counter = Counter()
    by_cond: Counter = Counter()
    base = {"model": model.name, "model_revision": model.revision, "generation": asdict(cfg.settings),
            "budget": cfg.budget.model_dump(mode="json"), "prompt_version": PROMPT_VERSION,
            "instruction": cfg.instruction}
    with open(tmp, "w", encoding="utf-8") as f:
        for condition in cfg.conditions:
            for chunk in _chunks(stream(), 512):
                keys = [cache_key(fp, s, condition) for s in chunk]
                found = cache.get(keys)
                for s, k in zip(chunk, keys):
                    response, error, seconds = found.get(k, (None, "missing: no response recorded", None))
                    if error is not None:
                        errors[_error_kind(error)] += 1
                        if len(summary.error_examples) < 20:
                            summary.error_examples.append(f"{s.id} [{condition}] {error}")
                    row = {"sample_id": s.id, "condition": condition, "subset": s.subset, "category": s.category,
                           "subcategory": s.subcategory, "language": s.language, "video_label": s.video_label,
                           "query_label": s.query_label, "prompt": with_instruction(s.query, cfg.instruction),
                           "response": response, "error": error, "seconds": seconds, "cache_key": k, **base}
                    if s.provenance.get("attack"):  # derived by data.augment: the report groups by it
                        row["attack"] = s.provenance["attack"]
                    for key in ("peer", "peer_subset"):  # converted by data.peers: the report groups by them
                        if s.provenance.get(key):
                            row[key] = s.provenance[key]
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    by_cond[condition] += 1
    tmp.replace(out / RESPONSES)
    summary.rows = sum(by_cond.values())
    summary.errors = dict(errors)
    summary.by_condition = dict(by_cond)


def read_responses(run_dir: str | Path) -> Iterator[dict]:
    with open(Path(run_dir) / RESPONSES, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)
