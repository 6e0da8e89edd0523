"""The page as static files: DIR/index.html opens from disk with no server (file://). Data
files are the same scripts the server sends, so the page needs no fetch()."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from videosafety.view.frames import decode_frames
from videosafety.view.index import ViewIndex, js_data
from videosafety.view.server import STATIC, runs_payload, static_dir


def export_view(indexes: list[ViewIndex], out_dir: str | Path, *, frames: bool = True) -> dict:
    """Write the page and every run's view files into out_dir; with `frames`, every sample's
    thumbnails are decoded first (once: they stay cached beside the run). Returns sizes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "static").mkdir(exist_ok=True)
    for name in STATIC:
        target = out / name if name == "index.html" else out / "static" / name
        shutil.copyfile(static_dir() / name, target)
    (out / "runs.js").write_text(js_data(runs_payload(indexes)), encoding="utf-8")
    for i, ix in enumerate(indexes):
        if frames:
            videos = ix.dir / "videos.json"
            for sid in json.loads(videos.read_text()) if videos.is_file() else {}:
                decode_frames(ix.run.path, sid)
        dest = out / "run" / str(i)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copyfile(ix.dir / "index.js", dest / "index.js")  # what the page reads, not the builder's files
        for part in ("detail", "frames"):
            if (ix.dir / part).is_dir():
                shutil.copytree(ix.dir / part, dest / part, ignore=shutil.ignore_patterns("*.tmp"))
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "path": str(out)}
