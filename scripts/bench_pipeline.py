#!/usr/bin/env python
"""End-to-end fps of a file job against each of its stages alone, on the same input.

decode only  : VideoFileSource reading every frame
filter only  : the config's chain on frames already in memory
encode only  : the encode policy + the video writer on results already in memory
end to end   : run_config(source=file, output=file) streaming: reader, filter and writer
               threads, from the first read to the last frame written (Stats.elapsed)
job, all in  : the whole run_config call: also opening, planning the banks, verifying
               and renaming the output (fixed costs, amortised over --frames)

The overlap target: end to end >= 0.9x the slowest stage alone. On two cores that holds
when one stage dominates (the usual case: the filter); stages of equal weight share the
cores and the job runs near their sum / 2.

    python scripts/bench_pipeline.py                       # configs/gabor_mosaic.yaml, 720p
    python scripts/bench_pipeline.py --config configs/edges.yaml --size 1280x720 --frames 120
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pipeline import load_config, run_config  # noqa: E402
from pipeline._entry import steady_heap  # noqa: E402
from pipeline.encode import Encoder  # noqa: E402
from pipeline.io.sinks import open_sink  # noqa: E402
from pipeline.io.sources import VideoFileSource  # noqa: E402
from pipeline.stages import build_chain  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_input(path: Path, width: int, height: int, frames: int) -> None:
    """An MPEG-4 Part 2 clip (quantiser 3), no sound: bench_e2e.py's maker."""
    from bench_e2e import make_input as make

    make(path, frames, width, height, codec="mpeg4", sound=False)


def fps(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "gabor_mosaic.yaml")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--output-ext", default=".mp4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    steady_heap()  # as the CLI does
    width, height = (int(v) for v in args.size.lower().split("x"))
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "input.mp4"
        make_input(video, width, height, args.frames)
        with VideoFileSource(video) as src:
            fmt = src.open()
        chain = build_chain(config, fmt)
        frames = []
        with VideoFileSource(video) as src:
            src.open()
            while (f := src.read()) is not None:
                frames.append(f)
        n = len(frames)
        results = [chain(f) for f in frames]
        best: dict[str, float] = {}
        shares: list[str] = []  # how each end-to-end run shared the cores (pipeline/cores.py)
        cpu: dict[str, float] = {}  # CPU seconds of all threads, in the round of the best wall

        def keep(name: str, seconds: float, cpu_s: float = float("nan")) -> None:
            if seconds < best.get(name, float("inf")):
                best[name], cpu[name] = seconds, cpu_s

        for rep in range(args.repeat):  # interleaved: every stage once per round
            start, c0 = time.perf_counter(), time.process_time()
            with VideoFileSource(video) as src:
                src.open()
                while src.read() is not None:
                    pass
            keep("decode only", time.perf_counter() - start, time.process_time() - c0)

            start, c0 = time.perf_counter(), time.process_time()
            for f in frames:
                chain(f)
            keep("filter only", time.perf_counter() - start, time.process_time() - c0)

            out = Path(tmp) / f"enc{rep}{args.output_ext}"
            encoder = Encoder(config.encode, chain.out_shape)
            sink = open_sink(str(out))
            start, c0 = time.perf_counter(), time.process_time()
            sink.open(encoder.shape, fmt.fps)
            for y in results:
                sink.write(encoder(y))
            sink.close()
            keep("encode only", time.perf_counter() - start, time.process_time() - c0)

            out = Path(tmp) / f"e2e{rep}{args.output_ext}"
            start, c0 = time.perf_counter(), time.process_time()
            stats = run_config(config, source=str(video), output=str(out))
            keep("job, all in", time.perf_counter() - start,  # + open, plan, verify, rename
                 time.process_time() - c0)
            keep("end to end", stats.elapsed)  # streaming: first read to last frame written
            assert stats.frames_written == n
            shares.append(stats.cores or "filter on every core")

    slowest = min(fps(n, best[k]) for k in ("decode only", "filter only", "encode only"))
    print(f"{args.config.name}, {width}x{height}, {n} frames, output {args.output_ext} "
          f"(best of {args.repeat} interleaved rounds)")
    print(f"{'stage':<14}{'fps':>9}{'ms/frame':>10}{'cpu ms/frame':>14}")
    for name, seconds in best.items():
        used = cpu.get(name, float("nan"))
        print(f"{name:<14}{fps(n, seconds):>9.1f}{seconds / n * 1e3:>10.2f}"
              f"{used / n * 1e3 if used == used else float('nan'):>14.2f}")
    e2e = fps(n, best["end to end"])
    print(f"end to end / slowest stage alone: {e2e / slowest:.2f}  (target >= 0.90); "
          f"job all in: {fps(n, best['job, all in']) / slowest:.2f}")
    # The cores bound: the stages' CPU time shared over the cores, if more than the slowest.
    stages = ("decode only", "filter only", "encode only")
    cores_s = sum(cpu[k] for k in stages) / (os.cpu_count() or 1)
    bound = max(max(best[k] for k in stages), cores_s)
    print(f"cores bound (stages' CPU time / {os.cpu_count()} cores, or the slowest stage): "
          f"{bound / n * 1e3:.2f} ms/frame; end to end / that bound: "
          f"{bound / best['end to end']:.2f}")
    print("end to end runs: " + "; ".join(f"{s} x{shares.count(s)}" for s in dict.fromkeys(shares)))


if __name__ == "__main__":
    main()
