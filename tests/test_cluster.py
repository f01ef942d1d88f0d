"""`batch --scheduler` on a real Dask cluster: a LocalCluster of worker processes on
loopback, driven through the CLI as a user would (issue 21)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed  # the test extra installs the cluster extra
import pytest
from media import decoded, write_clip, write_clips

ROOT = Path(__file__).parent.parent
EDGES = ROOT / "configs" / "edges.yaml"
BLUR = ROOT / "configs" / "blur_large.yaml"


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes under nannies (a killed worker is restarted),
    loopback only, no dashboard."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as local, \
            distributed.Client(local, set_as_default=False) as client:
        yield local.scheduler_address, client


def cli(*args, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if kw.pop("background", False):
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, **kw)


def test_batch_on_a_cluster_verifies_resumes_and_reports_a_failing_file(tmp_path, cluster):
    """Every output whole (PyAV/OpenCV count its frames), `--out` made where missing, the
    corrupt file reported while the rest finish (exit 3), and a rerun skips what is done."""
    address, _ = cluster
    inputs = write_clips(tmp_path, "clip", 3, n=24, width=64, height=48)
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + os.urandom(2000))
    out = tmp_path / "made" / "here"
    first = cli("batch", EDGES, *inputs, broken, "--out", out, "--scheduler", address)
    assert first.returncode == 3, first.stderr
    assert "3 ok, 1 failed" in first.stdout
    assert first.stdout.count("ok: ") == 3 and "broken.avi" in first.stderr
    for i in range(3):
        assert len(decoded(out / f"clip{i}.mkv")) == 24
    assert not (out / "broken.mkv").exists()
    again = cli("batch", EDGES, *inputs, "--out", out, "--scheduler", address)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped") == 3 and "3 ok, 0 failed" in again.stdout


def test_a_worker_killed_mid_file_never_leaves_a_cut_file_under_the_final_name(
        tmp_path, cluster):
    """SIGKILL the worker filtering a long file, once its partial output exists: Dask
    retries the file on a worker (the nanny restarts the dead one), and the output that
    appears under the final name is whole."""
    address, client = cluster
    long_clip = tmp_path / "long.avi"
    write_clip(long_clip, n=400, width=320, height=240)
    out = tmp_path / "out"
    proc = cli("batch", BLUR, long_clip, "--out", out, "--scheduler", address,
               background=True)
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        partial = list(out.glob("long.*.partial.mkv")) if out.exists() else []
        busy = [w for w, keys in client.processing().items() if keys]
        if partial and partial[0].stat().st_size > 0 and busy:
            pid = client.run(os.getpid, workers=busy)[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=180)
    assert killed is not None, (stdout, stderr)
    assert not (out / "long.mkv").exists() or len(decoded(out / "long.mkv")) == 400
    assert proc.returncode == 0, stderr
    assert "1 ok, 0 failed" in stdout and len(decoded(out / "long.mkv")) == 400


@pytest.mark.timing
def test_an_unreachable_scheduler_is_exit_3_within_the_open_timeout(tmp_path):
    clip = write_clips(tmp_path, "clip", 1, n=2, width=32, height=32)[0]
    start = time.monotonic()
    result = cli("batch", EDGES, clip, "--out", tmp_path / "out", "--scheduler",
                 "tcp://127.0.0.1:9", "--open-timeout", "1.5")
    took = time.monotonic() - start
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no Dask scheduler answered within 1.5 s" in lines[0]
    assert "Traceback" not in result.stderr and took < 1.5 + 8  # the interpreter's start


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a folder over the inputs (root)")
def test_a_worker_that_cannot_see_an_input_is_named(tmp_path):
    """Inputs must be on storage every worker sees: a worker in its own mount namespace,
    where an empty tmpfs lies over the inputs' folder (as on a machine without the shared
    disk), stops the batch before any job, naming the worker and the path; nothing is
    written."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    clip = write_clips(folder, "clip", 1, n=2, width=32, height=32)[0]
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as local:
        worker = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs none "$0" && exec "$1" -m distributed.cli.dask_worker "$2" '
             "--nthreads 1 --no-nanny --no-dashboard", str(folder), sys.executable,
             local.scheduler_address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(local, set_as_default=False) as client:
                client.wait_for_workers(1, timeout=60)
            result = cli("batch", EDGES, clip, "--out", tmp_path / "out", "--scheduler",
                         local.scheduler_address)
        finally:
            worker.kill()
            worker.wait()
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: worker tcp://127.0.0.1:")
    assert f"cannot read {clip}" in lines[0] and "storage every worker sees" in lines[0]
    assert not (tmp_path / "out" / "clip0.mkv").exists()


@pytest.mark.parametrize("where", ["local", "dask"])
def test_progress_advances_per_file_with_frames_per_second(tmp_path, cluster, where):
    """On a terminal (FORCE_COLOR makes rich draw as on one) the bar counts finished files
    with frames/s and an ETA, on both paths; each file's line reaches stdout as it
    finishes, not at the end."""
    inputs = write_clips(tmp_path, "clip", 3, n=90, width=160, height=120)
    args = ["--scheduler", cluster[0]] if where == "dask" else ["--workers", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "FORCE_COLOR": "1", "COLUMNS": "150"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "batch", str(EDGES),
                             *map(str, inputs), "--out", str(tmp_path / "out"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()  # the first file's line, while the others still run
    running = proc.poll() is None
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert first.startswith("ok: ") and "90 frames ->" in first and running
    assert (first + stdout).count("ok: ") == 3 and "3 ok, 0 failed" in stdout
    assert "3/3" in stderr and "frames/s" in stderr and "files" in stderr


# ------------------------------------------------------------- one video in segments
def _frames_and_times(path: Path) -> tuple[list, list, list[str]]:
    """Every decoded frame of the video stream (PyAV), its time, and the streams' codecs."""
    import av

    with av.open(str(path)) as container:
        codecs = [s.codec_context.name for s in container.streams]
        frames, times = [], []
        for frame in container.decode(container.streams.video[0]):
            gray = frame.format.name.startswith("gray")
            frames.append(frame.to_ndarray() if gray else frame.to_ndarray(format="bgr24"))
            times.append(frame.pts * frame.time_base)
    return frames, times, codecs


def _no_leftovers(folder: Path, final: str) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(f".{final}") or
            ".partial" in p.name]
    assert left == [], left


def test_one_video_in_local_segments_is_the_single_run_frame_for_frame(tmp_path):
    """--segments 3 on local processes, FFV1 with sound: the same frames and timestamps as
    the single-process run, the sound copied once, no part left behind."""
    clip = tmp_path / "long.mkv"
    write_clip(clip, n=150, width=96, height=64, audio="libopus")
    single = cli("run", EDGES, "-s", clip, "-o", tmp_path / "one.mkv")
    split = cli("run", EDGES, "-s", clip, "-o", tmp_path / "seg.mkv", "--segments", "3")
    assert single.returncode == 0 and split.returncode == 0, split.stderr
    assert "150 written in 3 segments on 2 local processes" in split.stdout
    one, seg = _frames_and_times(tmp_path / "one.mkv"), _frames_and_times(tmp_path / "seg.mkv")
    assert len(seg[0]) == len(one[0]) == 150 and seg[1] == one[1]
    assert all((a == b).all() for a, b in zip(seg[0], one[0], strict=True))
    assert seg[2] == one[2] == ["ffv1", "opus"]
    _no_leftovers(tmp_path, "seg.mkv")


def test_one_video_on_the_cluster_keeps_count_times_and_sound_in_h264(tmp_path, cluster):
    """--scheduler, H.264 from an MPEG-4 file with AAC sound (a keyframe every 12 frames):
    the frame count and every timestamp of the single run, the sound copied, and the file
    decodes without an error (ffmpeg -v error)."""
    clip = tmp_path / "long.mp4"
    write_clip(clip, n=180, width=96, height=64, audio="aac")
    single = cli("run", EDGES, "-s", clip, "-o", tmp_path / "one.mp4")
    split = cli("run", EDGES, "-s", clip, "-o", tmp_path / "seg.mp4", "--scheduler",
                cluster[0])
    assert single.returncode == 0 and split.returncode == 0, split.stderr
    assert "180 written in 8 segments on the cluster" in split.stdout  # 4 per worker
    one, seg = _frames_and_times(tmp_path / "one.mp4"), _frames_and_times(tmp_path / "seg.mp4")
    assert len(seg[0]) == len(one[0]) == 180 and seg[1] == one[1]
    assert seg[2] == one[2] == ["h264", "aac"]
    check = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "seg.mp4"), "-f",
                            "null", "-"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stderr == ""
    _no_leftovers(tmp_path, "seg.mp4")


def test_a_segment_whose_worker_dies_is_retried_and_the_output_appears_only_whole(tmp_path):
    """SIGKILL a local worker while its segment's part is being written: the segment runs
    again, the output's final name never exists before the join, and the result is the
    single run's, frame for frame."""
    clip = tmp_path / "long.mkv"
    write_clip(clip, n=240, width=320, height=240)
    final = tmp_path / "seg.mkv"
    proc = cli("run", BLUR, "-s", clip, "-o", final, "--segments", "2", background=True)
    killed, early = False, False
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        early = early or final.exists()
        parts = list(tmp_path.glob(".seg.mkv.*.segments/*.partial.mkv"))
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        if parts and parts[0].stat().st_size > 0 and children:
            os.kill(int(children[0]), signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=180)
    assert killed and not early, (stdout, stderr)
    assert proc.returncode == 0, stderr
    assert "(1 retried)" in stdout and "240 written in 2 segments" in stdout
    single = cli("run", BLUR, "-s", clip, "-o", tmp_path / "one.mkv")
    assert single.returncode == 0, single.stderr
    one, seg = _frames_and_times(tmp_path / "one.mkv"), _frames_and_times(final)
    assert seg[1] == one[1] and all((a == b).all() for a, b in zip(seg[0], one[0], strict=True))
    _no_leftovers(tmp_path, "seg.mkv")


def test_segments_of_a_variable_frame_rate_video_keep_every_timestamp(tmp_path):
    """Frames at irregular times (a gap of half a second, bursts): cut, filtered and joined,
    every frame keeps its time and its pixels, as in the single run."""
    times = [i / 30 for i in range(40)] + [2.0 + i / 60 for i in range(40)] + \
        [3.5 + i / 25 for i in range(40)]
    clip = tmp_path / "vfr.mkv"
    write_clip(clip, n=len(times), width=64, height=48, times=times)
    single = cli("run", EDGES, "-s", clip, "-o", tmp_path / "one.mkv")
    split = cli("run", EDGES, "-s", clip, "-o", tmp_path / "seg.mkv", "--segments", "4")
    assert single.returncode == 0 and split.returncode == 0, split.stderr
    one, seg = _frames_and_times(tmp_path / "one.mkv"), _frames_and_times(tmp_path / "seg.mkv")
    assert len(seg[1]) == 120 and seg[1] == one[1]
    assert [float(t) for t in seg[1][::40]] == pytest.approx([0.0, 2.0, 3.5], abs=1e-3)
    assert all((a == b).all() for a, b in zip(seg[0], one[0], strict=True))
