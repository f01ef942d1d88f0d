"""Every command line in the README runs as written (issue 22, item 4).

The lines of every ```sh block run in order, through bash, in one folder that holds
what they name (configs/, a clip with sound, a film, images, folders of videos), with the venv's bin first on PATH: a later line meets the files an earlier
one wrote, as a user running them one after another would. What this machine lacks is
substituted, each named in SUBSTITUTIONS; lines that run for minutes by design
(benchmarks, the soak, the suite itself) are checked, not run: see ``test_readme``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from media import MjpegServer, clip_frames, write_clip

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent

# (pattern, replacement, why): hardware and hosts this machine does not have
SUBSTITUTIONS = [
    (r"--source 0\b", "--source synthetic:320x240:30", "no camera: the synthetic source"),
    (r"http://cam\.local/video\.mjpg", "{stream}", "no IP camera: a loopback MJPEG stream"),
    (r"tcp://head:8786", "tcp://127.0.0.1:8786", "the cluster's head is this machine"),
    (r"(?<![\w.])/shared/", "{tmp}/shared/", "the shared folder is the test's own"),
    (r"0\.0\.0\.0:8080|127\.0\.0\.1:8080", "127.0.0.1:0", "any free port"),
    (r"^pipeline bench$", "pipeline bench --quick", "the full calibration takes minutes"),
]


def readme_lines() -> list[str]:
    """The command lines of the README's sh blocks: continuations joined, comments cut."""
    lines, block = [], None
    for raw in (ROOT / "README.md").read_text().splitlines():
        if raw.startswith("```"):
            block = [] if raw.strip() == "```sh" and block is None else None
            continue
        if block is None:
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw.strip())
    return [re.sub(r"\s+#\s.*$", "", line).strip() for line in lines if line.strip()]


def substituted(line: str, **values: str) -> str:
    for pattern, replacement, _ in SUBSTITUTIONS:
        line = re.sub(pattern, replacement.format(**values), line)
    return line


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def folder(tmp_path):
    """What the README's lines name, made small."""
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    write_clip(tmp_path / "clip.mp4", n=24, width=96, height=64, audio="aac")
    write_clip(tmp_path / "film.mkv", n=24, width=96, height=64, audio="libopus")
    (tmp_path / "frames").mkdir()
    import cv2

    for i, frame in enumerate(clip_frames(3, 96, 64)):
        cv2.imwrite(str(tmp_path / "frames" / f"f{i:02d}.png"), frame)
    for where in ("videos", "shared/in"):
        (tmp_path / where).mkdir(parents=True)
        for i in range(2):
            write_clip(tmp_path / where / f"v{i}.mp4", n=10, width=64, height=48)
    shutil.copy(tmp_path / "film.mkv", tmp_path / "shared" / "film.mkv")
    return tmp_path


@pytest.fixture
def display():
    """A virtual screen (Xvfb) for the --show line."""
    proc = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "640x480x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE, text=True)
    number = proc.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


def _env(display: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DISPLAY": display, "PYTHONWARNINGS": "ignore"}


def _served(proc: subprocess.Popen, line: str) -> None:
    """A line that serves until stopped: its page and a frame answer; Ctrl-C ends it."""
    first = proc.stdout.readline()
    match = re.match(r"serving at (http://\S+/)(\?token=[\w-]+)?", first)
    assert match, f"{line}: {first!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    url, token = match.group(1), match.group(2) or ""  # a non-loopback bind: its token
    with urllib.request.urlopen(url + token, timeout=10) as r:
        assert b"<title>pipeline</title>" in r.read()
    with urllib.request.urlopen(url + "snapshot.jpg" + token, timeout=10) as r:
        assert r.read()[:2] == b"\xff\xd8"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted by SIGINT" in out, (line, out, err)


def _check_script(line: str) -> None:
    """A benchmark or soak line (minutes of work): the script exists and takes every option
    the line gives it."""
    words = shlex.split(line)
    script = ROOT / words[1]
    assert script.is_file(), line
    helptext = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=120)
    assert helptext.returncode == 0, (line, helptext.stderr)
    for flag in (w for w in words[2:] if w.startswith("--")):
        assert re.search(rf"{re.escape(flag)}\b", helptext.stdout), (line, flag)


def _check_pytest(line: str) -> None:
    for word in shlex.split(line)[3:]:
        if not word.startswith("-"):
            assert (ROOT / word).exists(), (line, word)


def test_readme(folder, display):
    lines = readme_lines()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    setup, test_line = lines[0], lines[1]
    assert test_line == ci, "the README's test line is what .ci/run runs"
    # the main job: its set-up is the test line's (which CI runs), then the job itself
    *steps, job = setup.split(" && ")
    assert test_line.startswith("scripts/system-deps.sh && " + " && ".join(steps)
                                .replace("-e .", "-e '.[test]'"))
    rest = [job] + lines[2:]

    cluster: list[subprocess.Popen] = []
    env = _env(display)
    with MjpegServer(clip_frames(10, 96, 64), fps=30) as stream:
        values = {"stream": stream.url, "tmp": str(folder)}
        try:
            for original in rest:
                line = substituted(original, **values)
                words = shlex.split(line)
                if words[0].endswith("python") and words[1:3] == ["-m", "pytest"]:
                    _check_pytest(line)
                elif words[0].endswith("python"):
                    _check_script(line)
                elif words[:2] in (["dask", "scheduler"], ["dask", "worker"]):
                    if len(cluster) == 2:  # started by the first line that needed them
                        continue
                    cluster.append(subprocess.Popen(["bash", "-c", "exec " + line], cwd=folder,
                                                    env=env, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL))
                    deadline = time.monotonic() + 30
                    while not _listening(8786):
                        assert time.monotonic() < deadline, line
                        time.sleep(0.1)
                elif "--serve" in words and ("--loop" in words or stream.url in line):
                    _served(subprocess.Popen(["bash", "-c", "exec " + line], cwd=folder,
                                             env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True), original)
                else:
                    if "tcp://127.0.0.1:8786" in line and not cluster:  # the README's own
                        cluster += [subprocess.Popen(
                            ["bash", "-c", "exec " + substituted(c, **values)], cwd=folder,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                            for c in lines if c.startswith("dask ")]
                    done = subprocess.run(["bash", "-c", line], cwd=folder, env=env,
                                          capture_output=True, text=True, timeout=300)
                    assert done.returncode == 0, (original, line, done.stdout, done.stderr)
                    assert "error" not in done.stderr.lower(), (original, done.stderr)
        finally:
            for proc in cluster:
                proc.terminate()
            for proc in cluster:
                proc.wait(timeout=30)

    # what the lines wrote, read back
    with av.open(str(folder / "clip_edges.mp4")) as f:
        assert f.streams.audio and sum(1 for _ in f.decode(video=0)) == 24
    with av.open(str(folder / "film_edges.mkv")) as f:
        assert sum(1 for _ in f.decode(video=0)) == 24
    assert len(list((folder / "out").glob("*.png"))) == 3
    assert np.load(folder / "y.npy").shape[0] == 24
    assert len(list((folder / "done").glob("v?.*"))) == 2
    assert len(list((folder / "shared" / "out").glob("v?.*"))) == 2
    assert (folder / "shared" / "film_edges.mkv").is_file()
    assert (folder / "edges.mp4").is_file()  # the quick start's main job
