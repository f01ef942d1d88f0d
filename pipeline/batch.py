"""``pipeline batch``: many files, each a run of its own, on worker processes (or Dask:
cluster.py).

What a batch promises (RELIABILITY X5-X7):
- an output gets its final name only when it is whole: a file stopped part-way stays at
  its temporary name, and the summary names it;
- SIGINT, SIGTERM and SIGHUP (to the batch or its whole process group) stop every worker
  within a second; workers whose parent dies, even by SIGKILL, stop on their own;
- a rerun skips only outputs proven whole and current (proof.py), and redoes the rest;
- two inputs with one name never share an output: outputs then keep their folders
  relative to the inputs' common folder, and names that still collide are refused.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import INTERNAL, LOSSY, ConfigError, InputError, PipelineError
from .io.codecs import VideoSettings
from .io.destination import new_token, partial_name
from .io.segment_source import Segment, SegmentSource
from .io.sources import is_url
from .proof import unproven, write_proof
from .signals import STOP_SIGNALS, signal_name, stop_on_signals
from .signals import exit_code as signal_exit_code

STOPPED = -1  # not an exit code: the file was stopped part-way (or never started)
NOT_STARTED = "not started"  # the message of a STOPPED file that never began
_POLL = 0.1
_GRACE = 3.0  # seconds workers get to keep their partial outputs after a stop


@dataclass(frozen=True)
class Job:
    """One input to one output; ``token`` names its temporary file (destination.py)."""

    index: int
    source: str
    target: str
    config: str
    fingerprint: str
    token: str
    strict: bool = False
    why: str = "new"  # why it runs: new, or why a finished-looking output is redone
    video: VideoSettings | None = None  # the command line's codec settings
    segment: Segment | None = None  # one segment of the source (segments.py)


@dataclass(frozen=True)
class Outcome:
    """What became of one input: ``code`` is its exit code (0 ok, 6 lossy, 2-5, 70), or
    STOPPED; ``kept`` the temporary files a stopped file left."""

    source: str
    code: int
    message: str
    kept: tuple[str, ...] = ()
    frames: int = 0  # frames written (for the progress bar's frames/s)
    warnings: tuple[str, ...] = ()  # the run's own (sound skipped, odd sizes, ...)

    def line(self) -> str:
        """One line for the batch's output: the file, what became of it, its warnings."""
        text = self.message if self.message.startswith(self.source) else \
            f"{self.source}: {self.message}"  # errors name their file already
        return text + "".join(f"; warning: {w}" for w in self.warnings)


def targets(inputs: list[str], out_dir: Path, ext: str) -> list[tuple[str, Path]]:
    """(input, output) pairs: ``<out>/<stem><ext>``; when two inputs share a stem, every
    output keeps its folder relative to the inputs' common folder. Raises ConfigError
    naming both inputs when that still leaves two on one output."""
    unique = list(dict.fromkeys(inputs))  # an input given twice is done once
    stems = [Path(s.rstrip("/")).stem for s in unique]
    if len(set(stems)) == len(stems):
        return [(s, out_dir / f"{stem}{ext}") for s, stem in zip(unique, stems, strict=True)]
    parents = [os.path.dirname(os.path.abspath(s.rstrip("/"))) for s in unique]
    common = os.path.commonpath(parents)
    pairs, seen = [], {}
    for source, stem, parent in zip(unique, stems, parents, strict=True):
        target = out_dir / os.path.relpath(parent, common) / f"{stem}{ext}"
        target = Path(os.path.normpath(target))
        if target in seen:
            raise ConfigError(f"{seen[target]} and {source} would both write {target}; "
                              "rename one, or run them as two batches")
        seen[target] = source
        pairs.append((source, target))
    return pairs


def run_job(job: Job, stop: threading.Event | None = None) -> Outcome:
    """One file, start to finish (in a worker process); never raises."""
    from .runner import run_config

    source: Any = job.source
    if job.segment is not None:  # one segment of a long video (segments.py)
        source = SegmentSource(job.source, job.segment)
    try:
        Path(job.target).parent.mkdir(parents=True, exist_ok=True)
        stats = run_config(job.config, source=source, output=job.target, force=True,
                           stop=stop, on_stop="keep", token=job.token, video=job.video)
    except PipelineError as e:
        return Outcome(job.source, e.exit_code, str(e))
    except Exception as e:  # noqa: BLE001 - reported per file, never a traceback
        return Outcome(job.source, INTERNAL, f"internal error: {type(e).__name__}: {e}")
    warned = tuple(stats.warnings)
    if stats.interrupted:
        kept = tuple(stats.kept)
        where = f"{stats.frames_written} frames kept in {', '.join(kept)}" if kept else \
            "nothing written"
        return Outcome(job.source, STOPPED, f"stopped part-way; {where}", kept,
                       stats.frames_written, warned)
    if job.segment is not None and \
            stats.frames_written + stats.decode_errors != job.segment.frames:
        return Outcome(job.source, InputError.exit_code,
                       f"{source.name}: gave {stats.frames_written} frames (and "
                       f"{stats.decode_errors} undecodable) of the {job.segment.frames} its "
                       "range holds", frames=stats.frames_written, warnings=warned)
    try:
        if job.segment is None:  # a segment's part is joined and removed: nothing to prove
            write_proof(job.target, job.source, job.fingerprint, stats.frames_written)
    except OSError as e:  # the output is whole; a rerun will only do it again
        warned += (f"{job.target}: cannot record it as finished ({e.strerror})",)
    losses = stats.losses()
    redone = "" if job.why == "new" else f"; redone: {job.why}"
    if job.strict and losses:
        return Outcome(job.source, LOSSY, f"finished but lossy: {', '.join(losses)}; "
                       f"{stats.frames_written} frames written and kept (--strict)",
                       frames=stats.frames_written, warnings=warned)
    return Outcome(job.source, 0, f"{stats.frames_written} frames -> {job.target}" + redone,
                   frames=stats.frames_written, warnings=warned)


# ------------------------------------------------------------------ local workers
def _worker(tasks, results, stop_all, parent: int) -> None:
    """A worker process: jobs from ``tasks`` until told to stop, its parent is gone, or
    a signal arrives. A job under way then stops and keeps its partial output."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)

    current = threading.Event()  # the job under way's own stop (a run sets it when done)

    def watch() -> None:  # the parent asked, or died (even by SIGKILL: reparented)
        while not stop.wait(_POLL):
            if stop_all.is_set() or os.getppid() != parent:
                stop.set()
        current.set()  # the job under way (a rebinding below is seen here)

    threading.Thread(target=watch, name="pipeline-watch", daemon=True).start()
    while not stop.is_set():
        try:
            job = tasks.get(timeout=_POLL)
        except queue.Empty:
            continue
        current = threading.Event()  # bound before stop is read: watch() sets this one
        if job is None or stop.is_set():
            break
        results.put(("start", job.index, os.getpid()))
        outcome = run_job(job, current)  # a signal now reaches the run's own handlers
        if outcome.code == STOPPED:
            stop.set()
        if os.getppid() != parent:
            os._exit(0)  # nobody to tell; the output is kept (or final) already
        results.put(("done", job.index, outcome))
    results.close()
    results.join_thread()


class LocalPool:
    """``workers`` processes (forked: they start in milliseconds and share the parent's
    imports) running jobs; ``run()`` reports each outcome as it arrives."""

    def __init__(self, jobs: list[Job], workers: int) -> None:
        self.jobs = jobs
        self.workers = max(1, min(workers, len(jobs)))

    def run(self, report: Callable[[Job, Outcome], None]) -> tuple[list[Outcome], str | None]:
        """(outcome of every job in order, the signal that stopped the batch or None)."""
        ctx = multiprocessing.get_context("fork")
        tasks, results, stop_all = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_worker, args=(tasks, results, stop_all, os.getpid()),
                             name=f"pipeline-batch-{i}") for i in range(self.workers)]
        for p in procs:
            p.start()
        for job in self.jobs:  # after the forks: the queue's feeder thread is ours alone
            tasks.put(job)
        for _ in procs:
            tasks.put(None)
        outcomes: dict[int, Outcome] = {}
        running: dict[int, int] = {}  # job index -> worker pid
        stop, received = threading.Event(), []
        deadline = None

        def receive(timeout: float) -> bool:
            try:
                kind, index, value = results.get(timeout=timeout)
            except queue.Empty:
                return False
            if kind == "start":
                running[index] = value
            else:
                running.pop(index, None)
                outcomes[index] = value
                report(self.jobs[index], value)
            return True

        with stop_on_signals(stop, received):
            while len(outcomes) < len(self.jobs):
                if stop.is_set() and deadline is None:
                    stop_all.set()
                    tasks.cancel_join_thread()  # jobs never started stay in the queue
                    deadline = time.monotonic() + _GRACE
                if receive(_POLL):
                    continue
                if not any(p.is_alive() for p in procs):
                    while receive(0.01):  # what the last of them said before leaving
                        pass
                    break
                for index, outcome in self._died(procs, running):
                    outcomes[index] = outcome
                    report(self.jobs[index], outcome)
                if deadline is not None and time.monotonic() > deadline:
                    break
        until = deadline or time.monotonic() + _GRACE
        for p in procs:  # a worker stuck inside OpenCV past the grace period is killed
            p.join(timeout=max(0.0, until - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for index in running:
            if index not in outcomes:
                outcomes[index] = self._lost(self.jobs[index])
                report(self.jobs[index], outcomes[index])
        signame = signal_name(received[0]) if received else None
        unstarted = Outcome("", STOPPED, NOT_STARTED) if stop.is_set() else \
            Outcome("", INTERNAL, "not run: no worker was left to run it")
        return [outcomes.get(j.index) or Outcome(j.source, unstarted.code, unstarted.message)
                for j in self.jobs], signame

    def _died(self, procs, running: dict[int, int]) -> list[tuple[int, Outcome]]:
        """Jobs whose worker died under them (killed, out of memory): failed."""
        lost = []
        for index, pid in list(running.items()):
            proc = next(p for p in procs if p.pid == pid)
            if not proc.is_alive():
                running.pop(index)
                lost.append((index, Outcome(self.jobs[index].source, INTERNAL,
                                            f"its worker died (exit {proc.exitcode})"
                                            f"{self._left(self.jobs[index])}")))
        return lost

    def _lost(self, job: Job) -> Outcome:
        kept = partial_name(Path(job.target), job.token)
        return Outcome(job.source, STOPPED, f"stopped part-way (its worker was stopped)"
                       f"{self._left(job)}", (str(kept),) if kept.exists() else ())

    @staticmethod
    def _left(job: Job) -> str:
        kept = partial_name(Path(job.target), job.token)
        return f"; kept as {kept}" if kept.exists() else "; nothing written"


def plan_jobs(config_path: str, fingerprint: str, pairs: list[tuple[str, Path]],
              force: bool, strict: bool, allow_network: bool,
              video: VideoSettings | None = None) -> tuple[list[Job], list[Outcome]]:
    """Jobs to run, and outcomes decided up front (network sources refused, finished
    outputs skipped)."""
    jobs: list[Job] = []
    decided: list[Outcome] = []
    for source, target in pairs:
        if is_url(source) and not allow_network:
            decided.append(Outcome(source, InputError.exit_code,
                                   "network sources not allowed in batch (use "
                                   "--allow-network)"))
            continue
        why = "new" if force and not target.exists() else \
            "--force" if force else unproven(target, source, fingerprint)
        if why is None:
            decided.append(Outcome(source, 0, f"skipped: {target} is finished (same input, "
                                   "same config)"))
            continue
        jobs.append(Job(len(jobs), source, str(target), config_path, fingerprint,
                        new_token(), strict, why, video))
    return jobs, decided


def exit_code(outcomes: list[Outcome], signame: str | None) -> int:
    """A signal's code; else the worst failure; else 6 for a lossy finish; else 0."""
    if signame:
        return signal_exit_code(signame)
    codes = [o.code for o in outcomes if o.code != STOPPED]
    return max(codes, key=lambda c: (c not in (0, LOSSY), c), default=0)
