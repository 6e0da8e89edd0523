"""The run folder: its files, and the typed records in them. Every reader and writer of a run
goes through this module, so the format is declared once.

    RUN/run.json                  RunInfo: model, manifest, selection, budget, generation, status
    RUN/responses.jsonl           ResponseRow: one per (sample, condition), in work order
    RUN/cache.sqlite              the response cache (evaluate.cache)
    RUN/verdicts/<slug>.jsonl     VerdictRow: one per response row, same order, per judge
    RUN/verdicts/<slug>.json      the judge's summary (judges.run.JudgeSummary)
    RUN/verdicts/cache.sqlite     the verdict cache (judges.run)
    OUT/results.json              report.results.Results (written by the report)

Format versions: 2 adds ``harmful_intention`` to every response row, so judges never go back
to the manifest. Folders of format 1 (rows without it, run.json without ``format_version``)
still read: :meth:`RunDir.iter_responses` fills the intentions from the manifest that run.json
names, once per read, and says so when it cannot (``RunDir.intentions_note``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT_VERSION = 2
RUN_FILE = "run.json"
RESPONSES = "responses.jsonl"
CACHE_FILE = "cache.sqlite"
VERDICTS_DIR = "verdicts"
RESULTS = "results.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
NO_INTENTION = "none stated"  # what a judge prompt shows when a sample has no harmful intention


class RunError(ValueError):
    """A run folder that cannot be read; the message names the file, line and field."""


class RunSummary(BaseModel):
    rows: int = 0
    errors: dict[str, int] = {}
    error_rate: float = 0.0
    by_condition: dict[str, int] = {}
    seconds: float = 0.0


class RunInfo(BaseModel):
    """run.json. Unknown keys (a sweep's point, notes of callers) are kept."""

    model_config = ConfigDict(extra="allow")

    model: str
    model_revision: str | None = None
    manifest: str | None = None
    conditions: list[str] = []
    generation: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    prompt_version: str | None = None
    instruction: str | None = None
    filter: dict[str, Any] = {}
    batch_size: int | None = None
    processes: int = 1
    fingerprint: str | None = None
    versions: dict[str, str] = {}
    notes: list[str] = []
    status: str = "running"
    summary: RunSummary | None = None
    format_version: int = 1  # absent in folders written before the format had a version


class ResponseRow(BaseModel):
    """One (sample, condition): what was asked, what came back, and everything a judge or the
    report needs about the sample, so neither reads the manifest again."""

    model_config = ConfigDict(extra="allow")

    sample_id: str
    condition: str
    subset: str
    category: str = ""
    subcategory: str = ""
    language: str = ""
    video_label: int | None = None
    query_label: int | None = None
    prompt: str = ""
    harmful_intention: str | None = None
    video: str | None = None  # the sample's video, relative to the manifest's folder (judges that see it)
    response: str | None = None
    error: str | None = None
    seconds: float | None = None
    cache_key: str | None = None
    model: str | None = None
    model_revision: str | None = None
    generation: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    prompt_version: str | None = None
    instruction: str | None = None
    attack: str | None = None  # derived by data.augment: the report groups by it
    peer: str | None = None  # converted by data.peers: the report groups by them
    peer_subset: str | None = None

    @property
    def has_response(self) -> bool:
        return self.error is None and self.response is not None


class VerdictRow(BaseModel):
    """One row of a verdict file (see judges.run for when a row is unjudged)."""

    model_config = ConfigDict(extra="allow")

    sample_id: str
    condition: str
    subset: str = ""
    category: str = ""
    subcategory: str = ""
    language: str = ""
    judge: str | None = None
    judge_version: str | None = None
    judged: bool = True
    label: str | None = None
    safe: bool | None = None
    refusal: bool | None = None
    helpfulness: int | float | None = None  # 1-5 where the judge gives one
    harm_score: float | None = None
    reason: str | None = ""
    unjudged_reason: str | None = None


class RateCell(BaseModel):
    """A rate in results.json: k of n with its Wilson interval, and the rows left out of n."""

    model_config = ConfigDict(extra="allow")

    value: float | None
    k: int
    n: int
    ci: list[float] | None = None
    no_response: int = 0
    unjudged: int = 0
    unparsed: int = 0
    undecided: int = 0


class Breakdown(BaseModel):
    """One (subset, condition) of a rate: overall and by each grouping the report shows."""

    model_config = ConfigDict(extra="allow")

    all: RateCell
    by_category: dict[str, RateCell] = {}
    by_subcategory: dict[str, RateCell] = {}
    by_language: dict[str, RateCell] = {}
    by_category_language: dict[str, dict[str, RateCell]] = {}


class Estimate(BaseModel):
    model_config = ConfigDict(extra="allow")

    value: float | None
    ci: list[float] | None = None


class Drop(BaseModel):
    """DSR from one condition to another (e.g. text -> video), paired over samples."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    from_condition: str = Field(alias="from")
    to_condition: str = Field(alias="to")
    dsr_from: dict[str, Any]
    dsr_to: dict[str, Any]
    relative: Estimate
    absolute: Estimate
    n_paired: int


class JudgeRef(BaseModel):
    model_config = ConfigDict(extra="allow")

    slug: str
    name: str | None = None
    version: str | None = None


class RunResults(BaseModel):
    """The figures of one run (one model) in results.json."""

    model_config = ConfigDict(extra="allow")

    run_dir: str
    model: str
    label: str = ""
    budget: dict[str, Any] | None = None
    budget_str: str = "unknown"
    judge: JudgeRef
    conditions: list[str]
    rows: int
    dsr: dict[str, dict[str, Breakdown]] = {}
    frr: dict[str, dict[str, Breakdown]] = {}
    helpfulness: dict[str, dict[str, Estimate]] = {}
    drop: dict[str, dict[str, Drop]] = {}
    warnings: list[str] = []

    def rate(self, metric: str, subset: str, condition: str) -> RateCell | None:
        """The overall cell of `metric` ("dsr" or "frr") for a subset and condition, if any."""
        cell = getattr(self, metric).get(subset, {}).get(condition)
        return cell.all if cell is not None else None

    def text_to_video(self, subset: str = "HH") -> Drop | None:
        return self.drop.get(subset, {}).get("text_to_video")


class Results(BaseModel):
    """results.json: every figure of one or many runs (report.results computes it)."""

    model_config = ConfigDict(extra="allow")

    schema_version: int
    runs: list[RunResults]
    comparison: dict[str, Any] = {}

    def to_json(self) -> dict:
        """The JSON form, keys as written (the renderers and results.json read this)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def read(cls, path: str | Path) -> "Results":
        return cls.model_validate_json(Path(path).read_bytes())

    def write(self, path: str | Path) -> None:
        write_atomic(Path(path), json.dumps(self.to_json(), indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def judge_slug(name: str) -> str:
    """A file name for a judge: "rules" stays "rules"; any name with other characters becomes a
    readable slug plus 8 hex digits of its hash (two names never share a file)."""
    slug = re.sub(r"[^a-z0-9._]+", "-", name.lower()).strip("-.")[:80] or "judge"
    if slug == name:
        return slug
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _rows(path: Path, model: type[BaseModel]) -> Iterator:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (is {path.parent} a run folder?)") from None
    with f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(x) for x in err.get("loc", ())) or "row"
                raise RunError(f"{path}:{line_no}: {where}: {err['msg']}") from None


def write_atomic(path: Path, text: str) -> None:
    """A file never stands half-written: write beside it, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# Groupings only some benchmarks have: written only where a row has them.
_ONLY_WHEN_SET = ("attack", "peer", "peer_subset")


def write_jsonl_atomic(path: Path, rows: Iterable[BaseModel]) -> int:
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            absent = {k for k in _ONLY_WHEN_SET if getattr(row, k, 0) is None}
            f.write(row.model_dump_json(exclude=absent or None) + "\n")
            n += 1
    tmp.replace(path)
    return n


class RunDir:
    """A run folder. Paths, typed readers and atomic writers; nothing else."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.intentions_note: str | None = None  # set when a format-1 folder's intentions could not be read
        self.videos_note: str | None = None  # set when video_resolver cannot place some videos

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths
    @property
    def info_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def responses_file(self) -> Path:
        return self.path / RESPONSES

    @property
    def cache_file(self) -> Path:
        return self.path / CACHE_FILE

    @property
    def verdicts_dir(self) -> Path:
        return self.path / VERDICTS_DIR

    @property
    def verdict_cache_file(self) -> Path:
        return self.verdicts_dir / CACHE_FILE

    def verdict_file(self, judge_name: str) -> Path:
        return self.verdicts_dir / f"{judge_slug(judge_name)}.jsonl"

    def judge_summary_file(self, judge_name: str) -> Path:
        return self.verdicts_dir / f"{judge_slug(judge_name)}.json"

    def verdict_files(self) -> dict[str, Path]:
        """slug -> verdict file, for every judge that has judged this run."""
        if not self.verdicts_dir.is_dir():
            return {}
        return {p.stem: p for p in sorted(self.verdicts_dir.glob("*.jsonl"))}

    def has_responses(self) -> bool:
        return self.responses_file.is_file()

    # -- run.json
    def read_info(self) -> RunInfo | None:
        """run.json, or None when the folder has none (a hand-made run)."""
        if not self.info_file.is_file():
            return None
        try:
            return RunInfo.model_validate_json(self.info_file.read_bytes())
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err.get("loc", ())) or "file"
            raise RunError(f"{self.info_file}: {where}: {err['msg']}") from None

    def write_info(self, info: RunInfo) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.info_file, info.model_dump_json(indent=2))

    # -- responses.jsonl
    def iter_responses(self, *, with_intentions: bool = True) -> Iterator[ResponseRow]:
        """The response rows, streamed and validated (errors name file:line: field). Rows of a
        format-1 folder get their harmful intention from the manifest run.json names (unless
        `with_intentions` is False: a reader that does not need them skips the manifest)."""
        rows = _rows(self.responses_file, ResponseRow)
        info = self.read_info()
        if not with_intentions or (info is not None and info.format_version >= 2):
            yield from rows
            return
        intentions = self._legacy_intentions(info)
        for row in rows:
            if intentions is not None and row.harmful_intention is None:
                row.harmful_intention = intentions.get(row.sample_id)
            yield row

    def write_responses(self, rows: Iterable[ResponseRow]) -> int:
        self.path.mkdir(parents=True, exist_ok=True)
        return write_jsonl_atomic(self.responses_file, rows)

    def _legacy_intentions(self, info: RunInfo | None) -> dict[str, str | None] | None:
        # The data layer sits below evaluation; imported here because only old folders need it.
        from videosafety.data.manifest import iter_rows

        self.intentions_note = None
        manifest = info.manifest if info is not None else None
        if not manifest:
            self.intentions_note = f"{self.info_file} names no manifest: harmful intentions not available"
            return None
        for candidate in (Path(manifest), self.path / manifest):
            if candidate.exists():
                try:
                    return {item.id: item.harmful_intention for _, item in iter_rows(candidate)
                            if not isinstance(item, list)}
                except (OSError, ValueError) as e:
                    self.intentions_note = f"manifest {candidate} unreadable ({e}): harmful intentions not available"
                    return None
        self.intentions_note = f"manifest {manifest} not found: harmful intentions not available"
        return None

    # -- videos (for judges that see them)
    def manifest_path(self, info: RunInfo | None = None) -> Path | None:
        """The manifest run.json names, as given or relative to the run folder; None if absent."""
        info = info if info is not None else self.read_info()
        manifest = info.manifest if info is not None else None
        if not manifest:
            return None
        return next((c for c in (Path(manifest), self.path / manifest) if c.exists()), None)

    def video_resolver(self):
        """A function: response row -> the file of its sample's video (str), or None.

        The path is the row's ``video`` (rows written since it exists) or, for older rows, the
        manifest's; it is resolved inside the manifest's folder and refused if it leaves it,
        symlinks included (paths.resolve_video_path). Where a video cannot be placed (no
        manifest, sample not in it, path refused) the answer is None, and ``videos_note`` counts
        those rows and says why. The manifest is read at most once, and only if a row needs it."""
        from videosafety.paths import resolve_video_path

        manifest = self.manifest_path()
        root = None
        if manifest is not None:
            from videosafety.data.manifest import manifest_root

            root = manifest_root(manifest)
        by_id: dict[str, str] | None = None
        missing: dict[str, int] = {}

        def note(why: str) -> None:
            missing[why] = missing.get(why, 0) + 1
            self.videos_note = "videos not available for " + "; ".join(
                f"{n} row(s): {w}" for w, n in missing.items()) + " (judged on text only)"

        def resolve(row: ResponseRow) -> str | None:
            nonlocal by_id
            if root is None:
                note(f"{self.info_file} names no readable manifest")
                return None
            rel = row.video
            if rel is None:
                if by_id is None:
                    from videosafety.data.manifest import iter_rows

                    by_id = {item.id: item.video.path for _, item in iter_rows(manifest)
                             if not isinstance(item, list)}
                rel = by_id.get(row.sample_id)
                if rel is None:
                    note(f"sample not in {manifest}")
                    return None
            try:
                return str(resolve_video_path(root, rel))
            except ValueError as e:
                note(f"video path refused ({e})")
                return None

        return resolve

    # -- verdicts
    def iter_verdicts(self, judge: str) -> Iterator[VerdictRow]:
        """Rows of a verdict file, by judge name or by slug (the file's stem)."""
        path = self.verdicts_dir / f"{judge}.jsonl"
        if not path.is_file():
            path = self.verdict_file(judge)
        return _rows(path, VerdictRow)

    def write_verdicts(self, judge_name: str, rows: Iterable[VerdictRow]) -> Path:
        out = self.verdict_file(judge_name)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(out, rows)
        return out

    def write_judge_summary(self, judge_name: str, summary: dict) -> Path:
        out = self.judge_summary_file(judge_name)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps(summary, indent=2, ensure_ascii=False))
        return out


def report_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where a report in OUT_DIR is written: results.json, report.md, report.html."""
    out = Path(out_dir)
    return {"results": out / RESULTS, "markdown": out / REPORT_MD, "html": out / REPORT_HTML}


__all__ = ["FORMAT_VERSION", "NO_INTENTION", "Breakdown", "Drop", "Estimate", "JudgeRef", "RateCell",
           "ResponseRow", "Results", "RunDir", "RunError", "RunInfo", "RunResults", "RunSummary", "VerdictRow",
           "judge_slug", "report_paths", "write_atomic", "write_jsonl_atomic"]
