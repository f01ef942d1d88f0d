"""Timing methods on a synthetic frame: how close calls (between methods, between FFT
layouts) are settled at start, once per format: ``spec_key`` names what was timed in the
cache folder, so later starts read the result instead of timing again."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import cache as disk
from . import threads
from .spec import BankSpec

# Predictions this close (the slower within this factor of the faster) are a close call,
# settled by timing, once per format: between methods (planner.py) and between FFT
# layouts (layout.py). The cost model is linear in taps and pixels and a library's speed
# is not always: cv2.filter2D at 11x11 ran 0.034 ns a tap and pixel on 1280x720 frames,
# 0.018-0.020 on 1080p (calibrated at 720p it predicted 27.6 ms for 13.7 at 1080p); FFT
# layouts predicted within 10 % of each other ran up to 1.5x apart (cache effects).
CLOSE_CALL = 1.5


def spec_key(spec: BankSpec) -> str:
    """The frame format and bank shape a timing holds for, as a cache key."""
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    return (f"{'x'.join(map(str, spec.in_shape))}>{spec.c_out} g{spec.groups}"
            f"{' shared' if spec.shared else ''} k{kh}x{kw} d{dh}x{dw} s{spec.stride} "
            f"pads{spec.pads} {spec.border} {spec.dtype} cores{threads.CORES}"
            + (f" from {spec.source}" if spec.source != spec.dtype else ""))


def synthetic_frame(spec: BankSpec) -> np.ndarray:
    """A fixed random frame of the bank's input format, of the dtype its frames come in
    (an integer source's whole range; float: normal)."""
    rng = np.random.default_rng(0)
    if spec.source.kind == "u":
        return rng.integers(0, np.iinfo(spec.source).max + 1, spec.in_shape, spec.source)
    return rng.standard_normal(spec.in_shape).astype(spec.dtype)


def as_given(engine: Any, spec: BankSpec) -> Callable[[np.ndarray], object]:
    """``engine`` called as a bank calls it: a frame of a dtype it does not read as it is
    copied to the compute dtype first (so a timing on the source's frames counts that)."""
    def call(x: np.ndarray) -> object:
        return engine(x if engine.takes(x.dtype) else x.astype(spec.dtype))

    return call


def interleaved_ms(engines: Sequence[Callable[[np.ndarray], object]], frame: np.ndarray,
                   repeat: int = 5) -> list[float]:
    """Median ms per call of each engine on ``frame``: a warm-up each, then ``repeat``
    rounds that call every engine once (interleaved, so a burst of noise from elsewhere on
    the machine slows them alike)."""
    for engine in engines:
        engine(frame)
    times: list[list[float]] = [[] for _ in engines]
    for _ in range(repeat):
        for engine, spent in zip(engines, times, strict=True):
            start = time.perf_counter()
            engine(frame)
            spent.append(time.perf_counter() - start)
    return [float(np.median(t)) * 1e3 for t in times]


def saved_ms(file: str, key: str, names: Sequence[str]) -> list[float] | None:
    """The ms per frame kept in cache ``file`` under ``key`` for each of ``names``, in
    that order; None unless every one is there and a positive number."""
    entry = disk.load_json(file, disk.engine_stamp()).get(key)
    values = [entry.get(n) for n in names] if isinstance(entry, dict) else [None]
    if not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values):
        return None
    return [float(v) for v in values]


def keep_ms(file: str, key: str, names: Sequence[str], ms: Sequence[float],
            limit: int) -> None:
    """Keep the timings of ``names`` for later starts; past ``limit`` keys the oldest go
    (a batch may see many frame sizes)."""
    disk.update_json(file, key, {n: round(m, 3) for n, m in zip(names, ms, strict=True)},
                     limit=limit, stamp=disk.engine_stamp())
