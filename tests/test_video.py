"""Video files a user hands on (issue 18): codecs by extension and by choice, sound copied
or re-encoded and cut with the video, every frame's time kept, colour converted and
tagged, odd sizes, the errors of a bad choice. What a file holds is read back with PyAV
(and, for the box order, from the file's bytes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import CLIP_CODECS, write_clip

from pipeline import run_config
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.io.codecs import CODECS, VideoSettings, resolve
from pipeline.io.sinks import open_sink
from pipeline.io.sources import MemorySource

ROOT = Path(__file__).parent.parent
IDENTITY = """\
stages:
  - {type: bank, op: correlate, weights: {builtin: identity, size: 1}}
"""
GRAY = """\
stages:
  - {type: convert, color: gray}
"""


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def config(tmp: Path, text: str = IDENTITY, name: str = "c.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def streams(path: Path) -> tuple[dict, dict | None]:
    """What the file's first video and audio streams are (PyAV)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        video = {"codec": cc.codec.canonical_name, "pix_fmt": cc.pix_fmt, "width": cc.width,
                 "height": cc.height, "colorspace": cc.colorspace,
                 "color_range": cc.color_range, "primaries": cc.color_primaries,
                 "trc": cc.color_trc}
        audio = None
        if c.streams.audio:
            a = c.streams.audio[0]
            audio = {"codec": a.codec_context.codec.canonical_name, "rate": a.rate}
    return video, audio


def frame_times(path: Path) -> list[float]:
    """Each video frame's presentation time, seconds, in display order."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sorted(float(p.pts * p.time_base) for p in c.demux(v) if p.size)


def durations(path: Path) -> tuple[float, float]:
    """(video, audio) seconds: the end of each stream's last packet."""
    ends = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.pts is None or not p.size:
                continue
            end = float((p.pts + (p.duration or 0)) * p.time_base)
            ends[p.stream.type] = max(ends.get(p.stream.type, 0.0), end)
    return ends.get("video", 0.0), ends.get("audio", 0.0)


def decode_bgr(path: Path) -> list[np.ndarray]:
    """Every frame as BGR (PyAV honours the stream's colour tags; rounded accurately, as a
    browser's decoder does)."""
    from av.video.reformatter import Interpolation

    accurate = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
    with av.open(str(path)) as c:
        return [f.reformat(format="bgr24", interpolation=accurate).to_ndarray()
                for f in c.decode(video=0)]


def audio_packets(path: Path, n: int = 20) -> list[bytes]:
    with av.open(str(path)) as c:
        out = []
        for p in c.demux(c.streams.audio[0]):
            if p.size:
                out.append(bytes(p))
            if len(out) >= n:
                break
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clips made once: AAC in MP4, MP3 in MP4, AC-3 in Matroska, variable frame rate,
    odd size, no sound."""
    folder = tmp_path_factory.mktemp("clips")
    made = {
        "aac": (folder / "aac.mp4", {"codec": "libx264", "audio": "aac"}),
        "mp3": (folder / "mp3.mp4", {"codec": "libx264", "audio": "libmp3lame"}),
        "ac3": (folder / "ac3.mkv", {"codec": "libx264", "audio": "ac3"}),
        "silent": (folder / "silent.mp4", {"codec": "libx264"}),
    }
    paths = {}
    for name, (path, options) in made.items():
        write_clip(path, 45, 96, 64, **options)
        paths[name] = path
    vfr = folder / "vfr.mkv"
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54, 0.58, 1.2, 1.24]
    write_clip(vfr, len(times), 96, 64, codec="libx264", audio="aac", times=times)
    paths["vfr"] = vfr
    odd = folder / "odd.mkv"
    write_clip(odd, 10, 95, 63)
    paths["odd"] = odd
    return paths


# ------------------------------------------------------------------ defaults by extension
@pytest.mark.parametrize("ext, codec, pix_fmt", [
    (".mp4", "h264", "yuv420p"), (".mov", "h264", "yuv420p"), (".webm", "vp9", "yuv420p"),
    (".mkv", "ffv1", "bgr0"), (".avi", "mjpeg", "yuvj420p")])
def test_defaults_by_extension(tmp_path, clips, ext, codec, pix_fmt):
    out = tmp_path / f"out{ext}"
    stats = run_config(config(tmp_path), source=str(clips["aac"]), output=str(out))
    assert stats.frames_written == 45
    video, audio = streams(out)
    assert (video["codec"], video["pix_fmt"]) == (codec, pix_fmt)
    assert (video["width"], video["height"]) == (96, 64)
    assert len(decode_bgr(out)) == 45
    assert audio is not None  # the input's sound, copied or re-encoded
    assert audio["codec"] == {".mp4": "aac", ".mov": "aac", ".webm": "opus", ".mkv": "aac",
                              ".avi": "mp3"}[ext]
    assert codec in stats.results[0].detail and pix_fmt in stats.results[0].detail


def test_mp4_index_at_the_front(tmp_path, clips):
    """+faststart: the moov box comes before the media data (a browser plays it while it
    arrives)."""
    from pipeline.io.sources import _top_level_boxes

    out = tmp_path / "fast.mp4"
    run_config(config(tmp_path), source=str(clips["aac"]), output=str(out))
    boxes = _top_level_boxes(str(out))
    assert b"moov" in boxes and b"mdat" in boxes
    assert boxes.index(b"moov") < boxes.index(b"mdat"), boxes


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "av1", "ffv1", "mpeg4", "mjpeg"])
def test_every_codec_by_flag(tmp_path, codec):
    ext = {"vp9": ".webm", "av1": ".mkv"}.get(codec, ".mkv" if codec != "mjpeg" else ".avi")
    out = tmp_path / f"o{ext}"
    frames = [np.full((64, 96, 3), i * 5, np.uint8) for i in range(12)]
    stats = run_config(config(tmp_path), source=MemorySource(frames), output=str(out),
                       video=VideoSettings.from_flags(codec=codec))
    assert stats.frames_written == 12
    assert streams(out)[0]["codec"] == {"h264": "h264", "hevc": "hevc", "vp9": "vp9",
                                        "av1": "av1", "ffv1": "ffv1", "mpeg4": "mpeg4",
                                        "mjpeg": "mjpeg"}[codec]
    decoded = decode_bgr(out)
    assert len(decoded) == 12
    np.testing.assert_allclose(decoded[6].astype(float), frames[6].astype(float), atol=3)


# ------------------------------------------------------------------ lossless and gray
def test_ffv1_is_lossless_bgr(tmp_path):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (37, 53, 3), np.uint8) for _ in range(5)]
    out = tmp_path / "exact.mkv"
    run_config(config(tmp_path), source=MemorySource(frames), output=str(out))
    assert streams(out)[0]["pix_fmt"] == "bgr0"
    for got, want in zip(decode_bgr(out), frames, strict=True):
        np.testing.assert_array_equal(got, want)


def test_gray_chain_stays_gray_in_ffv1(tmp_path):
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, (40, 50, 3), np.uint8) for _ in range(4)]
    out = tmp_path / "gray.mkv"
    run_config(config(tmp_path, GRAY), source=MemorySource(frames), output=str(out))
    video, _ = streams(out)
    assert video["pix_fmt"] == "gray"
    import cv2

    with av.open(str(out)) as c:
        got = [f.to_ndarray() for f in c.decode(video=0)]
    for g, f in zip(got, frames, strict=True):
        want = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        np.testing.assert_allclose(g.astype(float), want.astype(float), atol=1)


# ------------------------------------------------------------------ colour
PATCHES = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0], [255, 255, 255], [0, 0, 0],
                    [40, 200, 220], [128, 128, 128], [200, 60, 30]], np.uint8)


@pytest.mark.parametrize(("ext", "full"), [(".mp4", False), (".avi", True)])
def test_gray_into_420_maps_each_level(tmp_path, ext, full):
    """A gray result into H.264 (limited range) or MJPEG (full): luma is each level mapped
    onto the stream's range and rounded to nearest (swscale's accurate path is within 1),
    chroma neutral. H.264 at CRF 0 is lossless, so the decoded plane is what was written."""
    from av.video.reformatter import Interpolation

    ramp = np.tile(np.arange(256, dtype=np.uint8), (32, 1))
    frames = [np.repeat(ramp[:, :, None], 3, axis=2)] * 3
    out = tmp_path / f"gray{ext}"
    text = GRAY + f"output: {{path: {out}, crf: {0 if ext == '.mp4' else 2}}}\n"
    run_config(config(tmp_path, text), source=MemorySource(frames), output=None)
    levels = np.arange(256) if full else 16 + np.arange(256) * 219 / 255
    want = np.floor(levels + 0.5)
    with av.open(str(out)) as c:
        picture = next(iter(c.decode(video=0)))
    y = np.frombuffer(picture.planes[0], np.uint8).reshape(-1, picture.planes[0].line_size)
    u = np.frombuffer(picture.planes[1], np.uint8)
    if ext == ".mp4":
        np.testing.assert_array_equal(y[:32, :256], np.tile(want, (32, 1)))
        assert set(np.unique(u)) == {128}
        swscale = av.VideoFrame.from_numpy_buffer(ramp, format="gray").reformat(
            format="yuv420p", src_colorspace=1, dst_colorspace=1, src_color_range="JPEG",
            dst_color_range="MPEG", interpolation=Interpolation.BILINEAR |
            Interpolation.ACCURATE_RND)
        theirs = np.frombuffer(swscale.planes[0], np.uint8).reshape(
            -1, swscale.planes[0].line_size)[:32, :256]
        assert np.abs(theirs.astype(int) - want).max() <= 1
    else:  # JPEG: lossy even at quantiser 2, but close
        assert np.abs(y[:32, :256].astype(int) - want).max() <= 3


def patch_frame(width: int, height: int) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    step = width // len(PATCHES)
    for i, colour in enumerate(PATCHES):
        frame[:, i * step:(i + 1) * step] = colour
    return frame


@pytest.mark.parametrize("size, space", [((1280, 720), 1), ((320, 240), 6)])
def test_colour_matrix_tagged_and_round_trips(tmp_path, size, space):
    """BT.709 for HD, BT.601 below, limited range, tagged: a decoder that reads the tags
    (PyAV, as browsers do) gives back the colours that went in."""
    w, h = size
    frame = patch_frame(w, h)
    out = tmp_path / "colour.mp4"
    run_config(config(tmp_path), source=MemorySource([frame] * 3), output=str(out),
               video=VideoSettings.from_flags(crf=0))
    video, _ = streams(out)
    assert (video["colorspace"], video["primaries"], video["trc"], video["color_range"]) == \
        (space, space, space, 1)
    got = decode_bgr(out)[1]
    step = w // len(PATCHES)
    for i, colour in enumerate(PATCHES):
        centre = got[h // 2, i * step + step // 2].astype(float)
        np.testing.assert_allclose(centre, colour.astype(float), atol=4)


def test_odd_size_padded_and_said(tmp_path, clips):
    out = tmp_path / "odd.mp4"
    stats = run_config(config(tmp_path), source=str(clips["odd"]), output=str(out))
    video, _ = streams(out)
    assert (video["width"], video["height"]) == (96, 64)
    assert any("95x63 padded to 96x64" in w for w in stats.warnings)
    got = decode_bgr(out)
    assert len(got) == 10
    # the added column repeats its neighbour
    np.testing.assert_allclose(got[3][:, 95].astype(float), got[3][:, 94].astype(float),
                               atol=12)


# ------------------------------------------------------------------ timing
def test_every_frame_keeps_its_time_vfr(tmp_path, clips):
    want = frame_times(clips["vfr"])
    for ext in (".mp4", ".mkv", ".webm"):
        out = tmp_path / f"vfr{ext}"
        run_config(config(tmp_path), source=str(clips["vfr"]), output=str(out))
        np.testing.assert_allclose(frame_times(out), want, atol=0.0015)


def test_duration_matches_input_within_a_frame(tmp_path, clips):
    out = tmp_path / "d.mp4"
    run_config(config(tmp_path), source=str(clips["aac"]), output=str(out))
    v_in, a_in = durations(clips["aac"])
    v_out, a_out = durations(out)
    assert abs(v_out - v_in) <= 1 / 30 + 1e-6
    assert abs(a_out - a_in) <= 1 / 30 + 0.03  # one frame, and one AAC packet (21 ms)


def test_skipped_corrupt_frames_leave_a_gap(tmp_path):
    from media import damage_frame

    clip = tmp_path / "damaged.mp4"
    write_clip(clip, 30)
    damage_frame(clip, 10)
    out = tmp_path / "gap.mkv"
    stats = run_config(config(tmp_path), source=str(clip), output=str(out))
    assert stats.decode_errors >= 1
    times = frame_times(out)
    assert len(times) == stats.frames_written
    steps = np.diff(times)
    assert steps.max() >= 2 / 30 - 0.002  # the lost frame's slot stays empty
    assert times[-1] == pytest.approx(29 / 30, abs=0.002)  # nothing after it shifted


# ------------------------------------------------------------------ sound
@pytest.mark.parametrize("clip, ext, codec, copied", [
    ("aac", ".mp4", "aac", True), ("mp3", ".mp4", "mp3", True), ("ac3", ".mkv", "ac3", True),
    ("aac", ".webm", "opus", False), ("ac3", ".mp4", "aac", False),
    ("mp3", ".webm", "opus", False)])
def test_sound_copied_or_reencoded(tmp_path, clips, clip, ext, codec, copied):
    out = tmp_path / f"s{ext}"
    stats = run_config(config(tmp_path), source=str(clips[clip]), output=str(out))
    _, audio = streams(out)
    assert audio is not None and audio["codec"] == codec
    detail = stats.results[0].detail
    assert ("(copied)" in detail) == copied, detail
    if copied:  # packet for packet
        assert audio_packets(out) == audio_packets(clips[clip])
    v, a = durations(out)
    assert abs(a - v) <= 0.07, (v, a)


def test_no_audio_flag_and_silent_sources(tmp_path, clips):
    out = tmp_path / "mute.mp4"
    run_config(config(tmp_path), source=str(clips["aac"]), output=str(out),
               video=VideoSettings.from_flags(audio=False))
    assert streams(out)[1] is None
    out2 = tmp_path / "silent.mp4"
    run_config(config(tmp_path), source=str(clips["silent"]), output=str(out2))
    assert streams(out2)[1] is None
    out3 = tmp_path / "synthetic.mp4"
    run_config(config(tmp_path), source="synthetic:64x48:5", output=str(out3))
    assert streams(out3)[1] is None


def test_max_frames_cuts_the_sound_at_the_last_frame(tmp_path, clips):
    out = tmp_path / "cut.mp4"
    stats = run_config(config(tmp_path), source=str(clips["aac"]), output=str(out),
                       max_frames=15)
    assert stats.frames_written == 15
    v, a = durations(out)
    assert v == pytest.approx(15 / 30, abs=0.002)
    assert a == pytest.approx(v, abs=0.03), (v, a)


# ------------------------------------------------------------------ quality settings
def test_crf_changes_the_file(tmp_path, clips):
    sizes = {}
    for crf in (18, 40):
        out = tmp_path / f"q{crf}.mp4"
        stats = run_config(config(tmp_path), source=str(clips["silent"]), output=str(out),
                           video=VideoSettings.from_flags(crf=crf, preset="medium"))
        assert f"crf {crf}" in stats.results[0].detail
        sizes[crf] = out.stat().st_size
    assert sizes[18] > 1.5 * sizes[40], sizes


def test_yaml_output_mapping(tmp_path, clips):
    cfg = config(tmp_path, IDENTITY + "output: {path: y.webm, crf: 50, audio: false}\n")
    stats = run_config(cfg, source=str(clips["aac"]))
    out = Path("y.webm")
    try:
        assert "vp9 crf 50" in stats.results[0].detail
        assert streams(out)[1] is None
    finally:
        out.unlink(missing_ok=True)


def test_command_line_flags_over_the_yaml_mapping(tmp_path, clips):
    out = tmp_path / "flags.mp4"
    cfg = config(tmp_path, IDENTITY + f"output: {{path: {out}, crf: 30}}\n")
    stats = run_config(cfg, source=str(clips["silent"]),
                       video=VideoSettings.from_flags(preset="ultrafast"))
    assert "h264 crf 30 preset ultrafast" in stats.results[0].detail


# ------------------------------------------------------------------ errors (exit 2)
@pytest.mark.parametrize("path, settings, words", [
    ("o.mp4", {"codec": "h265"}, "--codec: unknown codec 'h265'; expected one of h264"),
    ("o.webm", {"codec": "h264"}, "--codec: .webm cannot hold h264; it takes vp9, av1"),
    ("o.mp4", {"crf": 52}, "--crf: 52 is out of h264's range 0..51"),
    ("o.mkv", {"crf": 10}, "--crf: ffv1 is lossless and takes no CRF"),
    ("o.mp4", {"preset": "turbo"}, "--preset: unknown preset 'turbo' for h264"),
    ("o.avi", {"preset": "fast"}, "--preset: mjpeg takes no preset"),
    ("o.npy", {"codec": "h264"}, "--codec: o.npy is not a video file"),
])
def test_bad_choices_are_config_errors(path, settings, words):
    with pytest.raises(ConfigError, match=None) as e:
        resolve(path, VideoSettings.from_flags(**settings))
    assert words in str(e.value), str(e.value)


def test_bad_choice_exits_2_before_anything_is_opened(tmp_path, clips):
    for flags, words in ((["--codec", "mjpeg", "-o", tmp_path / "x.webm"], "--codec: .webm cannot hold mjpeg"),
                         (["--crf", "99"], "--crf: 99 is out of h264's range")):
        result = cli("run", config(tmp_path), "-s", clips["aac"], "-o", tmp_path / "x.mp4",
                     *flags)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("error:") == 1 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_yaml_errors_point_at_the_field(tmp_path):
    cfg = config(tmp_path, IDENTITY + "output:\n  path: o.webm\n  codec: h264\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value).startswith(f"{cfg}:5:3: output.codec: .webm cannot hold h264"), e.value


def test_batch_takes_the_codec_flags(tmp_path, clips):
    out = tmp_path / "out"
    out.mkdir()
    result = cli("batch", config(tmp_path), clips["aac"], clips["mp3"], "--out", out,
                 "--ext", ".mp4", "--codec", "hevc", "--crf", "30", "--no-audio",
                 "--workers", "1")
    assert result.returncode == 0, result.stderr
    for name in ("aac.mp4", "mp3.mp4"):
        video, audio = streams(out / name)
        assert video["codec"] == "hevc" and audio is None
    bad = cli("batch", config(tmp_path), clips["aac"], "--out", out, "--ext", ".webm",
              "--codec", "mpeg4")
    assert bad.returncode == 2 and "--codec: .webm cannot hold mpeg4" in bad.stderr, bad.stderr


@pytest.mark.parametrize("codec, ext", [("hevc", ".mkv"), ("av1", ".mkv"), ("vp9", ".webm")])
def test_encoders_say_nothing_on_stderr(tmp_path, codec, ext):
    """x265 and SVT-AV1 print banners of their own unless told not to."""
    result = cli("run", config(tmp_path), "-s", "synthetic:64x48:5", "-o", tmp_path / f"o{ext}",
                 "--codec", codec, "-q")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_codecs_command_lists_what_this_machine_encodes():
    result = cli("codecs")
    assert result.returncode == 0, result.stderr
    for name, codec in CODECS.items():
        assert name in result.stdout and codec.encoder in result.stdout
    assert "missing here" not in result.stdout  # the PyAV wheels carry every one


def test_time_base_of_a_file_is_the_inputs(tmp_path, clips):
    sink = open_sink(str(tmp_path / "tb.mp4"))
    sink.open((64, 96, 3), 30.0, str(clips["silent"]))
    try:
        with av.open(str(clips["silent"])) as c:
            assert sink.time_base == Fraction(c.streams.video[0].time_base)
    finally:
        sink.abort()
    assert CLIP_CODECS  # the clips' codecs are declared in one place


def test_a_stopped_run_keeps_a_playable_file_with_its_sound(tmp_path, clips):
    """A signal sets the run's stop event; the file is finalised with the frames so far
    and its sound up to there."""
    import threading
    import time

    from pipeline.io.sources import VideoFileSource

    class Slow(VideoFileSource):  # a file read at about real speed: time to stop it
        def read(self):
            time.sleep(0.02)
            return super().read()

    stop = threading.Event()

    def progress(stats):
        if stats.frames_written >= 10:
            stop.set()

    out = tmp_path / "stopped.mp4"
    stats = run_config(config(tmp_path), source=Slow(clips["aac"]), output=str(out),
                       stop=stop, progress=progress)
    assert stats.interrupted and 10 <= stats.frames_written < 45
    assert len(decode_bgr(out)) == stats.frames_written
    v, a = durations(out)
    assert v == pytest.approx(stats.frames_written / 30, abs=0.002)
    assert a == pytest.approx(v, abs=0.03), (v, a)


def test_live_sources_take_the_capture_clock(tmp_path):
    from media import MjpegServer, clip_frames

    with MjpegServer(clip_frames(10, 64, 48), fps=20) as server:
        out = tmp_path / "live.mkv"
        stats = run_config(config(tmp_path), source=server.url, output=str(out),
                           max_frames=12)
    times = frame_times(out)
    assert len(times) == stats.frames_written == 12
    steps = np.diff(times)
    assert np.median(steps) == pytest.approx(1 / 20, abs=0.02)  # the server's pace, not 30


@pytest.mark.parametrize("matrix, full, pix", [("ITU709", False, "yuv420p"),
                                               ("ITU601", False, "yuv420p"),
                                               ("ITU601", True, "yuvj420p")])
def test_c_conversion_matches_swscale(matrix, full, pix):
    """The writer's one-pass BGR -> YUV 4:2:0 (pipeline/io/_yuv.c) against swscale with
    accurate rounding: luma within 1 everywhere; chroma within 2 on smooth content (the
    two site chroma half a pixel apart and filter it differently, which only texture and
    steep gradients tell apart)."""
    from av.video.reformatter import Interpolation

    from pipeline.io import _yuv
    from pipeline.io.video import _coefficients

    rng = np.random.default_rng(9)
    noisy = rng.integers(0, 256, (64, 96, 3), np.uint8)
    yy, xx = np.mgrid[0:128, 0:192]
    smooth = np.stack([128 + 100 * np.sin(xx / 50 + c) * np.cos(yy / 40 - c)
                       for c in range(3)], axis=2).round().astype(np.uint8)
    for frame, chroma_tolerance in ((noisy, None), (smooth, 2)):
        h, w = frame.shape[:2]
        ours = av.VideoFrame(w, h, pix)
        y, u, v = ours.planes
        _yuv.bgr_to_yuv420(frame, frame.strides[0], w, h, y, y.line_size, u, u.line_size,
                           v, v.line_size, _coefficients(matrix, full), 0 if full else 16)
        theirs = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(
            format=pix, src_colorspace=matrix, dst_colorspace=matrix, src_color_range="JPEG",
            dst_color_range="JPEG" if full else "MPEG",
            interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND)
        for i, (a, b) in enumerate(zip(ours.planes, theirs.planes, strict=True)):
            width = w if i == 0 else w // 2
            got = np.frombuffer(a, np.uint8).reshape(-1, a.line_size)[:, :width]
            want = np.frombuffer(b, np.uint8).reshape(-1, b.line_size)[:, :width]
            tolerance = 1 if i == 0 else chroma_tolerance
            if tolerance is not None:
                np.testing.assert_allclose(got.astype(float), want.astype(float),
                                           atol=tolerance)


def test_without_the_c_conversion_swscale_does_it(tmp_path, monkeypatch):
    """An install without a C compiler: the same colours, by swscale."""
    import pipeline.io.video as video

    monkeypatch.setattr(video, "_yuv", None)
    frame = patch_frame(320, 240)
    out = tmp_path / "sws.mp4"
    run_config(config(tmp_path), source=MemorySource([frame] * 3), output=str(out),
               video=VideoSettings.from_flags(crf=0))
    got = decode_bgr(out)[1]
    step = 320 // len(PATCHES)
    for i, colour in enumerate(PATCHES):
        np.testing.assert_allclose(got[120, i * step + step // 2].astype(float),
                                   colour.astype(float), atol=4)


def test_undecodable_sound_is_skipped_with_a_warning(tmp_path):
    """Damaged sound that must be re-encoded (AAC into WebM): the video is written whole,
    the packets the decoder refuses are skipped and counted, the rest of the sound kept
    (it used to stop at the first); never a traceback."""
    from media import flip_bytes

    clip = tmp_path / "damaged.mkv"
    write_clip(clip, 60, 16, 16, audio="aac")  # tiny frames: the file is mostly sound
    for at in np.linspace(0.3, 0.9, 40):
        flip_bytes(clip, at=float(at), n=64, seed=1)
    out = tmp_path / "out.webm"
    stats = run_config(config(tmp_path), source=str(clip), output=str(out))
    assert len(decode_bgr(out)) == stats.frames_written > 0
    assert any(re.search(r"\d+ undecodable sound packets? skipped .*the rest of its sound "
                         r"kept", w) for w in stats.warnings), stats.warnings
    v, a = durations(out)
    assert a > 0.9 * v, (v, a)  # sound after the damage too
    assert any("sound packet" in loss for loss in stats.losses())


def test_adts_sound_from_mpeg_ts_copied_into_mp4(tmp_path):
    """AAC in MPEG-TS comes in ADTS frames; MP4 holds raw AAC. FFmpeg's MP4 muxer strips
    the 7-byte ADTS headers itself (aac_adtstoasc): the payload is copied unchanged."""
    clip = tmp_path / "in.ts"
    write_clip(clip, 30, 96, 64, codec="libx264", audio="aac")
    out = tmp_path / "out.mp4"
    stats = run_config(config(tmp_path), source=str(clip), output=str(out))
    assert "sound aac (copied)" in stats.results[0].detail
    ours, theirs = audio_packets(out), audio_packets(clip)
    assert ours == [p[7:] for p in theirs]  # ADTS without CRC: a 7-byte header
    with av.open(str(out)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples == pytest.approx(48000 * 30 / 30, abs=1024 + 1024)
