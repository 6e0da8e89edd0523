"""Bad media for the fault campaign, built locally with PyAV (nothing downloaded).

``build_bad_media(d)`` writes one file per fault kind of issue 13's "Bad media" line and returns
{kind: MediaCase}; ``expect`` says what sampling must give: "error" (a typed VideoError recorded
on the row) or "sample" (frames, checked by ``check``). Used by tests/faults/test_faults_media.py
(the fast cases) and benchmarks/faults/media.py (the campaign).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from videosafety.video import encode_video


@dataclass(frozen=True)
class MediaCase:
    path: Path
    expect: str  # "error" | "sample"
    what: str  # for the report


def ramp_level(i: int, n: int) -> int:
    """The brightness of frame i of n in a ramp-coded clip."""
    return 10 + 240 * i // max(1, n - 1)


def _ramp(n: int, h: int, w: int) -> list[np.ndarray]:
    """n frames whose mean brightness encodes the frame index (so a sampled frame's time can be read back)."""
    return [np.full((h, w, 3), ramp_level(i, n), np.uint8) for i in range(n)]


def good_clip(path: Path, seconds: int = 4, fps: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    w, h = size
    encode_video(path, _ramp(seconds * fps, h, w), fps=fps, width=w, height=h)
    return path


def marker_clip(path: Path, w: int = 64, h: int = 48, n: int = 8) -> Path:
    """Black frames with a white 8x8 block in the top-left corner: shows which way is up."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:8, :8] = 255
    encode_video(path, [frame] * n, fps=8, width=w, height=h)
    return path


def rotated(src: Path, dst: Path, degrees: int = 90) -> Path:
    """A copy of an mp4 whose track header's display matrix is the one FFmpeg writes for
    `rotate=<degrees>` (players turn the picture that many degrees clockwise)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"tkhd")
    assert at != -1 and data[at + 4] == 0, "expected a version-0 tkhd"
    # tkhd v0 after its type: version/flags 4, creation 4, modification 4, track id 4, reserved 4,
    # duration 4, reserved 8, layer 2, alternate group 2, volume 2, reserved 2 -> matrix (9 x 32 bit)
    m = at + 4 + 40
    one, zero = 0x00010000, 0
    mats = {90: (zero, one, zero, -one & 0xFFFFFFFF, zero, zero), 180: (-one & 0xFFFFFFFF, zero, zero, zero,
            -one & 0xFFFFFFFF, zero), 270: (zero, -one & 0xFFFFFFFF, zero, one, zero, zero)}
    a, b, u, c, d, v = mats[degrees]
    struct.pack_into(">9I", data, m, a, b, u, c, d, v, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


def lying_duration(src: Path, dst: Path, factor: float = 10.0) -> Path:
    """A Matroska copy of `src` whose segment Duration element claims `factor` times the real
    length. (FFmpeg's mp4 demuxer recomputes durations from the sample table, so an mp4 with
    edited headers does not lie to it; Matroska's Duration is taken as written.)"""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(i.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = out
                o.mux(pkt)
    data = bytearray(dst.read_bytes())
    at = data.find(b"\x44\x89")  # EBML id of Duration, then its size byte (0x88: an 8-byte float)
    assert at != -1 and data[at + 2] in (0x84, 0x88), "no Duration element"
    fmt = ">d" if data[at + 2] == 0x88 else ">f"
    (real,) = struct.unpack_from(fmt, data, at + 3)
    struct.pack_into(fmt, data, at + 3, real * factor)
    dst.write_bytes(bytes(data))
    return dst


VFR_RATE = 30  # time base 1/30 s


def vfr_pts(n: int = 40) -> list[int]:
    """The presentation times (in 1/30 s) of `variable_rate`'s frames: gaps of 1 to 15 ticks."""
    gaps = [1, 15, 3, 10, 2, 6] * (n // 6 + 1)
    pts = [0]
    for g in gaps[: n - 1]:
        pts.append(pts[-1] + g)
    return pts


def variable_rate(path: Path, n: int = 40) -> Path:
    """An mp4 whose frames are 1/30 s to 1/2 s apart (variable frame rate), ramp-coded."""
    pts = vfr_pts(n)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 30)
        for i, (p, frame) in enumerate(zip(pts, _ramp(n, 48, 64))):
            f = av.VideoFrame.from_ndarray(frame, format="rgb24")
            f.pts, f.time_base = p, Fraction(1, 30)
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        for k in range(8):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, k * 1024
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def undecodable(src: Path, dst: Path) -> Path:
    """A Matroska file with a video stream (the source's header) whose every packet is noise."""
    rng = np.random.default_rng(0)
    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(i.streams.video[0]):
            if pkt.dts is None:
                continue
            noise = av.Packet(rng.integers(0, 256, max(16, pkt.size), dtype=np.uint8).tobytes())
            noise.pts, noise.dts, noise.stream = pkt.pts, pkt.dts, out
            noise.time_base = pkt.time_base
            o.mux(noise)
    return dst


def long_video(path: Path, hours: float = 2.0, fps: int = 1, gop: int = 60) -> Path:
    """`hours` of 32x32 video at `fps` (7,200 frames for two hours): cheap to encode, and only
    sampled by seeking (decoding it whole would read every frame)."""
    n = int(hours * 3600 * fps)
    encode_video(path, _ramp(n, 32, 32), fps=fps, width=32, height=32, gop=gop)
    return path


def huge(path: Path, side: int = 8000) -> Path:
    """One 8000x8000 frame (64 MP, under the 100 MP header limit): must decode without holding
    full-size RGB copies of every sampled frame."""
    encode_video(path, [np.zeros((side, side, 3), np.uint8)] * 2, fps=1, width=side, height=side)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BUILDERS: dict[str, tuple[str, str, Callable[[Path, Path], Path]]] = {
    # kind: (expect, what, build(dir, good_clip) -> path)
    "zero_byte": ("error", "zero-byte .mp4", lambda d, g: _write(d / "zero.mp4", b"")),
    "truncated30": ("error", "first 30 % of the bytes of a good mp4",
                    lambda d, g: _write(d / "cut30.mp4", g.read_bytes()[: int(g.stat().st_size * 0.3)])),
    "text_as_mp4": ("error", "a text file named .mp4",
                    lambda d, g: _write(d / "text.mp4", b"not a video\n" * 100)),
    "audio_only": ("error", "an mp4 with one AAC stream and no video", lambda d, g: audio_only(d / "audio.mp4")),
    "undecodable": ("error", "a video stream of 0 decodable frames (noise packets)",
                    lambda d, g: undecodable(g, d / "noise.mkv")),
    "huge_8000": ("sample", "8000x8000 frames", lambda d, g: huge(d / "huge.mp4")),
    "variable_rate": ("sample", "variable frame rate (frames 1/30 s to 1/2 s apart)",
                      lambda d, g: variable_rate(d / "vfr.mp4")),
    "rotated90": ("sample", "display matrix: rotate 90 degrees", lambda d, g: rotated(marker_clip(d / "marker.mp4"), d / "rot90.mp4")),
    "lying_duration": ("sample", "headers claim 10x the real duration",
                       lambda d, g: lying_duration(g, d / "lies.mkv")),
    "two_hours": ("sample", "a two-hour video (1 fps, 7,200 frames)", lambda d, g: long_video(d / "2h.mp4")),
}


def build_bad_media(d: Path, kinds: list[str] | None = None) -> dict[str, MediaCase]:
    d.mkdir(parents=True, exist_ok=True)
    g = good_clip(d / "good.mp4")
    out = {}
    for kind in kinds or list(BUILDERS):
        expect, what, build = BUILDERS[kind]
        out[kind] = MediaCase(build(d, g), expect, what)
    return out
