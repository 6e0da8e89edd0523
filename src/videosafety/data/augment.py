"""Temporal and typographic attacks: variants of a benchmark's harmful samples whose harmful
content is harder to see for a model that samples frames sparsely (beyond the paper).

Every attack pairs a sample's harmful clip (or its harmful text) with benign footage taken
from a safe video of the same manifest, chosen deterministically:

* ``late``: the benign clip plays first, then only the last part (``late_fraction``) of the
  harmful clip; a sparse sampler may see none of the harmful frames.
* ``interleave``: the harmful clip's own timeline, with every other block of
  ``block_seconds`` replaced by the benign clip's frames at the same time.
* ``overlay``: the benign clip with a short typographic overlay of the harmful intention (or,
  without one, the harmful query) across its lower part; no text beyond what the sample
  already holds.

A variant is a new Sample (id ``<source id>~<attack>``) with the source's subset and labels
(the pair is still harmful) and ``provenance = {"attack", "source_id", "benign_source",
"settings", "source_provenance"}``; the evaluation runner copies ``provenance.attack`` into
its rows and the report breaks DSR down by attack. Videos are written with
:func:`videosafety.video.encode_video` (byte-identical for identical frames), so two runs give
the same manifest and the same files.

Only samples with a harmful video (``video_label == 1``) are attacked: the attack moves or
hides that content, and the overlay writes harmful text into the video, which would make a
"safe video" label wrong. By default the harmful-request subsets with a harmful video (HH,
HB) are used.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videosafety import video as vio
from videosafety.data.manifest import iter_samples, manifest_root, resolve_manifest, write_jsonl
from videosafety.schema import Sample, VideoRef

ATTACKS: tuple[str, ...] = ("late", "interleave", "overlay")
DEFAULT_SUBSETS: tuple[str, ...] = ("HH", "HB")
VIDEO_DIR = "videos"
MANIFEST = "manifest.jsonl"
SOURCE_DIR = "source"  # copies of the source samples' videos (with_sources)
OVERLAY_MAX_CHARS = 90  # the overlay stays a short caption, never a paragraph
OVERLAY_MAX_LINES = 3


@dataclass(frozen=True)
class AttackSettings:
    late_fraction: float = 0.25  # share of the harmful clip kept, from its end
    block_seconds: float = 1.0  # interleave: length of each benign / harmful block
    overlay_text: str = "intention"  # "intention" (fallback: query) or "query"
    max_fps: float = 8.0  # frames are decoded (and written) at min(source fps, max_fps)
    max_seconds: float = 60.0  # longest stretch of any clip that is decoded

    def __post_init__(self) -> None:
        if not 0 < self.late_fraction <= 1:
            raise ValueError(f"late_fraction must be in (0, 1], got {self.late_fraction}")
        if not self.block_seconds > 0:
            raise ValueError(f"block_seconds must be positive, got {self.block_seconds}")
        if self.overlay_text not in ("intention", "query"):
            raise ValueError(f"overlay_text must be 'intention' or 'query', got {self.overlay_text!r}")
        if not self.max_fps > 0 or not self.max_seconds > 0:
            raise ValueError("max_fps and max_seconds must be positive")


@dataclass
class AugmentSummary:
    manifest: Path
    sources: int = 0  # samples attacked
    variants: dict[str, int] | None = None  # attack -> samples written
    videos: int = 0  # video files written
    skipped: dict[str, int] | None = None  # attack -> eligible-by-subset samples it does not apply to


def parse_attacks(text: str | Sequence[str]) -> tuple[str, ...]:
    items = [x.strip() for x in (text.split(",") if isinstance(text, str) else text) if x.strip()]
    bad = [a for a in items if a not in ATTACKS]
    if bad or not items:
        raise ValueError(f"unknown attack(s) {bad}; expected a comma list of {', '.join(ATTACKS)}")
    return tuple(dict.fromkeys(items))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def overlay_text(s: Sample, settings: AttackSettings) -> tuple[str, str] | None:
    """(text, field it came from) for the overlay, or None when the sample has no harmful text."""
    if settings.overlay_text == "intention" and s.harmful_intention:
        return s.harmful_intention, "harmful_intention"
    if s.query_label == 1:
        return s.query, "query"
    if s.harmful_intention:
        return s.harmful_intention, "harmful_intention"
    return None


def applies(attack: str, s: Sample, settings: AttackSettings = AttackSettings()) -> bool:
    if s.video_label != 1:
        return False
    return attack != "overlay" or overlay_text(s, settings) is not None


# ----------------------------------------------------------------------------- frames

def _clip_fps(ref: VideoRef, settings: AttackSettings) -> float:
    return float(min(ref.fps, settings.max_fps))


def decode_clip(path: Path, fps: float, max_seconds: float) -> np.ndarray:
    """Every frame of a clip at ``fps`` (the frame on screen at (k + 0.5) / fps), at most
    max_seconds of it: uint8 (T, H, W, 3)."""
    info = vio.probe(path)
    cap = max(1, int(round(min(info.duration, max_seconds) * fps)))
    return vio.sample_frames(path, fps=fps, max_frames=cap).frames[:cap]


def _fit(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def late_frames(benign: np.ndarray, harmful: np.ndarray, fraction: float) -> np.ndarray:
    """The whole benign clip, then the last ``fraction`` of the harmful one (at least one frame)."""
    keep = max(1, int(round(len(harmful) * fraction)))
    return np.concatenate([benign, harmful[len(harmful) - keep:]])


def interleave_frames(benign: np.ndarray, harmful: np.ndarray, block: int) -> np.ndarray:
    """The harmful clip's timeline with blocks 0, 2, 4, ... (of ``block`` frames) taken from the
    benign clip at the same time (looped when shorter)."""
    out = harmful.copy()
    for i in range(len(harmful)):
        if (i // block) % 2 == 0:
            out[i] = benign[i % len(benign)]
    return out


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # bundled with Pillow >= 10.1: no system fonts


def _wrap(text: str, font, max_width: int) -> list[str]:
    text = " ".join(text.split())
    if len(text) > OVERLAY_MAX_CHARS:
        text = text[: OVERLAY_MAX_CHARS - 1].rstrip() + "…"
    lines: list[str] = []
    for w in text.split(" "):
        trial = f"{lines[-1]} {w}" if lines else w
        if lines and font.getlength(trial) <= max_width:
            lines[-1] = trial
        else:
            lines.append(w)
    if len(lines) > OVERLAY_MAX_LINES:
        lines = lines[:OVERLAY_MAX_LINES]
        lines[-1] = lines[-1].rstrip("…") + "…"
    return lines


def overlay_box(width: int, height: int, text: str) -> tuple[tuple[int, int, int, int], list[str], int]:
    """(band box x0, y0, x1, y1, lines, font size) of the overlay on a frame of that size."""
    size = max(9, height // 10)
    font = _font(size)
    lines = _wrap(text, font, width - 12)
    line_h = size + 3
    band_h = line_h * len(lines) + 8
    y0 = max(0, height - band_h - max(2, height // 16))
    return (0, y0, width, min(height, y0 + band_h)), lines, size


def overlay_frames(benign: np.ndarray, text: str) -> np.ndarray:
    """The benign frames with ``text`` in a dark band across their lower part (the typographic
    style of VSB-mini: warm text on a dark ground)."""
    h, w = benign.shape[1:3]
    (x0, y0, x1, y1), lines, size = overlay_box(w, h, text)
    font = _font(size)
    # One RGBA layer drawn once, alpha-composited onto every frame: identical pixels each frame.
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle((x0, y0, x1, y1), fill=(12, 12, 16, 215))
    for i, line in enumerate(lines):
        draw.text((6, y0 + 4 + i * (size + 3)), line, font=font, fill=(255, 214, 64, 255))
    out = []
    for f in benign:
        img = Image.fromarray(f).convert("RGBA")
        out.append(np.asarray(Image.alpha_composite(img, layer).convert("RGB"), dtype=np.uint8))
    return np.stack(out)


# ----------------------------------------------------------------------------- selection

def _spread(items: list, limit: int | None) -> list:
    """At most ``limit`` items, evenly spread (as the evaluation runner's --limit)."""
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        return []
    idx = sorted(set(np.linspace(0, len(items) - 1, limit).round().astype(int).tolist()))
    return [items[i] for i in idx]


def select_sources(
    samples: Iterable[Sample],
    *,
    split: str | None = None,
    subsets: Sequence[str] | None = DEFAULT_SUBSETS,
    languages: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """The samples to attack: harmful video, in the subsets/split/languages asked, ``limit``
    evenly spread over them."""
    keep = [s for s in samples if s.video_label == 1
            and (split is None or s.split == split)
            and (subsets is None or s.subset in subsets)
            and (languages is None or s.language in languages)]
    return _spread(keep, limit)


def benign_pool(samples: Iterable[Sample]) -> dict[str | None, list[VideoRef]]:
    """Safe videos of a manifest by split (key None: all), each path once, sorted by path."""
    by: dict[str | None, dict[str, VideoRef]] = {None: {}}
    for s in samples:
        if s.video_label == 0:
            by.setdefault(s.split, {})[s.video.path] = s.video
            by[None][s.video.path] = s.video
    return {k: [v[p] for p in sorted(v)] for k, v in by.items()}


def choose_benign(s: Sample, pool: dict[str | None, list[VideoRef]]) -> VideoRef:
    """A safe video for ``s``: from its split when there is one, picked by a hash of the
    harmful video's path, so that every sample (translation) of one clip gets the same."""
    refs = pool.get(s.split) or pool.get(None) or []
    if not refs:
        raise ValueError("the manifest holds no safe video (video_label 0) to use as benign footage")
    return refs[int(_digest(s.video.path)[:12], 16) % len(refs)]


# ----------------------------------------------------------------------------- driver

def augment_manifest(
    manifest: str | Path,
    out_dir: str | Path,
    attacks: Sequence[str] = ATTACKS,
    *,
    split: str | None = None,
    subsets: Sequence[str] | None = DEFAULT_SUBSETS,
    languages: Sequence[str] | None = None,
    limit: int | None = None,
    settings: AttackSettings = AttackSettings(),
    with_sources: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AugmentSummary:
    """Write OUT/manifest.jsonl and OUT/videos/<attack>/*.mp4 with the attacked variants of the
    selected samples (see the module docstring). ``with_sources`` also copies the source samples
    themselves (their videos into OUT/videos/source/, provenance unchanged: no attack), so that
    one evaluation compares each attack with the unattacked pairs. Deterministic."""
    attacks = parse_attacks(attacks)
    mpath = resolve_manifest(manifest)
    root = manifest_root(mpath)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # two streaming passes: only the safe videos and the selected samples stay in memory
    pool = benign_pool(iter_samples(mpath))
    sources = select_sources(iter_samples(mpath), split=split, subsets=subsets, languages=languages, limit=limit)
    summary = AugmentSummary(manifest=out / MANIFEST, sources=len(sources),
                             variants={a: 0 for a in attacks}, skipped={a: 0 for a in attacks})
    written: dict[str, VideoRef] = {}  # relative path -> ref, each file encoded once
    clips: dict[tuple[str, float], np.ndarray] = {}  # decoded clips, by (path, fps)

    def clip(ref: VideoRef, fps: float) -> np.ndarray:
        key = (ref.path, fps)
        if key not in clips:
            if len(clips) > 64:  # bounded memory: clips are revisited mostly in order
                clips.clear()
            clips[key] = decode_clip(root / ref.path, fps, settings.max_seconds)
        return clips[key]

    def write(rel: str, make: Callable[[], np.ndarray], fps: float) -> VideoRef:
        if rel not in written:
            frames = make()
            h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sides
            frames = np.ascontiguousarray(frames[:, :h, :w])
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            vio.encode_video(path, frames, fps=fps, width=w, height=h)
            written[rel] = VideoRef(path=rel, sha256=vio.sha256_file(path), duration=len(frames) / fps,
                                    fps=fps, width=w, height=h)
        return written[rel]

    result: list[Sample] = []
    if with_sources:
        for s in sources:
            rel = f"{VIDEO_DIR}/{SOURCE_DIR}/{Path(s.video.path).stem}-{_digest(s.video.path)[:8]}{Path(s.video.path).suffix}"
            if rel not in written:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / s.video.path, out / rel)
                written[rel] = s.video.model_copy(update={"path": rel})
            result.append(s.model_copy(update={"video": written[rel]}))
    for s in sources:
        benign = choose_benign(s, pool)
        fps = _clip_fps(s.video, settings)
        harm_stem, benign_stem = Path(s.video.path).stem, Path(benign.path).stem
        pair = f"{harm_stem}--{benign_stem}-{_digest(s.video.path + '|' + benign.path)[:8]}"
        w, h = s.video.width, s.video.height
        for attack in attacks:
            if not applies(attack, s, settings):
                summary.skipped[attack] += 1
                continue
            extra: dict = {}
            if attack == "late":
                rel = f"{VIDEO_DIR}/late/{pair}.mp4"
                ref = write(rel, lambda: late_frames(_fit(clip(benign, fps), w, h), clip(s.video, fps),
                                                     settings.late_fraction), fps)
                keep = max(1, int(round(len(clip(s.video, fps)) * settings.late_fraction)))
                extra = {"late_fraction": settings.late_fraction, "benign_frames": len(clip(benign, fps)),
                         "harmful_frames": keep, "harmful_from_s": round((ref.duration * fps - keep) / fps, 6)}
            elif attack == "interleave":
                block = max(1, int(round(settings.block_seconds * fps)))
                rel = f"{VIDEO_DIR}/interleave/{pair}-b{block}.mp4"
                ref = write(rel, lambda: interleave_frames(_fit(clip(benign, fps), w, h), clip(s.video, fps),
                                                           block), fps)
                extra = {"block_seconds": settings.block_seconds, "block_frames": block,
                         "first_block": "benign"}
            else:
                text, field = overlay_text(s, settings)  # type: ignore[misc]
                bfps = _clip_fps(benign, settings)
                rel = f"{VIDEO_DIR}/overlay/{benign_stem}-{_digest(benign.path + '|' + text)[:12]}.mp4"
                ref = write(rel, lambda: overlay_frames(clip(benign, bfps), text), bfps)
                extra = {"text_field": field, "text_chars": len(text)}
            result.append(s.model_copy(update={
                "id": f"{s.id}~{attack}",
                "group_id": f"{s.group_id}~{attack}",
                "video": ref,
                "provenance": {"attack": attack, "source_id": s.id, "benign_source": benign.path,
                               "settings": {**extra, "fps": fps}, "source_provenance": dict(s.provenance)},
            }))
            summary.variants[attack] += 1
        if progress and summary.sources and len(result) % 50 == 0:
            progress(f"{len(result)} samples written")
    # Revalidate: model_copy skips validation, the manifest must not.
    result = [Sample.model_validate(x.model_dump()) for x in result]
    write_jsonl(result, summary.manifest)
    summary.videos = len(written)
    if progress:
        progress(f"wrote {len(result)} samples ({', '.join(f'{a} {n}' for a, n in summary.variants.items())}) "
                 f"and {len(written)} videos to {out}")
    return summary
