"""Thumbnails of the frames a model was given: the sample's video sampled with the run's own
frame budget (run.json), as the runner did (conditions.model_input), written once as small
JPEGs under RUN/view/frames/<key>/ with RUN/view/frames/<key>.js listing them."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from videosafety.evaluate.rundir import ResponseRow, RunDir
from videosafety.view.index import VIEW_DIR, js_data, sample_key

THUMB = 160  # longest side, pixels
QUALITY = 70
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def frames_file(run_dir: Path, sample_id: str) -> Path:
    return Path(run_dir) / VIEW_DIR / "frames" / f"{sample_key(sample_id)}.js"


def _jpeg(frame, size: int = THUMB) -> bytes:
    from PIL import Image

    img = Image.fromarray(frame)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def decode_frames(run_dir: str | Path, sample_id: str) -> Path:
    """Write (once) and return the frames file of one sample. A sample whose video cannot be
    placed or decoded gets a file that says why, so the page shows the reason and nothing is
    tried again per view."""
    rd = RunDir(run_dir)
    out = frames_file(rd.path, sample_id)
    key = str(out)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if out.is_file():
            return out
        payload: dict = {"sample_id": sample_id, "frames": [], "note": None}
        try:
            info = rd.read_info()
            videos_file = rd.path / VIEW_DIR / "videos.json"
            videos = json.loads(videos_file.read_text()) if videos_file.is_file() else {}
            budget_dict = info.budget if info is not None else None
            if not budget_dict:
                raise ValueError("run.json records no frame budget")
            from videosafety import video as vio
            from videosafety.budget import FrameBudget

            budget = FrameBudget(**budget_dict)
            payload["budget"] = budget.describe()
            path = rd.video_resolver()(ResponseRow(sample_id=sample_id, condition="video", subset="",
                                                   video=videos.get(sample_id)))
            if path is None:
                raise ValueError(rd.videos_note or "video not found")
            sampled = vio.sample_with_budget(path, budget)
            folder = out.with_suffix("")
            folder.mkdir(parents=True, exist_ok=True)
            for i, (frame, t) in enumerate(zip(sampled.frames, sampled.timestamps)):
                (folder / f"{i:03d}.jpg").write_bytes(_jpeg(frame))
                payload["frames"].append({"src": f"frames/{folder.name}/{i:03d}.jpg", "t": round(float(t), 3)})
        except Exception as e:  # noqa: BLE001 - any failure is shown on the page, not raised per view
            payload["note"] = f"frames not available: {e}"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(js_data(payload), encoding="utf-8")
        tmp.replace(out)
        return out
