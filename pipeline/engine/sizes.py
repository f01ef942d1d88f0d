"""FFT sizes measured for speed on this machine, not only ``next_fast_len``.

Padding to a fast size matters by 1.5×, and the fastest is not the smallest smooth
number: for a 1080p frame 1152×1944 beat next_fast_len's 1125×1944 here. Candidates are
the 7-smooth sizes up to 25 % larger per axis; 1-D transform times pick the four best
per axis, their 16 2-D shapes are timed (forward + inverse, FFTW_ESTIMATE, whose ranking
matched FFTW_MEASURE's here), and the winner is kept in the cache folder.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from . import cache as disk

SIZES_FILE = "fft_sizes.json"
SIZES_LIMIT = 1024  # sizes kept; the oldest go first
_SLACK = 1.25  # look at sizes up to 25 % past the minimum
_PER_AXIS = 4  # sizes per axis whose 2-D combinations are timed


def smooth_sizes(n: int, limit: int) -> list[int]:
    """Sizes in [n, limit] with no prime factor above 7 (FFTW's fast codelets)."""
    out = []
    for m in range(max(n, 1), max(limit, n) + 1):
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            out.append(m)
    return out


def _timed(fn, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _axis_cost(sizes: list[int], dtype: np.dtype, rows: bool, batch: int = 32
               ) -> dict[int, float]:
    """Seconds per 1-D transform of each length (FFTW_ESTIMATE, one thread): real ones
    along contiguous rows, or complex ones along a strided axis (a 2-D FFT's columns)."""
    import pyfftw

    costs = {}
    for n in sizes:
        if rows:
            a = pyfftw.empty_aligned((batch, n), dtype=dtype)
            a[:] = 1
            plan = pyfftw.builders.rfft(a, axis=1, planner_effort="FFTW_ESTIMATE", threads=1)
        else:
            a = pyfftw.empty_aligned((n, batch), dtype=np.result_type(dtype, np.complex64))
            a[:] = 1
            plan = pyfftw.builders.fft(a, axis=0, planner_effort="FFTW_ESTIMATE", threads=1)
        costs[n] = _timed(plan) / batch
    return costs


def _measure(need: tuple[int, int], dtype: np.dtype) -> tuple[int, int]:
    """Rank each axis by 1-D transform time, then time the 2-D shapes of the best few."""
    import pyfftw

    h_sizes = smooth_sizes(need[0], int(need[0] * _SLACK) + 8)
    w_sizes = smooth_sizes(need[1], int(need[1] * _SLACK) + 8)
    rows, cols = _axis_cost(w_sizes, dtype, rows=True), _axis_cost(h_sizes, dtype, rows=False)
    best_w = sorted(w_sizes, key=rows.get)[:_PER_AXIS]
    best_h = sorted(h_sizes, key=cols.get)[:_PER_AXIS]
    runs = {}
    for fh, fw in itertools.product(best_h, best_w):
        a = pyfftw.empty_aligned((fh, fw), dtype=dtype)
        a[:] = 1
        forward = pyfftw.builders.rfft2(a, planner_effort="FFTW_ESTIMATE", threads=1)
        spectrum = forward()
        inverse = pyfftw.builders.irfft2(spectrum, s=(fh, fw), planner_effort="FFTW_ESTIMATE",
                                         threads=1)
        runs[(fh, fw)] = lambda f=forward, i=inverse: (f(), i())
    # Round-robin, best of five: a noisy moment slows one round of everyone, not one shape.
    best = {shape: float("inf") for shape in runs}
    for _ in range(5):
        for shape, run in runs.items():
            best[shape] = min(best[shape], _timed(run, repeat=1))
    # Shapes within 5 % are a tie on this noisy a machine: take the most factors of two.
    fastest = min(best.values())
    ties = [shape for shape, t in best.items() if t <= fastest * 1.05]
    return max(ties, key=lambda sh: (_twos(sh[0]) + _twos(sh[1]), -sh[0] * sh[1]))


def _twos(n: int) -> int:
    return (n & -n).bit_length() - 1


def _key(need: tuple[int, int], dtype: np.dtype) -> str:
    return f"{need[0]}x{need[1]}:{np.dtype(dtype).name}"


def _saved(need: tuple[int, int], dtype: np.dtype) -> tuple[int, int] | None:
    saved = disk.load_json(SIZES_FILE, disk.fftw_stamp()).get(_key(need, dtype))
    if isinstance(saved, list) and len(saved) == 2 and saved[0] >= need[0] and saved[1] >= need[1]:
        return int(saved[0]), int(saved[1])
    return None


def likely_shape(need: tuple[int, int], dtype: np.dtype = np.dtype("float32")) -> tuple[int, int]:
    """For predictions, without timing anything: the measured shape if known (in this
    process or on disk), else the smallest 7-smooth size per axis (a candidate the
    measurement would time). Not scipy's next_fast_len: every bank's plan predicts an FFT
    shape, and importing scipy.fft cost 0.16 s of each start; made after the source
    opened, it was a backlog a live stream dropped (8 of 20 frames at 60 fps)."""
    known = _measured.get((need, np.dtype(dtype)))
    return known or _saved(need, dtype) or (_smallest(need[0]), _smallest(need[1]))


def _smallest(n: int) -> int:
    """The smallest size >= n with no prime factor above 7 (a power of two lies in [n, 2n])."""
    return smooth_sizes(n, 2 * max(n, 1))[0]


def fft_shape(need: tuple[int, int], dtype: np.dtype = np.dtype("float32")) -> tuple[int, int]:
    """The fastest FFT shape at least ``need`` (rows, cols): measured once, cached on disk
    and for the rest of the process (where a read-only cache folder keeps nothing)."""
    dtype = np.dtype(dtype)
    known = _measured.get((need, dtype))
    if known is None:
        known = _measured[(need, dtype)] = _fft_shape(need, dtype)
        while len(_measured) > SIZES_LIMIT:
            del _measured[next(iter(_measured))]
    return known


_measured: dict[tuple[tuple[int, int], np.dtype], tuple[int, int]] = {}


def _fft_shape(need: tuple[int, int], dtype: np.dtype) -> tuple[int, int]:
    """The shape kept on disk, else measured now and kept there (next_fast_len without
    pyFFTW)."""
    saved = _saved(need, dtype)
    if saved:
        return saved
    try:
        import pyfftw  # noqa: F401
    except ImportError:
        from scipy import fft

        return fft.next_fast_len(need[0], real=True), fft.next_fast_len(need[1], real=True)
    shape = _measure(need, dtype)
    disk.update_json(SIZES_FILE, _key(need, dtype), list(shape), limit=SIZES_LIMIT,
                     stamp=disk.fftw_stamp())
    return shape
