"""`pipeline validate` checks what `run` checks before its first frame (issue 30, item 9):
for the source's own frames (or --size), it refuses with run's own message and exit code
what run would refuse at once, and a config it says ok to starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from commands import cli
from media import write_clip

ROOT = Path(__file__).parent.parent
EDGES = ROOT / "configs" / "edges.yaml"


def error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


FOUR = "source: synthetic:64x48:3\noutput: four.mp4\nstages:\n" \
    "  - {type: bank, op: correlate, weights: [[[1]], [[2]], [[3]], [[4]]]}\n"
WIDE = "source: synthetic:64x48:3\nstages:\n" + \
    "  - {type: bank, op: correlate, weights: {builtin: box, size: 3}, padding: 4096}\n" * 3


@pytest.mark.parametrize("config, extra, code", [
    (FOUR, (), 2),  # four channels into an .mp4: video takes 1 or 3 (was: ok)
    (WIDE, ("-o", "w.npy"), 3),  # 16k x 16k frames through three banks: 49 GiB
    ("source: big.png\nstages:\n  - {type: bank, op: correlate, weights: [[1]]}\n",
     ("-o", "b.npy"), 3),  # an input of 12 MP
    ("stages:\n  - {type: bank, op: correlate, weights: [[1]]}\n",
     ("-o", "x.webm", "--codec", "h264"), 2),
])
def test_validate_refuses_what_run_refuses_at_once_with_its_words(tmp_path, config, extra,
                                                                  code):
    import cv2
    import numpy as np

    (tmp_path / "c.yaml").write_text(config)
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((3000, 4000), np.uint8))
    checked = cli("validate", "c.yaml", *extra, cwd=tmp_path)
    ran = cli("run", "c.yaml", *extra, cwd=tmp_path)
    assert checked.returncode == ran.returncode == code, (checked.stderr, ran.stderr)
    said, refused = error(checked), error(ran)
    assert said.split(": ", 2)[2] == refused.split(": ", 2)[2], (said, refused)
    assert "ok" not in checked.stdout


def test_validate_checks_against_the_sources_own_frames(tmp_path):
    write_clip(tmp_path / "clip.avi", n=3, width=320, height=240)
    result = cli("validate", EDGES, "-s", "clip.avi", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EDGES}: ok (3 stages; 320x240x3 -> 320x240x1)\n"
    sized = cli("validate", EDGES, "--size", "64x48", cwd=tmp_path)
    assert sized.returncode == 0 and "64x48x3 -> 64x48x1" in sized.stdout, sized.stderr
    gray = cli("validate", EDGES, "--size", "64x48x1", cwd=tmp_path)  # edges.yaml: BGR in
    assert gray.returncode == 2 and "color gray needs 3 channels, got 1" in error(gray)
    camera = cli("validate", EDGES, "-s", "0", cwd=tmp_path)  # never opened
    assert camera.returncode == 0 and "camera 0 not opened: give --size" in camera.stdout
    bad = cli("validate", EDGES, "--size", "0x48", cwd=tmp_path)
    assert bad.returncode == 2 and "--size '0x48': expected WIDTHxHEIGHT" in error(bad)
