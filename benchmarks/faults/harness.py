"""What the kill campaign (benchmarks/faults/kill.py) and its fast cases (tests/faults/
test_faults_kill.py) share: starting a command in its own process group, SIGKILLing it when a
file shows the phase wanted (or at a kill point, faults/killpoint.py), and comparing what a
killed-then-rerun command left with what an uninterrupted one left.

Comparisons count, per file, rows lost (in the uninterrupted output, not in the other), rows
duplicated (a key more than once) and rows differing (same key, different content), ignoring
only what differs between any two runs: wall-clock timings, creation times and the run folder's
own path. Training outputs compare bit for bit (final weights, every tensor) and by log rows
keyed by step.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent
SRC = BENCHMARKS.parent / "src"

# Fields that differ between any two runs of the same work: timings and creation times.
TIMING_KEYS = frozenset({"seconds", "generation_seconds", "created", "at"})


# ---------------------------------------------------------------- running and killing

def env(**extra: str) -> dict[str, str]:
    """The environment of a command under test: this checkout's code, offline, one thread each
    for torch and the tokenizers (2 shared cores)."""
    out = dict(os.environ)
    out.update(PYTHONPATH=os.pathsep.join([str(SRC), str(BENCHMARKS)]), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    out.pop("VS_KILL_AT", None)
    out.update(extra)
    return out


def videosafety(*args: str) -> list[str]:
    """A `videosafety` command line through the kill-point launcher (inert without VS_KILL_AT)."""
    return [sys.executable, "-m", "faults.killpoint", "-m", "videosafety", *map(str, args)]


def module(name: str, *args: str) -> list[str]:
    """`python -m name args` through the kill-point launcher."""
    return [sys.executable, "-m", "faults.killpoint", "-m", name, *map(str, args)]


def run(cmd: list[str], *, kill_at: str | None = None, timeout: float = 600, check: bool = True,
        **extra_env: str) -> subprocess.CompletedProcess:
    """Run to the end (or to the kill point: returncode -9). check: a run without a kill point
    must succeed."""
    e = env(**extra_env, **({"VS_KILL_AT": kill_at} if kill_at else {}))
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       start_new_session=True)
    if check and kill_at is None and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return p


def start(cmd: list[str], *, stderr: Path | None = None, **extra_env: str) -> subprocess.Popen:
    """Start in a new session (its own process group: the kill reaches its workers too); its
    stderr goes to a file (a pipe nobody reads would stall a chatty process)."""
    with open(stderr or os.devnull, "wb") as err:
        return subprocess.Popen(cmd, env=env(**extra_env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], *, timeout: float = 600, poll: float = 0.005,
              delay: float = 0.0) -> bool:
    """SIGKILL the process group `delay` seconds after `ready()` first holds; False when the
    process ended (or the timeout passed) first (then it is left to end by itself)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            hit = ready()
        except (OSError, ValueError):
            hit = False
        if hit:
            if delay > 0:
                time.sleep(delay)
            if proc.poll() is not None:
                return False
            kill_group(proc)
            return True
        time.sleep(poll)
    return False


def sqlite_rows(path: Path, table: str) -> int:
    """Rows committed to a table of a SQLite store (0 while it does not exist yet)."""
    import sqlite3

    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        try:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def mini_with_records(out: Path, grpo_safety: int, grpo_general: int = 0) -> Path:
    """VSB-mini in `out` with 16 AT-SFT records (12 safety, 4 general: at_16.jsonl) and a GRPO
    file of `grpo_safety` video safety problems spread over the split plus `grpo_general` free-form
    ones (grpo_<n>.jsonl) beside its manifest."""
    import random

    from videosafety.data.vsb_mini import build_vsb_mini
    from videosafety.train.builders import build_at_sft, build_grpo
    from videosafety.train.records import write_records

    build_vsb_mini(out, workers=2)
    at = build_at_sft(out, split="train")
    write_records(random.Random(0).sample([r for r in at if r.kind == "safety"], 12)
                  + [r for r in at if r.kind == "general"][:4], out / "at_16.jsonl")
    recs = build_grpo(out, split="train")
    safety = [r for r in recs if r.problem_type == "safety" and r.video]
    general = [r for r in recs if r.problem_type == "free_form" and r.video]
    write_records(safety[::len(safety) // grpo_safety][:grpo_safety] + general[:grpo_general],
                  out / f"grpo_{grpo_safety + grpo_general}.jsonl")
    return out


def synthetic_corpus(folder: Path, hints: list[str]) -> Path:
    """Clips for `bench build`, one per hint (a category, a sub-category, or "" for none), each
    moving its own way (no near duplicates), and their metadata CSV; returns the CSV."""
    import numpy as np

    from videosafety.video import encode_video

    (folder / "videos").mkdir(parents=True, exist_ok=True)
    w, hh, n = 96, 64, 30
    lines = ["video,category_hint,language,source,licence"]
    for i, hint in enumerate(hints):
        g = np.random.default_rng(i + 1)
        bg = g.integers(0, 255, size=3)
        frames = np.empty((n, hh, w, 3), dtype=np.uint8)
        sx, sy = 1 + i % 3, 1 + (i // 3) % 3
        for t in range(n):
            frames[t] = bg
            x, y = (5 * i + sx * 2 * t) % (w - 16), (7 * i + sy * t) % (hh - 16)
            frames[t, y:y + 16, x:x + 16] = 255 - bg
            frames[t, (3 * i) % hh, :] = (37 * i) % 256
        encode_video(folder / "videos" / f"v{i}.mp4", frames, fps=10, width=w, height=hh)
        lines.append(f"v{i}.mp4,{hint},en,synthetic,CC0")
    (folder / "meta.csv").write_text("\n".join(lines) + "\n")
    return folder / "meta.csv"


# ---------------------------------------------------------------- comparing

@dataclass
class Diff:
    """What one rerun left, against the uninterrupted run."""

    lost: int = 0
    duplicated: int = 0
    differing: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: "Diff") -> "Diff":
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.differing += other.differing
        self.notes += other.notes
        return self

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.differing)

    def __str__(self) -> str:
        return f"lost {self.lost}, duplicated {self.duplicated}, differing {self.differing}: " + "; ".join(self.notes[:8])


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """(rows, torn lines): a line that does not parse (a write cut off) is counted, not read."""
    rows, torn = [], 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            torn += 1
    return rows, torn


def strip(obj, drop: frozenset[str] = TIMING_KEYS, replace: dict[str, str] | None = None):
    """obj without the keys in `drop` (at any depth), strings with `replace`'s substitutions."""
    if isinstance(obj, dict):
        return {k: strip(v, drop, replace) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [strip(v, drop, replace) for v in obj]
    if isinstance(obj, str) and replace:
        for old, new in replace.items():
            obj = obj.replace(old, new)
    return obj


def compare_rows(ref: list[dict], got: list[dict], key: Callable[[dict], object], what: str,
                 drop: frozenset[str] = TIMING_KEYS, replace: dict[str, str] | None = None,
                 ordered: bool = True) -> Diff:
    """Rows keyed by `key`: lost, duplicated, differing (content without `drop`), and a note when
    the same rows come in another order (ordered files only)."""
    d = Diff()
    counts = Counter(key(r) for r in got)
    d.duplicated = sum(n - 1 for n in counts.values() if n > 1)
    theirs = {key(r): strip(r, drop, replace) for r in got}
    mine = {key(r): strip(r, drop, replace) for r in ref}
    d.lost = sum(1 for k in mine if k not in theirs)
    extra = sum(1 for k in theirs if k not in mine)
    d.differing = sum(1 for k, v in mine.items() if k in theirs and theirs[k] != v) + extra
    if d.lost:
        d.notes.append(f"{what}: {d.lost} row(s) lost, e.g. {next(k for k in mine if k not in theirs)}")
    if d.duplicated:
        d.notes.append(f"{what}: {d.duplicated} duplicated row(s), e.g. {next(k for k, n in counts.items() if n > 1)}")
    if d.differing:
        example = next((k for k, v in mine.items() if k in theirs and theirs[k] != v), None)
        d.notes.append(f"{what}: {d.differing} differing row(s) ({extra} unknown), e.g. {example}")
    if ordered and d.clean and [key(r) for r in ref] != [key(r) for r in got]:
        d.differing += 1
        d.notes.append(f"{what}: the same rows in another order")
    return d


def compare_jsonl(ref: Path, got: Path, key: Callable[[dict], object], what: str, **kw) -> Diff:
    if not got.exists():
        rows, _ = read_jsonl(ref)
        return Diff(lost=len(rows), notes=[f"{what}: {got.name} missing"])
    (a, _), (b, torn) = read_jsonl(ref), read_jsonl(got)
    d = compare_rows(a, b, key, what, **kw)
    if torn:
        d.differing += torn
        d.notes.append(f"{what}: {torn} torn line(s)")
    return d


def compare_json(ref: Path, got: Path, what: str, replace: dict[str, str] | None = None,
                 drop: frozenset[str] = TIMING_KEYS) -> Diff:
    """One JSON document: equal without timings and with the run folder's path replaced."""
    if not got.exists():
        return Diff(differing=1, notes=[f"{what}: {got.name} missing"])
    try:
        b = json.loads(got.read_text(encoding="utf-8"))
    except ValueError:
        return Diff(differing=1, notes=[f"{what}: {got.name} does not parse"])
    a = strip(json.loads(ref.read_text(encoding="utf-8")), drop)
    if a != strip(b, drop, replace):
        return Diff(differing=1, notes=[f"{what}: differs ({_first_difference(a, strip(b, drop, replace))})"])
    return Diff()


def _first_difference(a, b, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where or 'document'}: {str(a)[:80]!r} != {str(b)[:80]!r}"


def leftovers(folder: Path) -> list[str]:
    """Temporary files a finished command should not leave behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


# -- evaluation runs

RUN_KEY = (lambda r: (r["sample_id"], r["condition"]))
RUN_DROP = TIMING_KEYS | {"verdict_file"}  # a judge summary names its own folder's file


def compare_run(ref: Path, got: Path, *, report: bool = True) -> Diff:
    """A run folder against the uninterrupted one: responses.jsonl, every verdict file and judge
    summary, run.json's status and summary, and (report=True) results.json and report.md."""
    paths = {str(got): str(ref), str(got.resolve()): str(ref.resolve())}
    d = compare_jsonl(ref / "responses.jsonl", got / "responses.jsonl", RUN_KEY, "responses")
    for f in sorted((ref / "verdicts").glob("*.jsonl")):
        d.add(compare_jsonl(f, got / "verdicts" / f.name, RUN_KEY, f"verdicts/{f.name}"))
        d.add(compare_json(f.with_suffix(".json"), got / "verdicts" / f.with_suffix(".json").name,
                           f"verdicts/{f.stem}.json", replace=paths, drop=RUN_DROP | {"newly_judged", "cached"}))
    d.add(compare_json(ref / "run.json", got / "run.json", "run.json", replace=paths,
                       drop=TIMING_KEYS | {"versions"}))
    if report:
        d.add(compare_json(ref / "results.json", got / "results.json", "results.json", replace=paths))
        md_a, md_b = ref / "report.md", got / "report.md"
        if not md_b.exists() or _report_text(md_a, paths=None) != _report_text(md_b, paths):
            d.differing += 1
            d.notes.append("report.md differs")
    stray = leftovers(got)
    if stray:
        d.notes.append(f"left behind: {stray}")
    return d


def _report_text(path: Path, paths: dict[str, str] | None) -> str:
    text = path.read_text(encoding="utf-8")
    for old, new in (paths or {}).items():
        text = text.replace(old, new)
    return "\n".join(line for line in text.splitlines() if not line.startswith("Created "))


# -- training runs

LOG_DROP = TIMING_KEYS


def tensors_digest(folder: Path) -> dict[str, str]:
    """file:tensor -> sha256 of its bytes, over every safetensors file of a model folder."""
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        for k, v in load_file(f).items():
            out[f"{f.name}:{k}"] = hashlib.sha256(v.contiguous().view(-1).view(dtype=__import__("torch").uint8)
                                                  .numpy().tobytes()).hexdigest()
    return out


def compare_training(ref: Path, got: Path, *, files: Iterable[str] = ("train_log.jsonl",)) -> Diff:
    """A training output folder against the uninterrupted one: the final model bit for bit (a
    model that does not load counts as differing) and the step-keyed log files."""
    d = Diff()
    try:
        a, b = tensors_digest(ref / "final"), tensors_digest(got / "final")
    except Exception as e:  # noqa: BLE001 - a final model that does not load is the finding
        return Diff(differing=1, notes=[f"final model does not load: {type(e).__name__}: {e}"])
    if not b:
        d.differing += 1
        d.notes.append("final model missing")
    elif a != b:
        bad = [k for k in a if a[k] != b.get(k)]
        d.differing += 1
        d.notes.append(f"final weights differ: {len(bad)} tensor(s), e.g. {bad[:2]}")
    if (ref / "weights_rank0.sha256").read_text() != (got / "weights_rank0.sha256").read_text():
        d.differing += 1
        d.notes.append("weights fingerprint differs")
    for name in files:
        key = (lambda r: (r["step"], r.get("record_id"), r.get("completion"))) if name == "completions.jsonl" \
            else (lambda r: r["step"])
        d.add(compare_jsonl(ref / name, got / name, key, name))
    return d


def final_loads(folder: Path) -> str | None:
    """None when the final model loads through the project's own loader, else why not."""
    try:
        from videosafety.models.hf import HFVideoLLM

        HFVideoLLM(folder / "final", device="cpu", dtype="float32")
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


# -- construction stages

STAGE_FILES = ("ingest.jsonl", "static.jsonl", "label.jsonl", "queries.jsonl", "translate.jsonl")


def compare_build(ref: Path, got: Path) -> Diff:
    """`bench build` outputs: each stage's records (keyed by video, or by query id where a stage
    writes one row per query), the manifest of the finished benchmark; provenance times aside."""
    d = Diff()
    for name in STAGE_FILES:
        if (ref / name).exists():
            d.add(compare_jsonl(ref / name, got / name, _build_key, name))
    manifest = ref / "dataset" / "manifest.jsonl"
    if manifest.exists():
        d.add(compare_jsonl(manifest, got / "dataset" / "manifest.jsonl", lambda r: r["id"], "dataset/manifest.jsonl"))
        other = got / "dataset" / "README.md"
        if not other.exists() or file_digest(other) != file_digest(ref / "dataset" / "README.md"):
            d.differing += 1
            d.notes.append("dataset/README.md differs")
        d.add(compare_rows(_parquet_rows(ref / "dataset" / "manifest.parquet"),
                           _parquet_rows(got / "dataset" / "manifest.parquet"), lambda r: r["id"],
                           "dataset/manifest.parquet"))
    stray = leftovers(got)
    if stray:
        d.notes.append(f"left behind: {stray}")
    return d


def _parquet_rows(path: Path) -> list[dict]:
    from videosafety.data.manifest import read_manifest

    if not path.exists():
        return []
    return [s.model_dump(mode="json") for s in read_manifest(path)]


def _build_key(r: dict):
    return r.get("id") or r.get("query_id") or (r.get("video"), r.get("language"), r.get("subset"))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
