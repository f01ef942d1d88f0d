#!/usr/bin/env python
"""Batch soak: N tiny clips through `pipeline batch` (local workers, or --scheduler),
sampling the batch process and its workers every --every seconds: RSS, open files,
threads. Every output is then verified (PyAV decodes its frames, the count is the
input's). The verdict compares the samples after the first tenth with the last.

    python scripts/soak_batch.py                       # 1000 clips, 2 local workers
    python scripts/soak_batch.py --files 200 --scheduler tcp://127.0.0.1:8786
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


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def sample(pid: int) -> tuple[float, int, int, int]:
    """(RSS MB summed, open files, threads, processes) over the process tree."""
    rss, fds, threads, procs = 0.0, 0, 0, 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            rss += int(status["VmRSS"].split()[0]) / 1024
            threads += int(status["Threads"])
            fds += len(os.listdir(f"/proc/{p}/fd"))
            procs += 1
        except (OSError, KeyError):
            continue
    return rss, fds, threads, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="64x48")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "edges.yaml")
    args = parser.parse_args()
    from media import write_clip

    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = folder / "clip0000.avi"
        write_clip(first, n=args.frames, width=width, height=height)
        clips = [first]
        for i in range(1, args.files):  # copies: the batch does the same work per file
            clip = folder / f"clip{i:04d}.avi"
            os.link(first, clip)
            clips.append(clip)
        out = folder / "out"
        command = [sys.executable, "-m", "pipeline", "batch", str(args.config), *map(str, clips),
                   "--out", str(out)]
        command += ["--scheduler", args.scheduler] if args.scheduler else \
            ["--workers", str(args.workers)]
        start = time.monotonic()
        log, errors = open(folder / "stdout.txt", "w+"), open(folder / "stderr.txt", "w+")
        proc = subprocess.Popen(command, stdout=log, stderr=errors, text=True)  # no pipe to fill
        samples = []
        while proc.poll() is None:
            time.sleep(args.every)
            rss, fds, threads, procs = sample(proc.pid)
            if not procs:  # it ended while we slept
                break
            done = len(list(out.glob("*.mkv"))) if out.exists() else 0
            samples.append((time.monotonic() - start, rss, fds, threads, procs, done))
            print(f"{samples[-1][0]:7.1f} s  RSS {rss:7.1f} MB  fds {fds:4d}  threads "
                  f"{threads:3d}  processes {procs}  outputs {done}", flush=True)
        proc.wait()
        took = time.monotonic() - start
        log.seek(0)
        errors.seek(0)
        stdout, stderr = log.read(), errors.read()
        print(stdout.splitlines()[-1] if stdout else "", stderr.strip()[-500:])
        import av

        bad = []
        for clip in clips:
            target = out / f"{clip.stem}.mkv"
            try:
                with av.open(str(target)) as c:
                    count = sum(1 for _ in c.decode(c.streams.video[0]))
            except (OSError, av.FFmpegError):
                count = -1
            if count != args.frames:
                bad.append((target.name, count))
        steady = samples[max(1, len(samples) // 10):] or samples
        if steady:
            a, z = steady[0], steady[-1]
            rss = [s[1] for s in steady]
            fds = [s[2] for s in steady]
            print(f"after the first tenth ({len(steady)} samples): RSS {a[1]:.1f} -> {z[1]:.1f} "
                  f"MB (range {min(rss):.1f}..{max(rss):.1f}), open files {a[2]} -> {z[2]} "
                  f"(range {min(fds)}..{max(fds)}), threads {a[3]} -> {z[3]}")
        print(f"{args.files} files in {took:.1f} s ({args.files / took:.1f} files/s); "
              f"exit {proc.returncode}; outputs verified: {args.files - len(bad)} whole, "
              f"{len(bad)} not" + (f" (first: {bad[0]})" if bad else ""))
        sys.exit(1 if bad or proc.returncode else 0)


if __name__ == "__main__":
    main()
