"""Fault matrix group I: input files. Checked before OpenCV; every decodable frame kept."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import cv2
import numpy as np
from harness import Case, fault, frames_in
from media import damage_frame, understate_avi_count, write_clip, write_clips

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"


def job(tmp: Path, source, code: int, message: str | None = None, state="absent",
        output: str = "out.mkv", extra: tuple = (), **kw) -> Case:
    out = tmp / output
    return Case(["run", EDGES, "-s", source, "-o", out, *extra], code, message,
                outputs={out: state}, **kw)


@fault("I1", "input", "missing input file")
def i1(tmp):
    return job(tmp, tmp / "in.mp4", 3, r"in\.mp4: no such file")


@fault("I2a", "input", "input is a directory")
def i2a(tmp):
    (tmp / "d.mp4").mkdir()
    return job(tmp, tmp / "d.mp4", 3, r"d\.mp4: is a directory")


@fault("I2b", "input", "input is a FIFO with no writer (OpenCV blocks forever)")
def i2b(tmp):
    os.mkfifo(tmp / "fifo.mp4")
    return job(tmp, tmp / "fifo.mp4", 3, r"fifo\.mp4: not a regular file", max_seconds=10)


@fault("I2c", "input", "input is /dev/zero")
def i2c(tmp):
    return job(tmp, "/dev/zero", 3, r"/dev/zero: not a regular file")


@fault("I2d", "input", "input is a socket")
def i2d(tmp):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / "s.mp4"))
    case = job(tmp, tmp / "s.mp4", 3, r"s\.mp4: not a regular file")
    case.context = sock
    return case


@fault("I3", "input", "0-byte file")
def i3(tmp):
    (tmp / "empty.mp4").write_bytes(b"")
    return job(tmp, tmp / "empty.mp4", 3, r"empty\.mp4: file is empty")


@fault("I4a", "input", "a text file named .mp4")
def i4a(tmp):
    (tmp / "text.mp4").write_text("just some words, not a video\n" * 20)
    return job(tmp, tmp / "text.mp4", 3, r"text\.mp4: not a decodable video")


@fault("I4b", "input", "random bytes named .mp4")
def i4b(tmp):
    (tmp / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(100_000))
    return job(tmp, tmp / "noise.mp4", 3, r"noise\.mp4: not a decodable video")


CUTS = [2048, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.99]


def _i5(cut):
    def build(tmp):
        video = tmp / "cut.mp4"
        write_clip(video, n=40)
        data = video.read_bytes()
        at = cut if isinstance(cut, int) else int(len(data) * cut)
        video.write_bytes(data[:at])
        return job(tmp, video, 3, r"cut\.mp4: MP4 index \(moov\) missing - file incomplete")

    return build


for _n, _cut in enumerate(CUTS):  # one fault, ten offsets (RELIABILITY: >= 10 per I5)
    fault(f"I5.{_n}", "input", f"MP4 truncated before its index at {_cut}")(_i5(_cut))


def _cut_half(ext):
    def build(tmp):
        video = tmp / f"half{ext}"
        write_clip(video, n=60)
        data = video.read_bytes()
        video.write_bytes(data[: len(data) // 2])
        decodable = len(frames_in(video))
        assert 10 < decodable < 60
        return job(tmp, video, 0, None, ("playable", decodable),
                   stdout=rf"warning: .*half{ext}: input ended at [\d.]+ s of its declared "
                          rf"2\.00 s \({decodable} frames read\)")

    return build


fault("I6a", "input", "MKV cut at 50 %")(_cut_half(".mkv"))
fault("I6b", "input", "AVI cut at 50 %")(_cut_half(".avi"))


@fault("I6c", "input", "MKV cut at 50 %, --strict: exit 6, every decodable frame kept")
def i6c(tmp):
    video = tmp / "half.mkv"
    write_clip(video, n=60)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    decodable = len(frames_in(video))
    return job(tmp, video, 6, rf"half\.mkv: finished but lossy: the input ended before its "
               rf"declared duration; {decodable} frames written and kept \(--strict\)",
               ("playable", decodable), extra=("--strict",))


def _damaged(index):
    def build(tmp):
        video = tmp / "damaged.mp4"
        write_clip(video, n=60)
        damage_frame(video, index, seed=index)
        decodable = len(frames_in(video))
        assert decodable == 59
        return job(tmp, video, 0, None, ("playable", decodable),
                   stdout=r"1 undecodable skipped")

    return build


for _i in (5, 17, 30, 44, 58):  # one fault, several positions (RELIABILITY: I7 seeds)
    fault(f"I7.{_i}", "input", f"MP4 damaged at frame {_i}: every decodable frame kept")(
        _damaged(_i))


@fault("I7c", "input", "MP4 damaged at frame 30, --strict: exit 6, the other 59 kept")
def i7c(tmp):
    video = tmp / "damaged.mp4"
    write_clip(video, n=60)
    damage_frame(video, 30, seed=30)
    return job(tmp, video, 6, r"damaged\.mp4: finished but lossy: 1 undecodable frame "
               r"skipped; 59 frames written", ("playable", 59), extra=("--strict",))


@fault("I7d", "input", "a sound MP4 with --strict: exit 0 (nothing lost, nothing claimed)")
def i7d(tmp):
    video = tmp / "sound.mp4"
    write_clip(video, n=30)
    return job(tmp, video, 0, None, ("playable", 30), extra=("--strict",))


@fault("I7b", "input", "AVI header claims 10 frames of 60")
def i7b(tmp):
    video = tmp / "liar.avi"
    write_clip(video, n=60)
    understate_avi_count(video, 10)
    return job(tmp, video, 0, None, ("playable", 60))


@fault("I8", "input", "valid container, zero frames")
def i8(tmp):
    video = tmp / "none.avi"
    write_clip(video, n=0, width=64, height=48)  # a header and an index, no frame
    return job(tmp, video, 3, r"none\.avi: input contains no video frames")


@fault("I9", "input", "odd dimensions 321x241 into a 4:2:0 codec (H.264 .mp4): padded")
def i9(tmp):
    for i in range(5):  # PNGs: an OpenCV-written video would already be cropped to even
        cv2.imwrite(str(tmp / f"odd_{i}.png"), np.full((241, 321, 3), 30 * i, np.uint8))
    return job(tmp, tmp / "odd_%d.png", 0, None, ("playable", 5, (322, 242)),
               output="out.mp4", stdout=r"warning: .*321x241 padded to 322x242")


@fault("I9b", "input", "odd dimensions 321x241 into FFV1 (.mkv): kept as they are")
def i9b(tmp):
    for i in range(5):
        cv2.imwrite(str(tmp / f"odd_{i}.png"), np.full((241, 321, 3), 30 * i, np.uint8))
    return job(tmp, tmp / "odd_%d.png", 0, None, ("playable", 5, (321, 241)),
               stdout=r"out\.mkv: 5 frames \(ffv1, gray full range, 321x241")


@fault("I10", "input", "frames over the pixel limit: refused before decoding")
def i10(tmp):
    video = tmp / "big.avi"
    write_clip(video, n=3, width=200, height=150)
    return job(tmp, video, 3, r"big\.avi: frame 200x150 exceeds the limit of 0\.0 MP",
               extra=("--max-pixels", "0.01"))


@fault("I11a", "input", "2x2 frames under a 15x15 valid kernel")
def i11a(tmp):
    video = tmp / "tiny.avi"
    write_clip(video, n=3, width=2, height=2)
    config = tmp / "valid.yaml"
    config.write_text("stages:\n  - {type: bank, op: correlate, padding: valid, "
                      "weights: {builtin: box, size: 15}}\n")
    out = tmp / "out.mkv"
    return Case(["run", config, "-s", video, "-o", out], 3,
                r"frame 2x2 is smaller than the kernel extent 15x15", outputs={out: "absent"})


@fault("I11b", "input", "1x1 frames with 'same' padding")
def i11b(tmp):
    for i in range(3):
        cv2.imwrite(str(tmp / f"px_{i}.png"), np.full((1, 1, 3), 40 * i, np.uint8))
    return job(tmp, tmp / "px_%d.png", 0, None, ("playable", 3, (2, 2)), output="out.avi")


@fault("I14a", "input", "spaces and unicode in the name")
def i14a(tmp):
    video = tmp / "my clip – été.avi"
    write_clip(video, n=4)
    return job(tmp, video, 0, None, ("playable", 4))


@fault("I14b", "input", "a literal '%' in a video name")
def i14b(tmp):
    video = tmp / "100%.avi"
    write_clip(video, n=4)
    return job(tmp, video, 0, None, ("playable", 4))


@fault("I14c", "input", "a real file named like a pattern is that file")
def i14c(tmp):
    cv2.imwrite(str(tmp / "seq_%03d.png"), np.zeros((8, 8, 3), np.uint8))
    for i in range(3):
        cv2.imwrite(str(tmp / f"seq_{i:03d}.png"), np.zeros((8, 8, 3), np.uint8))
    return job(tmp, tmp / "seq_%03d.png", 0, None, ("playable", 1))


@fault("I15", "input", "a still image is a one-frame input")
def i15(tmp):
    cv2.imwrite(str(tmp / "still.jpg"), np.full((40, 60, 3), 90, np.uint8))
    return job(tmp, tmp / "still.jpg", 0, None, ("playable", 1, (60, 40)))


@fault("I16", "input", "batch refuses network sources")
def i16(tmp):
    (tmp / "done").mkdir()
    return Case(["batch", EDGES, "http://169.254.169.254/latest", "--out", tmp / "done"], 3,
                r"http://169\.254\.169\.254/latest: network sources not allowed in batch")


@fault("I17", "input", "batch of good and bad files")
def i17(tmp):
    inputs = write_clips(tmp, "good", 5, n=3, width=48, height=32)
    (tmp / "bad0.avi").write_text("x")
    (tmp / "bad1.avi").write_bytes(b"")
    inputs += [tmp / "bad0.avi", tmp / "bad1.avi", tmp / "missing.avi"]
    (tmp / "done").mkdir()

    def counted(result: subprocess.CompletedProcess) -> None:
        assert result.stderr.count("error:") == 3
        assert len(list((tmp / "done").glob("*.mkv"))) == 5

    case = Case(["batch", EDGES, *inputs, "--out", tmp / "done", "--workers", "2"], 3,
                None, stdout=r"5 ok, 3 failed", check=counted)
    return case

