"""`bench validate`: check every row of a manifest and report every problem with its line
and field. Video files are checked once each, however many rows share them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from videosafety import video as vio
from videosafety.data.manifest import ManifestProblem, duplicate_id, iter_rows, resolve_manifest
from videosafety.paths import resolve_video_path
from videosafety.schema import VideoRef

# Metadata may be rounded by whoever wrote the manifest; beyond this it is wrong. Runs time
# frames from the decoded file, not from this field (conditions.clip_timing), yet a manifest
# that says 2.55 s for a 2.48 s file misdescribes it: a 1 fps plan from either gives 3 frames
# against 2. So the bound is absolute (a rounding to 0.1 s passes) and grows only for long files.
_DURATION_TOLERANCE_S = 0.05
_DURATION_TOLERANCE_REL = 0.001


def duration_disagrees(manifest: float, file: float) -> bool:
    """Whether a manifest's duration is further from the file's than rounding explains."""
    return abs(file - manifest) > max(_DURATION_TOLERANCE_S, _DURATION_TOLERANCE_REL * max(file, manifest))


@dataclass
class ValidationReport:
    manifest: Path
    rows: int = 0
    valid_rows: int = 0
    videos_checked: int = 0
    problems: list[ManifestProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_field(self) -> Counter:
        return Counter(p.field or "<row>" for p in self.problems)


@dataclass(frozen=True)
class _VideoFacts:
    """What the disk says about one video path, found once however many rows share it."""

    error: tuple[str, str] | None = None
    digest: str | None = None
    info: vio.VideoInfo | None = None


def _read_facts(root: Path, rel: str, *, decode: bool, hash_files: bool) -> _VideoFacts:
    try:
        path = resolve_video_path(root, rel)
    except ValueError as e:
        return _VideoFacts(error=("video.path", str(e)))
    if not path.exists():
        return _VideoFacts(error=("video.path", f"missing video file {rel!r}"))
    digest = vio.sha256_file(path) if hash_files else None
    try:
        info = vio.probe(path)
        if decode:
            vio.sample_frames(path, num_frames=1)
    except vio.VideoError as e:
        return _VideoFacts(error=("video", f"unreadable video: {e}"), digest=digest)
    return _VideoFacts(digest=digest, info=info)


def _compare(ref: VideoRef, facts: _VideoFacts) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if facts.digest is not None and facts.digest != ref.sha256:
        out.append(("video.sha256", f"sha256 mismatch for {ref.path!r}: file has {facts.digest[:12]}…, manifest says {ref.sha256[:12]}…"))
    if facts.error:
        return out + [facts.error]
    info = facts.info
    if info is None:
        return out
    if (info.width, info.height) != (ref.width, ref.height):
        out.append(("video.width", f"file is {info.width}x{info.height}, manifest says {ref.width}x{ref.height}"))
    if duration_disagrees(ref.duration, info.duration):
        out.append(("video.duration", f"file lasts {info.duration:.2f}s, manifest says {ref.duration:.2f}s"))
    return out


def check_video(root: Path, ref: VideoRef, *, decode: bool = True, hash_files: bool = True) -> list[tuple[str, str]]:
    """(field, message) problems of one video reference; empty when fine."""
    return _compare(ref, _read_facts(root, ref.path, decode=decode, hash_files=hash_files))


def validate_manifest(
    path: str | Path,
    *,
    check_videos: bool = True,
    decode: bool = True,
    hash_files: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    mpath = resolve_manifest(path)
    root = mpath.parent
    report = ValidationReport(manifest=mpath)
    first_line_of_id: dict[str, int] = {}
    facts: dict[str, _VideoFacts] = {}
    name = str(mpath)
    for line, item in iter_rows(mpath):
        report.rows += 1
        if progress and report.rows % 1000 == 0:
            progress(report.rows)
        if isinstance(item, list):
            report.problems.extend(item)
            continue
        report.valid_rows += 1
        if item.id in first_line_of_id:
            report.problems.append(duplicate_id(name, line, item.id, first_line_of_id[item.id]))
        else:
            first_line_of_id[item.id] = line
        if check_videos:
            key = item.video.path
            if key not in facts:
                facts[key] = _read_facts(root, key, decode=decode, hash_files=hash_files)
                report.videos_checked += 1
            # Facts are per file; the comparison is per row, since rows may disagree.
            probs = _compare(item.video, facts[key])
            report.problems.extend(ManifestProblem(name, line, f, m) for f, m in probs)
    if report.rows == 0:
        report.problems.append(ManifestProblem(name, 0, "", "the manifest holds no rows"))
    return report
