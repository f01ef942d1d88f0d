#!/usr/bin/env python
"""A whole file job against the ffmpeg CLI with the same encoder settings: wall time of
``pipeline run`` (process start to exit: decode + filter + encode + mux + verify) and of
``ffmpeg -i IN [-vf FILTER] -c:v ... -c:a copy OUT``, interleaved rounds, medians, the
ratio ours / ffmpeg. Run by hand; needs the ``ffmpeg`` CLI (Debian's package).

The input is a 720p H.264 clip with AAC sound that this script makes once (PyAV):
the moving test pattern plus sensor-like noise, ``--frames`` long.

Jobs: the identity config (a 1x1 bank: the cost of the pipeline itself) and a Gaussian
blur (sigma 2.5, depthwise 3 channels; ffmpeg's peer is ``gblur``, an IIR approximation
of the same blur). Codecs: mpeg4 (-q:v 5), libx264 (CRF 23, preset veryfast: our
default), FFV1 (level 3, 4 slices, bgr0: lossless BGR, what our .mkv holds).

    python scripts/bench_e2e.py                      # 660 frames, 3 rounds
    python scripts/bench_e2e.py --frames 600 --rounds 5 --codecs h264 ffv1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.io.sources import SyntheticSource  # noqa: E402

CONFIGS = {
    "identity": ("stages:\n  - {type: bank, op: correlate, weights: {builtin: identity, "
                 "size: 1}}\n", None),
    "gaussian 2.5": ("stages:\n  - {type: bank, op: correlate, mode: depthwise, weights: "
                     "{builtin: gaussian, sigma: 2.5}, padding: same, border: reflect101}\n",
                     "gblur=sigma=2.5"),
}
CODECS = {  # ours (flags, extension) and ffmpeg's equivalent
    "mpeg4": (["--codec", "mpeg4", "--crf", "5"], ".mp4",
              ["-c:v", "mpeg4", "-q:v", "5"]),
    "h264": (["--codec", "h264", "--crf", "23", "--preset", "veryfast"], ".mp4",
             ["-c:v", "libx264", "-crf", "23", "-preset", "veryfast", "-pix_fmt", "yuv420p",
              "-movflags", "+faststart"]),
    "ffv1": (["--codec", "ffv1"], ".mkv",
             ["-c:v", "ffv1", "-level", "3", "-slices", "4", "-pix_fmt", "bgr0"]),
}


def make_input(path: Path, frames: int, width: int = 1280, height: int = 720,
               codec: str = "libx264", sound: bool = True) -> None:
    """The test pattern plus sensor-like noise at 30 fps, made by PyAV: H.264 (CRF 20) or
    MPEG-4 Part 2 (quantiser 3), with a 440 Hz AAC tone as long as the video."""
    import av

    src = SyntheticSource(width, height, frames=frames)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            video.options = {"crf": "20", "preset": "fast"}
        else:
            video.codec_context.qscale = True
            video.codec_context.global_quality = 3 * 118  # ffmpeg's -q:v 3
        audio = out.add_stream("aac", rate=48000) if sound else None
        if audio is not None:
            audio.layout = "stereo"
        for i in range(frames):
            noisy = src.frame(i).astype(np.int16) + rng.integers(-8, 9, (height, width, 3))
            picture = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8),
                                                 format="bgr24")
            picture.pts = i
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio is None:
            return
        total = int(frames / 30 * 48000)
        for start in range(0, total, 1024):
            t = np.arange(start, min(start + 1024, total)) / 48000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    spent = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=660)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--input", type=Path, help="an existing clip instead of the made one")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("needs the ffmpeg CLI (apt-get install -y ffmpeg)")
    work = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    clip = args.input or work / f"in_{args.frames}.mp4"
    if args.input is None:
        print(f"making {clip} ({args.frames} frames, 1280x720 H.264 + AAC) ...", flush=True)
        make_input(clip, args.frames)
    jobs = []
    for name in args.configs:
        text, peer_filter = CONFIGS[name]
        config = work / f"{name.split()[0]}.yaml"
        config.write_text(text)
        for codec in args.codecs:
            flags, ext, peer = CODECS[codec]
            ours = [sys.executable, "-m", "pipeline", "run", str(config), "-s", str(clip),
                    "-o", str(work / f"ours{ext}"), "--force", "-q", *flags]
            theirs = ["ffmpeg", "-v", "error", "-y", "-i", str(clip),
                      *(["-vf", peer_filter] if peer_filter else []), *peer, "-c:a", "copy",
                      str(work / f"ffmpeg{ext}")]
            jobs.append((name, codec, ours, theirs))
    times: dict[tuple[str, str, str], list[float]] = {}
    for r in range(args.rounds):
        for name, codec, ours, theirs in jobs:  # interleaved: drift hits both alike
            for who, command in (("ours", ours), ("ffmpeg", theirs)):
                times.setdefault((name, codec, who), []).append(timed(command))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    print(f"\n{args.frames} frames of 1280x720 H.264 + AAC in, median of {args.rounds} "
          "interleaved rounds, wall seconds (process start to exit)\n")
    print("| job | codec | pipeline run | ffmpeg | ours / ffmpeg |")
    print("|---|---|---:|---:|---:|")
    for name, codec, _, _ in jobs:
        ours = statistics.median(times[(name, codec, "ours")])
        theirs = statistics.median(times[(name, codec, "ffmpeg")])
        print(f"| {name} | {codec} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
