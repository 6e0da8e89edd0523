"""Judging a run: ``RUN_DIR/responses.jsonl`` -> ``RUN_DIR/verdicts/<judge slug>.jsonl``.

Streaming (responses are read twice, never held in memory), batched, cached and resumable:
every batch of verdicts is committed to ``RUN_DIR/verdicts/cache.sqlite`` before the next one is
asked, so a run killed at any moment and started again only asks for what is missing. The cache
key hashes the judge's name, version and revision (weights digest of a local judge) with what
the judge reads: sample id, condition, subset, sub-category, language, query, harmful intention
and the response text. Several judges share the cache and write side by side, one verdict file
each. ``force=True`` asks the judge again for every row (and replaces the cached verdicts).

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
revision, counts per label, coverage (judged / judgeable rows), unparsed count, and whether the
harmful intentions were available (read from the manifest named in ``run.json``; when it cannot
be read, judges see "none stated" and the summary says so).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path

from videosafety import tags
from videosafety.judges.base import Judge, JudgeInput, Verdict

VERDICT_DIR = "verdicts"
CACHE_FILE = "cache.sqlite"
RESPONSES = "responses.jsonl"
RUN_FILE = "run.json"
COPIED = ("sample_id", "condition", "subset", "category", "subcategory", "language")
VERDICT_FIELDS = ("label", "safe", "refusal", "helpfulness", "harm_score", "reason")
NO_RESPONSE = "no response"
COMMIT_SECONDS = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT NOT NULL, verdict TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, judge TEXT NOT NULL, error TEXT NOT NULL, created REAL);
"""


# ------------------------------------------------------------------------------------ naming


def judge_slug(name: str) -> str:
    """A file name for a judge: "rules" stays "rules"; any name with other characters becomes a
    readable slug plus 8 hex digits of its hash (two names never share a file)."""
    slug = re.sub(r"[^a-z0-9._]+", "-", name.lower()).strip("-.")[:80] or "judge"
    if slug == name:
        return slug
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def verdict_path(run_dir: str | Path, judge_name: str) -> Path:
    return Path(run_dir) / VERDICT_DIR / f"{judge_slug(judge_name)}.jsonl"


def summary_path(run_dir: str | Path, judge_name: str) -> Path:
    return Path(run_dir) / VERDICT_DIR / f"{judge_slug(judge_name)}.json"


def read_verdicts(run_dir: str | Path, judge_name: str) -> Iterator[dict]:
    """The rows of a judge's verdict file, streamed."""
    with open(verdict_path(run_dir, judge_name), encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def verdict_key(judge: Judge, item: JudgeInput) -> str:
    parts = (judge.name, judge.version, getattr(judge, "revision", None), item.sample_id, item.condition,
             item.subset, item.subcategory, item.language, item.query, item.harmful_intention, item.response)
    # unit separators between fields, NUL for None: unambiguous for text without control characters
    payload = "\x1f".join("\x00" if x is None else str(x) for x in parts)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


_VERDICT_NAMES = tuple(f.name for f in fields(Verdict))


def verdict_row(v: Verdict) -> dict:
    """Verdict.to_row() without dataclasses.asdict's deep copies (all fields are scalars)."""
    return {k: getattr(v, k) for k in _VERDICT_NAMES}


# ------------------------------------------------------------------------------------ cache


class VerdictCache:
    """SQLite store of verdicts (one transaction per batch; WAL, like the response cache)."""

    def __init__(self, path: str | Path):
        from videosafety.evaluate.cache import open_store

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


def _read_rows(run_dir: Path) -> Iterator[dict]:
    path = run_dir / RESPONSES
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
            for k in ("sample_id", "condition", "subset"):
                if k not in row:
                    raise ValueError(f"{path}:{n}: missing field {k!r}")
            yield row


def _chunks(it, n: int) -> Iterator[list]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


def load_intentions(run_dir: str | Path) -> tuple[dict[str, str | None] | None, str]:
    """(sample_id -> harmful_intention, where from) from the manifest named in run.json, streamed
    once; (None, why not) when it cannot be read. Relative manifest paths are tried against the
    working directory, then the run directory."""
    from videosafety.data.manifest import iter_rows

    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return None, f"run.json unreadable ({type(e).__name__}): harmful intentions not available"
    manifest = info.get("manifest")
    if not manifest:
        return None, "run.json names no manifest: harmful intentions not available"
    for cand in (Path(manifest), run_dir / manifest):
        if cand.exists():
            try:
                out: dict[str, str | None] = {}
                for _, item in iter_rows(cand):
                    if not isinstance(item, list):
                        out[item.id] = item.harmful_intention
                return out, str(cand)
            except (OSError, ValueError) as e:
                return None, f"manifest {cand} unreadable ({e}): harmful intentions not available"
    return None, f"manifest {manifest} not found: harmful intentions not available"


def judge_input(row: dict, intentions: dict[str, str | None] | None) -> JudgeInput:
    return JudgeInput(sample_id=row["sample_id"], condition=row["condition"], subset=row["subset"],
                      subcategory=row.get("subcategory", ""), language=row.get("language", ""),
                      query=row.get("prompt") or "", response=tags.user_facing(row["response"]),
                      harmful_intention=None if intentions is None else intentions.get(row["sample_id"]))


# ------------------------------------------------------------------------------------ running


@dataclass
class JudgeSummary:
    judge: str
    judge_version: str
    judge_revision: str | None = None
    rows: int = 0  # rows of responses.jsonl
    judgeable: int = 0  # rows with a response
    judged: int = 0  # rows with a verdict in the file (unparsed included)
    newly_judged: int = 0  # verdicts made by this call
    cached: int = 0  # verdicts found in the cache
    not_reached: int = 0  # judgeable rows the judge could not be asked about
    no_response: int = 0  # rows whose generation failed
    unparsed: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    intentions: str | None = None  # the manifest the harmful intentions came from, or None
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
    run = Path(run_dir)
    if not (run / RESPONSES).is_file():
        raise FileNotFoundError(f"{run / RESPONSES}: no responses to judge (run `videosafety eval` first)")
    t0 = time.perf_counter()
    summary = JudgeSummary(judge=judge.name, judge_version=judge.version,
                           judge_revision=getattr(judge, "revision", None))
    intentions: dict[str, str | None] | None = None
    if getattr(judge, "needs_intention", True):
        intentions, where = load_intentions(run)
        if intentions is None:
            summary.notes.append(where)
        else:
            summary.intentions = where
    else:
        summary.notes.append(f"{judge.name} does not read harmful intentions")

    cache = VerdictCache(run / VERDICT_DIR / CACHE_FILE)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"judge {judge.name}", unit="resp", dynamic_ncols=True, mininterval=1.0)
    try:
        pending: list[tuple[str, JudgeInput]] = []
        seen: set[str] = set()
        # Verdicts are committed at least every COMMIT_SECONDS (and at the end, and when the run is
        # interrupted by an exception): a killed run loses at most that much judging work, and a
        # fast judge does not pay one SQLite transaction per small batch.
        buffered: tuple[list, list] = ([], [])
        last_commit = [time.monotonic()]

        def commit() -> None:
            if buffered[0] or buffered[1]:
                cache.put(judge.name, buffered[0], buffered[1])
                buffered[0].clear()
                buffered[1].clear()
            last_commit[0] = time.monotonic()

        def flush() -> None:
            if not pending:
                return
            batch = list(pending)
            pending.clear()
            try:
                results = judge.judge([it for _, it in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"the judge returned {len(results)} verdicts for {len(batch)} items")
            except Exception as e:  # noqa: BLE001 - a judge that raises loses this batch only
                results = [e] * len(batch)
            done, failed = buffered
            for (k, it), r in zip(batch, results):
                if isinstance(r, Verdict):
                    done.append((k, verdict_row(r)))
                    summary.newly_judged += 1
                else:
                    msg = f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else f"not a verdict: {r!r}"
                    failed.append((k, msg[:1000]))
                    if len(summary.error_examples) < 20:
                        summary.error_examples.append(f"{it.sample_id} [{it.condition}] {msg[:300]}")
            if time.monotonic() - last_commit[0] >= COMMIT_SECONDS or len(done) + len(failed) >= 10_000:
                commit()
            if bar is not None:
                bar.update(len(batch))

        try:
            for chunk in _chunks(_read_rows(run), 512):
                todo = [(verdict_key(judge, it), it) for it in
                        (judge_input(r, intentions) for r in chunk if isinstance(r.get("response"), str))]
                keys = [k for k, _ in todo]
                if force:
                    fresh = [k for k in keys if k not in seen]  # duplicates within this call: judge once
                    cache.forget(fresh)
                    have = set()
                else:
                    have = cache.has(keys) if keys else set()
                for k, it in todo:
                    if k in have or k in seen:
                        continue
                    seen.add(k)
                    pending.append((k, it))
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
        _write_verdicts(run, judge, intentions, cache, summary)
    finally:
        if bar is not None:
            bar.close()
        cache.close()
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.cached = summary.judged - summary.newly_judged
    summary_path(run, judge.name).write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False),
                                             encoding="utf-8")
    return summary


def _write_verdicts(run: Path, judge: Judge, intentions, cache: VerdictCache, summary: JudgeSummary) -> None:
    out = verdict_path(run, judge.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    labels: Counter = Counter()
    empty = {k: None for k in VERDICT_FIELDS}
    with open(tmp, "w", encoding="utf-8") as f:
        for chunk in _chunks(_read_rows(run), 512):
            keys: list[str | None] = [verdict_key(judge, judge_input(r, intentions))
                                      if isinstance(r.get("response"), str) else None for r in chunk]
            real = [k for k in keys if k is not None]
            found = cache.get(real) if real else {}
            failures = cache.failures([k for k in real if k not in found]) if real else {}
            for r, k in zip(chunk, keys):
                row = {c: r.get(c) for c in COPIED}
                row.update(judge=judge.name, judge_version=judge.version)
                summary.rows += 1
                v = found.get(k) if k is not None else None
                if k is None:
                    summary.no_response += 1
                    row.update(judged=False, **empty, unjudged_reason=NO_RESPONSE)
                elif v is None:
                    summary.judgeable += 1
                    summary.not_reached += 1
                    why = failures.get(k, "not judged yet")
                    row.update(judged=False, **empty, unjudged_reason=f"judge not reached: {why}")
                else:
                    summary.judgeable += 1
                    summary.judged += 1
                    labels[v["label"]] += 1
                    row.update(judged=True, **{c: v.get(c) for c in VERDICT_FIELDS}, unjudged_reason=None)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    summary.labels = dict(sorted(labels.items()))
    summary.unparsed = labels.get("unparsed", 0)
    summary.verdict_file = str(out)
    if summary.not_reached:
        summary.notes.append(f"{summary.not_reached} judgeable row(s) without a verdict (judge not reached): "
                             "run again to retry them")


__all__ = ["judge_run", "JudgeSummary", "VerdictCache", "verdict_path", "summary_path", "read_verdicts",
           "judge_slug", "verdict_key", "load_intentions", "judge_input"]
