"""The CLI as users meet it: subprocesses, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media import decoded, write_clip, write_clips

ROOT = Path(__file__).parent.parent
EDGES = ROOT / "configs" / "edges.yaml"


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def one_line_error(result: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and text in lines[0], result.stderr


def test_run_writes_video_and_summary(tmp_path):
    result = cli("run", EDGES, "--source", "synthetic:160x120:12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "frames: 12 read, 12 written" in result.stdout
    assert "output: edges.mp4: 12 frames (h264 crf 23 preset veryfast, yuv420p bt601, 160x120" \
        in result.stdout
    assert len(decoded(tmp_path / "edges.mp4")) == 12


def test_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - type: bank\n    op: correlate\n    weights: [[1]]\n    boarder: 1\n")
    one_line_error(cli("run", bad, "-o", tmp_path / "o.mp4"), 2, "did you mean 'border'")
    one_line_error(cli("run", EDGES, "-s", tmp_path / "none.mp4", "-o", tmp_path / "o.mp4"),
                   3, "none.mp4: no such file")
    (tmp_path / "taken.mp4").write_bytes(b"x")
    one_line_error(cli("run", EDGES, "-s", "synthetic:32x32:2", "-o", tmp_path / "taken.mp4"),
                   4, "exists (use --force")
    assert (tmp_path / "taken.mp4").read_bytes() == b"x"
    one_line_error(cli("run", EDGES, "-s", "http://127.0.0.1:9/x", "-o", tmp_path / "l.mp4",
                       "--reconnect-attempts", "2"),
                   5, "cannot connect to 127.0.0.1:9: connection refused (2 attempts)")
    usage = cli("run")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_plan_validate_filters(tmp_path):
    plan = cli("plan", EDGES, "--size", "320x240")
    assert plan.returncode == 0, plan.stderr
    for text in ("padding top 1, bottom 1, left 1, right 1; border reflect101",
                 "kernel centre (row, col) (1, 1)", "method ", "direct", "separable", "fft",
                 "parameters 18"):
        assert text in plan.stdout
    assert cli("validate", EDGES).stdout.startswith(f"{EDGES}: ok")
    filters = cli("filters")
    for name in ("gaussian", "sobel", "gabor", "motion_blur", "unsharp"):
        assert name in filters.stdout


def test_batch_is_parallel_and_resumable(tmp_path):
    inputs = write_clips(tmp_path, "clip", 3, n=5, width=64, height=48)
    (tmp_path / "broken.avi").write_text("not a video")
    out = tmp_path / "out"
    out.mkdir()
    first = cli("batch", EDGES, *inputs, tmp_path / "broken.avi", "http://169.254.169.254/x",
                "--out", out, "--workers", "2")
    assert first.returncode == 3, first.stderr
    assert "3 ok, 2 failed" in first.stdout
    assert "network sources not allowed in batch" in first.stderr
    assert sorted(p.name for p in out.iterdir()) == [  # each with its proof of being whole
        ".clip0.mkv.pipeline.json", ".clip1.mkv.pipeline.json", ".clip2.mkv.pipeline.json",
        "clip0.mkv", "clip1.mkv", "clip2.mkv"]
    again = cli("batch", EDGES, *inputs, "--out", out)
    assert again.returncode == 0 and again.stdout.count("skipped") == 3


def test_batch_strict_reports_lossy_files_and_failures_outrank_them(tmp_path):
    inputs = write_clips(tmp_path, "clip", 2, n=20, width=64, height=48)
    cut = tmp_path / "cut.mkv"
    write_clip(cut, n=60, width=64, height=48)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    lax = cli("batch", EDGES, *inputs, cut, "--out", out)
    assert lax.returncode == 0, lax.stderr
    assert "3 ok, 0 failed" in lax.stdout and "warning: " in lax.stdout
    assert "cut.mkv: input ended at" in lax.stdout  # on the file's own line
    strict = cli("batch", EDGES, *inputs, cut, "--out", out, "--force", "--strict")
    assert strict.returncode == 6, strict.stderr
    assert "2 ok, 1 lossy, 0 failed" in strict.stdout
    assert "cut.mkv: finished but lossy: the input ended before" in strict.stderr
    assert (out / "cut.mkv").exists()  # lossy, but finished: the output is kept
    (tmp_path / "broken.avi").write_text("not a video")
    worse = cli("batch", EDGES, cut, tmp_path / "broken.avi", "--out", out, "--force",
                "--strict")
    assert worse.returncode == 3 and "0 ok, 1 lossy, 1 failed" in worse.stdout


def test_bench_calibrates(tmp_path):
    env = {**os.environ, "PIPELINE_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pipeline", "bench", "--quick"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "gemm_mac_ns" in result.stdout and (tmp_path / "calibration.json").exists()


@pytest.mark.timing
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finalises_output(tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", EDGES, "-q", "-s",
                             "synthetic:320x240@30:100000", "-o", tmp_path / "sig.mkv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("sig.*.partial.mkv")):  # writing: frames under way
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.5)
    sent = time.perf_counter()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.perf_counter() - sent < 2.5
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    written = int(stdout.split(" written")[0].rsplit(", ", 1)[1])
    assert written > 0 and len(decoded(tmp_path / "sig.mkv")) == written


def test_every_option_says_what_it_does():
    """`--help` of every command: each option has its help text (--max-frames and
    --allow-network had none)."""
    import typer

    from pipeline.cli import app

    group = typer.main.get_command(app)
    options = [(name, param) for name, command in group.commands.items()
               for param in command.params if param.param_type_name == "option"]
    assert len(options) > 40
    missing = [f"{name} {param.opts[0]}" for name, param in options
               if not (param.help or "").strip()]
    assert missing == []


def test_filters_and_codecs_print_plain_text():
    """No reST ``quotes`` from the docstrings, no rich markup eaten or shown raw."""
    listed = cli("filters")
    assert listed.returncode == 0 and "``" not in listed.stdout
    assert "size×size" in listed.stdout
    codecs = cli("codecs")
    assert codecs.returncode == 0 and "libx264" in codecs.stdout
