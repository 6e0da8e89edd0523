"""Video I/O: probing, frame sampling and encoding, with PyAV (FFmpeg) underneath.

Everything that reads a video goes through here, so that a broken file always surfaces as one
of the typed :class:`VideoError` subclasses (each naming the path), decoding never hangs
(``timeout``), and the frames a model sees are chosen by one documented rule.

Sampling in two steps:

* :func:`plan_timestamps` (pure) turns a duration and a frame budget into target times;
* :func:`sample_frames` returns, for each target, the frame on screen at that time: the last
  decoded frame whose presentation time is at or before it (the first frame for a target
  before it). Resampling a clip at its own rate thus gives back every frame, first included.
  Two strategies give the same frames:
  ``"decode"`` decodes the stream sequentially, ``"seek"`` jumps to the keyframe at or before
  each target and decodes forward from there, which is what makes long videos cheap.

Times are in seconds relative to the video stream's start time, so the first frame is at 0
even in containers (MPEG-TS) whose timestamps start elsewhere.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
import numpy as np

from videosafety.budget import DEFAULT_FPS, DEFAULT_MAX_FRAMES, FrameBudget
from videosafety.paths import resolve_video_path

__all__ = [
    "VideoError",
    "VideoNotFoundError",
    "EmptyVideoError",
    "NotAVideoError",
    "CorruptVideoError",
    "NoFramesError",
    "BadDimensionsError",
    "DecodeTimeoutError",
    "PathOutsideError",
    "path_inside",
    "VideoInfo",
    "SampledFrames",
    "probe",
    "plan_timestamps",
    "sample_frames",
    "sample_with_budget",
    "sha256_file",
    "encode_video",
    "MAX_SIDE",
    "MAX_AREA",
    "MAX_DECODE_PIXELS",
    "decode_size",
]

MAX_SIDE = 16384  # pixels; wider or taller than this is treated as a broken header
MAX_AREA = 100_000_000  # pixels (100 MP)
# Frames with more pixels than this are scaled down (aspect kept) while they are converted to
# RGB, so memory stays bounded: 90 sampled frames of an 8000x8000 video would otherwise hold
# 17 GB of RGB. 1080p's area is above every video LLM's per-frame budget (the processor resizes
# further), so videos up to 1080p are untouched.
MAX_DECODE_PIXELS = 1920 * 1080

# Frames between keyframes assumed when the container has no index to count them (MPEG-TS,
# raw streams): x264's default keyint, i.e. on the pessimistic side for seeking.
_DEFAULT_GOP = 250
# What one seek costs (demuxer seek, decoder flush, decoding the keyframe), in frames' worth of
# sequential decoding: measured about 6 for 360p h264 with PyAV 18 / FFmpeg 8 on 2 cores.
_SEEK_COST_FRAMES = 8.0

_clock = time.monotonic  # the clock timeouts are measured on (tests substitute a fake one)

# ---------------------------------------------------------------------------------------------
# errors


class VideoError(Exception):
    """A video could not be read. ``.path`` is the file; the message names it."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoNotFoundError(VideoError):
    """The file does not exist."""


class EmptyVideoError(VideoError):
    """The file has zero bytes."""


class NotAVideoError(VideoError):
    """Not a container FFmpeg can open, no video stream, or a still image."""


class CorruptVideoError(VideoError):
    """A video container that is truncated or whose stream does not decode."""


class NoFramesError(VideoError):
    """The video stream holds no decodable frame."""


class BadDimensionsError(VideoError):
    """Width or height is zero, or absurdly large (> MAX_SIDE, or area > MAX_AREA)."""


class PathOutsideError(VideoError):
    """The path leaves the folder it must stay in (absolute, through '..', or a symlink)."""


class DecodeTimeoutError(VideoError):
    """Opening or decoding took longer than the time allowed."""


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class VideoInfo:
    """Container/stream metadata of a video (see :func:`probe`)."""

    path: str
    duration: float  # seconds
    fps: float
    width: int
    height: int
    num_frames: int  # from the stream header, else round(duration * fps), else a packet count
    codec: str


@dataclass(frozen=True, eq=False)
class SampledFrames:
    """Frames sampled from one video.

    ``frames`` is uint8 RGB of shape (T, H, W, 3); ``timestamps`` (float64, seconds) are the
    presentation times of those decoded frames, not the planned targets. When the plan asks for
    more frames than a stretch of video has, the same frame can appear twice. ``width`` and
    ``height`` are the frames' as shown (display matrix applied, scaled to MAX_DECODE_PIXELS at
    most); :class:`VideoInfo` keeps the stored size from the headers.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    source_fps: float
    duration: float
    width: int
    height: int
    # The rate the sampling plan was built for; see `sampled_fps`. Set by sample_frames.
    target_fps: float | None = None
    # "seek" or "decode": which strategy produced the frames ("auto" is resolved).
    strategy: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def sampled_fps(self) -> float:
        """The sampling rate of ``frames``, in frames per second of video.

        In fps mode with the cap not reached this is exactly the fps asked for (targets are 1/fps
        apart). Otherwise (uniform mode, or fps mode thinned to max_frames) it is T / duration,
        which is the inverse of the spacing of the planned targets. It is what a processor
        needs to turn frame indices into seconds (e.g. Qwen-VL's seconds-per-temporal-patch).
        """
        if self.target_fps is not None:
            return float(self.target_fps)
        if self.duration > 0:
            return self.num_frames / self.duration
        return float(self.source_fps)


# ---------------------------------------------------------------------------------------------
# planning


def plan_timestamps(
    duration: float,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Target times (seconds, float64, ascending) at which to sample a video of ``duration``.

    Exactly one of ``num_frames`` / ``fps``:

    * uniform (``num_frames=n``): the centres of n equal segments of [0, duration),
      t_i = (i + 0.5) * duration / n;
    * rate (``fps=r``): t_k = (k + 0.5) / r for every k with t_k < duration.

    ``max_frames`` caps either: a longer rate plan is thinned by keeping the plan's entries at
    indices floor((j + 0.5) * n / max_frames), j < max_frames (evenly spread, the centre of each
    of max_frames equal runs); a uniform plan is simply made with min(n, max_frames) frames.
    A positive duration always gets at least one target (duration / 2 when 0.5 / fps lies past
    the end).
    """
    if num_frames is not None and fps is not None:
        raise ValueError("give either num_frames or fps, not both")
    if num_frames is None and fps is None:
        raise ValueError("give num_frames or fps")
    duration = float(duration)
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration must be positive and finite, got {duration}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")

    if num_frames is not None:
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames}")
        n = int(num_frames) if max_frames is None else min(int(num_frames), int(max_frames))
        return (np.arange(n, dtype=np.float64) + 0.5) * (duration / n)

    fps = float(fps)  # type: ignore[arg-type]
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive and finite, got {fps}")
    # n = #{k >= 0 : (k + 0.5) / fps < duration}; start from the closed form, then settle the
    # floating-point boundary with the same expression the targets are built with.
    n = max(0, math.ceil(duration * fps - 0.5))
    while n > 0 and (n - 1 + 0.5) / fps >= duration:
        n -= 1
    while (n + 0.5) / fps < duration:
        n += 1
    if n == 0:
        return np.array([duration / 2.0], dtype=np.float64)
    times = (np.arange(n, dtype=np.float64) + 0.5) / fps
    if max_frames is not None and n > max_frames:
        m = int(max_frames)
        keep = ((np.arange(m, dtype=np.float64) + 0.5) * n / m).astype(np.int64)
        times = times[keep]
    return times


# ---------------------------------------------------------------------------------------------
# opening and probing

# Leading bytes of containers FFmpeg reads; a file that starts like one of these but will not
# open is reported as corrupt (e.g. an mp4 cut before its moov box) rather than as "not a video".
_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # ISO BMFF: mp4, mov, m4v, 3gp
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # EBML: Matroska, WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x00\x00\x01\xb3"),  # MPEG-1/2 video
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
    (0, b"YUV4MPEG2"),
)


def _looks_like_video_container(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if any(head[off : off + len(sig)] == sig for off, sig in _MAGIC):
        return True
    # MPEG-TS: a 0x47 sync byte every 188 bytes
    return len(head) >= 377 and head[0] == head[188] == head[376] == 0x47


def path_inside(root: str | os.PathLike[str], rel: str) -> str:
    """``root/rel`` for a video named by a manifest or records file, or PathOutsideError when
    ``rel`` leaves ``root`` (absolute, through '..', or through a symlink): nothing outside the
    file's folder is ever opened."""
    try:
        return os.fspath(resolve_video_path(root, rel))
    except ValueError as e:
        raise PathOutsideError(os.path.join(os.fspath(root), rel), str(e)) from None


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoNotFoundError(path, "no such file")
    if os.path.isdir(path):
        raise NotAVideoError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise EmptyVideoError(path, "file is empty (0 bytes)")


def _check_dimensions(path: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise BadDimensionsError(path, f"bad frame size {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_AREA:
        raise BadDimensionsError(
            path,
            f"absurd frame size {width}x{height} (limits: side <= {MAX_SIDE}, "
            f"area <= {MAX_AREA} pixels)",
        )


class _Deadline:
    def __init__(self, path: str, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.path = path
        self.timeout = float(timeout)
        self.start = _clock()

    def remaining(self) -> float:
        return self.timeout - (_clock() - self.start)

    def check(self, what: str = "decoding") -> None:
        if _clock() - self.start > self.timeout:
            raise DecodeTimeoutError(self.path, f"{what} exceeded the {self.timeout:g} s budget")


def _map_av_error(path: str, exc: BaseException, when: str, deadline: _Deadline) -> VideoError:
    """Translate a PyAV/FFmpeg exception into a typed VideoError."""
    if isinstance(exc, av.error.ExitError):
        # the interrupt callback fired: PyAV's open/read timeout
        return DecodeTimeoutError(path, f"{when} exceeded the {deadline.timeout:g} s budget")
    if isinstance(exc, (FileNotFoundError, av.error.FileNotFoundError)):
        return VideoNotFoundError(path, "no such file")
    if isinstance(exc, av.error.PermissionError):
        return VideoError(path, f"cannot read file: {exc}")
    if when == "opening":
        if isinstance(exc, av.error.InvalidDataError) and not _looks_like_video_container(path):
            return NotAVideoError(path, "not a video container FFmpeg can read")
        return CorruptVideoError(
            path, f"video container does not open (truncated or corrupt): {exc}"
        )
    return CorruptVideoError(path, f"stream is corrupt or truncated ({when}): {exc}")


def _open(path: str, deadline: _Deadline) -> Any:
    """av.open with PyAV's interrupt-callback timeout, mapping every failure to VideoError."""
    _check_file(path)
    remaining = deadline.remaining()
    if remaining <= 0:
        deadline.check("opening")
    try:
        # (open timeout, per-read timeout); the total budget is enforced by `deadline`.
        container = av.open(path, mode="r", timeout=(remaining, remaining))
    except av.error.FFmpegError as exc:
        raise _map_av_error(path, exc, "opening", deadline) from exc
    except OSError as exc:
        raise VideoError(path, f"cannot read file: {exc}") from exc
    return container


@dataclass(frozen=True)
class _StreamMeta:
    info: VideoInfo
    stream: Any
    time_base: Fraction
    start_pts: int
    has_pts: bool  # False for raw elementary streams (no timestamps at all)
    gop: float | None  # frames per keyframe, from the container index when it has one
    keyframes: np.ndarray | None  # keyframe times (s, ascending) from the container index
    scanned: bool = False  # the duration came from demuxing the whole stream


def _pick_rate(stream: Any, prefer_guess: bool) -> float | None:
    rates = [stream.average_rate, stream.guessed_rate, stream.base_rate]
    if prefer_guess:  # raw streams: average_rate is only the demuxer's default (25)
        rates = [stream.guessed_rate, stream.average_rate, stream.base_rate]
    for r in rates:
        if r is not None and 0 < float(r) <= 1000:
            return float(r)
    return None


# Demuxers of still images (besides the "*_pipe" ones: png_pipe, jpeg_pipe, webp_pipe, ...).
# GIF ("gif") is let through: an animated GIF is a video.
_IMAGE_FORMATS = {"image2"}


def _read_meta(path: str, container: Any, deadline: _Deadline) -> _StreamMeta:
    """Everything probe() reports, from an open container; demuxes (never decodes) packets
    only when neither stream nor container knows the duration."""
    if not container.streams.video:
        raise NotAVideoError(path, "has no video stream")
    stream = container.streams.video[0]
    fmt = container.format.name or ""
    if fmt.endswith("_pipe") or fmt in _IMAGE_FORMATS:
        raise NotAVideoError(path, f"is a still image ({fmt}), not a video")

    cc = stream.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    _check_dimensions(path, width, height)
    codec = cc.name or (stream.codec.name if getattr(stream, "codec", None) else "") or "unknown"

    tb = stream.time_base or Fraction(1, av.time_base)
    start_pts = stream.start_time if stream.start_time is not None else 0
    stream_dur = float(stream.duration * tb) if stream.duration else 0.0
    container_dur = float(container.duration) / av.time_base if container.duration else 0.0
    fps = _pick_rate(stream, prefer_guess=not (stream_dur or container_dur))
    frames = int(stream.frames or 0)

    # Truncation check that costs nothing when the container has a sample index (mp4, mkv):
    # an index entry pointing past the end of the file means the file was cut.
    entries = stream.index_entries
    n_entries = len(entries)
    size = int(container.size or 0)
    key_ts: list[int] = []
    if n_entries:
        end = 0
        for e in entries:
            end = max(end, e.pos + e.size)
            if e.is_keyframe:
                key_ts.append(e.timestamp)
        if size > 0 and end > size:
            raise CorruptVideoError(
                path, f"truncated: the index points to byte {end} but the file has {size}"
            )

    duration = stream_dur or container_dur
    if not duration and frames and fps:
        duration = frames / fps
    has_pts = True
    scanned = False
    if not duration:
        # Last resort, still without decoding: count packets (and their time span).
        count, lo, hi = 0, None, None
        try:
            for pkt in container.demux(stream):
                deadline.check("probing")
                if pkt.size == 0:
                    continue
                count += 1
                if pkt.pts is not None:
                    end_pts = pkt.pts + (pkt.duration or 0)
                    lo = pkt.pts if lo is None else min(lo, pkt.pts)
                    hi = end_pts if hi is None else max(hi, end_pts)
        except av.error.FFmpegError as exc:
            raise _map_av_error(path, exc, "probing", deadline) from exc
        if count == 0:
            raise NoFramesError(path, "video stream has no frames")
        has_pts = hi is not None
        span = float((hi - lo) * tb) if has_pts else 0.0  # type: ignore[operator]
        if fps is None and span > 0:
            fps = count / span
        fps = fps or 25.0
        duration = max(span, count / fps)
        frames = count
        scanned = True  # the demuxer is at the end now: reopen before decoding
    if fps is None:
        fps = frames / duration if frames and duration else 25.0  # FFmpeg's default rate
    if not frames:
        frames = max(1, round(duration * fps))
    if duration <= 0:
        raise NoFramesError(path, "video stream has zero duration")

    gop, keyframe_times = None, None
    if key_ts:
        gop = max(1.0, frames / len(key_ts))
        # Index timestamps are decode times in mp4 (the first is negative when there are
        # B-frames); counted from the first entry, which is the first frame, they are the
        # keyframes' presentation times (exact for mp4 and mkv; only steers seek decisions).
        first = entries[0].timestamp
        keyframe_times = np.sort(np.array([(k - first) * float(tb) for k in key_ts]))
    info = VideoInfo(
        path=path,
        duration=float(duration),
        fps=float(fps),
        width=width,
        height=height,
        num_frames=int(frames),
        codec=str(codec),
    )
    return _StreamMeta(
        info, stream, Fraction(tb), int(start_pts), has_pts, gop, keyframe_times, scanned
    )


def probe(path: str | os.PathLike[str], *, timeout: float = 10.0) -> VideoInfo:
    """Read a video's metadata from its container and stream headers (no decoding).

    Raises VideoNotFoundError, EmptyVideoError, NotAVideoError, CorruptVideoError (including
    files truncated after their index), NoFramesError, BadDimensionsError, DecodeTimeoutError.
    """
    p = os.fspath(path)
    deadline = _Deadline(p, timeout)
    with _open(p, deadline) as container:
        meta = _read_meta(p, container, deadline)
    return meta.info


# ---------------------------------------------------------------------------------------------
# sampling


# Seconds: containers with millisecond time bases (mkv) round a frame's time by up to 0.5 ms,
# which must not move it across a target.
_TIME_EPS = 1e-3


class _Cursor:
    """Forward walk over decoded frames with the two frames that bracket a target.

    After ``advance_to(t)``, ``prev`` (if any) is the last frame before t and ``cur`` the first
    at or after t (or the last frame of the stream). ``pick(t)`` returns the frame on screen at
    t: ``cur`` when it starts at t (or the stream ended), else ``prev``. Both strategies use
    this, which is why they agree.
    """

    def __init__(self, container: Any, meta: _StreamMeta, deadline: _Deadline) -> None:
        self.container = container
        self.stream = meta.stream
        self.tb = float(meta.time_base)
        self.start_pts = meta.start_pts
        self.fps = meta.info.fps
        self.deadline = deadline
        self._last: tuple[float, np.ndarray] | None = None  # the last frame taken, as RGB
        self.reset()

    def reset(self) -> None:
        self.it = self.container.decode(self.stream)
        self.index = 0
        self.eof = False
        self.prev: Any = None
        self.prev_t = -math.inf
        self.cur: Any = None
        self.cur_t = -math.inf

    def _time(self, frame: Any) -> float:
        if frame.pts is None:  # raw streams: the frame's index at the nominal rate
            return self.index / self.fps
        return float(frame.pts - self.start_pts) * self.tb

    def step(self) -> bool:
        while True:
            self.deadline.check()
            try:
                frame = next(self.it)
            except StopIteration:
                self.eof = True
                return False
            t = self._time(frame)
            self.index += 1
            # After a seek into an open GOP, frames that precede the keyframe can come out;
            # a stream's presentation times must increase, so drop any that do not.
            if self.cur is not None and t <= self.cur_t:
                continue
            self.prev, self.prev_t = self.cur, self.cur_t
            self.cur, self.cur_t = frame, t
            return True

    def advance_to(self, target: float) -> None:
        while (self.cur is None or self.cur_t < target) and not self.eof:
            self.step()

    def pick(self, target: float) -> tuple[Any, float] | None:
        if self.cur is None:
            return None
        if self.prev is not None and self.cur_t > target + _TIME_EPS:
            return self.prev, self.prev_t
        return self.cur, self.cur_t

    def take(self, target: float) -> tuple[np.ndarray, float] | None:
        """pick(target) converted to RGB at once, so that decoded frames are not held."""
        picked = self.pick(target)
        if picked is None:
            return None
        frame, t = picked
        if self._last is None or self._last[0] != t:  # the same frame twice: convert once
            self.deadline.check("converting frames")
            self._last = (t, _to_rgb(frame))
        return self._last[1], t


_Picks = list[tuple[np.ndarray, float] | None]


def _sample_decode(cursor: _Cursor, targets: np.ndarray) -> _Picks:
    out: _Picks = []
    for t in map(float, targets):
        cursor.advance_to(t)
        out.append(cursor.take(t))
    return out


class _SeekFailed(Exception):
    """Even a seek to the start decoded nothing: this container cannot be sampled by seeking."""


class _ShorterThanHeaders(Exception):
    """The stream ended well before the duration its headers claim (a lying or stale Duration):
    the plan must be made again on the real length, or most targets land on the last frame."""

    def __init__(self, real_duration: float) -> None:
        self.real_duration = real_duration


def _check_real_length(cursor: "_Cursor", targets: np.ndarray, picks: "_Picks", meta: _StreamMeta) -> None:
    """Raise _ShorterThanHeaders when the stream ran out and the last targets lie past its last
    frame by more than two frame periods (and 5 % of the claimed duration): a truthful header
    puts the last target within a frame period of the last frame."""
    if not cursor.eof or not picks or any(pk is None for pk in picks):
        return
    last = max(t for _, t in picks)  # type: ignore[misc]
    fps, duration = meta.info.fps, meta.info.duration
    if float(targets[-1]) - last > max(2.0 / fps, 0.05 * duration):
        raise _ShorterThanHeaders(last + 1.0 / fps)


def _sample_seek(cursor: _Cursor, targets: np.ndarray, meta: _StreamMeta) -> _Picks:
    container, stream = cursor.container, meta.stream
    tb, fps = float(meta.time_base), meta.info.fps
    keyframes = _keyframe_times(meta)
    back = max((meta.gop or _DEFAULT_GOP) / fps, 1.0)  # first step back when a seek overshoots
    first_t = 0.5 / fps  # a frame at or before this is the stream's first frame

    def seek(t: float) -> None:
        # t <= 0 means "the very beginning": offset 0 (or the start, if negative), as seeking
        # exactly to the start pts lands past the first keyframe in MPEG-TS (it seeks by DTS).
        offset = meta.start_pts + math.floor(t / tb) if t > 0 else min(0, meta.start_pts)
        container.seek(int(offset), backward=True, any_frame=False, stream=stream)
        cursor.reset()

    out: _Picks = []
    for t in map(float, targets):
        pos = cursor.cur_t if cursor.cur is not None else None
        if _should_seek(keyframes, pos, t, fps):
            step = back
            seek_t = t
            while True:
                seek(seek_t)
                cursor.step()
                # The landing frame must not be past the target, or its predecessor (which may
                # be the nearer frame) was skipped; demuxers that seek by DTS or imprecisely can
                # do that, and MPEG-TS can land after the last keyframe so that nothing decodes.
                # Then retry from further back, finally from the start.
                landed = cursor.cur is not None and (cursor.cur_t <= t or cursor.cur_t <= first_t)
                if landed:
                    break
                if seek_t <= 0:
                    if cursor.cur is None:
                        raise _SeekFailed
                    break
                seek_t = max(0.0, seek_t - step)
                step *= 2
        cursor.advance_to(t)
        out.append(cursor.take(t))
    return out


def _keyframe_times(meta: _StreamMeta) -> np.ndarray:
    """Keyframe times from the index; without one, a keyframe every _DEFAULT_GOP frames."""
    if meta.keyframes is not None and len(meta.keyframes):
        return meta.keyframes
    return np.arange(0.0, meta.info.duration, _DEFAULT_GOP / meta.info.fps)


def _should_seek(keyframes: np.ndarray, pos: float | None, t: float, fps: float) -> bool:
    """Seek for target t when the decoder is at time ``pos`` (None: nothing decoded yet)?

    A seek lands on the keyframe k at or before t, so it skips the (k - pos) * fps frames that
    decoding forward would go through; it pays when that is more than a seek costs.
    """
    if pos is None:
        return True
    i = int(np.searchsorted(keyframes, t, side="right")) - 1
    k = float(keyframes[i]) if i >= 0 else 0.0
    return (k - pos) * fps > _SEEK_COST_FRAMES


def _estimate_costs(meta: _StreamMeta, targets: np.ndarray) -> tuple[float, float]:
    """(seek, decode) cost of a plan in frames decoded, seeks counted as _SEEK_COST_FRAMES.

    Replays _sample_seek's decisions on the keyframe times; sequential decoding goes through
    every frame up to the last target.
    """
    fps = meta.info.fps
    keyframes = _keyframe_times(meta)
    decode = float(targets[-1]) * fps + 1.0
    seek, pos = 0.0, None
    for t in map(float, targets):
        if _should_seek(keyframes, pos, t, fps):
            i = int(np.searchsorted(keyframes, t, side="right")) - 1
            k = float(keyframes[i]) if i >= 0 else 0.0
            seek += _SEEK_COST_FRAMES + (t - k) * fps + 1.0
        else:
            seek += max(0.0, (t - pos) * fps)  # type: ignore[operator]
        pos = t if pos is None else max(pos, t)
    return seek, decode


def _choose_strategy(meta: _StreamMeta, targets: np.ndarray) -> str:
    """'seek' when the plan costs clearly less by seeking, else 'decode'.

    Sequential decoding goes through every frame up to the last target; seeking lands on the
    keyframe at or before each target and decodes forward from there (about GOP/2 frames on
    average), or keeps decoding forward when the next target is close (see _should_seek).
    _estimate_costs counts both on the keyframe times from the container index (mp4, mkv); for
    containers without one (MPEG-TS) a keyframe every 250 frames, x264's default, is assumed, so
    that only sparse plans seek there. Seeking must win by 25 %: it has more that can go wrong
    (imprecise demuxer seeks, retries). For evenly spread targets that works out at seeking
    when the frames per target exceed about 0.6 x GOP + 11: 16 frames of a 10-minute video
    seek whatever the GOP; 1 fps from 30 fps video with a keyframe every second decodes.
    """
    if not meta.has_pts:
        return "decode"  # nothing to seek by
    seek, decode = _estimate_costs(meta, targets)
    return "seek" if seek * 1.25 < decode else "decode"


def decode_size(width: int, height: int, max_pixels: int = MAX_DECODE_PIXELS) -> tuple[int, int]:
    """(width, height) a frame is converted at: its own size, or scaled down to at most
    ``max_pixels`` with the aspect ratio kept (even sides, at least 2)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _to_rgb(frame: Any) -> np.ndarray:
    """The frame as shown: RGB, scaled down to MAX_DECODE_PIXELS at most, and turned by its
    display matrix (phone videos are often stored sideways with a 'rotate 90' matrix)."""
    width, height = decode_size(frame.width, frame.height)
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
    # PyAV's rotation is the display matrix's angle, counter-clockwise; np.rot90 turns
    # counter-clockwise for positive k, so k = angle / 90 shows the frame as players do.
    quarter = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=quarter)) if quarter else rgb


def sample_frames(
    path: str | os.PathLike[str],
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    *,
    timeout: float = 60.0,
    strategy: str = "auto",
) -> SampledFrames:
    """Decode the frames on screen at :func:`plan_timestamps` targets.

    Give ``num_frames`` (uniform) or ``fps`` (rate, capped by ``max_frames``). With neither,
    the FrameBudget defaults apply (1 fps, at most 90 frames); in rate mode a ``max_frames`` of
    None also means that default cap (an uncapped 1 fps plan of a two-hour video would be 7200
    frames). ``strategy`` is "decode", "seek" or "auto" (see :func:`_choose_strategy`); files
    that cannot be sampled by seeking (no timestamps, no duration in their headers, or a seek to
    the start that decodes nothing) are decoded sequentially whatever is asked, and the returned
    ``strategy`` says which was used. ``timeout`` bounds the whole call, in seconds (opening,
    probing, decoding, converting); DecodeTimeoutError past it.
    """
    p = os.fspath(path)
    if strategy not in ("auto", "seek", "decode"):
        raise ValueError(f"strategy must be 'auto', 'seek' or 'decode', got {strategy!r}")
    if num_frames is not None and fps is not None:
        raise ValueError("give either num_frames or fps, not both")
    if num_frames is None and fps is None:
        fps = DEFAULT_FPS
    if fps is not None and max_frames is None:
        max_frames = DEFAULT_MAX_FRAMES
    deadline = _Deadline(p, timeout)

    with _open(p, deadline) as container:
        meta = _read_meta(p, container, deadline)
        if not meta.scanned:
            try:
                return _sample_open(
                    p, container, meta, deadline, num_frames, fps, max_frames, strategy
                )
            except _SeekFailed:
                pass
            except _ShorterThanHeaders as short:
                return _sample_shorter(p, meta, short.real_duration, deadline, num_frames, fps,
                                       max_frames)
    # Either the duration had to be found by demuxing the whole stream, which left the demuxer
    # at the end of the file (raw streams cannot seek back), or seeking did not work in this
    # container: decode sequentially from a fresh open.
    with _open(p, deadline) as container:
        meta = replace(meta, stream=container.streams.video[0])
        try:
            return _sample_open(p, container, meta, deadline, num_frames, fps, max_frames, "decode")
        except _ShorterThanHeaders as short:
            return _sample_shorter(p, meta, short.real_duration, deadline, num_frames, fps, max_frames)


def _sample_shorter(p: str, meta: _StreamMeta, real: float, deadline: _Deadline,
                    num_frames: int | None, fps: float | None, max_frames: int | None) -> SampledFrames:
    """Sample again, decoding sequentially, with the plan made on the length the stream really
    has (found by decoding it to the end once)."""
    info = replace(meta.info, duration=real, num_frames=max(1, round(real * meta.info.fps)))
    with _open(p, deadline) as container:
        meta = replace(meta, info=info, stream=container.streams.video[0], keyframes=None)
        try:
            return _sample_open(p, container, meta, deadline, num_frames, fps, max_frames, "decode")
        except _ShorterThanHeaders as again:  # cannot happen twice on one file; say so if it does
            raise CorruptVideoError(p, f"stream length unstable ({real:.3f} s, then "
                                       f"{again.real_duration:.3f} s)") from None


def _sample_open(
    p: str,
    container: Any,
    meta: _StreamMeta,
    deadline: _Deadline,
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    strategy: str,
) -> SampledFrames:
    info = meta.info
    deadline.check("probing")
    targets = plan_timestamps(info.duration, num_frames=num_frames, fps=fps, max_frames=max_frames)
    chosen = _choose_strategy(meta, targets) if strategy == "auto" else strategy
    if chosen == "seek" and not meta.has_pts:
        chosen = "decode"  # no timestamps to seek by
    # Decoder threads stay at PyAV's default (slice threads, automatic count): frame threads
    # measured no faster on 2 cores for 360p h264 and add a pipeline delay to every seek.
    cursor = _Cursor(container, meta, deadline)
    arrays: list[np.ndarray] = []
    times: list[float] = []
    try:
        if chosen == "seek":
            picks = _sample_seek(cursor, targets, meta)
        else:
            picks = _sample_decode(cursor, targets)
        _check_real_length(cursor, targets, picks, meta)
        if any(pk is None for pk in picks):
            raise NoFramesError(p, "no frame could be decoded")
        for rgb, t in picks:  # type: ignore[misc]
            arrays.append(rgb)
            times.append(t)
    except av.error.FFmpegError as exc:
        raise _map_av_error(p, exc, "decoding", deadline) from exc
    finally:
        cursor.prev = cursor.cur = cursor.it = None  # let the decoder's frames go before close

    if fps is not None and len(targets) == len(plan_timestamps(info.duration, fps=fps)):
        target_fps = float(fps)  # the cap did not bind: targets are exactly 1/fps apart
    else:
        target_fps = len(targets) / info.duration
    return SampledFrames(
        frames=np.stack(arrays),
        timestamps=np.asarray(times, dtype=np.float64),
        source_fps=info.fps,
        duration=info.duration,
        width=int(arrays[0].shape[1]),
        height=int(arrays[0].shape[0]),
        target_fps=target_fps,
        strategy=chosen,
    )


def sample_with_budget(
    path: str | os.PathLike[str],
    budget: FrameBudget,
    *,
    timeout: float = 60.0,
    strategy: str = "auto",
) -> SampledFrames:
    """sample_frames with a FrameBudget's num_frames / fps / max_frames.

    The budget's pixel bounds (max_pixels, min_pixels) are left to the model processor.
    """
    if budget.num_frames is not None:
        return sample_frames(
            path, num_frames=budget.num_frames, max_frames=budget.max_frames,
            timeout=timeout, strategy=strategy,
        )
    return sample_frames(
        path, fps=budget.fps, max_frames=budget.max_frames, timeout=timeout, strategy=strategy
    )


# ---------------------------------------------------------------------------------------------
# hashing and encoding


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_CRF_CODECS = {"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"}


def encode_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    fps: float | int,
    width: int,
    height: int,
    codec: str = "libx264",
    crf: int = 23,
    gop: int | None = None,
    preset: str = "ultrafast",
    threads: int = 1,
) -> None:
    """Write RGB uint8 frames of shape (height, width, 3) to an mp4 (yuv420p).

    Identical input gives a byte-identical file with the default "ultrafast" preset, one encoder
    thread and the muxer in bitexact mode (no library-version strings). Slower presets
    ("veryfast" and up) were seen to give different bytes for identical frames in about one
    encode in three, so they are for files whose bytes need not repeat (benchmarks). ``gop`` is the maximum keyframe interval in frames (x264's keyint;
    its scene-cut detection may add keyframes). ``crf`` and ``preset`` apply to the x264/x265
    family; ``crf`` also to VP9/AV1. The file is written to ``path + '.part'`` and renamed, so
    an interrupted encode never leaves a half-written ``path``.
    """
    p = os.fspath(path)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(
            f"width and height must be positive and even (yuv420p), got {width}x{height}"
        )
    if not fps or fps <= 0 or not math.isfinite(float(fps)):
        raise ValueError(f"fps must be positive, got {fps}")
    if gop is not None and gop < 1:
        raise ValueError(f"gop must be >= 1, got {gop}")
    rate = Fraction(fps).limit_denominator(1001) if isinstance(fps, float) else Fraction(int(fps))

    options: dict[str, str] = {}
    if codec in _CRF_CODECS:
        options["crf"] = str(int(crf))
    if codec in ("libx264", "libx265"):
        options["preset"] = preset
    if codec == "libx264":
        options["threads"] = str(int(threads))

    tmp = p + ".part"
    n = 0
    try:
        with av.open(
            tmp, mode="w", format="mp4", container_options={"fflags": "+bitexact"}
        ) as container:
            stream = container.add_stream(codec, rate=rate, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            cc = stream.codec_context
            cc.thread_count = int(threads)
            if gop is not None:
                cc.gop_size = int(gop)
            for arr in frames:
                a = np.asarray(arr)
                if a.dtype != np.uint8 or a.shape != (height, width, 3):
                    raise ValueError(
                        f"frame {n}: expected uint8 array of shape {(height, width, 3)}, "
                        f"got {a.dtype} {a.shape}"
                    )
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
                frame.pts = n
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
            if n == 0:
                raise ValueError("no frames to encode")
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
