"""``batch --scheduler`` and ``run --scheduler``: jobs on a Dask cluster (dask.distributed).

What a cluster adds to a batch's promises (RELIABILITY X5, U9):
- an unreachable scheduler is one line and exit 3 within ``--open-timeout``; a worker
  that cannot see an input or an output folder is named before any job;
- a signal sets a cluster-wide stop (a ``distributed.Event`` each job watches): jobs
  under way keep their partial outputs, the rest never begin;
- the scheduler lost mid-batch (its futures cancelled), or no worker at all for
  ``--worker-timeout`` seconds, ends the batch: one line per unfinished file and exit 5
  (as a lost live source), never a hang, never a traceback (distributed's own log lines
  are kept off stderr);
- every job carries a permit beside its output (``destination.permit``), revoked when
  the batch gives the job up: a worker that outlives the batch's view of it never
  commits an output the batch reported unfinished, and a job whose scheduler is gone
  stops and keeps its partial output.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .batch import NOT_STARTED, STOPPED, Job, Outcome, run_job
from .errors import INTERNAL, InputError, SourceLostError
from .io.destination import new_token, permit
from .io.sources import is_url
from .signals import signal_name, stop_on_signals

WORKER_TIMEOUT = 60.0  # seconds with no worker at all before a batch gives up
_POLL = 0.1
_GRACE = 3.0  # seconds jobs get to keep their partial outputs after a stop
LOST = SourceLostError.exit_code  # 5: the cluster, like a live source, was lost


def _quiet() -> None:
    """distributed logs a lost scheduler as tracebacks on stderr (and its config gives some
    of its loggers levels of their own); ours is one line a file."""
    names = [n for n in logging.root.manager.loggerDict
             if n.split(".")[0] in ("distributed", "tornado")]
    for name in ["distributed", "tornado", *names]:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def connect(scheduler: str, timeout: float) -> Any:
    """A ``distributed.Client`` of the scheduler at ``scheduler``; InputError (exit 3, one
    line) where dask is not installed or nothing answers within ``timeout`` seconds."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs dask[distributed]: pip install "
                         "'pipeline[cluster]'") from None
    _quiet()
    try:
        return Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:  # refused, unreachable, no answer in time
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"--scheduler {scheduler}: no Dask scheduler answered within "
                         f"{timeout:g} s ({why}); start one with `dask scheduler` and "
                         "workers with `dask worker ADDRESS`") from None
    except ValueError as e:  # an address distributed cannot parse
        raise InputError(f"--scheduler {scheduler}: {e}") from None


def _unreadable(paths: list[str], folders: list[str]) -> list[str]:
    """On a worker: the inputs it cannot read and the output folders it cannot write."""
    bad = [f"cannot read {p}" for p in paths if not os.access(p, os.R_OK)]
    for folder in folders:
        probe = folder
        while probe and not os.path.isdir(probe):  # the nearest folder that exists
            probe = os.path.dirname(probe)
        if not os.access(probe or ".", os.W_OK):
            bad.append(f"cannot write {folder}")
    return bad


def check_storage(client: Any, inputs: list[str], folders: list[str]) -> None:
    """Every worker sees every input (readable) and every output folder (writable):
    InputError naming the first worker and path that do not (README "Clusters")."""
    local = [p for p in inputs if not is_url(p)]
    answers = client.run(_unreadable, [os.path.abspath(p) for p in local],
                         [os.path.abspath(f) for f in folders])
    if not answers:
        raise InputError("the Dask cluster has no workers")
    for worker, bad in sorted(answers.items()):
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise InputError(f"worker {worker} {bad[0]}{more}: inputs and outputs must be "
                             "on storage every worker sees, at the same path")


def _dask_job(job: Job, stop_name: str) -> Outcome:
    """``run_job`` on a Dask worker, stopped like a local one when the batch sets the
    cluster-wide Event ``stop_name`` (a job that has not begun then never does), or when
    the scheduler is gone (its partial output kept: the batch gave it up)."""
    from distributed import Event

    flag = Event(stop_name)
    if flag.is_set():
        return Outcome(job.source, STOPPED, NOT_STARTED)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                if flag.wait(timeout=0.5):
                    stop.set()
            except Exception:  # noqa: BLE001 - the scheduler is gone: so is the batch
                stop.set()

    threading.Thread(target=watch, name="pipeline-watch", daemon=True).start()
    try:
        return run_job(job, stop)
    finally:
        stop.set()


class Permits:
    """A permit beside each job's output, made before the job is submitted: the job
    takes it to commit (``destination.take_permit``); the batch revokes the permits of
    jobs it gives up, and removes the rest once their outcomes are in."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def _path(self, job: Job, state: str = "permit") -> Path:
        return permit(Path(job.target), job.token, state)

    def grant(self) -> None:
        for job in self.jobs:
            self._path(job).parent.mkdir(parents=True, exist_ok=True)
            self._path(job).touch()

    def settle(self, job: Job) -> None:
        """The job's outcome is in: its permit, taken or not, is no longer needed."""
        for state in ("permit", "taken"):
            self._path(job, state).unlink(missing_ok=True)

    def revoke(self, job: Job) -> bool:
        """The batch gives ``job`` up: False where its worker took the permit first (the
        output is being, or has been, committed)."""
        try:
            os.rename(self._path(job), self._path(job, "revoked"))
            return True
        except FileNotFoundError:
            return False


def run_dask(jobs: list[Job], client: Any, report: Callable[[Job, Outcome], None],
             worker_timeout: float = WORKER_TIMEOUT) -> tuple[list[Outcome], str | None]:
    """The jobs on a Dask cluster (``connect``'s client, closed here); each outcome
    reported as it arrives. A signal sets a cluster-wide stop: jobs under way keep their
    partial outputs, the rest never begin. A lost cluster ends it (module docstring)."""
    from distributed import Event

    outcomes: dict[int, Outcome] = {}
    stop, received = threading.Event(), []
    name = f"pipeline-stop-{new_token()}"
    deadline, lost = None, None
    permits = Permits(jobs)
    permits.grant()
    watch = _Liveness(client, worker_timeout)
    try:
        with stop_on_signals(stop, received):
            futures = {client.submit(_dask_job, job, name, pure=False): job for job in jobs}
            pending = set(futures)
            while pending and lost is None:
                if stop.is_set() and deadline is None:
                    Event(name, client=client).set()
                    deadline = time.monotonic() + _GRACE
                lost = watch.lost()
                for future in [f for f in pending if f.done()] if lost is None else []:
                    if future.status == "cancelled" and deadline is None:
                        lost = watch.gone()  # cancelled by the client: its scheduler is
                        break
                    pending.discard(future)
                    job = futures[future]
                    outcomes[job.index] = _result(future, job)
                    permits.settle(job)
                    report(job, outcomes[job.index])
                if deadline is not None and time.monotonic() > deadline:
                    client.cancel(list(pending))
                    break
                time.sleep(_POLL)
            for job in (futures[f] for f in pending) if lost else ():
                outcomes[job.index] = _given_up(job, lost, permits.revoke(job))
                report(job, outcomes[job.index])
    finally:
        _close(client)
    signame = signal_name(received[0]) if received else None
    return [outcomes.get(j.index) or Outcome(j.source, STOPPED, "no answer from its worker")
            for j in jobs], signame


def _result(future: Any, job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - a lost worker, a cancelled task
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        return Outcome(job.source, INTERNAL, f"failed on the cluster: {why}")


def _given_up(job: Job, lost: str, revoked: bool) -> Outcome:
    then = "it never gets its final name" if revoked else \
        "its worker was committing it as the batch gave up: check it"
    return Outcome(job.source, LOST, f"not finished: {lost}; {then}")


class _Liveness:
    """Whether the cluster is still there: its scheduler (the client's connection), and
    at least one worker within ``timeout`` seconds."""

    def __init__(self, client: Any, timeout: float) -> None:
        self.client, self.timeout = client, timeout
        self.address = getattr(client.scheduler, "address", "the scheduler")
        self._empty_since: float | None = None
        self._next = 0.0

    def gone(self) -> str:
        return f"the Dask scheduler {self.address} was lost"

    def lost(self) -> str | None:
        if self.client.status not in ("running", "newly-created"):
            return self.gone()
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + 0.5
        workers = self.client.scheduler_info().get("workers", {})
        if workers:
            self._empty_since = None
            return None
        self._empty_since = self._empty_since or now
        if now - self._empty_since > self.timeout:
            return f"no Dask worker for {self.timeout:g} s (--worker-timeout)"
        return None


def _close(client: Any) -> None:
    """Close the client without waiting on a scheduler that is gone."""
    try:
        client.close(timeout=2)
    except Exception:  # noqa: BLE001, S110 - nothing left to close properly
        pass
