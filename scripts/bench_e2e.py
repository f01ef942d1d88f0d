#!/usr/bin/env python
"""A whole file job against the ffmpeg CLI with the same encoder settings: wall time of
``pipeline run`` (process start to exit: decode + filter + encode + mux + verify) and of
``ffmpeg -i IN [-vf FILTER] -c:v ... -c:a copy OUT``, interleaved rounds, medians, the
ratio ours / ffmpeg. Run by hand; needs the ``ffmpeg`` CLI (Debian's package).

The input is a 720p H.264 clip with AAC sound that this script makes once (PyAV):
the moving test pattern plus sensor-like noise, ``--frames`` long.

Jobs: the identity config (a 1x1 bank: the cost of the pipeline itself), Sobel edges
(gray, Sobel x/y, l2, saturate; ffmpeg's peer is ``sobel``), Gaussian blurs sigma 2.5
(15 taps) and 10 (61 taps; ffmpeg's ``gblur``, an IIR approximation of the same blur) and
a random 7x7 kernel (no ffmpeg filter takes one). Codecs: mpeg4 (-q:v 5), libx264 (CRF
23, preset veryfast: our default), FFV1 (level 3, 4 slices, bgr0: lossless BGR, what our
.mkv holds).

Third contender, a plain cv2 loop as a user writes one (``--cv2-loop``, in a process of
its own): VideoCapture -> the OpenCV call (cvtColor + Sobel + magnitude, GaussianBlur,
filter2D, all on the uint8 frame) -> the same encoder through PyAV, one thread, no sound.

    python scripts/bench_e2e.py                      # 660 frames, 3 rounds
    python scripts/bench_e2e.py --frames 600 --rounds 5 --codecs h264 ffv1
    python scripts/bench_e2e.py --configs edges "gaussian 10" --codecs h264
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

RANDOM7 = np.random.default_rng(7).uniform(-0.5, 1.0, (7, 7))
RANDOM7 = (RANDOM7 / RANDOM7.sum()).round(5).tolist()  # sums to ~1: results stay in 0..255
BANK = "stages:\n  - {type: bank, op: correlate, mode: depthwise, padding: same, border: reflect101, "
CONFIGS = {  # name: (our config, ffmpeg's filter or None)
    "identity": ("stages:\n  - {type: bank, op: correlate, weights: {builtin: identity, "
                 "size: 1}}\n", None),
    "edges": ("stages:\n  - {type: convert, color: gray}\n  - {type: bank, op: correlate, "
              "weights: [{builtin: sobel, axis: 0, size: 3}, {builtin: sobel, axis: 1, "
              "size: 3}], padding: same, border: reflect101}\n  - {type: reduce, op: l2}\n"
              "encode: {policy: saturate, range: [0, 255]}\n", "sobel"),
    "gaussian 2.5": (BANK + "weights: {builtin: gaussian, sigma: 2.5}}\n", "gblur=sigma=2.5"),
    "gaussian 10": (BANK + "weights: {builtin: gaussian, sigma: 10}}\n", "gblur=sigma=10"),
    "random 7x7": (BANK + f"weights: {RANDOM7}}}\n", None),
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


PYAV = {  # the cv2 loop's encoder: the same settings as ours and ffmpeg's
    "mpeg4": ("mpeg4", "yuv420p", {"qscale": "5"}),
    "h264": ("libx264", "yuv420p", {"crf": "23", "preset": "veryfast"}),
    "ffv1": ("ffv1", "bgr0", {"level": "3", "slices": "4"}),  # slice CRCs on, as ours
}


def cv2_loop(name: str, clip: str, out: str, codec: str) -> None:
    """VideoCapture -> one OpenCV call on the uint8 frame -> PyAV, as a user writes it."""
    import av
    import cv2

    cap = cv2.VideoCapture(clip)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30
    encoder, pix_fmt, options = PYAV[codec]
    kernel = np.array(RANDOM7, np.float32)
    with av.open(out, "w") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
        stream.thread_type = "AUTO"
        if codec == "mpeg4":
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = 5 * 118
        else:
            stream.options = options
        stream.pix_fmt = pix_fmt
        first = True
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if name == "edges":
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                mag = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0),
                                    cv2.Sobel(gray, cv2.CV_32F, 0, 1))
                frame = cv2.cvtColor(cv2.convertScaleAbs(mag), cv2.COLOR_GRAY2BGR)
            elif name.startswith("gaussian"):
                sigma = float(name.split()[1])
                frame = cv2.GaussianBlur(frame, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
            elif name == "random 7x7":
                frame = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
            if first:
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                first = False
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


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
    parser.add_argument("--cv2-loop", nargs=4, metavar=("JOB", "IN", "OUT", "CODEC"),
                        help=argparse.SUPPRESS)  # the third contender, in its own process
    args = parser.parse_args()
    if args.cv2_loop:
        cv2_loop(*args.cv2_loop)
        return
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
        config = work / f"{name.replace(' ', '_')}.yaml"
        config.write_text(text)
        for codec in args.codecs:
            flags, ext, peer = CODECS[codec]
            commands = {
                "ours": [sys.executable, "-m", "pipeline", "run", str(config), "-s", str(clip),
                         "-o", str(work / f"ours{ext}"), "--force", "-q", *flags],
                "cv2 loop": [sys.executable, __file__, "--cv2-loop", name, str(clip),
                             str(work / f"cv2{ext}"), codec],
            }
            if peer_filter or name == "identity":
                commands["ffmpeg"] = [
                    "ffmpeg", "-v", "error", "-y", "-i", str(clip),
                    *(["-vf", peer_filter] if peer_filter else []), *peer, "-c:a", "copy",
                    str(work / f"ffmpeg{ext}")]
            jobs.append((name, codec, commands))
    times: dict[tuple[str, str, str], list[float]] = {}
    for r in range(args.rounds):
        for name, codec, commands in jobs:  # interleaved: drift hits all alike
            for who, command in commands.items():
                times.setdefault((name, codec, who), []).append(timed(command))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    print(f"\n{args.frames} frames of 1280x720 H.264 + AAC in, median of {args.rounds} "
          "interleaved rounds, wall seconds (process start to exit)\n")
    print("| job | codec | pipeline run | ffmpeg | cv2 loop | ours / best peer |")
    print("|---|---|---:|---:|---:|---:|")
    for name, codec, commands in jobs:
        med = {who: statistics.median(times[(name, codec, who)]) for who in commands}
        best = min(v for who, v in med.items() if who != "ours")
        shown = {who: f"{med[who]:.2f}" if who in med else "-" for who in ("ffmpeg", "cv2 loop")}
        print(f"| {name} | {codec} | {med['ours']:.2f} | {shown['ffmpeg']} | "
              f"{shown['cv2 loop']} | {med['ours'] / best:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
