"""``run --watch``: reload the YAML while the stream runs.

A thread polls the config file and every file it reads (weights, biases, a model).
When one changes, the new config is read, checked and its chain built and planned (FFT
plans, spectra, method timings) on this thread, off the frame path; the stream swaps it
in between two frames (``Run.swap``). An invalid config, or one the running outputs
cannot take (a file's frame size changing midway), is reported in one line with its
file:line:col and the running chain goes on. What a reload cannot change mid-run
(``source:``, ``output:``) is said and left as it is.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .config import Config, Limits, load_config
from .dashboard import size
from .errors import ConfigError, PipelineError
from .frames import FrameFormat
from .io.base import FrameSink
from .paths import open_regular
from .preflight import checked_chain
from .stream import Run, Swap, finishes
from .yamlfile import mark, node_at, read_yaml

POLL = 0.25  # seconds between looks at the file


WATCHED_BYTES = 1 << 30  # a weights or model file; the config has its own cap (Limits)


def digest(config: Config, limits: Limits) -> bytes | None:
    """What ``Watcher`` compares against: taken when the run reads its config, so an edit
    made while the first chain is planned is not missed."""
    assert config.path is not None
    try:
        return Fingerprints(limits).digest([config.path, *config.files_read()])
    except PipelineError:
        return None


class Fingerprints:
    """One digest of the config and every file it reads (weights, biases, models).

    Each file is read only as a regular file within its cap, opened without blocking
    (``paths.open_regular``): a config replaced by a link to ``/dev/zero`` was read until
    memory ran out (4.8 GB), and a FIFO blocked the watcher for good. A file is hashed a
    chunk at a time, and again only when its inode, size or times change, so a large
    model is not read four times a second.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._known: dict[Path, tuple[tuple[int, ...], bytes]] = {}

    def digest(self, paths: list[Path]) -> bytes | None:
        """None while a file is missing (an editor's save by rename); raises ConfigError
        for one that is not a regular file, or is over its cap."""
        h = hashlib.blake2b(digest_size=16)
        for i, path in enumerate(paths):
            try:
                h.update(self._one(path, self.limits.config_bytes if i == 0 else WATCHED_BYTES,
                                   "config" if i == 0 else "file the config reads"))
            except FileNotFoundError:
                return None
        return h.digest()

    def _one(self, path: Path, cap: int, what: str) -> bytes:
        info = os.stat(path)
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        known = self._known.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        h = hashlib.blake2b(digest_size=16)
        with open_regular(path, ConfigError, what, cap) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        self._known[path] = (stamp, h.digest())
        return h.digest()


def located(path: Path, limits: Limits, message: str) -> str:
    """``message`` with the file:line:col of the stage it names (``stages[2] (...)``), when
    it names one and has no place of its own yet."""
    if re.match(r"[^:\s]+:\d+:\d+: ", message):
        return message
    found = re.match(r"stages\[(\d+)\]", message)
    try:
        node = read_yaml(path, limits)[1]
    except PipelineError:
        return f"{path}: {message}"
    where = mark(node_at(node, ("stages", int(found.group(1)))) if found else node,
                 os.fspath(path))
    return f"{where}: {message}"


class Watcher:
    """Reloads ``path`` into ``run`` on every change from ``since`` (``digest``) until the
    ``with`` block ends.

    ``tell(kind, text)`` hears each outcome: "reload" once a chain runs, "error" for a
    config that was not applied, "note" for what a reload leaves as it was.
    """

    def __init__(self, path: str | os.PathLike[str], config: Config, limits: Limits,
                 fmt: FrameFormat, run: Run, sinks: list[FrameSink], max_memory: int,
                 tell: Callable[[str, str], None], since: bytes | None = None) -> None:
        self.path = Path(path)
        self.config, self.limits, self.fmt = config, limits, fmt
        self.first = config  # what the run opened: its source and output stay
        self.run, self.sinks, self.max_memory = run, sinks, max_memory
        self.tell = tell
        self._stop = threading.Event()
        self._prints = Fingerprints(limits)
        self._digest = since if since is not None else self._look()
        self._said: str | None = None  # the last problem reported: each is said once
        # a reload left planning when the run ends is not waited for (stream.LEFT_BEHIND)
        self._thread = threading.Thread(target=self._loop, name="pipeline-reload",
                                        daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * POLL)

    def _look(self) -> bytes | None:
        try:
            return self._prints.digest(self._files())
        except PipelineError:
            return None

    def _files(self) -> list[Path]:
        """The config, and the files the config running now reads."""
        return [self.path, *self.config.files_read()]

    def _loop(self) -> None:
        """Until the run ends: whatever happens to the files, one line says so and the
        watcher goes on (a problem is said once, until the files change again)."""
        while not self._stop.wait(POLL):
            try:
                digest = self._prints.digest(self._files())
                if digest is None or digest == self._digest:
                    continue
                self._digest = digest
                self._said = None
                self.reload()
            except PipelineError as e:
                self._say(f"{e}; still running chain #{self.run.generation}")
            except Exception as e:  # noqa: BLE001 - a reload never ends the stream
                self._say(f"{self.path}: reload failed: {type(e).__name__}: {e}; "
                          f"still running chain #{self.run.generation}")

    def _say(self, text: str) -> None:
        if text != self._said:
            self._said = text
            self.tell("error", text)

    def reload(self) -> None:
        """Read and check the file's config as a run's start does (preflight.py), refuse
        what the running outputs cannot take, plan it, then hand it to the stream."""
        started = time.perf_counter()
        running = self.run.generation
        try:
            config = load_config(self.path, self.limits)
            chain, encoder = checked_chain(config, self.fmt, self.run.source.name,
                                           self.run.live, self.limits, self.max_memory,
                                           self.sinks)
        except PipelineError as e:
            self.tell("error", f"{located(self.path, self.limits, str(e))}; "
                               f"still running chain #{running}")
            return
        old_shape = self.run.chain.out_shape
        if chain.out_shape != old_shape and not all(s.view for s in self.sinks):
            files = ", ".join(s.name for s in self.sinks if not s.view)
            self.tell("error", f"{self.path}: output {size(old_shape)} -> "
                               f"{size(chain.out_shape)}"
                               f": {files} cannot change its frame size midway; still "
                               f"running chain #{running}")
            return
        try:
            chain.plan()  # only a chain that will run: FFT plans, spectra, timings
        except PipelineError as e:
            self.tell("error", f"{located(self.path, self.limits, str(e))}; "
                               f"still running chain #{running}")
            return
        for field in ("source", "output"):
            if getattr(config, field) != getattr(self.first, field):
                self.tell("note", f"{self.path}: {field}: changes apply at the next run")
        self.config = config  # its files are watched from now on
        self._digest = self._look()
        planned = time.perf_counter() - started

        def done(generation: int, frame: int) -> None:
            self.tell("reload", f"{self.path} reloaded: chain #{generation} from frame "
                                f"{frame} (planned in {planned * 1e3:.0f} ms off the frame path)"
                      + (f", output now {size(chain.out_shape)}"
                         if chain.out_shape != old_shape else ""))

        self.run.swap(Swap(chain, encoder, finishes(chain, encoder, self.sinks), old_shape,
                           done))

