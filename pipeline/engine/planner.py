"""Method choice: a pure cost model per method, one table of constants, decided once.

``choose(spec, requested)`` is a pure function of the resolved bank and the constants
(scipy.signal.choose_conv_method's shape, without its constants tuned elsewhere): the
shipped defaults were fitted on the 2-core reference machine and `pipeline bench`
replaces them with this machine's (``calibration.json`` in the cache folder), and
timings kept there by earlier starts are read, never taken. ``decide`` is what the bank
calls, once per frame format (a stream never changes method midway): it times what the
model cannot call (close calls, FFT layouts; ``measure=True``: every candidate) on a
synthetic frame, keeps those timings in the cache folder, then chooses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from . import cache as disk
from . import layout
from .direct import DFT_TAPS, DirectMethod, default_strategy
from . import native
from .depthwise import fits as depthwise_fits
from .native import instruction_set
from .separable import SeparableMethod, passes
from .separable import default_strategy as separable_strategy
from .sizes import fft_shape
from .spec import BankSpec
from .tiles import TILE_SIZES, unit_key
from . import timing
from .timing import as_given, interleaved_ms, keep_ms, saved_ms, spec_key, synthetic_frame

CALIBRATION_FILE = "calibration.json"

# ns per unit of work, unless named otherwise: `pipeline bench` on the 2-core reference
# machine (AMD EPYC, OpenCV 5.0, numpy 2.4 with OpenBLAS, pyFFTW 0.15).
DEFAULT_CONSTANTS = {
    "call_ms": 0.005,  # fixed cost of one OpenCV call
    "filter2d_pixel_ns": 0.25,  # per output pixel·channel: one pass over memory
    "filter2d_tap_ns": 0.030,  # per output pixel·channel·tap
    "umat_pixel_ns": 0.21,  # copies in and out of a UMat (kernels of 130+ taps)
    "add_pixel_ns": 0.10,  # accumulating one plane into another
    "gemm_gather_ns": 0.17,  # per im2col element (all cores)
    "gemm_mac_ns": 0.022,  # per multiply-accumulate (all cores)
    "native_out_ns": 0.28,  # C kernel: per output value (planar fill, result written; all cores)
    "native_mac_ns": 0.0099,  # C kernel: per multiply-accumulate (all cores)
    "dw_out_ns": 0.24,  # depthwise C kernel: per output value (frame read, result written)
    "dw_mac_ns": 0.011,  # depthwise C kernel: per multiply-accumulate (all cores)
    "sep_pixel_ns": 0.27,  # per sepFilter2D pass, per pixel·channel
    "sep_tap_ns": 0.045,  # per pixel·channel·1-D tap
    "sepc_out_ns": 0.33,  # separable C kernel: per output value per pass pair (all cores)
    "sepc_tap_ns": 0.017,  # separable C kernel: per output value per 1-D tap (all cores)
    "fft_unit_ms": 0.09,  # per N·log2(N)/1e6 of one real 2-D transform (FFTW, all cores)
    "fft_cmac_ns": 0.45,  # per spectrum product (and sum) per bin (all cores; C loop)
    "fft_fill_ns": 0.33,  # per pixel·channel written into the transform input
    # per N·log2(N)/1e6 of one tile transform of each size (FFT_ESTIMATE plans, all cores)
    **{unit_key(n): ms for n, ms in zip(TILE_SIZES, (0.069, 0.064, 0.072, 0.068, 0.056,
                                                      0.069, 0.068), strict=True)},
    "tile_cmac_ns": 0.10,  # per spectrum product (and sum) per tile bin, in cache (C loop)
    "tile_copy_ns": 0.21,  # per sample copied into a tile or out of one (all cores)
    "tile_chunk_ms": 0.05,  # fixed cost of one worker's batch of tiles (calls, views)
    # a uint8 frame copied to float32 first, per value: what a method that cannot read the
    # source's frames as they are (OpenCV's calls) pays besides its own work
    "convert_ns": 0.22,
}


@cache
def constants() -> dict[str, float]:
    """The shipped defaults updated by this machine's calibration, when there is one."""
    saved = disk.load_json(CALIBRATION_FILE, disk.engine_stamp()).get("constants", {})
    good = {k: float(v) for k, v in saved.items()
            if k in DEFAULT_CONSTANTS and isinstance(v, int | float) and math.isfinite(v) and v > 0}
    return {**DEFAULT_CONSTANTS, **good}


@dataclass(frozen=True)
class Choice:
    """The method picked for one bank, why, and every candidate's cost in ms per frame."""

    method: str
    reason: str
    costs: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    measured: bool = False


def _full_pixels(spec: BankSpec) -> int:
    """Pixels of the stride-1 valid correlation (what filter2D/sepFilter2D compute)."""
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    hp, wp = spec.padded_shape
    return (hp - dh * (kh - 1)) * (wp - dw * (kw - 1))


def direct_cost(spec: BankSpec, k: dict[str, float]) -> float:
    h, w, c_out = spec.out_shape
    kh, kw = spec.kernel_size
    taps = kh * kw
    strategy = default_strategy(spec)
    macs = h * w * c_out * spec.in_per_group * taps
    if strategy == "native":
        return (h * w * c_out * k["native_out_ns"] + macs * k["native_mac_ns"]) * 1e-6
    if strategy == "depthwise":
        return (h * w * c_out * k["dw_out_ns"] + macs * k["dw_mac_ns"]) * 1e-6
    if strategy == "gemm":
        gathered = h * w * spec.in_per_group * spec.groups * taps
        return (gathered * k["gemm_gather_ns"] + macs * k["gemm_mac_ns"]) * 1e-6
    pixels = _full_pixels(spec)
    planes = spec.c_in if spec.shared else c_out * spec.in_per_group
    calls = 1 if spec.shared else planes
    ns = planes * pixels * (k["filter2d_pixel_ns"] + taps * k["filter2d_tap_ns"])
    if taps >= DFT_TAPS:
        ns += planes * pixels * k["umat_pixel_ns"]
    if not spec.shared:
        ns += (planes - c_out) * pixels * k["add_pixel_ns"]
    return calls * k["call_ms"] + ns * 1e-6


def separable_cost(spec: BankSpec, k: dict[str, float], terms: int,
                   identities: int = 0) -> float:
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    if separable_strategy(spec) == "native":  # a shared kernel: terms and identities are its own
        h, w, c = spec.out_shape
        outputs = h * w * c
        ns = terms * outputs * (k["sepc_out_ns"] + (kh + kw) * k["sepc_tap_ns"])
        return (ns + identities * outputs * k["dw_out_ns"]) * 1e-6
    pixels = _full_pixels(spec)
    channels = spec.c_in if spec.shared else 1
    taps = dh * (kh - 1) + 1 + dw * (kw - 1) + 1  # sepFilter2D does not skip zero taps
    ns = terms * channels * pixels * (k["sep_pixel_ns"] + taps * k["sep_tap_ns"])
    ns += identities * channels * pixels * k["add_pixel_ns"]  # c·x added (cv2.scaleAdd)
    ns += max(terms - spec.c_out // (spec.c_in if spec.shared else 1), 0) * channels * pixels * \
        k["add_pixel_ns"]
    return terms * k["call_ms"] + ns * 1e-6


def predict(spec: BankSpec, k: dict[str, float] | None = None
            ) -> tuple[dict[str, float | None], dict[str, str]]:
    """Predicted ms per frame of every method, and a note for each."""
    k = k or constants()
    costs: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    costs["direct"] = direct_cost(spec, k)
    notes["direct"] = {
        "native": f"register-blocked C kernel ({instruction_set()})",
        "depthwise": f"depthwise C kernel, border as it reads ({instruction_set()})",
        "gemm": "im2col + GEMM",
    }.get(default_strategy(spec), "filter2D" + (
        " on a UMat ROI" if math.prod(spec.kernel_size) >= DFT_TAPS else ""))
    terms, plus = passes(spec)
    costs["separable"] = separable_cost(spec, k, terms, plus)
    distinct = 1 if spec.shared else spec.c_out * spec.in_per_group
    notes["separable"] = f"rank {terms / distinct:g} per kernel" if distinct > 1 else \
        f"rank {terms}"
    if plus:
        notes["separable"] += " + identity" if plus == distinct else \
            f" + identity in {plus} of {distinct}"
    notes["separable"] += f", C kernel ({instruction_set()})" \
        if separable_strategy(spec) == "native" else ", sepFilter2D"
    costs["fft"], notes["fft"] = layout.choose(spec, k)[1:]
    if spec.source != spec.dtype:  # integer frames: OpenCV's calls need a float copy first
        copy = math.prod(spec.in_shape) * k["convert_ns"] * 1e-6
        for method, takes in (("direct", default_strategy(spec) != "filter2d"),
                              ("separable", separable_strategy(spec) == "native")):
            if not takes and costs[method] is not None:
                costs[method] += copy
                notes[method] += f" (+ {spec.source} -> {spec.dtype} copy)"
    return costs, notes


def choose(spec: BankSpec, requested: str) -> Choice:
    """The method for ``spec``: ``requested`` unless it is 'auto', then the cheapest
    predicted. Pure: decides from the cost model (and timings kept by earlier starts)."""
    costs, notes = predict(spec)
    if requested != "auto":
        return forced(requested, costs, notes)
    return cheapest(costs, notes, measured=False)


def forced(requested: str, costs: dict[str, float | None], notes: dict[str, str]) -> Choice:
    if costs.get(requested) is None:
        from ..errors import ConfigError

        raise ConfigError(f"method={requested!r} cannot run this bank: {notes[requested]}")
    return Choice(requested, "forced by method", costs, notes)


def cheapest(costs: dict[str, float | None], notes: dict[str, str], measured: bool) -> Choice:
    """The cheapest usable method of ``costs`` (ms per frame, predicted or ``measured``)."""
    usable = {m: c for m, c in costs.items() if c is not None}
    best = min(usable, key=usable.get)
    others = sorted((c, m) for m, c in usable.items() if m != best)
    reason = f"fastest {'measured' if measured else 'predicted'}: {usable[best]:.2f} ms/frame"
    if others:
        reason += f", {others[0][0] / max(usable[best], 1e-9):.1f}x ahead of {others[0][1]}"
    return Choice(best, reason, costs, notes, measured=measured)


# Timings this close are a tie, and a tie goes to the method with fewer moving parts
# (in this order): no FFT buffers or kernel spectra, exact zeros, NaNs local by design.
TIE = 1.05
SIMPLER = ("direct", "separable", "fft")


def _fft_in_question(requested: str, costs: dict[str, float | None]) -> bool:
    """Whether the fft method may run: forced, or within a close call of the best."""
    fft = costs.get("fft")
    if fft is None or requested not in ("fft", "auto"):
        return False
    best = min(c for c in costs.values() if c is not None)
    return requested == "fft" or fft <= timing.CLOSE_CALL * best


def decide(spec: BankSpec, requested: str, *, measure: bool = False,
           built: dict[str, Any] | None = None) -> Choice:
    """``choose``, after timing what the model cannot call; writes the cache folder.

    First the FFT's layout, where layouts are a close call and the fft method may run
    (``layout.time_layouts``). Then ``measure``: every candidate timed. Else, for 'auto',
    the two best candidates when the model's call is close (``timing.CLOSE_CALL``): the
    timings are kept in the cache folder (``TIMINGS_FILE``, keyed by the format, the
    bank and how each method would run) and read on later starts. Methods built for
    timing are left in ``built`` so the winner is not built twice.
    """
    choice = choose(spec, requested)
    if _fft_in_question(requested, choice.costs):
        engine = layout.time_layouts(spec, constants())
        if engine is not None:  # new layout timings, now kept: choose reads them
            if built is not None:
                built["fft"] = engine
            choice = choose(spec, requested)
    if requested != "auto":
        return choice
    if measure:
        return cheapest(measure_costs(spec, choice.costs, built), choice.notes, measured=True)
    ranked = sorted((c, m) for m, c in choice.costs.items() if c is not None)
    if len(ranked) < 2 or ranked[1][0] > ranked[0][0] * timing.CLOSE_CALL:
        return choice
    pair = {m: c for c, m in ranked[:2]}
    names = sorted(pair)
    notes = choice.notes
    if "fft" in pair:  # the key names the FFT shape: the measured one (kept), not the guess
        fft_shape(layout.fft_need(spec), spec.dtype)
        notes = {**notes, "fft": layout.choose(spec, constants())[2]}
    key = f"{spec_key(spec)}: " + " | ".join(f"{m} ({notes[m]})" for m in names)
    saved = saved_ms(TIMINGS_FILE, key, names)
    how = "timed on a synthetic frame at an earlier start"
    if saved is None:
        timed = measure_costs(spec, pair, built)
        keep_ms(TIMINGS_FILE, key, names, [timed[m] for m in names], TIMINGS_LIMIT)
        how = "timed on a synthetic frame"
    else:
        timed = dict(zip(names, saved, strict=True))
    best, other = sorted(pair, key=timed.get)
    tie = timed[other] <= timed[best] * TIE and SIMPLER.index(other) < SIMPLER.index(best)
    if tie:
        best, other = other, best
    costs = {**choice.costs, **timed}
    reason = (f"close call, {how}: {best} {timed[best]:.2f} ms/frame, "
              f"{other} {timed[other]:.2f} ms/frame"
              f"{f' (within {TIE - 1:.0%}: the simpler method)' if tie else ''}")
    return Choice(best, reason, costs, notes, measured=True)


TIMINGS_FILE = "close_calls.json"
TIMINGS_LIMIT = 256  # timings kept; the oldest go first


def build(spec: BankSpec, method: str) -> Any:
    """The callable that computes ``spec`` by ``method``; all set-up happens here, once."""
    if method == "fft":
        return layout.build(spec, layout.choose(spec, constants())[0])
    if method == "separable":
        return SeparableMethod(spec)
    return DirectMethod(spec)


BANDED_TAPS = 25  # kernels this small go to the C kernel when the result is finished in bands


def banded(spec: BankSpec) -> Any | None:
    """The direct method's C kernel for ``spec``, where it runs and the kernel is small:
    what a bank takes instead of OpenCV's whole-frame calls when its result is encoded to
    8 bits band by band. At that size the C kernel is as fast as filter2D / sepFilter2D
    (Sobel pair on a 720p gray frame: 1.1 ms against 1.3 and 1.4) and the encoding then
    costs no pass over the whole float result."""
    kh, kw = spec.kernel_size
    if not (native.available() and spec.dtype == np.float32 and spec.stride == (1, 1)
            and kh * kw <= BANDED_TAPS):
        return None
    return DirectMethod(spec, "depthwise" if depthwise_fits(spec) else "native")


def measure_costs(spec: BankSpec, predicted: dict[str, float | None],
                  built: dict[str, Any] | None = None, repeat: int = 5
                  ) -> dict[str, float | None]:
    """Time each usable method on a synthetic frame, interleaved (``timing.py``); the
    methods built to do so are left in ``built`` when it is given."""
    usable = [m for m, cost in predicted.items() if cost is not None]
    engines = [(built or {}).get(m) or build(spec, m) for m in usable]
    if built is not None:
        built.update(zip(usable, engines, strict=True))
    timed = dict(zip(usable, interleaved_ms([as_given(e, spec) for e in engines],
                                            synthetic_frame(spec), repeat), strict=True))
    return {m: timed.get(m) for m in predicted}
