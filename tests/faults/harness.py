"""The fault suite's harness: one CLI subprocess per case, everything asserted from outside.

Modelled on Chromium's FFMPEG_TEST_CASE: each case makes its fixture, runs
``python -X faulthandler -m pipeline …`` under a hard timeout (a timeout fails the case:
that is how "no hang" is enforced), then checks the exit code, that stderr has no
traceback and exactly one ``error:`` line saying what and where, that no file that
existed before changed, and the output's state: absent, playable with exactly N frames
of W×H, kept as ``.partial`` and named, or a .npy of N frames.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FAULTS: dict[str, tuple[str, str, Callable]] = {}  # id -> (group, title, builder)
NEVER = {1, 134, 139, -6, -11}  # unhandled exception, abort, segfault


@dataclass
class Case:
    argv: list
    code: int
    message: str | None = None  # regex for the single "error:" line
    outputs: dict = field(default_factory=dict)  # path -> expected state
    may_change: list = field(default_factory=list)  # pre-existing files allowed to change
    stdout: str | None = None  # regex expected on stdout
    timeout: float = 60.0
    max_seconds: float | None = None  # the run must end within this
    context: contextlib.AbstractContextManager | None = None  # e.g. a server
    preexec: Callable[[], None] | None = None
    env: dict = field(default_factory=dict)
    check: Callable[[subprocess.CompletedProcess], None] | None = None
    driver: Callable[[subprocess.Popen, Path], None] | None = None  # sends signals
    exit_within: float | None = None  # seconds from the driver's last signal to exit
    raw: bool = False  # argv is a whole command line, not pipeline's arguments
    session: bool = False  # its own process group (a driver may signal the whole group)
    codes: frozenset | None = None  # any of these exit codes (fuzzing), instead of ``code``
    address_space: int | None = None  # bytes the run may map (RLIMIT_AS): memory bounded


def fault(fid: str, group: str, title: str) -> Callable:
    def register(builder: Callable) -> Callable:
        assert fid not in FAULTS, fid
        FAULTS[fid] = (group, title, builder)
        return builder

    return register


def snapshot(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def wait_for(path: Path, timeout: float = 30.0) -> None:
    """Until ``path`` exists (the run has started writing)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def partials(path: Path) -> list[Path]:
    """The temporary files of ``path`` (``<stem>.<token>.partial<ext>``) now present."""
    return sorted(path.parent.glob(f"{glob.escape(path.stem)}.*.partial{path.suffix}"))


def wait_for_partial(path: Path, timeout: float = 30.0) -> Path:
    """Until a run has started writing ``path``; its temporary file."""
    deadline = time.monotonic() + timeout
    while not partials(path):
        assert time.monotonic() < deadline, f"no temporary file of {path} appeared"
        time.sleep(0.02)
    return partials(path)[0]


def frames_in(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
    frames = [f for ok, f in (cap.read() for _ in range(count + 50)) if ok]
    cap.release()
    return frames


def check_output(path: Path, state: object, before: set[Path] = frozenset()) -> None:
    """``path`` is in ``state``; temporary files that existed ``before`` the run (not
    this run's) are left out."""
    left = [p for p in partials(path) if p not in before]
    if state == "absent":
        assert not path.exists(), f"{path} exists"
        assert not left, f"{left} left behind"
        return
    kind, *args = state
    if kind == "playable":
        n, size = args[0], args[1] if len(args) > 1 else None
        assert path.exists() and not left, f"{path} not finalised ({left})"
        frames = frames_in(path)
        assert len(frames) == n, f"{path}: {len(frames)} frames, expected {n}"
        if size is not None:
            assert (frames[0].shape[1], frames[0].shape[0]) == size
    elif kind == "partial":  # ("partial", None): its frames are the case's check to count
        assert not path.exists(), f"{path} must not be touched by a failed run"
        assert len(left) == 1, f"one temporary file kept, found {left}"
        assert args[0] is None or len(frames_in(left[0])) == args[0]
    elif kind == "npy":
        assert np.load(path).shape[0] == args[0]
    elif kind == "exists":
        assert path.exists()


def _preexec(case: Case) -> Callable[[], None] | None:
    """The case's own preexec, after its address-space limit (a MemoryError past it)."""
    if case.address_space is None:
        return case.preexec

    def limited() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (case.address_space, case.address_space))
        if case.preexec is not None:
            case.preexec()

    return limited


def run(case: Case, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **case.env}
    cmd = list(map(str, case.argv)) if case.raw else \
        [sys.executable, "-X", "faulthandler", "-m", "pipeline", *map(str, case.argv)]
    start = time.perf_counter()
    with case.context or contextlib.nullcontext():
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_preexec(case),
                                start_new_session=case.session)
        try:
            if case.driver is not None:
                case.driver(proc, cwd)
            signalled = time.perf_counter()
            stdout, stderr = proc.communicate(timeout=case.timeout) if proc.stdout and \
                not proc.stdout.closed else ("", proc.communicate(timeout=case.timeout)[1])
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"hang: no exit within {case.timeout} s\n{stderr}") from None
        ended = time.perf_counter()
    if case.exit_within is not None:
        assert ended - signalled <= case.exit_within, \
            f"exit {ended - signalled:.2f} s after the signal"
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    result.pgid = proc.pid if case.session else None  # its process group, for checks
    return result, ended - start


def verify(case: Case, cwd: Path) -> subprocess.CompletedProcess:
    before = snapshot(cwd)
    result, elapsed = run(case, cwd)
    streams = result.stdout + result.stderr
    assert "Traceback" not in streams, streams
    assert "Fatal Python error" not in streams, streams
    assert result.returncode not in NEVER, (result.returncode, result.stderr)
    assert result.returncode in (case.codes or {case.code}), \
        (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if case.message is not None:
        assert len(errors) == 1, result.stderr
        assert re.search(case.message, errors[0]), errors[0]
    elif result.returncode == 0:
        assert not errors, result.stderr
    elif case.codes:  # a failure says what in one line (a batch: one per file)
        assert len(errors) == 1, result.stderr
    if case.stdout is not None:
        assert re.search(case.stdout, result.stdout), result.stdout
    if case.max_seconds is not None:
        assert elapsed <= case.max_seconds, f"took {elapsed:.1f} s"
    after = snapshot(cwd)
    allowed = {Path(p) for p in case.may_change}
    for path, digest in before.items():
        if path not in allowed:
            assert after.get(path) == digest, f"{path} was modified or removed"
    for path, state in case.outputs.items():
        if state == "reported":  # playable with exactly the frames the summary reports
            written = re.search(r"(\d+) written", result.stdout)
            n = int(written.group(1)) if written else 0
            state = ("playable", n) if n else "absent"
        check_output(Path(path), state, set(before))
    # a message that names a kept file names one that exists (X4)
    for named in re.findall(r"(?:kept (?:in|as)) (\S+?\.partial\S*?)(?:[,;)]|\s|$)",
                            result.stdout + result.stderr):
        assert Path(named).exists(), f"a message names {named}, which does not exist"
    if case.check:
        case.check(result)
    return result
