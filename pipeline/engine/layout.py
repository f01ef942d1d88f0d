"""The fft method's layout: full-frame transforms or tiles of one size, once per format.

The cost model ranks the layouts. It is coarse between them: layouts it put within 10 %
of each other were measured up to 1.5x apart (cache effects it does not see: a dense
bank's 384² tiles, 13 MB of buffers a worker, were predicted 19 ms and ran 27 ms, while
128² tiles were predicted 23 and ran 23). So when layouts are within ``timing.CLOSE_CALL`` of the
best and worth the time, up to ``TIMED`` of them (full-frame and the best tilings) are
timed on a synthetic frame, once: the result is kept in the cache folder
(``fft_layouts.json``, keyed by the frame format, the bank's shape and the layouts) and
read on every later start instead of timing again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .fft import FFTMethod, spectra_bytes, transform_ms_estimate
from .sizes import likely_shape
from .spec import BankSpec
from .tiles import TiledFFTMethod, Tiling, tiled_cost, tilings
from . import timing
from .timing import as_given, interleaved_ms, keep_ms, saved_ms, spec_key, synthetic_frame

LAYOUT_FILE = "fft_layouts.json"
SPECTRA_BUDGET = 1 << 30  # bytes of kernel spectra the full-frame layout may hold
TIMING_MIN_MS = 4.0  # below this a wrong layout costs less than timing them would
TIMED = 3  # layouts timed at most: full-frame and the best tilings
LAYOUT_LIMIT = 256  # timings kept; the oldest go first

Candidate = tuple[float, Tiling | None]  # (predicted ms, tiles or None for full-frame)


def fft_need(spec: BankSpec) -> tuple[int, int]:
    """Rows and columns a full-frame transform must hold."""
    h, w = spec.in_shape[:2]
    t, b, left, r = spec.pads
    if spec.border == "zero":  # the circular wrap supplies the zeros
        return h + max(t, b), w + max(left, r)
    return spec.padded_shape


def fft_cost(spec: BankSpec, k: dict[str, float], shape: tuple[int, int]) -> float:
    """Predicted ms per frame of full-frame transforms of ``shape``."""
    c_in = spec.c_in
    bins = shape[0] * (shape[1] // 2 + 1)
    products = c_in if spec.shared else spec.c_out * spec.in_per_group
    ms = (c_in + spec.c_out) * transform_ms_estimate(shape) * k["fft_unit_ms"]
    ms += products * bins * k["fft_cmac_ns"] * 1e-6
    ms += math.prod(spec.padded_shape) * c_in * k["fft_fill_ns"] * 1e-6
    return ms


def candidates(spec: BankSpec, k: dict[str, float]) -> list[Candidate]:
    """Every layout that can run ``spec``, cheapest predicted first."""
    out: list[Candidate] = [(tiled_cost(spec, k, t), t) for t in tilings(spec)]
    shape = likely_shape(fft_need(spec), spec.dtype)
    if spectra_bytes(spec, shape) <= SPECTRA_BUDGET:
        out.append((fft_cost(spec, k, shape), None))
    return sorted(out, key=lambda c: c[0])


def describe(spec: BankSpec, tiling: Tiling | None) -> str:
    if tiling is not None:
        return tiling.describe()
    shape = likely_shape(fft_need(spec), spec.dtype)
    return f"{shape[0]}x{shape[1]} transforms"


def _close_calls(ranked: list[Candidate]) -> list[Candidate] | None:
    """The layouts to time: the best tilings, then full-frame, each within a close call of
    the best prediction (``TIMED`` at most); None when fewer than two are."""
    if not ranked or ranked[0][0] < TIMING_MIN_MS:
        return None
    close = [c for c in ranked if c[0] <= ranked[0][0] * timing.CLOSE_CALL]
    full = [c for c in close if c[1] is None]
    tiled = [c for c in close if c[1] is not None][: TIMED - len(full)]
    return tiled + full if len(tiled) + len(full) >= 2 else None


def _names(timed: list[Candidate]) -> list[str]:
    return [t.describe() if t else "full-frame" for _, t in timed]  # stable names


def _key(spec: BankSpec, timed: list[Candidate]) -> str:
    return f"{spec_key(spec)}: {' | '.join(_names(timed))}"


def choose(spec: BankSpec, k: dict[str, float]) -> tuple[Tiling | None, float | None, str]:
    """(tiles or None, ms per frame, note) of the layout the fft method uses: a timed
    result from the cache folder where the model's call was close, else the model's."""
    ranked = candidates(spec, k)
    if not ranked:
        shape = likely_shape(fft_need(spec), spec.dtype)
        need = spectra_bytes(spec, shape)
        return None, None, f"kernel spectra would need {need / 2**30:.1f} GiB (limit 1 GiB)"
    close = _close_calls(ranked)
    timed = saved_ms(LAYOUT_FILE, _key(spec, close), _names(close)) if close else None
    if timed is not None:
        (ms, tiling), *others = sorted(zip(timed, (t for _, t in close)), key=lambda c: c[0])
        rest = ", ".join(f"{describe(spec, t)} {m:.1f}" for m, t in others)
        return tiling, float(ms), f"{describe(spec, tiling)} (timed {ms:.1f} ms/frame, {rest})"
    cost, tiling = ranked[0]
    return tiling, cost, describe(spec, tiling)


def build(spec: BankSpec, tiling: Tiling | None) -> Any:
    return FFTMethod(spec) if tiling is None else TiledFFTMethod(spec, tiling)


def time_layouts(spec: BankSpec, k: dict[str, float], repeat: int = 5) -> Any | None:
    """Time the close layouts if the model's call is close and no timing is saved.

    Saves the timings (so ``choose`` reads them, now and on every later start) and returns
    the faster method, already built; None when nothing was timed.
    """
    close = _close_calls(candidates(spec, k))
    if close is None:
        return None
    key = _key(spec, close)
    if saved_ms(LAYOUT_FILE, key, _names(close)) is not None:
        return None
    engines = [build(spec, tiling) for _, tiling in close]
    timed = interleaved_ms([as_given(e, spec) for e in engines], synthetic_frame(spec), repeat)
    keep_ms(LAYOUT_FILE, key, _names(close), timed, LAYOUT_LIMIT)
    return engines[int(np.argmin(timed))]
