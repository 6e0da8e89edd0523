"""The viewer's index of one run, built in one pass over its responses and verdicts.

    RUN/view/stamp.json         what the index was built from (sizes and mtimes); rebuilt on change
    RUN/view/index.js           columns for the list: sample id, groupings as integer codes, error,
                                per judge a verdict code and a failure bit
    RUN/view/detail/NNNN.js     SHARD rows each: prompt, response, error, every verdict in full,
                                the sample's reference response and translation group
    RUN/view/videos.json        sample id -> the row's video path (for frames.py; never served)
    RUN/view/frames-budget.json the budget the cached frames were decoded with; another one clears them

The run is read only through evaluate.rundir; the manifest only for what response rows do not
carry (translation group, reference response), and the index says so when it cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videosafety import taxonomy
from videosafety.evaluate.rundir import RunDir, RunInfo, VerdictRow, write_atomic

BUILDER_VERSION = 2  # 2: null fields left out of detail files
VIEW_DIR = "view"
SHARD = 200  # rows per detail file: one sample's three conditions cost at most three small loads
GROUP_MAX = 24  # translations listed per sample
COLUMNS = ("subset", "category", "subcategory", "language", "condition")
DECIDED = ("refused", "complied")


def js_data(payload: Any) -> str:
    """A data file: a script that hands its JSON to the page (VS.got in static/view.js). The
    page matches it by its own src, so the same file serves any run order and file://."""
    return f"VS.got(document.currentScript.src,{json.dumps(payload, ensure_ascii=False, separators=(',', ':'))});\n"


def shard_name(n: int) -> str:
    return f"detail/{n:05d}.js"


def sample_key(sample_id: str) -> str:
    """A file name for a sample's frames: no character of the id reaches the file system."""
    return hashlib.sha256(sample_id.encode()).hexdigest()[:20]


def _stamp(rd: RunDir) -> dict:
    files = [rd.info_file, rd.responses_file, *rd.verdict_files().values()]
    return {"builder": BUILDER_VERSION,
            "files": {str(p.relative_to(rd.path)): [p.stat().st_size, p.stat().st_mtime_ns]
                      for p in files if p.is_file()}}


@dataclass
class ViewIndex:
    run: RunDir
    info: RunInfo | None
    rows: int
    judges: list[str]
    notes: list[str]
    built: bool  # False when an up-to-date index was reused

    @property
    def dir(self) -> Path:
        return self.run.path / VIEW_DIR


def compact(d: dict) -> dict:
    """Without its null and empty fields: a full run's detail files are a third smaller (the
    page puts the nulls back, static/view.js ROW_KEYS and VERDICT_KEYS)."""
    return {k: v for k, v in d.items() if v is not None and v != []}


def _verdict_fields(v: VerdictRow | None) -> dict | None:
    if v is None:
        return None
    extra = v.model_extra or {}
    return {"label": v.label if v.judged else "unjudged", "safe": v.safe, "refusal": v.refusal,
            "helpfulness": v.helpfulness, "harm_score": v.harm_score, "reason": v.reason,
            "unjudged_reason": v.unjudged_reason, "judge": v.judge, "judge_version": v.judge_version,
            **({"scores": extra["scores"]} if "scores" in extra else {})}


def _compact_verdict(v: dict | None) -> dict | None:
    return None if v is None else compact(v)


def is_failure(subset: str, v: dict | None) -> bool:
    """A judge's failure: a harmful request answered unsafely, or a safe request refused."""
    if v is None or v["label"] not in DECIDED:
        return False
    if v["safe"] is False:
        return True
    return subset not in taxonomy.HARMFUL_REQUEST_SUBSETS and v["refusal"] is True


def _manifest_facts(rd: RunDir, info: RunInfo | None, notes: list[str]) -> tuple[dict, dict]:
    """sample id -> (group_id, reference_response); group_id -> [(id, language, query)]."""
    manifest = rd.manifest_path(info)
    if manifest is None:
        notes.append("manifest not found: translation groups and reference responses not shown")
        return {}, {}
    from videosafety.data.manifest import iter_samples

    facts, groups = {}, {}
    try:
        for s in iter_samples(manifest):
            facts[s.id] = (s.group_id, s.reference_response)
            members = groups.setdefault(s.group_id, [])
            if len(members) < GROUP_MAX:
                members.append([s.id, s.language, s.query])
    except (OSError, ValueError) as e:
        notes.append(f"manifest {manifest} unreadable ({e}): translation groups and reference responses not shown")
        return {}, {}
    return facts, groups


def _verdict_streams(rd: RunDir) -> dict[str, Any]:
    return {slug: rd.iter_verdicts(slug) for slug in rd.verdict_files()}


def build_index(run_dir: str | Path, *, force: bool = False) -> ViewIndex:
    """Write RUN/view/ unless it is up to date with the run's files (or `force`)."""
    rd = RunDir(run_dir)
    if not rd.has_responses():
        raise FileNotFoundError(f"{rd.responses_file}: missing (is {rd.path} a run folder?)")
    info = rd.read_info()
    out = rd.path / VIEW_DIR
    stamp = _stamp(rd)
    stamp_file = out / "stamp.json"
    if not force and stamp_file.is_file() and (out / "index.js").is_file():
        try:
            old = json.loads(stamp_file.read_text())
        except ValueError:
            old = None
        if old and old.get("files") == stamp["files"] and old.get("builder") == BUILDER_VERSION:
            return ViewIndex(rd, info, old["rows"], old["judges"], old["notes"], built=False)

    frames = out / "frames"
    budget_file = out / "frames-budget.json"
    budget_now = json.dumps(info.budget if info is not None else None, sort_keys=True)
    if frames.exists() and (not budget_file.is_file() or budget_file.read_text() != budget_now):
        shutil.rmtree(frames)  # decoded under another frame budget: not the frames the model got
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(budget_file, budget_now)

    notes: list[str] = []
    facts, groups = _manifest_facts(rd, info, notes)
    judges = list(rd.verdict_files())
    streams = _verdict_streams(rd)
    by_key: dict[str, dict] = {}  # a verdict file out of the responses' order: read by key instead

    dicts: dict[str, dict[str, int]] = {c: {} for c in COLUMNS}
    verdict_codes: dict[str, int] = {}
    cols: dict[str, list] = {"sid": [], **{c: [] for c in COLUMNS}, "err": [], "dis": [],
                             "v": [[] for _ in judges], "fail": [[] for _ in judges]}
    videos: dict[str, str | None] = {}
    if (out / "detail").exists():
        shutil.rmtree(out / "detail")
    (out / "detail").mkdir(parents=True, exist_ok=True)
    shard: list[dict] = []
    n = 0

    def flush() -> None:
        if shard:
            (out / shard_name((n - 1) // SHARD)).write_text(js_data({"shard": (n - 1) // SHARD, "rows": shard}),
                                                            encoding="utf-8")
            shard.clear()

    for row in rd.iter_responses(with_intentions=False):
        key = (row.sample_id, row.condition)
        verdicts = []
        for j, slug in enumerate(judges):
            v = None
            if slug not in by_key:
                v = next(streams[slug], None)
                if v is not None and (v.sample_id, v.condition) != key:
                    by_key[slug] = {(x.sample_id, x.condition): x for x in rd.iter_verdicts(slug)}
                    notes.append(f"verdicts/{slug}.jsonl is not in the responses' order: matched by sample and condition")
            if slug in by_key:
                v = by_key[slug].get(key)
            verdicts.append(_verdict_fields(v))
        cols["sid"].append(row.sample_id)
        for c in COLUMNS:
            value = getattr(row, c) or ""
            cols[c].append(dicts[c].setdefault(value, len(dicts[c])))
        cols["err"].append(0 if row.has_response else 1)
        labels = {v["label"] for v in verdicts if v is not None and v["label"] in DECIDED}
        cols["dis"].append(1 if len(labels) > 1 else 0)
        for j, v in enumerate(verdicts):
            label = "no verdict" if v is None else (v["label"] or "none")
            cols["v"][j].append(verdict_codes.setdefault(label, len(verdict_codes)))
            cols["fail"][j].append(1 if is_failure(row.subset, v) else 0)
        group_id, reference = facts.get(row.sample_id, (None, None))
        group = [m for m in groups.get(group_id, []) if m[0] != row.sample_id] if group_id else []
        shard.append(compact({
            "sample_id": row.sample_id, "condition": row.condition, "subset": row.subset, "category": row.category,
            "subcategory": row.subcategory, "language": row.language, "prompt": row.prompt,
            "harmful_intention": row.harmful_intention, "response": row.response, "error": row.error,
            "seconds": row.seconds, "attack": row.attack, "peer": row.peer,
            "verdicts": [_compact_verdict(v) for v in verdicts], "frames": sample_key(row.sample_id),
            "reference_response": reference, "group_id": group_id, "group": group}))
        videos.setdefault(row.sample_id, row.video)
        n += 1
        if n % SHARD == 0:
            flush()
    flush()

    budget = info.budget if info is not None else None
    run_meta = {"name": rd.path.name,  # no absolute path: an export may travel
                "model": info.model if info else rd.path.name,
                "model_revision": info.model_revision if info else None, "budget": budget,
                "conditions": info.conditions if info else sorted(dicts["condition"]),
                "status": info.status if info else None, "judges": judges, "notes": notes}
    index = {"version": BUILDER_VERSION, "run": run_meta, "n": n, "shard": SHARD,
             "dicts": {c: list(d) for c, d in dicts.items()} | {"verdict": list(verdict_codes)},
             "cols": cols}
    write_atomic(out / "index.js", js_data(index))
    write_atomic(out / "videos.json", json.dumps(videos, ensure_ascii=False))
    write_atomic(stamp_file, json.dumps({**stamp, "rows": n, "judges": judges, "notes": notes}))
    return ViewIndex(rd, info, n, judges, notes, built=True)
