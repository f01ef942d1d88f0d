"""``pipeline batch`` from its settings to its exit code: the jobs planned (finished
outputs skipped, leftovers of stopped batches listed or cleaned), run on local workers or
a Dask cluster, each file's line as it finishes, and the summary. The CLI (cli.py) only
turns flags into a ``BatchSpec`` and the code into an exit."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import batch as jobs_
from .config import load_config
from .errors import LOSSY, OutputError
from .io.codecs import VideoSettings


@dataclass(frozen=True)
class BatchSpec:
    """A batch's settings, each as its flag says (cli.py ``batch``)."""

    config: Path
    inputs: tuple[str, ...]
    out_dir: Path
    ext: str = ".mkv"
    workers: int = 1
    scheduler: str | None = None
    open_timeout: float = 10.0
    worker_timeout: float = 60.0
    force: bool = False
    clean: bool = False
    allow_network: bool = False
    strict: bool = False
    video: VideoSettings | None = None


Say = Callable[[str], None]
Bar = Callable[[int], AbstractContextManager[Callable[[int], None]]]


def run_batch(spec: BatchSpec, say: Say, fail: Say, bar: Bar) -> tuple[int, str | None]:
    """The batch, start to end: (its exit code, the signal that stopped it or None).
    ``say``/``fail`` print a line to stdout / an error line; ``bar(n)`` is a progress
    bar over ``n`` files whose callable takes each finished file's frames. Raises
    PipelineError for what stops it before any job (a bad config, an unreachable
    cluster)."""
    from . import cluster, leftovers

    todo, decided = _plan(spec, say)
    client = None
    if todo and spec.scheduler:  # before any job: an unreachable cluster is one line, exit 3
        client = cluster.connect(spec.scheduler, spec.open_timeout)
        try:
            cluster.check_storage(client, [job.source for job in todo],
                                  sorted({str(Path(job.target).parent) for job in todo}))
        except BaseException:
            client.close()
            raise
    done: Callable[[int], None] = lambda frames: None  # noqa: E731 - until the bar exists

    def report(job: Any, outcome: Any) -> None:
        text = outcome.line()  # what became of it, with its warnings, on one line
        if job is not None:
            done(outcome.frames)
        if outcome.message == jobs_.NOT_STARTED:
            return  # listed with the summary
        if outcome.code == jobs_.STOPPED:
            say(f"stopped: {text}")
        elif outcome.code:
            fail(text)
        else:
            say(f"ok: {text}")

    for outcome in decided:
        report(None, outcome)
    signame, outcomes = None, []
    journal = leftovers.record(spec.out_dir, [(j.target, j.token) for j in todo]) if todo \
        else None
    try:
        with bar(len(todo)) as done:
            if client is not None:
                outcomes, signame = cluster.run_dask(todo, client, report, spec.worker_timeout)
            elif todo:
                outcomes, signame = jobs_.LocalPool(todo, spec.workers).run(report)
    finally:
        if journal is not None:
            leftovers.settle(journal)  # a SIGKILL leaves it whole: the next batch reads it
    say(_summary(decided + outcomes, outcomes, say))
    return jobs_.exit_code(decided + outcomes, signame), signame


def _plan(spec: BatchSpec, say: Say) -> tuple[list[Any], list[Any]]:
    """The jobs to run and the outcomes decided up front; the output folder made, the
    codec settings checked, earlier leftovers listed (or removed with --clean)."""
    from .io.sinks import open_sink
    from .io.sources import is_url
    from .proof import config_fingerprint

    cfg = load_config(spec.config)  # fail fast, once, on a bad config
    try:
        spec.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {spec.out_dir}: cannot create it ({e.strerror})") from None
    ext = spec.ext if spec.ext.startswith(".") else f".{spec.ext}"
    open_sink(f"{spec.out_dir}/x{ext}", settings=spec.video)  # bad settings: exit 2 now
    pairs = jobs_.targets(list(spec.inputs), spec.out_dir, ext)
    config_path = str(spec.config)
    if spec.scheduler:  # a worker resolves a relative path in its own folder: none are sent
        config_path = os.path.abspath(spec.config)
        pairs = [(s if is_url(s) else os.path.abspath(s), Path(os.path.abspath(t)))
                 for s, t in pairs]
    _leftovers(spec.out_dir, spec.clean, say)
    return jobs_.plan_jobs(config_path, config_fingerprint(cfg, spec.video), pairs,
                           spec.force, spec.strict, spec.allow_network, spec.video)


def _summary(results: list[Any], outcomes: list[Any], say: Say) -> str:
    """The files not started (each a line, said here), then the counts' line."""
    codes = [o.code for o in results]
    stopped = [o for o in outcomes if o.code == jobs_.STOPPED]
    unstarted = [o for o in stopped if o.message == jobs_.NOT_STARTED]
    for o in unstarted:
        say(f"not started: {o.source}")
    failed = sum(c not in (0, LOSSY, jobs_.STOPPED) for c in codes)
    lossy = codes.count(LOSSY)
    return (f"{len(results) - failed - lossy - len(stopped)} ok, "
            + (f"{lossy} lossy, " if lossy else "") + f"{failed} failed"
            + (f", {len(stopped) - len(unstarted)} stopped" if len(stopped) > len(unstarted)
               else "") + (f", {len(unstarted)} not started" if unstarted else ""))


def _leftovers(out_dir: Path, clean: bool, say: Say) -> None:
    """What earlier stopped batches left in ``out_dir``: listed, or removed with --clean."""
    from .leftovers import clean as remove
    from .leftovers import stale

    left = stale(out_dir)
    if not left:
        return
    if clean:
        for path in remove(left):
            say(f"removed: {path} (left by a stopped batch)")
        return
    partials = [str(item.partial) for item in left if item.partial is not None]
    shown = ", ".join(partials[:5]) + (f", … ({len(partials)} in all)" if len(partials) > 5
                                       else "")
    say(f"note: {len(left)} file{'s' * (len(left) != 1)} of earlier batches stopped "
        f"part-way are still in {out_dir}" + (f" ({shown})" if partials else "")
        + "; --clean removes them")
