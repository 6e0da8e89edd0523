"""Stage 2, static filter: `ingest.jsonl` -> `static.jsonl`, dropping near-static clips.

A clip is near-static when the features of its uniformly sampled frames barely change: the mean
cosine similarity of consecutive frames' features is at or above `threshold`. Features come
from a Hugging Face vision model through `AutoModel` (the paper uses DINOv2; its pooled output,
else the first token of the last hidden state) when `model` is given, else from the pixels: a
mean-centred 32x32 grayscale thumbnail joined with a 32-bin luma histogram, which sees both
motion and lighting change. Every score is recorded, kept or not, so thresholds can be moved
afterwards without decoding again (the scores are the stage's cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from videosafety import video as vio
from videosafety.data.construct.stage import (cached, default_workers, parallel_map, provenance, read_stage,
                                               write_stage)

STAGE = "static"
OUTPUT = "static.jsonl"


class StaticSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frames: int = Field(8, ge=2)
    threshold: float = Field(0.999, gt=-1, le=1)  # pixels: static clips score >= 0.99999 after re-encoding
    model: str | None = None  # e.g. facebook/dinov2-small (a local path offline)
    trust_remote_code: bool = False
    decode_timeout: float = Field(60.0, gt=0)


def pixel_features(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, D) unit vectors: centred thumbnail + luma histogram."""
    from PIL import Image

    feats = []
    for f in frames:
        g = np.asarray(Image.fromarray(f).convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
        thumb = (g - g.mean()).ravel()
        thumb /= np.linalg.norm(thumb) or 1.0  # a flat frame: all zeros, similar to nothing but itself
        hist = np.histogram(g, bins=32, range=(0, 256))[0].astype(np.float64)
        hist /= np.linalg.norm(hist) or 1.0
        feats.append(np.concatenate([thumb, hist]) / np.sqrt(2))
    return np.stack(feats)


def consecutive_similarity(features: np.ndarray) -> float:
    """Mean cosine similarity of consecutive rows (features need not be normalised)."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    a, b = f[:-1], f[1:]
    flat = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    sims = np.where(flat, 1.0, (a * b).sum(axis=1))
    return float(sims.mean())


class ModelFeatures:
    """Frame features from a vision model loaded with AutoModel + AutoImageProcessor."""

    def __init__(self, name: str, *, trust_remote_code: bool = False):
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
        self.model = AutoModel.from_pretrained(name, trust_remote_code=trust_remote_code, use_safetensors=True).eval()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(**self.processor(images=list(frames), return_tensors="pt"))
        pooled = getattr(out, "pooler_output", None)
        feats = pooled if pooled is not None else out.last_hidden_state[:, 0]
        return feats.float().numpy()


def _score(rel: str, root: Path, settings: StaticSettings, features=None) -> dict:
    try:
        clip = vio.sample_frames(vio.path_inside(root, rel), num_frames=settings.frames,
                                timeout=settings.decode_timeout)
        feats = features(clip.frames) if features is not None else pixel_features(clip.frames)
        return {"similarity": round(consecutive_similarity(feats), 6)}
    except vio.VideoError as e:
        return {"error": f"{type(e).__name__}: {e}"}


@dataclass
class StaticSummary:
    candidates: int = 0
    kept: int = 0
    static: int = 0
    errors: int = 0
    scored: int = 0  # decoded in this run (the rest came from the stage's own output)
    output: Path | None = None
    similarities: list[float] = field(default_factory=list)


def static_filter(videos: str | Path, out_dir: str | Path, settings: StaticSettings = StaticSettings(),
                  *, workers: int | None = None) -> StaticSummary:
    """Score every video ingest kept; write all of them with their scores to static.jsonl."""
    root, out = Path(videos), Path(out_dir)
    records = [r for r in read_stage(out / "ingest.jsonl") if r["status"] == "kept"]
    output = out / OUTPUT
    previous = cached(output, STAGE, settings)
    method = f"model:{settings.model}" if settings.model else "pixels"
    prov = provenance(STAGE, f"consecutive-frame similarity ({method})", settings)
    summary = StaticSummary(candidates=len(records), output=output)

    todo = [r["video"] for r in records if r["sha256"] not in previous]
    if settings.model:  # one model in this process: no worker copies of it
        feats = ModelFeatures(settings.model, trust_remote_code=settings.trust_remote_code)
        scores = [_score(v, root, settings, feats) for v in todo]
    else:
        scores = list(parallel_map(partial(_score, root=root, settings=settings), todo, workers or default_workers()))
    fresh = dict(zip(todo, scores))
    summary.scored = len(todo)

    out_records = []
    for r in records:
        score = fresh.get(r["video"]) or previous[r["sha256"]][STAGE]
        rec = dict(r, provenance={**r["provenance"], STAGE: prov}, **{STAGE: {**score, "method": method}})
        if "error" in score:
            rec["status"], rec["reason"] = "rejected", f"unreadable: {score['error']}"
            summary.errors += 1
        elif score["similarity"] >= settings.threshold:
            rec["status"] = "rejected"
            rec["reason"] = f"near-static (similarity {score['similarity']:.4f} >= {settings.threshold})"
            summary.static += 1
        else:
            rec["status"], rec["reason"] = "kept", None
            summary.kept += 1
        if "similarity" in score:
            summary.similarities.append(score["similarity"])
        out_records.append(rec)
    write_stage(output, out_records)
    return summary
