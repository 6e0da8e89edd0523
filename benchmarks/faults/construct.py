"""Construction input campaign: `trials` seeded mutations of a valid 12-row metadata CSV (a
non-UTF-8 byte, a repeated row, a missing file, a "safe" hint, a BOM, extra cells) through stage 1
(ingest). A trial is lost when ingest crashes (anything but a ManifestError), names the wrong
line, or drops a listed row from its output."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np

from videosafety.data.construct import ingest
from videosafety.data.manifest import ManifestError
from videosafety.video import encode_video

N = 12


def _clips(d: Path) -> list[str]:
    d.mkdir(parents=True)
    names = []
    for i in range(N):
        rng = np.random.default_rng(i)
        tex = np.kron(rng.integers(0, 255, (8, 12, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
        encode_video(d / f"v{i}.mp4", [np.roll(tex, 2 * t, axis=1) for t in range(12)], fps=6, width=96, height=64)
        names.append(f"v{i}.mp4")
    return names


def run(seed: int, workdir: Path, trials: int = 60) -> list[dict]:
    rng = random.Random(seed)
    videos = workdir / "videos"
    names = _clips(videos)
    stats: dict[str, dict] = {}
    for t in range(trials):
        rows = [[n, rng.choice(["", "violence", "safe", "scams_fraud"])] for n in names]
        kind = rng.choice(["latin1", "repeat", "missing", "safe_hint", "bom", "extra_cells"])
        i = rng.randrange(1, N)
        expect_line = None
        if kind == "repeat":
            rows[i][0] = rows[rng.randrange(i)][0]
            expect_line = i + 2
        elif kind == "missing":
            rows[i][0] = f"gone{i}.mp4"
        elif kind == "safe_hint":
            rows[i][1] = "safe"
        elif kind == "extra_cells":
            rows[i].append("stray")
            expect_line = i + 2
        text = "video,category_hint\n" + "".join(",".join(r) + "\n" for r in rows)
        data = text.encode()
        if kind == "latin1":
            lines = text.splitlines(keepends=True)
            lines[i + 1] = f"{rows[i][0]},caf\u00e9\n"  # written below as Latin-1: one byte 0xe9
            data = "".join(lines[: i + 1]).encode() + lines[i + 1].encode("latin-1") + "".join(lines[i + 2:]).encode()
            expect_line = i + 2
        if kind == "bom":
            data = "\ufeff".encode() + data
        meta = workdir / f"meta{t}.csv"
        meta.write_bytes(data)
        out = workdir / f"b{t}"
        st = stats.setdefault(kind, {"trials": 0, "lost": 0, "outcomes": set()})
        st["trials"] += 1
        try:
            s = ingest(videos, meta, out, workers=1)
        except ManifestError as e:
            named = expect_line is not None and f"{meta}:{expect_line}:" in str(e)
            st["outcomes"].add("stopped, line named" if named else f"stopped: {e}")
            st["lost"] += not named
            continue
        except Exception as e:  # noqa: BLE001 - a crash is what the campaign counts
            st["outcomes"].add(f"crash {type(e).__name__}: {e}")
            st["lost"] += 1
            continue
        recs = [json.loads(x) for x in (out / "ingest.jsonl").read_text().splitlines()]
        listed = [r[0] for r in rows]
        ok = [r["video"] for r in recs] == listed and expect_line is None
        if kind == "missing":
            gone = [r for r in recs if r["video"] == f"gone{i}.mp4"]
            ok = ok and gone[0]["status"] == "rejected" and s.kept == N - 1
        st["lost"] += not ok
        st["outcomes"].add(f"ran, {s.kept} kept of {s.listed}")
        shutil.rmtree(out)
    return [{"fault": kind, "trials": s["trials"], "lost": s["lost"], "notes": "; ".join(sorted(s["outcomes"]))}
            for kind, s in sorted(stats.items())]
