"""Fault matrix groups O (outputs) and R (resources)."""

from __future__ import annotations

import os
import re
import resource
import signal
from pathlib import Path

import cv2
import numpy as np
from harness import Case, fault, partials
from media import write_clip

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"
SYN = "synthetic:64x48:6"


def clip(tmp: Path, name: str = "in.mkv") -> Path:
    write_clip(tmp / name, n=6, width=64, height=48)
    return tmp / name


@fault("O1a", "output", "output is the input")
def o1a(tmp):
    video = clip(tmp)
    return Case(["run", EDGES, "-s", video, "-o", video, "--force"], 4,
                r"in\.mkv: output would overwrite the input")


@fault("O1b", "output", "output is a symlink to the input")
def o1b(tmp):
    video = clip(tmp)
    (tmp / "link.mkv").symlink_to(video)
    return Case(["run", EDGES, "-s", video, "-o", tmp / "link.mkv", "--force"], 4,
                r"link\.mkv: output would overwrite the input")


@fault("O1c", "output", "output is a hard link to the input")
def o1c(tmp):
    video = clip(tmp)
    os.link(video, tmp / "hard.mkv")
    return Case(["run", EDGES, "-s", video, "-o", tmp / "hard.mkv", "--force"], 4,
                r"hard\.mkv: output would overwrite the input")


@fault("O2", "output", "output exists, no --force")
def o2(tmp):
    (tmp / "out.mkv").write_bytes(b"an older result")
    return Case(["run", EDGES, "-s", SYN, "-o", tmp / "out.mkv"], 4,
                r"out\.mkv: exists \(use --force to replace it\)")


@fault("O3", "output", "--force, then the run fails: the old file stays")
def o3(tmp):
    from media import MjpegServer, clip_frames

    from cases_live import every_frame_kept_or_dropped

    (tmp / "live.mkv").write_bytes(b"the previous recording")
    srv = MjpegServer(clip_frames(10, 64, 48), fps=60, mode="close_forever", after=10)
    frames = every_frame_kept_or_dropped(srv, tmp / "live.mkv")

    def kept(result):
        assert (tmp / "live.mkv").read_bytes() == b"the previous recording"
        assert len(partials(tmp / "live.mkv")) == 1
        frames(result)

    return Case(["run", EDGES, "-s", srv.url, "-o", tmp / "live.mkv", "--force",
                 "--reconnect-attempts", "1"], 5,
                r"\d+ frames kept in .*live\.[0-9a-f]{8}\.partial\.mkv", check=kept, context=srv)


@fault("O4a", "output", "output folder missing")
def o4a(tmp):
    return Case(["run", EDGES, "-s", SYN, "-o", tmp / "nowhere" / "out.mkv"], 4,
                r"cannot create .*out\.mkv: no such directory")


@fault("O4b", "output", "output path is a directory")
def o4b(tmp):
    (tmp / "out.mkv").mkdir()
    return Case(["run", EDGES, "-s", SYN, "-o", tmp / "out.mkv", "--force"], 4,
                r"out\.mkv: is a directory")


@fault("O4c", "output", "output where nothing can be created")
def o4c(tmp):
    return Case(["run", EDGES, "-s", SYN, "-o", "/proc/out.mkv"], 4,
                r"cannot create /proc/out\.mkv: ")


@fault("O5a", "output", "unknown extension")
def o5a(tmp):
    return Case(["run", EDGES, "-s", SYN, "-o", tmp / "out.xyz"], 4,
                r"out\.xyz: unknown output type '\.xyz'; expected \.mp4 \.mov \.webm \.mkv "
                r"\.avi \.npy")


@fault("O5b", "output", "no extension")
def o5b(tmp):
    return Case(["run", EDGES, "-s", SYN, "-o", tmp / "out"], 4,
                r"unknown output type '\(no extension\)'")


@fault("O5c", "output", "an extension OpenCV's muxer rejects (.mp4.part)")
def o5c(tmp):
    return Case(["run", EDGES, "-s", SYN, "-o", tmp / "out.mp4.part"], 4,
                r"unknown output type '\.part'")


@fault("O8", "output", "the writer is sized from the filter's output (valid padding)")
def o8(tmp):
    config = tmp / "valid.yaml"
    config.write_text("stages:\n  - {type: bank, op: correlate, padding: valid, "
                      "weights: {builtin: box, size: 7}}\n")
    return Case(["run", config, "-s", SYN, "-o", tmp / "out.avi"], 0,
                outputs={tmp / "out.avi": ("playable", 6, (58, 42))})


@fault("O9", "output", "float results of 300 / -1 / NaN become 255 / 0 / 0")
def o9(tmp):
    frame = np.array([[300.0, -1.0, np.nan, 100.0]], np.float32).repeat(2, 0)
    cv2.imwrite(str(tmp / "float.tiff"), frame)
    config = tmp / "identity.yaml"
    config.write_text("stages: [{type: convert}]\n")

    def values(result):
        got = cv2.imread(str(tmp / "out_00000.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got[0], [255, 0, 0, 100])

    return Case(["run", config, "-s", tmp / "float.tiff", "-o", tmp / "out_%05d.png"], 0,
                stdout=r"warning: 2 NaN pixels written as 0", check=values)


def _file_limit(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@fault("O10a", "output", "disk full while writing video (file size limit)")
def o10a(tmp):
    return Case(["run", EDGES, "-s", "synthetic:320x240:200", "-o", tmp / "out.mkv"], 4,
                r"out\.mkv: write failed after \d+ frames \(file size limit reached\)",
                outputs={tmp / "out.mkv": "absent"}, preexec=_file_limit(200_000))


@fault("O10c", "output", "disk full while writing H.264 .mp4 with sound (PyAV's muxer)")
def o10c(tmp):
    video = tmp / "in.mp4"
    write_clip(video, n=90, width=320, height=240, codec="libx264", audio="aac")
    return Case(["run", EDGES, "-s", video, "-o", tmp / "out.mp4"], 4,
                r"out\.mp4: (write failed|cannot finish the file) after \d+ frames \(file size "
                r"limit reached\)", outputs={tmp / "out.mp4": "absent"},
                preexec=_file_limit(60_000))


@fault("O10b", "output", "disk full while writing .npy")
def o10b(tmp):
    return Case(["run", EDGES, "-s", "synthetic:320x240:200", "-o", tmp / "out.npy"], 4,
                r"out\.npy: write failed after \d+ frames: File too large",
                outputs={tmp / "out.npy": "absent"}, preexec=_file_limit(2_000_000))


# ------------------------------------------------------------------ resources
@fault("R1", "resources", "a 63x63 kernel at 1080p stays within 200 ms per channel")
def r1(tmp):
    rows = np.random.default_rng(0).normal(size=(63, 63)).round(3).tolist()
    config = tmp / "big.yaml"
    config.write_text(f"stages:\n  - {{type: bank, op: correlate, weights: {rows}}}\n")

    def fast(result):
        per_frame = float(re.search(r"filter ([\d.]+) ms", result.stdout).group(1))
        assert per_frame <= 3 * 200, per_frame  # three channels

    return Case(["run", config, "-s", "synthetic:1920x1080:4", "-o", tmp / "o.npy"], 0,
                check=fast, outputs={tmp / "o.npy": ("npy", 4)})


@fault("R2", "resources", "a bank too big for the memory budget, refused before the first frame")
def r2(tmp):
    config = tmp / "wide.yaml"
    kernels = ", ".join(["{builtin: box}"] * 64)
    config.write_text(f"stages:\n  - {{type: bank, op: correlate, mode: dense, "
                      f"weights: [{kernels}]}}\nencode: {{select: [0]}}\n")
    return Case(["run", config, "-s", "synthetic:1920x1080:3", "-o", tmp / "o.mkv",
                 "--max-memory", "1"], 3,
                r"synthetic:1920x1080:3: 1920x1080 frames through this chain need about "
                r"[\d.]+ GiB; --max-memory 1\.0 GiB", outputs={tmp / "o.mkv": "absent"})


@fault("R7", "resources", "input over the pixel limit, refused before decoding")
def r7(tmp):
    return Case(["run", EDGES, "-s", "synthetic:4096x2304:2", "-o", tmp / "o.mkv"], 3,
                r"frame 4096x2304 exceeds the limit of 8\.3 MP \(raise with --max-pixels\)",
                outputs={tmp / "o.mkv": "absent"})


@fault("R8", "resources", "FFT forced where its kernel spectra would not fit")
def r8(tmp):
    # kernels past 256 taps across fit no tile, and 60 full-frame spectra exceed 1 GiB
    np.save(tmp / "w.npy", np.ones((20, 3, 257, 257), np.float32))
    config = tmp / "fft.yaml"
    config.write_text("stages:\n  - {type: bank, op: correlate, method: fft, "
                      "weights: {file: w.npy}}\n  - {type: reduce, op: sum}\n")
    return Case(["run", config, "-s", "synthetic:2048x2048:2", "-o", tmp / "o.mkv",
                 "--max-memory", "16", "--max-pixels", "5", "--max-kernel", "300"], 2,
                r"method='fft' cannot run this bank: kernel spectra would need [\d.]+ GiB",
                outputs={tmp / "o.mkv": "absent"})
