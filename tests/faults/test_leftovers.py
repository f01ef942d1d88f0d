"""A stopped batch's leftovers (RELIABILITY X2, X6; issue 30, item 9): its files' temporary
names are listed by the next batch into the same folder and removed with --clean, and
nothing the journal does not name is touched: not a user's file named like ours, not a
journal that is not one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import write_clips  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BLUR = ROOT / "configs" / "blur_large.yaml"
EDGES = ROOT / "configs" / "edges.yaml"
QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


def batch(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "batch", *map(str, args)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=QUIET)


def test_a_stopped_batchs_partials_are_listed_then_cleaned(tmp_path):
    inputs = write_clips(tmp_path, "clip", 2, n=200, width=640, height=480)
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "clip0.deadbeef.partial.mkv"  # a user's file, named like ours
    mine.write_bytes(b"a recording of mine")
    (out / ".pipeline-batch.00000000.json").write_text("not a journal")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "batch", str(BLUR),
                             *map(str, inputs), "--out", str(out), "--workers", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=QUIET)
    deadline = time.monotonic() + 60
    while len([p for p in out.glob("clip*.partial.mkv") if p != mine]) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    kept = sorted(re.findall(r"kept in (\S+\.partial\.mkv)", stdout))
    assert len(kept) == 2 and all(Path(tmp_path, k).exists() for k in kept), stdout

    listed = batch(tmp_path, EDGES, inputs[1], "--out", out)
    assert listed.returncode == 0, listed.stderr
    note = re.search(r"note: 2 files of earlier batches stopped part-way are still in \S+ "
                     r"\((.+)\); --clean removes them", listed.stdout)
    assert note, listed.stdout
    assert sorted(Path(p).name for p in note.group(1).split(", ")) == \
        sorted(Path(k).name for k in kept)
    assert all(Path(tmp_path, k).exists() for k in kept)  # listed, never removed unasked

    cleaned = batch(tmp_path, EDGES, inputs[1], "--out", out, "--clean")
    assert cleaned.returncode == 0, cleaned.stderr
    removed = re.findall(r"removed: (\S+) \(left by a stopped batch\)", cleaned.stdout)
    assert sorted(Path(p).name for p in removed) == sorted(Path(k).name for k in kept)
    assert not any(Path(tmp_path, k).exists() for k in kept)
    assert mine.read_bytes() == b"a recording of mine"
    assert (out / ".pipeline-batch.00000000.json").read_text() == "not a journal"
    again = batch(tmp_path, EDGES, inputs[1], "--out", out)
    assert "note:" not in again.stdout and "removed:" not in again.stdout
    assert [p.name for p in out.glob(".pipeline-batch.*.json")] == [
        ".pipeline-batch.00000000.json"]
