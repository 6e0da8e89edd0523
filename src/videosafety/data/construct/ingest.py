"""Stage 1, ingest: a folder of videos plus a CSV/JSONL of metadata -> `ingest.jsonl`.

Every listed video is probed (unreadable files are rejected with the reason, the run goes on),
hashed (sha256: exact duplicates), and fingerprinted by a perceptual hash of uniformly sampled
frames (a 64-bit difference hash per frame: near duplicates, e.g. re-encodes or rescales of one
clip). The first video in metadata order is kept; later copies are rejected and name it.

Metadata columns: `video` (path relative to the videos folder; required), `category_hint` (one
of the taxonomy's categories or sub-categories, or "safe" for a video that shows nothing harmful:
the labellers still see every policy, and a video they call harmful goes to review), `language` (one of the 10 language codes),
`source`, `licence`. Unknown columns, unknown categories or languages, paths leaving the folder
and repeated videos are errors naming the file, the line and the field.

Near-duplicate search compares each video with every kept one (numpy, O(n^2)): fine for tens of
thousands of candidates; beyond, bucket the hashes first.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from videosafety import taxonomy
from videosafety import video as vio
from videosafety.data.construct.stage import (cached, default_workers, parallel_map, provenance,
                                               write_stage)
from videosafety.data.manifest import ManifestError, ManifestProblem, iter_jsonl_objects, validation_problems
from videosafety.schema import check_relative_path

STAGE = "ingest"
OUTPUT = "ingest.jsonl"


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hash_frames: int = Field(8, ge=1)  # frames per perceptual hash
    near_duplicate_bits: float = Field(6.0, ge=0, le=64)  # mean Hamming distance per frame hash, of 64
    probe_timeout: float = Field(10.0, gt=0)
    decode_timeout: float = Field(60.0, gt=0)


class MetadataRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video: str = Field(min_length=1)
    category_hint: str | None = None
    language: str | None = None
    source: str | None = None
    licence: str | None = None

    @field_validator("video")
    @classmethod
    def _inside(cls, v: str) -> str:
        return check_relative_path(v, "the videos folder")

    @field_validator("category_hint")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v and v != taxonomy.SAFE_VIDEO and v not in taxonomy.CATEGORIES and v not in taxonomy.SUBCATEGORIES:
            raise ValueError(f"unknown category or sub-category {v!r} (or {taxonomy.SAFE_VIDEO!r} for a safe video)")
        return v or None

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        if v and v not in taxonomy.LANGUAGES:
            raise ValueError(f"unknown language {v!r} (expected one of {', '.join(taxonomy.LANGUAGES)})")
        return v or None


def read_metadata(path: str | Path) -> list[MetadataRow]:
    """Metadata rows of a CSV (header row) or JSONL file; the first bad row raises ManifestError
    naming the file, the line and the field."""
    path = Path(path)
    name = str(path)
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        for raw_line, text in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as e:  # name the line, not just the byte offset of the file
                raise ManifestError(ManifestProblem(name, raw_line, "", f"not UTF-8 text (byte {e.start + 1} of "
                                                    f"the line is 0x{text[e.start]:02x}); save the CSV as UTF-8"))
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            reader = csv.DictReader(f)
            for raw in reader:
                if None in raw:  # more cells than header columns
                    raise ManifestError(ManifestProblem(name, reader.line_num, "", f"{len(raw) - 1 + len(raw[None])} "
                                                        f"cells, the header has {len(reader.fieldnames or [])}"))
                rows.append((reader.line_num, {k: (v if v != "" else None) for k, v in raw.items()}))
    else:
        for line, obj in iter_jsonl_objects(path):
            if isinstance(obj, ManifestProblem):
                raise ManifestError(obj)
            rows.append((line, obj))
    out, seen = [], {}
    for line, raw in rows:
        try:
            row = MetadataRow.model_validate(raw)
        except ValidationError as e:
            raise ManifestError(validation_problems(name, line, e)[0]) from None
        if row.video in seen:
            raise ManifestError(ManifestProblem(name, line, "video", f"{row.video!r} already listed on line {seen[row.video]}"))
        seen[row.video] = line
        out.append(row)
    return out


def dhash(frame: np.ndarray) -> int:
    """64-bit difference hash of an RGB frame: 9x8 grayscale, each bit says whether a pixel is
    brighter than its right neighbour. Robust to re-encoding and rescaling."""
    from PIL import Image

    g = np.asarray(Image.fromarray(frame).convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def _examine(rel: str, root: Path, settings: IngestSettings) -> dict:
    """Probe, hash and fingerprint one video; an unreadable one comes back with its error."""
    path = root / rel
    out: dict = {"video": rel}
    try:
        if path.is_symlink():
            raise vio.VideoError(f"{path}: symbolic links are refused (they may point outside the folder)")
        out["sha256"] = vio.sha256_file(path)
        info = vio.probe(path, timeout=settings.probe_timeout)
        out["info"] = {"duration": info.duration, "fps": info.fps, "width": info.width, "height": info.height,
                       "num_frames": info.num_frames, "codec": info.codec}
        clip = vio.sample_frames(path, num_frames=settings.hash_frames, timeout=settings.decode_timeout)
        out["phash"] = [f"{dhash(f):016x}" for f in clip.frames]
    except (vio.VideoError, OSError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def _distance(a: list[str], b: np.ndarray) -> np.ndarray:
    """Mean Hamming distance between one video's frame hashes and each row of b (n, F)."""
    x = np.array([int(h, 16) for h in a], dtype=np.uint64)
    if b.shape[1] != len(x):
        return np.full(len(b), 64.0)
    bits = np.unpackbits((b ^ x).view(np.uint8), axis=1)
    return bits.reshape(len(b), -1).sum(axis=1) / len(x)


@dataclass
class IngestSummary:
    listed: int = 0
    kept: int = 0
    examined: int = 0  # probed and hashed in this run (the rest came from the stage's own output)
    rejected: dict[str, int] = field(default_factory=dict)
    output: Path | None = None


def ingest(videos: str | Path, metadata: str | Path, out_dir: str | Path, settings: IngestSettings = IngestSettings(),
           *, workers: int | None = None) -> IngestSummary:
    root, out = Path(videos), Path(out_dir)
    rows = read_metadata(metadata)
    output = out / OUTPUT
    previous = cached(output, STAGE, settings)
    prov = provenance(STAGE, "probe + sha256 + dhash", settings)
    summary = IngestSummary(listed=len(rows), output=output)

    # The cache is keyed by content: hash each file (cheap next to decoding) to find its record.
    known: dict[str, dict] = {}
    todo: list[str] = []
    for row in rows:
        p = root / row.video
        try:
            digest = vio.sha256_file(p) if p.is_file() and not p.is_symlink() else None
        except OSError:
            digest = None
        rec = previous.get(digest) if digest else None
        if rec is not None and "error" not in rec:
            known[row.video] = {k: rec[k] for k in ("sha256", "info", "phash")} | {"video": row.video}
        else:
            todo.append(row.video)
    examined = dict(zip(todo, parallel_map(partial(_examine, root=root, settings=settings), todo,
                                           workers or default_workers())))
    summary.examined = len(todo)

    records, kept_hashes, kept_names = [], [], []
    by_sha: dict[str, str] = {}
    for row in rows:
        rec = known.get(row.video) or examined[row.video]
        rec = dict(rec, metadata=row.model_dump(exclude={"video"}), provenance={STAGE: prov})
        reason = None
        if "error" in rec:
            reason = f"unreadable: {rec['error']}"
        elif rec["sha256"] in by_sha:
            reason = f"duplicate of {by_sha[rec['sha256']]} (same sha256)"
        elif kept_hashes:
            d = _distance(rec["phash"], np.stack(kept_hashes))
            j = int(d.argmin())
            if d[j] <= settings.near_duplicate_bits:
                reason = f"near duplicate of {kept_names[j]} (mean distance {d[j]:.1f} of 64 bits)"
            rec["nearest"] = {"video": kept_names[j], "distance": round(float(d[j]), 2)}
        rec["status"] = "rejected" if reason else "kept"
        rec["reason"] = reason
        if reason is None:
            by_sha[rec["sha256"]] = row.video
            kept_hashes.append(np.array([int(h, 16) for h in rec["phash"]], dtype=np.uint64))
            kept_names.append(row.video)
            summary.kept += 1
        else:
            kind = reason.split(" ")[0].rstrip(":")
            summary.rejected[kind] = summary.rejected.get(kind, 0) + 1
        records.append(rec)
    write_stage(output, records)
    return summary
