"""What every peer loader shares: errors that name file, line and field; JSON read with line
numbers; media paths held inside the peer folder; images turned into still videos; peer
videos linked (or copied) into the converted benchmark's folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from videosafety import taxonomy
from videosafety import video as vio
from videosafety.data.manifest import ManifestError, ManifestProblem
from videosafety.paths import resolve_video_path
from videosafety.schema import VideoRef, check_relative_path

# An image becomes a still video: the image as every frame, STILL_SECONDS long at STILL_FPS. Two
# seconds, not one frame: at the default 1 fps that samples two frames, and some processors refuse
# fewer frames than their temporal patch (Qwen3-VL: "t:1 must be larger than temporal_factor:2").
STILL_FPS = 1
STILL_SECONDS = 2.0
# Longest side of an image-made video. Peer images reach several thousand pixels; every model's
# processor downsizes far below this, so larger frames only cost disk and decode time.
MAX_IMAGE_SIDE = 1280
VIDEO_DIR = "videos"


class PeerFormatError(ManifestError):
    """A peer's file does not hold what its format promises; the message names file, line
    (0 = the file as a whole) and field."""

    def __init__(self, file: str | Path, line: int, field: str, message: str):
        super().__init__(ManifestProblem(str(file), line, field, message))


# ---------------------------------------------------------------------------------------------
# reading


def _ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


class _Lines:
    """Offset -> 1-based line, for offsets visited in increasing order."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, i: int) -> int:
        self.line += self.text.count("\n", self.pos, i)
        self.pos = i
        return self.line


def read_json_items(path: Path) -> Iterator[tuple[int, str | int, Any]]:
    """(line, key, value) for each element of a top-level JSON array (key = 0-based index) or
    object (key = the member name); line is where the element starts in the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise PeerFormatError(path, 0, "", f"cannot read ({e})") from None
    dec = json.JSONDecoder()
    lines = _Lines(text)
    i = _ws(text, 0)
    if i >= len(text) or text[i] not in "[{":
        raise PeerFormatError(path, lines.at(i) if i < len(text) else 0, "",
                              "expected a JSON array or object at the top level")
    is_array, close = text[i] == "[", "]" if text[i] == "[" else "}"
    i = _ws(text, i + 1)
    index = 0
    try:
        if i < len(text) and text[i] == close:
            return
        while True:
            line = lines.at(i)
            if is_array:
                key: str | int = index
            else:
                key, i = dec.raw_decode(text, i)
                if not isinstance(key, str):
                    raise PeerFormatError(path, line, "", "expected a member name")
                i = _ws(text, i)
                if i >= len(text) or text[i] != ":":
                    raise PeerFormatError(path, lines.at(min(i, len(text) - 1)), "", "expected ':'")
                i = _ws(text, i + 1)
                line = lines.at(i)
            value, i = dec.raw_decode(text, i)
            yield line, key, value
            index += 1
            i = _ws(text, i)
            if i < len(text) and text[i] == ",":
                i = _ws(text, i + 1)
                continue
            if i < len(text) and text[i] == close:
                return
            raise PeerFormatError(path, lines.at(min(i, len(text) - 1)), "", f"expected ',' or '{close}'")
    except json.JSONDecodeError as e:
        raise PeerFormatError(path, e.lineno, "", f"not valid JSON ({e.msg})") from None


def read_records(path: Path) -> Iterator[tuple[int, Any, dict]]:
    """(line, key, record) of a JSON array/object file or a JSONL file, each record an object."""
    if path.suffix == ".jsonl":
        from videosafety.data.manifest import iter_jsonl_objects

        for n, (line, rec) in enumerate(iter_jsonl_objects(path)):
            if isinstance(rec, ManifestProblem):
                raise ManifestError(rec)
            yield line, n, rec
        return
    for line, key, rec in read_json_items(path):
        if not isinstance(rec, dict):
            raise PeerFormatError(path, line, "", f"expected a JSON object, got {type(rec).__name__}")
        yield line, key, rec


def text_field(rec: dict, name: str, file: Path, line: int, *, required: bool = True) -> str | None:
    """A non-empty string field, stripped; an error naming file, line and field otherwise."""
    v = rec.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise PeerFormatError(file, line, name, "missing or empty")
        return None
    if not isinstance(v, str):
        raise PeerFormatError(file, line, name, f"expected text, got {type(v).__name__}")
    return v.strip()


def row_language(rec: dict, file: Path, line: int) -> str:
    """'en' unless the row names one of our languages (an unknown one is an error, not a guess)."""
    lang = rec.get("language")
    if lang in (None, ""):
        return "en"
    if lang not in taxonomy.LANGUAGES:
        raise PeerFormatError(file, line, "language", f"unknown language {lang!r} "
                              f"(expected one of {', '.join(taxonomy.LANGUAGES)})")
    return lang


def media_path(root: Path, rel: Any, file: Path, line: int, field: str) -> Path:
    """The peer's media file `rel`, refused when it leaves `root` ('..', absolute, or through a
    symlink) or does not exist."""
    if not isinstance(rel, str) or not rel.strip():
        raise PeerFormatError(file, line, field, "missing or empty path")
    try:
        check_relative_path(rel, "the peer's folder")
        path = resolve_video_path(root, rel)
    except ValueError as e:
        raise PeerFormatError(file, line, field, str(e).replace("manifest's folder", "peer's folder")) from None
    if not path.is_file():
        raise PeerFormatError(file, line, field, f"no such file {rel!r} under {root}")
    return path


# ---------------------------------------------------------------------------------------------
# media


def _even_frame(img) -> np.ndarray:
    """RGB uint8 array of an image, scaled to fit MAX_IMAGE_SIDE and cropped to even sides
    (yuv420p needs them)."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    scale = min(1.0, MAX_IMAGE_SIDE / max(w, h))
    if scale < 1.0:
        img = img.resize((max(2, round(w * scale)), max(2, round(h * scale))), Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.uint8)
    h, w = a.shape[:2]
    if h < 2 or w < 2:  # a 1-pixel-wide image: repeat it up to 2
        a = np.repeat(np.repeat(a, 2 if h < 2 else 1, axis=0), 2 if w < 2 else 1, axis=1)
        h, w = a.shape[:2]
    return np.ascontiguousarray(a[: h - h % 2, : w - w % 2])


class MediaStore:
    """Turns peer media into the videos of the converted benchmark (under out/videos/), each
    source once, however many samples share it; a finished video from an interrupted build is
    reused."""

    def __init__(self, out: Path):
        self.out = out
        self._refs: dict[str, VideoRef] = {}

    def _name(self, key: str, suffix: str) -> str:
        return f"{VIDEO_DIR}/{hashlib.sha256(key.encode()).hexdigest()[:20]}{suffix}"

    def _ref(self, rel: str) -> VideoRef:
        dst = self.out / rel
        info = vio.probe(dst)
        return VideoRef(path=rel, sha256=vio.sha256_file(dst), duration=info.duration, fps=info.fps,
                        width=info.width, height=info.height)

    def image(self, src: Path, file: Path, line: int, field: str) -> VideoRef:
        """A still video of the image file `src`."""
        key = "image:" + str(src)
        if key not in self._refs:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(src) as im:
                    frame = _even_frame(im)
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise PeerFormatError(file, line, field, f"not a readable image ({e})") from None
            self._refs[key] = self._encode(key, frame)
        return self._refs[key]

    def rendered(self, key: str, draw) -> VideoRef:
        """A still video of the image `draw()` returns (drawn by the toolkit: FigStep)."""
        key = "rendered:" + key
        if key not in self._refs:
            self._refs[key] = self._encode(key, _even_frame(draw()))
        return self._refs[key]

    def _encode(self, key: str, frame: np.ndarray) -> VideoRef:
        rel = self._name(key, ".mp4")
        dst = self.out / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame.shape[:2]
            n = max(1, round(STILL_SECONDS * STILL_FPS))
            vio.encode_video(dst, [frame] * n, fps=STILL_FPS, width=w, height=h)
        return self._ref(rel)

    def video(self, src: Path, file: Path, line: int, field: str) -> VideoRef:
        """The peer's own video, hard-linked into out/videos/ (copied across file systems)."""
        key = "video:" + str(src)
        if key not in self._refs:
            rel = self._name(key, src.suffix.lower() or ".mp4")
            dst = self.out / rel
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(dst.name + ".part")
                tmp.unlink(missing_ok=True)
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
                tmp.replace(dst)
            try:
                self._refs[key] = self._ref(rel)
            except vio.VideoError as e:
                raise PeerFormatError(file, line, field, f"unreadable video ({e.reason})") from None
        return self._refs[key]


# ---------------------------------------------------------------------------------------------
# samples


def make_sample(*, id: str, subset: str, subcategory: str, query: str, language: str, video: VideoRef,
                provenance: dict, file: Path, line: int, harmful_intention: str | None = None,
                reference_response: str | None = None, group_id: str | None = None):
    """One eval-split Sample; labels follow from the subset (HB: harmful video, benign-alone
    query; SafeQ rows of peers carry the label of their image)."""
    from pydantic import ValidationError

    from videosafety.data.manifest import validation_problems
    from videosafety.schema import Sample

    video_label, query_label = taxonomy.SUBSET_LABELS[subset]
    if video_label is None:  # SafeQ: the peer's own image label, given in provenance
        video_label = int(provenance.get("peer_image_harmful", 0))
    try:
        return Sample(id=id, group_id=group_id or id, split="eval", subset=subset,
                      category=taxonomy.category_of(subcategory), subcategory=subcategory,
                      language=language, source_language=language, query=query,
                      harmful_intention=harmful_intention, query_label=query_label, video=video,
                      video_label=video_label, reference_response=reference_response, provenance=provenance)
    except ValidationError as e:
        p = validation_problems(str(file), line, e)[0]
        raise PeerFormatError(file, line, p.field, p.message) from None
