"""The CLI's progress bars (rich, on stderr): one run's frames, a batch's files."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def frames_bar(console: Console, enabled: bool) -> Iterator[Callable[[Any], None]]:
    """A progress callback: a bar with totals where known, a status line for streams."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                        console=console, transient=True, disable=not enabled)
    task = progress.add_task("filtering", total=None, status="")

    def update(stats: Any) -> None:
        status = f"{stats.fps:5.1f} fps  p50 {stats.latency_ms(50):5.1f} ms"
        if stats.dropped:
            status += f"  dropped {stats.dropped}"
        if stats.reloads:  # --watch
            status += f"  chain #{stats.reloads + 1}"
        progress.update(task, completed=stats.frames_written, total=stats.frame_total,
                        status=status)

    with progress:
        yield update


@contextmanager
def files_bar(console: Console, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A batch's bar: files finished of ``total``, frames/s over all of them, ETA. The
    callable takes each finished file's frame count; the lines printed meanwhile appear
    above the bar."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("files  {task.fields[rate]}"), TimeRemainingColumn(),
                        console=console, transient=True, disable=not enabled or total == 0,
                        # lines above the bar where both are on one terminal; else
                        # stdout stays a plain record (`> log`) beside the bar on stderr
                        redirect_stdout=sys.stdout.isatty())
    task = progress.add_task("batch", total=total, rate="")
    start, frames = time.monotonic(), [0]

    def done(count: int) -> None:
        frames[0] += count
        rate = frames[0] / max(time.monotonic() - start, 1e-6)
        progress.update(task, advance=1, rate=f"{rate:,.0f} frames/s")

    with progress:
        yield done


def watch_lines(console: Console) -> Callable[[str, str], None]:
    """A reload's outcome (``--watch``) as a line on ``console``, above any bar."""
    def told(kind: str, text: str) -> None:
        console.print(f"{'error: ' if kind == 'error' else ''}watch: {text}", markup=False,
                      soft_wrap=True)
    return told
