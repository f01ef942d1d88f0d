#!/usr/bin/env python
"""Batch and one long video: one process against a two-worker Dask LocalCluster (and the
local pool / local segments), on this machine, same inputs, same config, in one run.

  batch  --clips clips of --clip-frames frames (640x480 MPEG-4): `batch --workers 1`,
         `batch --workers 2`, `batch --scheduler` (LocalCluster, 2 workers x 1 thread)
  long   one clip of --long-frames frames at 1280x720 (MPEG-4, AAC sound, a keyframe
         every 12 frames): `run` alone, `run --segments 2`, `run --scheduler` (8 segments)
Every output is H.264 (.mp4, the default settings); wall time of the whole command.

    python scripts/bench_cluster.py                   # 20 clips, a 3000-frame 720p clip
    python scripts/bench_cluster.py --clips 6 --long-frames 600   # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def timed(command: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipeline", *command], capture_output=True,
                            text=True)
    took = time.monotonic() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command)}: exit {result.returncode}: {result.stderr}")
    return took, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--clip-frames", type=int, default=150)
    parser.add_argument("--long-frames", type=int, default=3000)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "edges.yaml")
    args = parser.parse_args()
    import distributed
    from media import write_clip, write_clips

    config = str(args.config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     host="127.0.0.1", dashboard_address=None,
                                     silence_logs=50) as cluster:
        folder = Path(tmp)
        clips = [str(p) for p in write_clips(folder, "clip", args.clips, n=args.clip_frames,
                                             width=640, height=480)]
        frames = args.clips * args.clip_frames
        for label, extra in (("batch, 1 process", ["--workers", "1"]),
                             ("batch, 2 local processes", ["--workers", "2"]),
                             ("batch, LocalCluster 2 workers",
                              ["--scheduler", cluster.scheduler_address])):
            out = folder / f"out{len(rows)}"
            took, _ = timed(["batch", config, *clips, "--out", str(out), "--ext", ".mp4",
                             *extra])
            rows.append((label, frames, took))
        long_clip = folder / "long.mp4"
        write_clip(long_clip, n=args.long_frames, width=1280, height=720, audio="aac")
        for label, extra in (("long clip, 1 process", []),
                             ("long clip, --segments 2", ["--segments", "2"]),
                             ("long clip, LocalCluster 2 workers",
                              ["--scheduler", cluster.scheduler_address])):
            out = folder / f"long{len(rows)}.mp4"
            took, stdout = timed(["run", config, "-s", str(long_clip), "-o", str(out),
                                  *extra])
            join = next((line.split("the join ")[1] for line in stdout.splitlines()
                         if "the join" in line), "")
            rows.append((label + (f" (join {join})" if join else ""), args.long_frames, took))
    print(f"\ncores {os.cpu_count()}; config {args.config.name}; H.264 outputs; wall time "
          "of the whole command (process start, planning, decode, filter, encode, join)")
    print(f"{'job':<48} {'frames':>7} {'s':>8} {'fps':>8} {'vs 1 process':>13}")
    for i, (label, n, took) in enumerate(rows):
        base = rows[0][2] if i < 3 else rows[3][2]
        print(f"{label:<48} {n:>7} {took:>8.2f} {n / took:>8.1f} {base / took:>12.2f}x")


if __name__ == "__main__":
    main()
