"""--watch when the watched files turn hostile (RELIABILITY U8): the config or a weights
file replaced by a link to a device, a FIFO, or a file past its cap. Each is one error
line, said once; the stream goes on with its chain; a valid edit after them still
reloads (the watcher never dies); and SIGINT ends the run within a second."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CONFIG = """stages:
  - type: bank
    op: correlate
    weights: {file: w.npy}
    border: BORDER
"""


class Watched:
    """``pipeline run c.yaml --serve --loop --watch`` in a subprocess; its stderr lines
    as they come."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "c.yaml", "-s", "synthetic:64x48@30:30",
             "--serve", "127.0.0.1:0", "--loop", "--watch", "-q"], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        found = re.match(r"serving at (http://\S+)", self.proc.stdout.readline())
        assert found, self.proc.stderr.read()
        self.url = found.group(1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 10.0) -> str:
        line = self.lines.get(timeout=timeout)
        self.seen.append(line)
        return line

    def quiet_for(self, seconds: float) -> None:
        """No more lines for ``seconds`` (each problem is said once)."""
        try:
            extra = self.lines.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"said again: {extra!r} after {self.seen}")

    def frames_out(self) -> int:
        with urllib.request.urlopen(self.url + "figures.json", timeout=10) as r:
            return json.loads(r.read())["frames_out"]

    def flowing(self) -> None:
        before = self.frames_out()
        deadline = time.monotonic() + 10
        while self.frames_out() <= before + 3:
            assert time.monotonic() < deadline, "the stream stopped"
            time.sleep(0.1)


def _replace(path: Path, make) -> None:
    """``path`` replaced at once by what ``make(tmp)`` creates (as an editor's save)."""
    tmp = path.with_name(path.name + ".new")
    make(tmp)
    os.replace(tmp, path)


@pytest.mark.timing
def test_hostile_watched_files_are_one_line_each_and_the_run_goes_on(tmp_path):
    config = tmp_path / "c.yaml"
    valid = CONFIG.replace("BORDER", "reflect101")
    config.write_text(valid)
    np.save(tmp_path / "w.npy", np.ones((3, 3)) / 9)
    np.save(tmp_path / "kept.npy", np.ones((3, 3)) / 9)
    run = Watched(tmp_path)
    try:
        run.flowing()
        cases = [
            (config, lambda p: p.symlink_to("/dev/zero"), r"c\.yaml: not a regular file "
             r"\(a character device\)"),
            (config, lambda p: os.mkfifo(p), r"c\.yaml: not a regular file \(a FIFO\)"),
            (config, lambda p: p.write_text(valid + "#" * (2 << 20)),
             r"c\.yaml: config is 2\.0 MiB; limit 1 MiB"),
            (tmp_path / "w.npy", lambda p: p.symlink_to("/dev/urandom"),
             r"w\.npy: not a regular file \(a character device\)"),
        ]
        for path, make, said in cases:
            if path != config:  # the config as it was: nothing to reload, nothing to say
                _replace(config, lambda p: p.write_text(valid))
            _replace(path, make)
            line = run.next_line()
            assert re.match(r"error: watch: \S*" + said + r".*; still running chain #1$",
                            line), line
            run.quiet_for(0.6)  # said once, not at every look (four a second)
            run.flowing()  # the running chain goes on
        _replace(tmp_path / "w.npy", lambda p: p.write_bytes((tmp_path / "kept.npy").read_bytes()))
        _replace(config, lambda p: p.write_text(CONFIG.replace("BORDER", "replicate")))
        line = run.next_line()
        assert re.match(r"watch: \S*c\.yaml reloaded: chain #2", line), (line, run.seen)
        run.flowing()
    finally:
        run.proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        run.proc.wait(timeout=20)
        took = time.monotonic() - sent
    assert run.proc.returncode == 130
    assert took < 1.0, f"exit {took:.2f} s after SIGINT"
    rest = "\n".join(run.seen) + run.proc.stderr.read() if not run.proc.stderr.closed else ""
    assert "Traceback" not in rest
