"""Judging a run: ``RUN_DIR/responses.jsonl`` -> ``RUN_DIR/verdicts/<judge slug>.jsonl``.

Streaming (responses are read twice, never held in memory), batched, cached and resumable:
every batch of verdicts is committed to ``RUN_DIR/verdicts/cache.sqlite`` before the next one is
asked, so a run killed at any moment and started again only asks for what is missing. The cache
key hashes the judge's name, version and revision (weights digest of a local judge) with what
the judge reads: sample id, condition, subset, sub-category, language, query, harmful intention
and the response text it reads (the whole response, reasoning blocks included; a judge wrapped
by ``scoped(judge, "answer")``, named ``<name>@answer``, reads the <answer> block of tagged
responses only) (and, for a judge that sees the video, the video file of video-condition
rows: ``RunDir.video_resolver``). Several judges share the cache and write side by side, one
verdict file each. ``force=True`` asks the judge again for every row (and replaces the cached verdicts).

The verdict file (written at the end, atomically: a partial file never stands) has ONE row per
row of responses.jsonl, in the same order:

* ``sample_id``, ``condition``, ``subset``, ``category``, ``subcategory``, ``language``: copied;
* ``judge``, ``judge_version``: on every row (the judge that made, or would have made, it);
* ``judged``: True when the row has a verdict (``unparsed`` verdicts included: they are results);
* ``label``, ``safe``, ``refusal``, ``helpfulness``, ``harm_score``, ``reason``: the verdict's, or
  null when ``judged`` is False;
* ``unjudged_reason``: null when judged, else ``"no response"`` (the generation failed: nothing
  to judge) or ``"judge not reached: <error>"`` (the judge could not be asked; the next run asks
  again).

Beside it, ``<judge slug>.json`` holds the summary (``JudgeSummary``): judge name, version and
revision, counts per label, coverage (judged / judgeable rows), unparsed count, and where the
harmful intentions came from (the response rows carry them; a run folder written before they
did gets them from the manifest named in ``run.json``). A judge that reads the intention is not
asked about a row of a subset whose request only the intention states (HB,
``taxonomy.INTENTION_REQUIRED_SUBSETS``) when the row has none: "none stated" would read as a
benign request and inflate HB's DSR. Such a row is unjudged (``unjudged_reason`` "no harmful
intention: ..."), counted in ``no_intention`` and explained in the notes. The files are
evaluate.rundir's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path

from videosafety import tags, taxonomy
from videosafety.evaluate.rundir import ResponseRow, RunDir, VerdictRow, judge_slug
from videosafety.judges.base import Judge, JudgeInput, Verdict
from videosafety.store import open_store

NO_RESPONSE = "no response"
NO_INTENTION = "no harmful intention"


@dataclass(frozen=True)
class _Refused:
    """A row the judge must not be asked about; `reason` goes on its verdict row."""

    reason: str


def must_not_judge(judge: Judge, row: ResponseRow, why: str | None = None) -> _Refused | None:
    """Why `judge` must not judge `row`, or None: a judge that reads the harmful intention is not
    asked about an HB row without one (`why`: where the intentions should have come from)."""
    if (judge.needs_intention and row.subset in taxonomy.INTENTION_REQUIRED_SUBSETS
            and not row.harmful_intention):
        return _Refused(f"{NO_INTENTION}: {judge.name} reads it and an {row.subset} query alone reads as "
                        f"benign ({why or 'the row carries none'})")
    return None
COMMIT_SECONDS = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT NOT NULL, verdict TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, judge TEXT NOT NULL, error TEXT NOT NULL, created REAL);
"""


def verdict_path(run_dir: str | Path, judge_name: str) -> Path:
    return RunDir(run_dir).verdict_file(judge_name)


def summary_path(run_dir: str | Path, judge_name: str) -> Path:
    return RunDir(run_dir).judge_summary_file(judge_name)


def read_verdicts(run_dir: str | Path, judge_name: str) -> Iterator[dict]:
    """The rows of a judge's verdict file as dicts, streamed."""
    return (v.model_dump() for v in RunDir(run_dir).iter_verdicts(judge_name))


def verdict_key(judge: Judge, item: JudgeInput) -> str:
    parts = (judge.name, judge.version, judge.revision, item.sample_id, item.condition,
             item.subset, item.subcategory, item.language, item.query, item.harmful_intention, item.response)
    if item.video is not None:  # only judges that see the video; other judges' keys stay as they were
        parts += (item.video,)
    # unit separators between fields, NUL for None: unambiguous for text without control characters
    payload = "\x1f".join("\x00" if x is None else str(x) for x in parts)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


VERDICT_FIELDS = ("label", "safe", "refusal", "helpfulness", "harm_score", "reason")
_VERDICT_NAMES = tuple(f.name for f in fields(Verdict))


def verdict_row(v: Verdict) -> dict:
    """Verdict.to_row() without dataclasses.asdict's deep copies (all fields are scalars)."""
    return {k: getattr(v, k) for k in _VERDICT_NAMES}


# ------------------------------------------------------------------------------------ cache


class VerdictCache:
    """SQLite store of verdicts (one transaction per batch; WAL, like the response cache)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = open_store(self.path, _SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _select(self, table: str, cols: str, keys: Sequence[str]) -> list[tuple]:
        out: list[tuple] = []
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            q = f"SELECT key, {cols} FROM {table} WHERE key IN ({','.join('?' * len(chunk))})"
            out += self.db.execute(q, chunk).fetchall()
        return out

    def has(self, keys: Sequence[str]) -> set[str]:
        return {r[0] for r in self._select("verdicts", "1", keys)}

    def get(self, keys: Sequence[str]) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self._select("verdicts", "verdict", keys)}

    def failures(self, keys: Sequence[str]) -> dict[str, str]:
        return dict(self._select("failures", "error", keys))

    def put(self, judge_name: str, verdicts: Sequence[tuple[str, dict]], failures: Sequence[tuple[str, str]]) -> None:
        now = time.time()
        with self.db:  # one transaction: the batch lands whole or not at all
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                                [(k, judge_name, json.dumps(v, ensure_ascii=False), now) for k, v in verdicts])
            self.db.executemany("DELETE FROM failures WHERE key = ?", [(k,) for k, _ in verdicts])
            self.db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                                [(k, judge_name, e, now) for k, e in failures])

    def forget(self, keys: Sequence[str]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM verdicts WHERE key = ?", [(k,) for k in keys])


# ------------------------------------------------------------------------------------ inputs


def _chunks(it, n: int) -> Iterator[list]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


class AnswerScoped:
    """`inner` reading only the <answer> block of tagged responses (tags.judged_text "answer"):
    a judge variant of its own, named ``<inner name>@answer``, so that its verdicts get their own
    file and cache keys beside the full-scope judge's."""

    scope = "answer"

    def __init__(self, inner: Judge) -> None:
        if judge_scope(inner) != "full":
            raise ValueError(f"{inner.name} is scoped already")
        self.inner = inner
        self.name = inner.name + tags.ANSWER_SCOPE_SUFFIX
        self.version, self.revision = inner.version, inner.revision
        self.needs_intention = inner.needs_intention
        self.needs_video = sees_video(inner)

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict | Exception]:
        return self.inner.judge(items)


def judge_scope(judge: Judge) -> str:
    return getattr(judge, "scope", tags.DEFAULT_JUDGE_SCOPE)


def scoped(judge: Judge, scope: str = tags.DEFAULT_JUDGE_SCOPE) -> Judge:
    """`judge` reading the part of each response `scope` names (tags.JUDGE_SCOPES)."""
    if scope not in tags.JUDGE_SCOPES:
        raise ValueError(f"judge scope must be one of {', '.join(tags.JUDGE_SCOPES)}, got {scope!r}")
    return AnswerScoped(judge) if scope == "answer" else judge


def judge_input(row: ResponseRow, *, with_intention: bool = True, video: str | None = None,
                scope: str = tags.DEFAULT_JUDGE_SCOPE) -> JudgeInput:
    """What a judge reads of a response row: the whole response, reasoning included, or with
    scope "answer" the <answer> block of a tagged one (and, for a judge that sees it, the video
    file `video`)."""
    return JudgeInput(sample_id=row.sample_id, condition=row.condition, subset=row.subset,
                      subcategory=row.subcategory, language=row.language, query=row.prompt,
                      response=tags.judged_text(row.response, scope),
                      harmful_intention=row.harmful_intention if with_intention else None, video=video)


def sees_video(judge: Judge) -> bool:
    return bool(getattr(judge, "needs_video", False))


def input_maker(run: RunDir, judge: Judge):
    """row -> the JudgeInput `judge` reads: with the harmful intention if it reads one, and the
    video file of video-condition rows if it sees videos (``run.videos_note`` says which it could
    not place)."""
    video_of = run.video_resolver() if sees_video(judge) else None

    def make(row: ResponseRow) -> JudgeInput:
        video = video_of(row) if video_of is not None and row.condition == "video" else None
        return judge_input(row, with_intention=judge.needs_intention, video=video, scope=judge_scope(judge))

    return make


# ------------------------------------------------------------------------------------ running


@dataclass
class JudgeSummary:
    judge: str
    judge_version: str
    judge_revision: str | None = None
    scope: str = tags.DEFAULT_JUDGE_SCOPE  # what of each response it read (tags.JUDGE_SCOPES)
    rows: int = 0  # rows of responses.jsonl
    judgeable: int = 0  # rows with a response
    judged: int = 0  # rows with a verdict in the file (unparsed included)
    newly_judged: int = 0  # verdicts made by this call
    cached: int = 0  # verdicts found in the cache
    not_reached: int = 0  # judgeable rows the judge could not be asked about
    no_response: int = 0  # rows whose generation failed
    unparsed: int = 0
    no_intention: int = 0  # rows not judged: the judge reads the harmful intention and the row lacks it
    labels: dict[str, int] = field(default_factory=dict)
    intentions: str | None = None  # the file the harmful intentions came from, or None
    notes: list[str] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdict_file: str = ""

    @property
    def coverage(self) -> float:
        """judged / judgeable (1.0 when nothing is judgeable)."""
        return self.judged / self.judgeable if self.judgeable else 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "coverage": round(self.coverage, 6)}


def judge_run(run_dir: str | Path, judge: Judge, *, force: bool = False, batch_size: int = 64,
              progress: bool = True) -> JudgeSummary:
    """Judge every row of RUN_DIR/responses.jsonl that has a response; write the verdict file and
    its summary (see the module docstring); return the summary."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    run = RunDir(run_dir)
    if not run.has_responses():
        raise FileNotFoundError(f"{run.responses_file}: no responses to judge (run `videosafety eval` first)")
    t0 = time.perf_counter()
    summary = JudgeSummary(judge=judge.name, judge_version=judge.version, judge_revision=judge.revision,
                           scope=judge_scope(judge))
    if not judge.needs_intention:
        summary.notes.append(f"{judge.name} does not read harmful intentions")
    make_input = input_maker(run, judge)

    cache = VerdictCache(run.verdict_cache_file)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # only when a bar is shown

        bar = tqdm(desc=f"judge {judge.name}", unit="resp", dynamic_ncols=True, mininterval=1.0)
    # One verdict key per response row (None: no response; _Refused: not to be judged), computed
    # once for judging and writing.
    keys: list[str | _Refused | None] = []
    try:
        pending: list[tuple[str, JudgeInput]] = []
        seen: set[str] = set()
        # Verdicts are committed at least every COMMIT_SECONDS (and at the end, and when the run is
        # interrupted by an exception): a killed run loses at most that much judging work, and a
        # fast judge does not pay one SQLite transaction per small batch.
        done: list[tuple[str, dict]] = []
        failed: list[tuple[str, str]] = []
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal last_commit
            if done or failed:
                cache.put(judge.name, done, failed)
                done.clear()
                failed.clear()
            last_commit = time.monotonic()

        def flush() -> None:
            if not pending:
                return
            batch = list(pending)
            pending.clear()
            try:
                results = judge.judge([item for _, item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"the judge returned {len(results)} verdicts for {len(batch)} items")
            except Exception as e:  # noqa: BLE001 - a judge that raises loses this batch only
                results = [e] * len(batch)
            for (key, item), result in zip(batch, results):
                if isinstance(result, Verdict):
                    done.append((key, verdict_row(result)))
                    summary.newly_judged += 1
                else:
                    msg = (f"{type(result).__name__}: {result}" if isinstance(result, BaseException)
                           else f"not a verdict: {result!r}")
                    failed.append((key, msg[:1000]))
                    if len(summary.error_examples) < 20:
                        summary.error_examples.append(f"{item.sample_id} [{item.condition}] {msg[:300]}")
            if time.monotonic() - last_commit >= COMMIT_SECONDS or len(done) + len(failed) >= 10_000:
                commit()
            if bar is not None:
                bar.update(len(batch))

        try:
            for chunk in _chunks(run.iter_responses(), 512):
                todo = []
                for row in chunk:
                    if row.response is None:
                        keys.append(None)
                        continue
                    refused = must_not_judge(judge, row, run.intentions_note)
                    if refused is not None:
                        keys.append(refused)
                        continue
                    item = make_input(row)
                    keys.append(verdict_key(judge, item))
                    todo.append((keys[-1], item))
                chunk_keys = [k for k, _ in todo]
                if force:
                    cache.forget([k for k in chunk_keys if k not in seen])  # duplicates in this call: judge once
                    have: set[str] = set()
                else:
                    have = cache.has(chunk_keys) if chunk_keys else set()
                for key, item in todo:
                    if key in have or key in seen:
                        continue
                    seen.add(key)
                    pending.append((key, item))
                    if len(pending) >= batch_size:
                        flush()
                if bar is not None and have:
                    bar.update(len(have))
            flush()
        finally:
            commit()
        if bar is not None:
            bar.close()
            bar = None
        if run.videos_note is not None:
            summary.notes.append(run.videos_note)
        if judge.needs_intention:
            if run.intentions_note is not None:
                summary.notes.append(run.intentions_note)
            else:
                summary.intentions = str(run.responses_file)
        _write_verdicts(run, judge, keys, cache, summary)
    finally:
        if bar is not None:
            bar.close()
        cache.close()
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.cached = summary.judged - summary.newly_judged
    run.write_judge_summary(judge.name, summary.to_dict())
    return summary


def _write_verdicts(run: RunDir, judge: Judge, keys: list[str | _Refused | None], cache: VerdictCache,
                    summary: JudgeSummary) -> None:
    labels: Counter = Counter()

    def rows() -> Iterator[VerdictRow]:
        # the response rows again (streamed), with the keys of the judging pass, in order
        # intentions are in the keys already: a format-1 folder's manifest is not read again
        for start, chunk in _numbered_chunks(run.iter_responses(with_intentions=False), 512):
            chunk_keys = keys[start:start + len(chunk)]
            real = [k for k in chunk_keys if isinstance(k, str)]
            found = cache.get(real) if real else {}
            failures = cache.failures([k for k in real if k not in found]) if real else {}
            for row, key in zip(chunk, chunk_keys):
                summary.rows += 1
                verdict = found.get(key) if isinstance(key, str) else None
                if key is None:
                    summary.no_response += 1
                    outcome = {"judged": False, "unjudged_reason": NO_RESPONSE}
                elif isinstance(key, _Refused):
                    summary.judgeable += 1
                    summary.no_intention += 1
                    outcome = {"judged": False, "unjudged_reason": key.reason}
                elif verdict is None:
                    summary.judgeable += 1
                    summary.not_reached += 1
                    outcome = {"judged": False,
                               "unjudged_reason": f"judge not reached: {failures.get(key, 'not judged yet')}"}
                else:
                    summary.judgeable += 1
                    summary.judged += 1
                    labels[verdict["label"]] += 1
                    outcome = {"judged": True, **{c: verdict.get(c) for c in VERDICT_FIELDS}}
                yield VerdictRow(sample_id=row.sample_id, condition=row.condition, subset=row.subset,
                                 category=row.category, subcategory=row.subcategory, language=row.language,
                                 judge=judge.name, judge_version=judge.version,
                                 **{"reason": None, **outcome})

    summary.verdict_file = str(run.write_verdicts(judge.name, rows()))
    summary.labels = dict(sorted(labels.items()))
    summary.unparsed = labels.get("unparsed", 0)
    if summary.no_intention:
        summary.notes.append(f"{summary.no_intention} row(s) not judged: {judge.name} reads the harmful "
                             f"intention, which {'/'.join(sorted(taxonomy.INTENTION_REQUIRED_SUBSETS))} "
                             "queries need and these rows lack; rerun from a typed run folder (the "
                             "intention travels on the row) or restore the manifest run.json names")
    if summary.not_reached:
        summary.notes.append(f"{summary.not_reached} judgeable row(s) without a verdict (judge not reached): "
                             "run again to retry them")


def _numbered_chunks(it, n: int) -> Iterator[tuple[int, list]]:
    start = 0
    for chunk in _chunks(it, n):
        yield start, chunk
        start += len(chunk)


__all__ = ["judge_run", "JudgeSummary", "VerdictCache", "verdict_path", "summary_path", "read_verdicts",
           "judge_slug", "verdict_key", "judge_input", "input_maker", "sees_video", "scoped", "judge_scope",
           "AnswerScoped"]
