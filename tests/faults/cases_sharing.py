"""Fault matrix group X (RELIABILITY X1-X10): what breaks when runs share a folder, a
path or a pool of workers, and the promises a new user and a hostile probe broke
(issue 16). Each case reproduces what was seen, then checks what must happen instead."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from harness import Case, fault, frames_in, partials, wait_for_partial
from media import write_clip, write_clips

ROOT = Path(__file__).resolve().parents[2]
EDGES = ROOT / "configs" / "edges.yaml"
LONG = "synthetic:320x240@30:100000"


def start(*args: object, cwd: Path | None = None) -> subprocess.Popen:
    """A run in the background (the other run of a case)."""
    return subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ------------------------------------------------------------------ temporary names
@fault("X1", "sharing", "a user's file named like our temporary is never touched")
def x1(tmp):
    (tmp / "mine.partial.mp4").write_bytes(b"the user's own file")
    (tmp / "mine.0000beef.partial.mp4").write_bytes(b"another of the user's files")
    return Case(["run", EDGES, "-s", "synthetic:64x48:5", "-o", tmp / "mine.mp4"], 0,
                outputs={tmp / "mine.mp4": ("playable", 5)})


@fault("X2", "sharing", "a .partial left by a recording killed with SIGKILL survives a rerun")
def x2(tmp):
    out = tmp / "rec.mkv"
    first = start("run", EDGES, "-q", "-s", LONG, "-o", out)
    left = wait_for_partial(out)
    time.sleep(1.0)
    first.kill()
    first.communicate()
    assert len(frames_in(left)) > 0  # readable up to the kill: the only copy of it

    def kept(result):
        assert left.exists() and len(frames_in(left)) > 0

    # the same command again (shortened): a new temporary name, the old one untouched
    # (the dead run's lock file is no one's: the kernel released its lock; the rerun takes
    # it over and removes it when done)
    return Case(["run", EDGES, "-q", "-s", LONG, "-o", out, "--max-frames", "10"], 0,
                outputs={out: ("playable", 10)}, check=kept,
                may_change=[tmp / ".rec.mkv.pipeline-lock"])


# ------------------------------------------------------------------ one output, two runs
def _two_runs(tmp: Path, name: str, force: bool) -> Case:
    out = tmp / name
    if force:
        write_clip(out, n=3, width=64, height=48)  # an older result, replaced only whole
    first = start("run", EDGES, "-q", "-s", LONG, "-o", out, *(["--force"] if force else []))
    mine = wait_for_partial(out)
    time.sleep(0.3)

    def first_wins_whole(result):
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=30)
        assert first.returncode == 130, stderr
        written = int(stdout.split(" written")[0].rsplit(", ", 1)[1])
        assert written > 0 and len(frames_in(out)) == written
        assert not partials(out)

    return Case(["run", EDGES, "-q", "-s", "synthetic:64x48:5", "-o", out,
                 *(["--force"] if force else [])], 4,
                rf"{name.replace('.', '[.]')}: another run is writing it \(pid {first.pid} "
                r"on .*, since [\d:]+\); nothing was written",
                may_change=[mine], check=first_wins_whole, max_seconds=15)


@fault("X3a", "sharing", "two runs write one .mkv at once: the second stops before writing")
def x3a(tmp):
    return _two_runs(tmp, "same.mkv", force=False)


@fault("X3b", "sharing", "two runs write one .mp4 with --force: the final file never vanishes")
def x3b(tmp):
    return _two_runs(tmp, "same.mp4", force=True)


# ------------------------------------------------------------------ stopping on purpose
@fault("X11a", "sharing", "--max-frames with --strict is not a lossy input")
def x11a(tmp):
    video = tmp / "in.avi"
    write_clip(video, n=60, width=64, height=48)

    def no_warning(result):
        assert "input ended" not in result.stdout + result.stderr

    return Case(["run", EDGES, "-s", video, "-o", tmp / "out.mkv", "--max-frames", "20",
                 "--strict"], 0, outputs={tmp / "out.mkv": ("playable", 20)},
                check=no_warning)


@fault("X11b", "sharing", "a run stopped by a signal does not claim its input ended early")
def x11b(tmp):
    video = tmp / "in.avi"
    write_clip(video, n=1500, width=320, height=240)
    out = tmp / "out.mkv"

    def drive(proc, cwd):
        wait_for_partial(out)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)

    def no_warning(result):
        assert "input ended" not in result.stdout + result.stderr

    return Case(["run", EDGES, "-q", "-s", video, "-o", out], 130, None,
                outputs={out: "reported"}, driver=drive, check=no_warning,
                stdout=r"interrupted by SIGINT")


# ------------------------------------------------------------------ a full disk
@fault("X9", "sharing", "disk full while writing an image folder: nothing of the run is left")
def x9(tmp):
    # A real full disk: a 1 MiB tmpfs in a mount namespace of the run's own (the mount
    # and what is on it go with the namespace, so the listing is taken inside it).
    disk = tmp / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=1m tmpfs {disk} && mkdir {disk}/old && "
              f"echo keep > {disk}/old/mine.txt && "
              f"{sys.executable} -m pipeline run {EDGES} -q -s synthetic:320x240:400 "
              f"-o {disk}/frames/; echo rc=$?; find {disk} | sort")
    argv = ["unshare", "--mount", "--map-root-user", "sh", "-c", script]

    def nothing_left(result):
        lines = result.stdout.splitlines()
        assert "rc=4" in lines, result.stdout
        listing = lines[lines.index("rc=4") + 1:]
        assert listing == [str(disk), f"{disk}/old", f"{disk}/old/mine.txt"], listing
        assert "No space left on device" in result.stderr, result.stderr

    return Case(argv, 0, r"frames/%05d\.png: write failed after \d+ images: No space left on "
                r"device", check=nothing_left, raw=True)


# ------------------------------------------------------------------ messages
@fault("X12a", "sharing", "an image folder mixing 3- and 4-channel frames says so")
def x12a(tmp):
    for i in range(3):
        cv2.imwrite(str(tmp / f"f{i}.png"), np.full((120, 160, 3), 40 * i, np.uint8))
    cv2.imwrite(str(tmp / "f3.png"), np.full((120, 160, 4), 200, np.uint8))
    return Case(["run", EDGES, "-s", tmp / "f%d.png", "-o", tmp / "out.mkv"], 3,
                r"f3\.png: 160x120x4 uint8 differs from the sequence's first image "
                r"\(160x120x3 uint8\)")


def _truncated_sequence(tmp: Path) -> Path:
    """Five PNGs, the third cut in half; the sequence's pattern."""
    for i in range(5):
        cv2.imwrite(str(tmp / f"f{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    data = (tmp / "f2.png").read_bytes()
    (tmp / "f2.png").write_bytes(data[: len(data) // 2])
    return tmp / "f%d.png"


@fault("X12b", "sharing", "a truncated PNG inside an image sequence is skipped and counted")
def x12b(tmp):
    return Case(["run", EDGES, "-s", _truncated_sequence(tmp), "-o", tmp / "out.mkv"], 0,
                outputs={tmp / "out.mkv": ("playable", 4)},
                stdout=r"1 undecodable skipped[\s\S]*warning: .*f2\.png: not a decodable "
                       r"image; skipped")


@fault("X12c", "sharing", "the same truncated PNG with --strict: exit 6, the output kept")
def x12c(tmp):
    return Case(["run", EDGES, "-s", _truncated_sequence(tmp), "-o", tmp / "out.mkv",
                 "--strict"], 6, r"finished but lossy: 1 undecodable frame skipped",
                outputs={tmp / "out.mkv": ("playable", 4)})


# ------------------------------------------------------------------ batch under signals (X5)
def _two_writing(tmp: Path, count: int) -> tuple[list[Path], Path, Callable[[], None]]:
    """``count`` long clips for a batch on two workers: the inputs, the --out folder, and
    a wait until both workers are writing."""
    inputs = write_clips(tmp, "clip", count, n=900, width=320, height=240)
    out = tmp / "out"
    out.mkdir()

    def writing() -> None:
        wait_for_partial(out / "clip0.mkv")
        wait_for_partial(out / "clip1.mkv")
        time.sleep(0.3)

    return inputs, out, writing


def _kept_temporary(out: Path, i: int) -> Path:
    """clip{i}'s output, stopped part-way: never under its final name, kept readable."""
    final = out / f"clip{i}.mkv"
    assert not final.exists(), f"{final}: a cut output under its final name"
    kept = partials(final)
    assert len(kept) == 1 and len(frames_in(kept[0])) > 0, kept
    return kept[0]


def _batch_stopped(tmp: Path, sig: int, code: int, group: bool) -> Case:
    """Three long clips on two workers; ``sig`` once both are writing."""
    inputs, out, writing = _two_writing(tmp, 3)

    def drive(proc, cwd):
        writing()
        if group:
            os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches every worker too
        else:
            proc.send_signal(sig)

    def unfinished_stay_temporary(result):
        for i in (0, 1):
            kept = _kept_temporary(out, i)
            assert re.search(rf"stopped: .*clip{i}\.avi: stopped part-way; \d+ frames kept "
                             rf"in {re.escape(str(kept))}", result.stdout), result.stdout
        assert not (out / "clip2.mkv").exists() and not partials(out / "clip2.mkv")
        assert re.search(r"not started: .*clip2\.avi", result.stdout), result.stdout
        assert "0 ok, 0 failed, 2 stopped, 1 not started" in result.stdout
        assert not _alive_in_group(result), "a worker outlived the batch"

    return Case(["batch", EDGES, *inputs, "--out", out, "--workers", "2"], code, None,
                driver=drive, check=unfinished_stay_temporary, exit_within=1.0,
                session=True, stdout=r"interrupted by SIG")


def _alive_in_group(result) -> bool:
    """Any process left in the batch's process group (its workers)."""
    pgid = getattr(result, "pgid", None)
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@fault("X5a", "sharing", "batch: SIGINT to the process group stops every worker")
def x5a(tmp):
    return _batch_stopped(tmp, signal.SIGINT, 130, group=True)


@fault("X5b", "sharing", "batch: SIGTERM to the batch alone stops its workers")
def x5b(tmp):
    return _batch_stopped(tmp, signal.SIGTERM, 143, group=False)


@fault("X5c", "sharing", "batch: SIGHUP (terminal closed) to the process group")
def x5c(tmp):
    return _batch_stopped(tmp, signal.SIGHUP, 129, group=True)


@fault("X5d", "sharing", "batch: its parent killed by SIGKILL, the workers stop on their own")
def x5d(tmp):
    inputs, out, writing = _two_writing(tmp, 2)

    def drive(proc, cwd):
        writing()
        proc.kill()  # the workers still hold the stdout pipe: the case ends when they do

    def workers_gone(result):
        for i in (0, 1):
            _kept_temporary(out, i)

    return Case(["batch", EDGES, *inputs, "--out", out, "--workers", "2"], -9, None,
                driver=drive, check=workers_gone, exit_within=1.0, session=True)


# ------------------------------------------------------------------ resume (X6)
@fault("X6", "sharing", "batch resume trusts only whole, current outputs")
def x6(tmp):
    inputs = write_clips(tmp, "clip", 5, n=6, width=64, height=48)
    out = tmp / "out"
    out.mkdir()
    first = subprocess.run([sys.executable, "-m", "pipeline", "batch", EDGES, *inputs,
                            "--out", out], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    (out / "clip0.mkv").write_bytes(b"")  # emptied
    cut = (out / "clip1.mkv").read_bytes()
    (out / "clip1.mkv").write_bytes(cut[: len(cut) // 2])  # cut
    write_clip(inputs[2], n=8, width=64, height=48)  # the input changed
    (out / "clip4.mkv").unlink()
    (out / "clip4.mkv").write_bytes(b"\0" * 100)  # a 100-byte file with no proof
    (out / ".clip4.mkv.pipeline.json").unlink()
    changed = [out / f"clip{i}.mkv" for i in (0, 1, 2, 4)]

    def resumed(result):
        assert result.stdout.count("skipped") == 1 and "clip3.avi: skipped" in result.stdout
        for why in ("the output is not the one finished", "the input changed",
                    "no proof it was finished"):
            assert f"redone: {why}" in result.stdout, result.stdout

    return Case(["batch", EDGES, *inputs, "--out", out], 0, None, check=resumed,
                may_change=changed + [out / f".clip{i}.mkv.pipeline.json" for i in (0, 1, 2)],
                outputs={out / "clip0.mkv": ("playable", 6), out / "clip1.mkv": ("playable", 6),
                         out / "clip2.mkv": ("playable", 8), out / "clip3.mkv": ("playable", 6),
                         out / "clip4.mkv": ("playable", 6)})


@fault("X6b", "sharing", "batch resume after the config changed redoes everything")
def x6b(tmp):
    inputs = write_clips(tmp, "clip", 2, n=4, width=64, height=48)
    out = tmp / "out"
    out.mkdir()
    config = tmp / "blur.yaml"
    config.write_text("stages:\n  - {type: bank, op: correlate, weights: {builtin: box}}\n")
    first = subprocess.run([sys.executable, "-m", "pipeline", "batch", config, *inputs,
                            "--out", out], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    config.write_text("# a comment changes nothing\nstages:\n  - {type: bank, op: correlate, "
                      "weights: {builtin: box}}\n")
    again = subprocess.run([sys.executable, "-m", "pipeline", "batch", config, *inputs,
                            "--out", out], capture_output=True, text=True, timeout=120)
    assert again.stdout.count("skipped") == 2, again.stdout
    config.write_text("stages:\n  - {type: bank, op: correlate, weights: {builtin: box, "
                      "size: 5}}\n")

    def redone(result):
        assert result.stdout.count("redone: the config changed") == 2, result.stdout

    return Case(["batch", config, *inputs, "--out", out], 0, None, check=redone,
                may_change=[p for i in range(2) for p in (out / f"clip{i}.mkv",
                                                          out / f".clip{i}.mkv.pipeline.json")],
                outputs={out / "clip0.mkv": ("playable", 4), out / "clip1.mkv": ("playable", 4)})


# ------------------------------------------------------------------ one name, two inputs (X7)
@fault("X7a", "sharing", "batch: same-named inputs keep their folders under --out")
def x7a(tmp):
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    write_clip(tmp / "a" / "clip.avi", n=5, width=64, height=48)
    write_clip(tmp / "b" / "clip.avi", n=7, width=64, height=48)
    out = tmp / "out"
    out.mkdir()
    return Case(["batch", EDGES, tmp / "a" / "clip.avi", tmp / "b" / "clip.avi", "--out", out],
                0, None, stdout=r"2 ok, 0 failed",
                outputs={out / "a" / "clip.mkv": ("playable", 5),
                         out / "b" / "clip.mkv": ("playable", 7)})


@fault("X7b", "sharing", "batch: two inputs that would still share an output are refused")
def x7b(tmp):
    write_clip(tmp / "clip.avi", n=3, width=64, height=48)
    write_clip(tmp / "clip.mkv", n=3, width=64, height=48)
    (tmp / "sub").mkdir()
    write_clip(tmp / "sub" / "clip.avi", n=3, width=64, height=48)
    out = tmp / "out"
    out.mkdir()

    def nothing_written(result):
        assert not list(out.iterdir())

    return Case(["batch", EDGES, tmp / "clip.avi", tmp / "clip.mkv", tmp / "sub" / "clip.avi",
                 "--out", out], 2,
                r"clip\.avi and .*clip\.mkv would both write .*out/clip\.mkv",
                check=nothing_written)
