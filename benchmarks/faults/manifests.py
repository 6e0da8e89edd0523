"""Hostile manifests campaign: `trials` seeded mutations of one row of a valid 20-row manifest
(path escapes of every spelling, huge or control-character text, bidirectional marks, repeated
ids, NaN, truncated lines, random byte flips), each run through the eval harness with a model
that reads every video. A trial is lost when the harness crashes (anything but a ManifestError),
names the wrong line, opens a file outside the folder, or loses or repeats a row."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from faults.media_files import good_clip
from videosafety.data.manifest import ManifestError
from videosafety.evaluate.runner import EvalConfig, run_eval
from videosafety.models.reference import ReferencePolicy

ROWS = 20


class Reader(ReferencePolicy):
    """Refuses everything, but only after the runner decoded its video (reads_inputs)."""

    def __init__(self):
        super().__init__("refuse-all")
        self.reads_inputs = True


def _row(i: int) -> dict:
    return {"id": f"s{i}", "group_id": f"g{i}", "split": "eval", "subset": "SafeQ", "category": "violence",
            "subcategory": "physical_violence", "language": "en", "source_language": "en",
            "query": f"Describe what happens in this video ({i}).", "query_label": 0, "video_label": 0,
            "video": {"path": "videos/a.mp4", "sha256": f"{i:064x}", "duration": 4.0, "fps": 8.0, "width": 64,
                      "height": 48}}


ESCAPES = ["../outside/secret.mp4", "videos/../../outside/secret.mp4", "./../outside/secret.mp4",
           "..\\outside\\secret.mp4", "/etc/hostname", "C:\\secret.mp4", "\\\\server\\share\\a.mp4"]
LITERALS = ["%2e%2e/outside/secret.mp4", "videos/%2E%2E%2Fsecret.mp4", "..%2fsecret.mp4"]
CONTROLS = [chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), 127, *range(128, 160)]]
BIDI = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069"]


def mutate(rng: random.Random, rows: list[dict], root: Path, outside: Path) -> tuple[str, str | None, int]:
    """Mutate one row; returns (kind, expected outcome, line). Outcomes: 'error' (the run stops
    naming the line), 'row' (that row's video is an error), 'ok', None (either, e.g. byte flips)."""
    i = rng.randrange(ROWS)
    r = rows[i]
    kind = rng.choice(["escape", "literal", "symlink_file", "symlink_dir", "huge", "control", "bidi", "dup_id",
                       "nan", "truncate", "flip"])
    if kind == "escape":
        r["video"]["path"] = rng.choice(ESCAPES)
        return kind, "error", i + 1
    if kind == "literal":
        r["video"]["path"] = rng.choice(LITERALS)
        return kind, "row", i + 1
    if kind in ("symlink_file", "symlink_dir"):
        name = f"link{i}"
        if kind == "symlink_file":
            os.symlink(outside / "secret.mp4", root / "videos" / f"{name}.mp4")
            r["video"]["path"] = f"videos/{name}.mp4"
        else:
            os.symlink(outside, root / name)
            r["video"]["path"] = f"{name}/secret.mp4"
        return kind, "row", i + 1
    if kind == "huge":
        r["query"] = "x" * rng.randrange(20_001, 5_000_000)
        return kind, "error", i + 1
    if kind == "control":
        q = r["query"]
        at = rng.randrange(len(q))
        r["query"] = q[:at] + rng.choice(CONTROLS) + q[at:]
        return kind, "error", i + 1
    if kind == "bidi":
        r["query"] = rng.choice(BIDI) + r["query"] + rng.choice(BIDI)
        return kind, "ok", i + 1
    if kind == "dup_id":
        j = rng.choice([k for k in range(ROWS) if k != i])
        r["id"] = rows[j]["id"]
        return kind, "error", max(i, j) + 1
    return kind, None, i + 1  # nan / truncate / flip: applied to the line's text by the caller


def _text(rows: list[dict], kind: str, line: int, rng: random.Random) -> str:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    s = lines[line - 1]
    if kind == "nan":
        lines[line - 1] = s.replace('"duration": 4.0', f'"duration": {rng.choice(["NaN", "Infinity", "-Infinity"])}')
    elif kind == "truncate":
        lines[line - 1] = s[: rng.randrange(1, len(s) - 1)]
    elif kind == "flip":
        b = bytearray(s.encode())
        b[rng.randrange(len(b))] = rng.randrange(256)
        lines[line - 1] = b.decode("utf-8", errors="surrogateescape")
    return "".join(x + "\n" for x in lines)


def run(seed: int, workdir: Path, trials: int = 300) -> list[dict]:
    rng = random.Random(seed)
    clip = good_clip(workdir / "a.mp4")
    outside = workdir / "outside"
    outside.mkdir()
    good_clip(outside / "secret.mp4", seconds=2)
    stats: dict[str, dict] = {}
    for t in range(trials):
        root = workdir / f"t{t}"
        (root / "videos").mkdir(parents=True)
        os.link(clip, root / "videos" / "a.mp4")
        rows = [_row(i) for i in range(ROWS)]
        kind, expect, line = mutate(rng, rows, root, outside)
        manifest = root / "manifest.jsonl"
        manifest.write_bytes(_text(rows, kind, line, rng).encode("utf-8", errors="surrogateescape"))
        st = stats.setdefault(kind, {"trials": 0, "lost": 0, "duplicated": 0, "outcomes": set()})
        st["trials"] += 1
        try:
            summary = run_eval(Reader(), manifest, root / "run", EvalConfig(conditions=("video",), batch_size=8),
                               progress=False)
        except ManifestError as e:
            named = f"{manifest}:{line}:" in str(e)
            st["outcomes"].add("stopped, line named" if named else "stopped, WRONG line")
            st["lost"] += expect not in ("error", None) or not named
            shutil.rmtree(root)
            continue
        except Exception as e:  # noqa: BLE001 - a crash is what the campaign counts
            st["outcomes"].add(f"crash {type(e).__name__}")
            st["lost"] += 1
            continue
        got = [json.loads(x) for x in (root / "run" / "responses.jsonl").read_text().splitlines()]
        ids = [x["sample_id"] for x in got]
        n_rows = len({r["id"] for r in rows})
        st["duplicated"] += len(ids) - len(set(ids))
        bad = [x for x in got if x["error"]]
        outside_read = any(x["error"] is None and x["sample_id"] == rows[line - 1]["id"] and kind.startswith("symlink")
                           for x in got)
        if expect == "row":
            ok = len(bad) == 1 and bad[0]["sample_id"] == rows[line - 1]["id"] and len(got) == n_rows
        else:
            ok = not bad and len(got) == n_rows and expect in ("ok", None)
        st["lost"] += (not ok) or outside_read
        st["outcomes"].add(f"ran, {len(bad)} row error(s)" if bad else "ran")
        assert summary.rows == len(got)
        shutil.rmtree(root)
    return [{"fault": kind, "trials": s["trials"], "lost": s["lost"], "duplicated": s["duplicated"],
             "notes": "; ".join(sorted(s["outcomes"]))} for kind, s in sorted(stats.items())]
