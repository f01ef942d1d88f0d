"""A batch on a Dask cluster when the cluster goes (RELIABILITY U9): the scheduler
SIGKILLed mid-batch, every worker lost. Each ends the batch with one line per unfinished
file and exit 5, no traceback, never a hang; and nothing gets a final name after the
batch said it was not finished: a worker that outlives the batch finds its permit
revoked. A scheduler and a worker of their own per test (processes: they are killed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import write_clips  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BLUR = ROOT / "configs" / "blur_large.yaml"
QUIET = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and one worker (no nanny: a killed worker stays dead), as processes."""
    address = f"tcp://127.0.0.1:{_port()}"
    procs = {"scheduler": subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"], env=QUIET,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)}
    import distributed

    deadline = time.monotonic() + 30
    while True:
        try:
            with distributed.Client(address, timeout=2, set_as_default=False):
                break
        except (OSError, TimeoutError):
            assert time.monotonic() < deadline, "no scheduler"
    procs["worker"] = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--no-nanny", "--no-dashboard"], env=QUIET, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    with distributed.Client(address, timeout=10, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
    try:
        yield address, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Two clips long enough to be under way when the cluster goes (blur_large at 720p)."""
    return write_clips(tmp_path_factory.mktemp("clips"), "clip", 2, n=150, width=1280,
                       height=720)


def _batch(tmp_path, address, inputs, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "batch", str(BLUR),
                             *map(str, inputs), "--out", str(tmp_path / "out"), "--scheduler",
                             address, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=QUIET)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out").glob("clip*.partial.mkv")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


def _finals(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "out").glob("clip?.mkv"))


def test_the_scheduler_lost_mid_batch(tmp_path, cluster, clips):
    """Was: two distributed tracebacks, two-line errors, exit 70, and the worker then
    committed clip0.mkv, which the batch had reported failed."""
    address, procs = cluster
    proc = _batch(tmp_path, address, clips)
    procs["scheduler"].send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 5, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and all(
        line.startswith("error: ") and f"not finished: the Dask scheduler {address} was lost"
        in line and line.endswith("it never gets its final name") for line in lines), stderr
    assert "0 ok, 2 failed" in stdout
    time.sleep(2)  # the worker, its scheduler gone, stops (within 0.5 s) and keeps its partial
    assert _finals(tmp_path) == []


@pytest.mark.timing
def test_every_worker_lost_ends_the_batch_after_the_worker_timeout(tmp_path, cluster, clips):
    address, procs = cluster
    proc = _batch(tmp_path, address, clips, "--worker-timeout", "3")
    procs["worker"].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - killed
    assert proc.returncode == 5, stderr
    assert 3 <= took < 20, took  # never a hang: it waited forever before
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and all("not finished: no Dask worker for 3 s (--worker-timeout)"
                                   in line for line in lines), stderr
    assert _finals(tmp_path) == []


def test_a_revoked_permit_keeps_a_late_workers_output_from_its_final_name(tmp_path):
    """The permit as a late worker meets it: taken first, the commit goes on and the
    batch learns so; revoked first, the commit is refused and the file kept, named."""
    from pipeline.batch import Job
    from pipeline.cluster import Permits
    from pipeline.io.destination import Destination, Revoked

    late, first = (Job(i, "in.avi", str(tmp_path / f"{name}.mkv"), "c.yaml", "", token)
                   for i, (name, token) in enumerate((("late", "aaaa1111"),
                                                      ("first", "bbbb2222"))))
    permits = Permits([late, first])
    permits.grant()
    dest = Destination(late.target, token=late.token)
    dest.claim().write_bytes(b"frames")
    assert permits.revoke(late)  # the batch gave it up before the worker committed
    with pytest.raises(Revoked, match=r"late\.mkv: the batch that asked for it gave it up"):
        dest.commit()
    assert not Path(late.target).exists()
    assert [p.name for p in tmp_path.glob("late.*.partial.mkv")] == ["late.aaaa1111.partial.mkv"]
    other = Destination(first.target, token=first.token)
    other.claim().write_bytes(b"frames")
    other.commit()  # the worker took its permit first
    assert not permits.revoke(first) and Path(first.target).read_bytes() == b"frames"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
