#!/usr/bin/env python
"""Soak: a live loopback MJPEG stream faster than the filter, for N minutes.

A second process serves synthetic frames over HTTP at --fps (pipeline's own --serve
sink); this process runs the config on that stream and samples itself every --every
seconds: RSS, open files, threads, frames read / written / dropped, latency p50/p99.
The verdict compares everything after the first minute (warm-up) with its end. RSS is
reported twice: at the sample instant (which catches 0, 1 or 2 frames in flight) and as
each window's peak (VmHWM, reset every sample), the steadier measure of a leak.

    python scripts/soak.py --minutes 10                 # 1920x1080 @ 30 fps, gabor mosaic
    python scripts/soak.py --minutes 1 --size 640x480   # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

ROOT = Path(__file__).resolve().parent.parent


def serve(width: int, height: int, fps: float) -> None:
    """The stream's process: synthetic frames into an MJPEG server, paced at ``fps``."""
    from pipeline.io.sources import SyntheticSource
    from pipeline.io.viewers import MjpegServerSink

    sink = MjpegServerSink("127.0.0.1:0")
    sink.open((height, width, 3), fps)
    print(sink.port, flush=True)
    source = SyntheticSource(width, height, fps, frames=10**9)
    start, i = time.monotonic(), 0
    while True:
        sink.write(source.frame(i % 300))
        i += 1
        time.sleep(max(0.0, start + i / fps - time.monotonic()))


def proc_status() -> dict[str, int]:
    """RSS now, peak RSS since the last sample (VmHWM, then reset), threads, open files."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                fields[key] = int(value.split()[0])
    fields["fds"] = len(os.listdir("/proc/self/fd"))
    try:  # the next window's peak starts from here (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "gabor_mosaic.yaml")
    parser.add_argument("--output", default="null", help="null, or a file to record into")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.serve_only:
        serve(width, height, args.fps)
        return

    from pipeline import run_config
    from pipeline._entry import steady_heap

    steady_heap()  # as the CLI does

    server = subprocess.Popen([sys.executable, __file__, "--serve-only", "--size", args.size,
                               "--fps", str(args.fps)], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    latest: dict = {}
    samples: list[dict] = []
    stop = threading.Event()
    started = time.monotonic()

    def progress(stats) -> None:
        latest["stats"] = stats

    def monitor() -> None:
        seen = 0
        while not stop.wait(args.every):
            stats = latest.get("stats")
            if stats is None:
                continue
            window = stats.latencies[seen:]
            seen = len(stats.latencies)
            lat = sorted(window) or [0.0]
            samples.append({
                "t": time.monotonic() - started, **proc_status(),
                "read": stats.frames_read, "written": stats.frames_written,
                "dropped": stats.dropped,
                "p50": lat[len(lat) // 2] * 1e3, "p99": lat[int(len(lat) * 0.99)] * 1e3,
            })
            s = samples[-1]
            print(f"{s['t']:7.0f} s  RSS {s['VmRSS'] / 1024:6.1f} MB (window peak "
                  f"{s['VmHWM'] / 1024:6.1f})  fds {s['fds']:3d}  "
                  f"threads {s['Threads']:3d}  read {s['read']:6d}  written {s['written']:6d}  "
                  f"dropped {s['dropped']:6d}  latency p50 {s['p50']:6.1f} ms "
                  f"p99 {s['p99']:6.1f} ms", flush=True)
            if s["t"] >= args.minutes * 60:
                stop.set()

    threading.Thread(target=monitor, daemon=True).start()
    print(f"soak: {args.config.name} on {url} ({args.size} @ {args.fps:g} fps) for "
          f"{args.minutes:g} min -> {args.output}", flush=True)
    try:
        stats = run_config(args.config, source=url, output=args.output, progress=progress,
                           stop=stop, force=True)
    finally:
        server.kill()
    warm = [s for s in samples if s["t"] >= 60] or samples
    first, last = warm[0], warm[-1]
    for key, what in (("VmHWM", "peak RSS per window"), ("VmRSS", "RSS at the sample")):
        values = [s[key] for s in warm]
        print(f"after the first minute ({len(warm)} samples), {what}: "
              f"{first[key] / 1024:.1f} -> {last[key] / 1024:.1f} MB "
              f"({(last[key] / first[key] - 1) * 100:+.1f} %), range "
              f"{min(values) / 1024:.1f}..{max(values) / 1024:.1f} MB "
              f"({(min(values) / first[key] - 1) * 100:+.1f} % .. "
              f"{(max(values) / first[key] - 1) * 100:+.1f} % of the first)")
    print(f"open files {sorted({s['fds'] for s in warm})}, threads "
          f"{sorted({s['Threads'] for s in warm})}")
    accounted = stats.frames_written + stats.dropped + stats.discarded
    print(f"frames: {stats.frames_read} read = {stats.frames_written} written + "
          f"{stats.dropped} dropped + {stats.discarded} unprocessed at stop: "
          f"{'exact' if stats.frames_read == accounted else 'MISMATCH'}")
    print(f"latency over the run: p50 {stats.latency_ms(50):.1f} ms, "
          f"p99 {stats.latency_ms(99):.1f} ms")


if __name__ == "__main__":
    main()
