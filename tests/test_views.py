"""Views (--serve, --show) as a user runs them: the URL printed, the config's output left
alone, a file played at its own rate (issue 22, items 2-4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from commands import cli

ROOT = Path(__file__).parent.parent
EDGES = ROOT / "configs" / "edges.yaml"


def _seconds(stdout: str) -> float:
    return float(re.search(r"fps over ([\d.]+) s", stdout).group(1))


def test_serve_prints_its_url_and_leaves_the_configs_output_alone(tmp_path):
    """edges.yaml names output: edges.mp4; `--serve` without -o runs the view only (the
    README's own --serve line used to fail with `edges.mp4: exists`)."""
    (tmp_path / "edges.mp4").write_bytes(b"an older result")
    result = cli("run", EDGES, "-s", "synthetic:64x48:20", "--serve", "127.0.0.1:0", "-q",
                 "--no-realtime", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.match(r"serving at http://127\.0\.0\.1:\d+/\n", result.stdout)
    assert (tmp_path / "edges.mp4").read_bytes() == b"an older result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.mp4"]
    both = cli("run", EDGES, "-s", "synthetic:64x48:5", "--serve", "127.0.0.1:0", "-q",
               "-o", "out.mkv", cwd=tmp_path)  # -o given: the view and the file
    assert both.returncode == 0 and (tmp_path / "out.mkv").exists(), both.stderr


def test_serving_on_every_interface_lists_every_address(tmp_path):
    result = cli("run", EDGES, "-s", "synthetic:32x32:3", "--serve", "0.0.0.0:0", "-q",
                 "--no-realtime", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[0]
    urls = line.removeprefix("serving at ").split()
    port = {u.rsplit(":", 1)[1].split("/")[0] for u in urls}
    assert urls[0].startswith("http://127.0.0.1:") and len(port) == 1
    # not loopback only: every URL carries the one token the page needs (webserver.py)
    tokens = {u.split("?token=")[1] for u in urls}
    assert len(tokens) == 1 and len(tokens.pop()) >= 32
    assert all(re.fullmatch(r"http://\d+\.\d+\.\d+\.\d+:\d+/\?token=[\w-]+", u)
               for u in urls)


@pytest.mark.timing
def test_a_file_shown_or_served_plays_at_its_own_frame_rate(tmp_path):
    """45 frames at 30 fps served: about 1.5 s, as a player shows them (the first frame
    at once); --no-realtime runs flat out, and --realtime paces a file output too."""
    paced = cli("run", EDGES, "-s", "synthetic:64x48@30:45", "--serve", "127.0.0.1:0", "-q",
                cwd=tmp_path)
    assert paced.returncode == 0, paced.stderr
    assert 44 / 30 - 0.05 <= _seconds(paced.stdout) < 44 / 30 + 1.0
    flat = cli("run", EDGES, "-s", "synthetic:64x48@30:45", "--serve", "127.0.0.1:0", "-q",
               "--no-realtime", cwd=tmp_path)
    assert flat.returncode == 0 and _seconds(flat.stdout) < 44 / 30 - 0.3, flat.stdout
    filed = cli("run", EDGES, "-s", "synthetic:64x48@60:30", "-o", "f.mkv", "-q",
                "--realtime", cwd=tmp_path)
    assert filed.returncode == 0 and _seconds(filed.stdout) >= 29 / 60 - 0.05, filed.stdout
