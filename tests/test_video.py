"""Tests for videosafety.video. Every video is generated here, in a temporary directory."""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

import av
import numpy as np
import pytest

from videosafety import video as V
from videosafety.budget import FrameBudget
from videosafety.video import (
    BadDimensionsError,
    CorruptVideoError,
    DecodeTimeoutError,
    EmptyVideoError,
    NoFramesError,
    NotAVideoError,
    VideoError,
    VideoNotFoundError,
    encode_video,
    plan_timestamps,
    probe,
    sample_frames,
    sample_with_budget,
    sha256_file,
)

W, H, FPS = 96, 64, 30


def level(i: int) -> int:
    return 20 + 3 * i


def make_frames(n: int, w: int = W, h: int = H):
    """Frame i: left half flat grey at level(i) (so the index can be read back after lossy
    coding), right half a moving gradient."""
    for i in range(n):
        a = np.empty((h, w, 3), np.uint8)
        a[:, : w // 2] = level(i % 60)
        a[:, w // 2 :, 0] = (np.arange(w - w // 2)[None, :] * 4 + i * 5) % 256
        a[:, w // 2 :, 1] = (np.arange(h)[:, None] * 3 + i * 7) % 256
        a[:, w // 2 :, 2] = 128
        yield a


def frame_index(rgb: np.ndarray) -> int:
    return int(round((float(rgb[8:-8, 8 : W // 2 - 8].mean()) - 20) / 3))


@pytest.fixture(scope="module")
def vdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def short(vdir) -> Path:
    """2 s, 30 fps, 60 frames, a keyframe every 4 frames."""
    p = vdir / "short.mp4"
    encode_video(p, make_frames(60), fps=FPS, width=W, height=H, gop=4)
    return p


@pytest.fixture(scope="module")
def long(vdir) -> Path:
    """20 s, 30 fps, 600 frames, keyframe every 30 frames (index repeats every 60 frames)."""
    p = vdir / "long.mp4"
    encode_video(p, make_frames(600), fps=FPS, width=W, height=H, gop=30)
    return p


def remux(src: Path, dst: Path, fmt: str) -> Path:
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt) as o:
        ins = i.streams.video[0]
        out = o.add_stream_from_template(ins)
        for pkt in i.demux(ins):
            if pkt.dts is None:  # the demuxer's flush packet
                continue
            pkt.stream = out
            o.mux(pkt)
    return dst


def open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------------------------
# plan_timestamps


def test_plan_uniform_centres():
    np.testing.assert_allclose(plan_timestamps(10.0, num_frames=4), [1.25, 3.75, 6.25, 8.75])
    np.testing.assert_allclose(plan_timestamps(1.0, num_frames=1), [0.5])
    np.testing.assert_allclose(plan_timestamps(3.0, num_frames=3), [0.5, 1.5, 2.5])


def test_plan_uniform_capped_by_max_frames():
    np.testing.assert_allclose(plan_timestamps(8.0, num_frames=10, max_frames=4), [1, 3, 5, 7])


def test_plan_fps():
    np.testing.assert_allclose(plan_timestamps(3.2, fps=1.0), [0.5, 1.5, 2.5])
    # 3.5 is not < 3.5: the end is open
    np.testing.assert_allclose(plan_timestamps(3.5, fps=1.0), [0.5, 1.5, 2.5])
    np.testing.assert_allclose(plan_timestamps(3.51, fps=1.0), [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(plan_timestamps(2.0, fps=2.0), [0.25, 0.75, 1.25, 1.75])
    # t0 = 0.5 / 0.5 = 1.0 is not < 1.0: the one-frame fallback, the middle
    assert plan_timestamps(1.0, fps=0.5).tolist() == [0.5]


def test_plan_fps_capped():
    # 10 candidates 0.5..9.5; keep indices floor((j + 0.5) * 10 / 4) = 1, 3, 6, 8
    np.testing.assert_allclose(
        plan_timestamps(10.0, fps=1.0, max_frames=4), [1.5, 3.5, 6.5, 8.5]
    )
    # not capped when it fits
    assert len(plan_timestamps(10.0, fps=1.0, max_frames=10)) == 10
    # ten minutes at 1 fps thinned to 90: evenly spread (every 6 or 7 s), within [0, 600)
    t = plan_timestamps(600.0, fps=1.0, max_frames=90)
    assert len(t) == 90 and t[0] > 0 and t[-1] < 600
    assert set(np.round(np.diff(t), 6)) <= {6.0, 7.0}


def test_plan_tiny_duration():
    np.testing.assert_allclose(plan_timestamps(0.2, fps=1.0), [0.1])
    np.testing.assert_allclose(plan_timestamps(0.01, num_frames=2), [0.0025, 0.0075])
    np.testing.assert_allclose(plan_timestamps(0.2, fps=1.0, max_frames=1), [0.1])


@pytest.mark.parametrize(
    "kw",
    [
        dict(duration=1.0),
        dict(duration=1.0, num_frames=2, fps=1.0),
        dict(duration=0.0, fps=1.0),
        dict(duration=-1.0, num_frames=2),
        dict(duration=float("nan"), num_frames=2),
        dict(duration=1.0, num_frames=0),
        dict(duration=1.0, fps=0.0),
        dict(duration=1.0, fps=1.0, max_frames=0),
    ],
)
def test_plan_rejects(kw):
    duration = kw.pop("duration")
    with pytest.raises(ValueError):
        plan_timestamps(duration, **kw)


# ---------------------------------------------------------------------------------------------
# probe, encode


def test_probe_values(short):
    info = probe(short)
    assert info.path == str(short)
    assert (info.width, info.height, info.codec) == (W, H, "h264")
    assert info.fps == pytest.approx(30.0)
    assert info.num_frames == 60
    assert info.duration == pytest.approx(2.0, abs=1e-3)


def test_encode_is_deterministic(vdir):
    a, b, c = vdir / "a.mp4", vdir / "b.mp4", vdir / "c.mp4"
    encode_video(a, make_frames(20), fps=FPS, width=W, height=H)
    encode_video(b, make_frames(20), fps=FPS, width=W, height=H)
    encode_video(c, make_frames(21), fps=FPS, width=W, height=H)
    assert sha256_file(a) == sha256_file(b)
    assert sha256_file(a) != sha256_file(c)
    assert sha256_file(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert not any(p.name.endswith(".part") for p in vdir.iterdir())


def test_encode_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="even"):
        encode_video(tmp_path / "x.mp4", make_frames(2, 95, 64), fps=30, width=95, height=64)
    with pytest.raises(ValueError, match="shape"):
        encode_video(tmp_path / "x.mp4", make_frames(2, 64, 64), fps=30, width=W, height=H)
    with pytest.raises(ValueError, match="no frames"):
        encode_video(tmp_path / "x.mp4", [], fps=30, width=W, height=H)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_encode_fractional_fps(tmp_path):
    p = tmp_path / "ntsc.mp4"
    encode_video(p, make_frames(30), fps=29.97, width=W, height=H)
    info = probe(p)
    assert info.fps == pytest.approx(29.97, abs=1e-3)
    assert info.num_frames == 30


# ---------------------------------------------------------------------------------------------
# sample_frames


def test_sample_uniform_shapes_and_times(short):
    s = sample_frames(short, num_frames=8)
    assert s.frames.shape == (8, H, W, 3) and s.frames.dtype == np.uint8
    assert s.timestamps.dtype == np.float64 and s.timestamps.shape == (8,)
    assert (s.width, s.height, s.source_fps) == (W, H, pytest.approx(30.0))
    targets = plan_timestamps(s.duration, num_frames=8)
    # the frame on screen at the target: started at or before it, less than a period earlier
    assert np.all((s.timestamps <= targets + 1e-9) & (targets - s.timestamps < 1.0 / FPS))
    # and the pixels are those of the frame whose time is reported
    assert [frame_index(f) for f in s.frames] == [round(t * FPS) for t in s.timestamps]
    assert s.sampled_fps == pytest.approx(8 / s.duration)


def test_sample_fps_mode_and_rate(short):
    s = sample_frames(short, fps=4.0)
    assert len(s.timestamps) == 8  # (k + 0.5) / 4 < 2.0 for k = 0..7
    assert s.sampled_fps == 4.0
    capped = sample_frames(short, fps=4.0, max_frames=3)
    assert capped.frames.shape[0] == 3
    assert capped.sampled_fps == pytest.approx(3 / capped.duration)


def test_sample_defaults_and_budget(short):
    s = sample_frames(short)  # FrameBudget defaults: 1 fps, <= 90 frames
    np.testing.assert_allclose(s.timestamps, [0.5, 1.5])
    assert s.sampled_fps == 1.0
    u = sample_with_budget(short, FrameBudget.uniform(5))
    assert u.frames.shape[0] == 5
    r = sample_with_budget(short, FrameBudget(fps=2.0, max_frames=3))
    assert r.frames.shape[0] == 3


def test_more_targets_than_frames_repeats_frames(short):
    s = sample_frames(short, num_frames=90, max_frames=90, strategy="decode")
    assert s.frames.shape[0] == 90
    assert np.all(np.diff(s.timestamps) >= 0)
    assert len(np.unique(s.timestamps)) == 60


@pytest.mark.parametrize(
    "kw", [dict(num_frames=7), dict(num_frames=16), dict(fps=3.0), dict(num_frames=1)]
)
def test_seek_and_decode_agree(short, long, kw):
    for path in (short, long):
        d = sample_frames(path, strategy="decode", **kw)
        s = sample_frames(path, strategy="seek", **kw)
        assert (d.strategy, s.strategy) == ("decode", "seek")
        np.testing.assert_array_equal(d.timestamps, s.timestamps)
        np.testing.assert_array_equal(d.frames, s.frames)


def test_auto_strategy(long):
    # 600 frames, a keyframe every 30: 4 targets (150 frames each) seek, 60 targets decode
    assert sample_frames(long, num_frames=4).strategy == "seek"
    assert sample_frames(long, num_frames=60, max_frames=60).strategy == "decode"


def test_stream_without_duration(short, vdir):
    ref = sample_frames(short, num_frames=6, strategy="decode")
    mkv = remux(short, vdir / "short.mkv", "matroska")  # stream has no duration, container has
    raw = remux(short, vdir / "short.h264", "h264")  # no duration, no timestamps at all
    for path in (mkv, raw):
        info = probe(path)
        assert info.duration == pytest.approx(2.0, abs=1e-3)
        assert info.num_frames == 60
        for strategy in ("decode", "seek"):
            s = sample_frames(path, num_frames=6, strategy=strategy)
            np.testing.assert_array_equal(s.frames, ref.frames)
            np.testing.assert_allclose(s.timestamps, ref.timestamps, atol=1e-3)
    assert sample_frames(raw, num_frames=6, strategy="seek").strategy == "decode"


def test_mpegts_offset_start(short, vdir):
    # MPEG-TS timestamps do not start at 0; returned times are relative to the stream start
    ts = remux(short, vdir / "short.ts", "mpegts")
    ref = sample_frames(short, num_frames=5, strategy="decode")
    for strategy in ("decode", "seek"):
        s = sample_frames(ts, num_frames=5, strategy=strategy)
        np.testing.assert_array_equal(s.frames, ref.frames)
        np.testing.assert_allclose(s.timestamps, ref.timestamps, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# errors


def assert_names_path(err: VideoError, path) -> None:
    assert err.path == os.fspath(path)
    assert os.fspath(path) in str(err)


def truncated(src: Path, dst: Path, frac: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


def bad_files(short: Path, d: Path) -> dict[str, tuple[Path, type[VideoError]]]:
    """name -> (path, the error probe and sample_frames must raise)."""
    files: dict[str, tuple[Path, type[VideoError]]] = {}
    files["missing"] = (d / "missing.mp4", VideoNotFoundError)
    (d / "empty.mp4").write_bytes(b"")
    files["empty"] = (d / "empty.mp4", EmptyVideoError)
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    files["text"] = (d / "text.mp4", NotAVideoError)
    files["truncated"] = (truncated(short, d / "cut40.mp4", 0.4), CorruptVideoError)
    files["truncated90"] = (truncated(short, d / "cut90.mp4", 0.9), CorruptVideoError)
    # an mp4 whose index was written first (moov before mdat), then cut: opens, index too long
    faststart = d / "faststart.mp4"
    with av.open(str(short)) as i, av.open(
        str(faststart), "w", format="mp4", options={"movflags": "+faststart"}
    ) as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(i.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = out
                o.mux(pkt)
    files["faststart_cut"] = (truncated(faststart, d / "fs_cut.mp4", 0.4), CorruptVideoError)
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "still.png")
    files["image"] = (d / "still.png", NotAVideoError)
    audio = d / "audio.m4a"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for k in range(8):
            f = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            f.sample_rate, f.pts = 16000, k * 1024
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    files["audio"] = (audio, NotAVideoError)
    # YUV4MPEG headers make absurd sizes cheap: the frame data never has to exist
    (d / "wide.y4m").write_bytes(b"YUV4MPEG2 W20000 H2 F30:1 Ip A1:1 C420jpeg\nFRAME\n")
    files["wide"] = (d / "wide.y4m", BadDimensionsError)
    (d / "huge.y4m").write_bytes(b"YUV4MPEG2 W12000 H9000 F30:1 Ip A1:1 C420jpeg\nFRAME\n")
    files["huge"] = (d / "huge.y4m", BadDimensionsError)
    (d / "noframes.y4m").write_bytes(b"YUV4MPEG2 W64 H64 F30:1 Ip A1:1 C420jpeg\n")
    files["noframes"] = (d / "noframes.y4m", NoFramesError)
    return files


@pytest.fixture(scope="module")
def broken(short, vdir):
    d = vdir / "broken"
    d.mkdir()
    return bad_files(short, d)


@pytest.mark.parametrize(
    "name",
    [
        "missing", "empty", "text", "truncated", "truncated90", "faststart_cut", "image",
        "audio", "wide", "huge", "noframes",
    ],
)
def test_typed_errors(broken, name):
    path, exc = broken[name]
    with pytest.raises(exc) as ei:
        probe(path)
    assert_names_path(ei.value, path)
    with pytest.raises(exc) as ei:
        sample_frames(path, num_frames=4)
    assert_names_path(ei.value, path)
    assert isinstance(ei.value, VideoError)


def test_corrupt_stream_fails_while_decoding(short, tmp_path):
    data = bytearray(short.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 2000] = b"\xab" * 2000
    p = tmp_path / "scribbled.mp4"
    p.write_bytes(bytes(data))
    probe(p)  # the header is intact
    with pytest.raises(CorruptVideoError) as ei:
        sample_frames(p, num_frames=8, strategy="decode")
    assert_names_path(ei.value, p)


def test_dimension_limits():
    for w, h in [(0, 10), (10, 0), (16385, 2), (2, 16385), (10001, 10000)]:
        with pytest.raises(BadDimensionsError):
            V._check_dimensions("x.mp4", w, h)
    V._check_dimensions("x.mp4", 16384, 16)
    V._check_dimensions("x.mp4", 10000, 10000)


def test_timeout_at_open(long):
    with pytest.raises(DecodeTimeoutError) as ei:
        sample_frames(long, num_frames=8, timeout=1e-6)
    assert_names_path(ei.value, long)
    with pytest.raises(DecodeTimeoutError):
        probe(long, timeout=1e-6)


@pytest.mark.parametrize("strategy", ["decode", "seek"])
def test_timeout_inside_decode_loop(long, monkeypatch, strategy):
    # A fake clock that advances 10 ms each time it is read: the budget of 0.5 s runs out after
    # about 50 reads, i.e. inside the decode loop, however fast this machine decodes.
    ticks = iter(range(10**9))
    monkeypatch.setattr(V, "_clock", lambda: next(ticks) * 0.01)
    with pytest.raises(DecodeTimeoutError, match="(decoding|converting frames) exceeded") as ei:
        sample_frames(long, num_frames=30, strategy=strategy, timeout=0.5)
    assert_names_path(ei.value, long)


def test_no_leaked_file_descriptors(broken, short, long, monkeypatch):
    before = open_fds()
    for _ in range(10):
        for path, exc in broken.values():
            with pytest.raises(exc):
                sample_frames(path, num_frames=2)
            with pytest.raises(exc):
                probe(path)
        with pytest.raises(DecodeTimeoutError):
            sample_frames(long, num_frames=2, timeout=1e-6)
        sample_frames(short, num_frames=2, strategy="seek")
        sample_frames(short, num_frames=2, strategy="decode")
    ticks = iter(range(10**9))
    monkeypatch.setattr(V, "_clock", lambda: next(ticks) * 0.01)
    for _ in range(10):
        with pytest.raises(DecodeTimeoutError):
            sample_frames(long, num_frames=30, timeout=0.5)
    assert open_fds() == before


def test_errors_carry_path_and_hierarchy():
    for cls in (
        VideoNotFoundError, EmptyVideoError, NotAVideoError, CorruptVideoError,
        NoFramesError, BadDimensionsError, DecodeTimeoutError,
    ):
        e = cls("/some/where.mp4", "why")
        assert isinstance(e, VideoError) and isinstance(e, Exception)
        assert e.path == "/some/where.mp4" and "/some/where.mp4" in str(e)


def test_bad_arguments(short):
    with pytest.raises(ValueError):
        sample_frames(short, num_frames=2, fps=1.0)
    with pytest.raises(ValueError):
        sample_frames(short, num_frames=2, strategy="fast")


def test_resampling_at_the_clip_rate_returns_every_frame(tmp_path):
    """The frame on screen at each target: a 4-frame clip sampled with 4 uniform targets gives
    frames 0, 1, 2, 3 (a nearest-frame rule with ties to the later frame gave 1, 2, 3, 3)."""
    path = tmp_path / "four.mp4"
    encode_video(path, [np.full((16, 16, 3), 60 * i, np.uint8) for i in range(4)], fps=1, width=16, height=16)
    for strategy in ("decode", "seek"):
        s = sample_frames(path, num_frames=4, strategy=strategy)
        assert [int(round(f.mean() / 60)) for f in s.frames] == [0, 1, 2, 3]
        np.testing.assert_allclose(s.timestamps, [0, 1, 2, 3])
