"""Fault matrix group S: signals and shutdown. The process exits within 1 s of a signal
with 130/143/129, and the final path holds a playable file with the frames reported, or
nothing: never a corrupt file, never a traceback."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from harness import Case, fault, wait_for_partial
from media import MjpegServer, clip_frames, write_clip

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"
LONG = "synthetic:320x240@30:100000"


def after_start(sig: int, delay: float = 0.5, out: Path | None = None):
    """Send ``sig`` once the run is writing (its .partial file exists), after ``delay``."""
    def drive(proc: subprocess.Popen, cwd: Path) -> None:
        wait_for_partial(out)
        time.sleep(delay)
        proc.send_signal(sig)

    return drive


def signalled(tmp: Path, sig: int, code: int, output: str = "sig.mkv", delay: float = 0.5,
              source: str = LONG) -> Case:
    out = tmp / output
    return Case(["run", EDGES, "-q", "-s", source, "-o", out], code, None,
                outputs={out: "reported"}, driver=after_start(sig, delay, out),
                exit_within=1.0, stdout=r"interrupted by SIG")


@fault("S1", "signals", "SIGINT while filtering a file")
def s1(tmp):
    return signalled(tmp, signal.SIGINT, 130)


@fault("S2", "signals", "SIGTERM while filtering a file")
def s2(tmp):
    return signalled(tmp, signal.SIGTERM, 143, "sig.mp4")  # MP4: unreadable if not finalised


@fault("S3", "signals", "SIGHUP (terminal closed) is handled like SIGTERM")
def s3(tmp):
    return signalled(tmp, signal.SIGHUP, 129, "sig.avi")


@fault("S3b", "signals", "SIGINT while filtering a clip with sound into .mp4: the file "
       "keeps its sound up to the last frame written")
def s3b(tmp):
    import av

    clip = tmp / "long.mp4"
    write_clip(clip, n=900, width=320, height=240, codec="libx264", audio="aac")
    case = signalled(tmp, signal.SIGINT, 130, "sig.mp4", source=str(clip))

    def sound_to_the_last_frame(result):
        ends = {}
        with av.open(str(tmp / "sig.mp4")) as c:
            for p in c.demux():
                if p.pts is not None and p.size:
                    end = float((p.pts + (p.duration or 0)) * p.time_base)
                    ends[p.stream.type] = max(ends.get(p.stream.type, 0.0), end)
        assert "audio" in ends and abs(ends["audio"] - ends["video"]) < 0.05, ends

    case.check = sound_to_the_last_frame
    return case


@fault("S4a", "signals", "SIGINT during a blocking open (server never answers)")
def s4a(tmp):
    srv = MjpegServer(clip_frames(2), mode="accept_silent")

    def drive(proc, cwd):
        time.sleep(2.5)  # well inside the 30 s open timeout
        proc.send_signal(signal.SIGINT)

    return Case(["run", EDGES, "-s", srv.url, "-o", tmp / "o.mkv", "--open-timeout", "30"], 130,
                None, outputs={tmp / "o.mkv": "absent"}, context=srv, driver=drive,
                exit_within=1.0)


@fault("S4b", "signals", "SIGTERM while the stream is stalled")
def s4b(tmp):
    srv = MjpegServer(clip_frames(10), fps=60, mode="stall_after", after=20)
    out = tmp / "stall.mkv"

    def drive(proc, cwd):
        wait_for_partial(out)
        time.sleep(1.5)  # the stream has stalled; the reader is blocked in OpenCV
        proc.send_signal(signal.SIGTERM)

    def every_frame(result):  # a live source keeps the newest: on a busy machine one may go
        written = int(re.search(r"(\d+) written", result.stdout).group(1))
        dropped = re.search(r"(\d+) dropped", result.stdout)
        assert written + (int(dropped.group(1)) if dropped else 0) == srv.sent == 20

    return Case(["run", EDGES, "-q", "-s", srv.url, "-o", out, "--read-timeout", "20"], 143,
                None, outputs={out: "reported"}, context=srv, driver=drive,
                exit_within=1.0, check=every_frame)


@fault("S5", "signals", "a second Ctrl-C during finalisation")
def s5(tmp):
    out = tmp / "twice.mp4"

    def drive(proc, cwd):
        wait_for_partial(out)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)

    return Case(["run", EDGES, "-q", "-s", LONG, "-o", out], 130, None,
                outputs={out: "reported"}, driver=drive, exit_within=1.5)


@fault("S6", "signals", "SIGKILL: the final path is never corrupt")
def s6(tmp):
    out = tmp / "killed.mp4"

    def drive(proc, cwd):
        wait_for_partial(out)
        time.sleep(0.7)
        proc.kill()

    def nothing_final(result):
        assert not out.exists()  # only the .partial remains (an MP4 without moov)

    return Case(["run", EDGES, "-q", "-s", LONG, "-o", out], -9, None, driver=drive,
                check=nothing_final)


@fault("S7", "signals", "SIGINT before the first frame (while planning)")
def s7(tmp):
    def drive(proc, cwd):
        time.sleep(0.3)  # still importing / planning
        proc.send_signal(signal.SIGINT)

    return Case(["run", EDGES, "-s", LONG, "-o", tmp / "early.mkv"], 130, None,
                outputs={tmp / "early.mkv": "absent"}, driver=drive, exit_within=1.0)


@fault("S8", "signals", "stdout is a closed pipe (| head -1)")
def s8(tmp):
    def drive(proc, cwd):
        proc.stdout.close()  # the reader went away before the summary

    return Case(["run", EDGES, "-s", "synthetic:64x48:5", "-o", tmp / "o.mkv"], 0, None,
                driver=drive, outputs={tmp / "o.mkv": ("playable", 5)})


@fault("S9", "signals", "--show with no display: refused at start")
def s9(tmp):
    return Case(["run", EDGES, "-s", "synthetic:64x48:5", "--show"], 2,
                r"--show: display not available", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})


@fault("S10", "signals", "SIGTERM while FFTW plans a 4K blur from a cold cache (about 20 s)")
def s10(tmp):
    out = tmp / "big.mkv"

    def drive(proc, cwd):
        time.sleep(3.0)  # started, source open, FFTW measuring its plans
        proc.send_signal(signal.SIGTERM)

    return Case(["run", ROOT / "configs" / "blur_large.yaml", "-q", "-s",
                 "synthetic:3840x2160:5", "-o", out], 143, r"stopped while planning",
                outputs={out: "absent"}, driver=drive, exit_within=1.0,
                env={"PIPELINE_CACHE_DIR": str(tmp / "cache")})


@fault("S11", "signals", "SIGINT while one frame takes seconds (32 outputs, 63x63, direct, "
       "720p: about 2.5 s a frame here): the frame under way is left, the file finalised")
def s11(tmp):
    import numpy as np

    np.save(tmp / "w.npy", np.random.default_rng(0).normal(size=(32, 3, 63, 63)))
    config = tmp / "slow.yaml"
    config.write_text("stages:\n  - {type: bank, op: correlate, weights: {file: w.npy}, "
                      "method: direct}\nencode: {select: [0]}\n")
    out = tmp / "slow.mkv"
    return Case(["run", config, "-q", "-s", "synthetic:1280x720:3", "-o", out], 130, None,
                outputs={out: "reported"}, driver=after_start(signal.SIGINT, 1.0, out),
                exit_within=1.0, stdout=r"0 written, 3 unprocessed at stop")
