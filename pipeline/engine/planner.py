"""Method choice: a pure cost model per method, one table of constants, decided once.

``choose(spec, requested)`` is a pure function of the resolved bank and the constants;
the bank calls it once per frame format, so a stream never changes method midway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .direct import DFT_TAPS, DirectMethod
from .spec import BankSpec

# Milliseconds. Shipped defaults, measured on the 2-core reference machine
# (../shared/PERF_NOTES.md); `pipeline bench` replaces them with this machine's.
DEFAULT_CONSTANTS = {
    "direct_call_ms": 0.05,  # fixed cost of one filter2D call
    "direct_tap_ns": 0.35,  # per output pixel, per tap, per (input, output) channel pair
    "gemm_mac_ns": 0.06,  # per multiply-accumulate in the im2col + GEMM path
    "gemm_gather_ns": 1.2,  # per im2col element gathered
}


@dataclass(frozen=True)
class Choice:
    """The method picked for one bank, why, and every candidate's predicted ms per frame."""

    method: str
    reason: str
    costs: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def direct_cost(spec: BankSpec, k: dict[str, float]) -> float:
    """Predicted ms per frame of the direct method."""
    h, w, c_out = spec.out_shape
    kh, kw = spec.kernel_size
    pixels = h * w
    pairs = c_out * spec.in_per_group
    if spec.unit_steps:
        calls = 1 if spec.shared else pairs
        taps = pixels * kh * kw * (spec.c_in if spec.shared else pairs)
        return calls * k["direct_call_ms"] + taps * k["direct_tap_ns"] * 1e-6
    gathered = pixels * spec.c_in * kh * kw
    macs = pixels * c_out * spec.in_per_group * kh * kw
    return gathered * k["gemm_gather_ns"] * 1e-6 + macs * k["gemm_mac_ns"] * 1e-6


METHODS = {"direct": (DirectMethod, direct_cost)}


def choose(spec: BankSpec, requested: str, constants: dict[str, float] | None = None) -> Choice:
    """Pick the method for ``spec``: ``requested`` unless it is 'auto'."""
    k = {**DEFAULT_CONSTANTS, **(constants or {})}
    costs: dict[str, float | None] = {name: cost(spec, k) for name, (_, cost) in METHODS.items()}
    notes: dict[str, str] = {}
    for name in ("separable", "fft"):
        costs[name] = None
        notes[name] = "not available in this version"
    if requested != "auto":
        if costs.get(requested) is None:
            from ..errors import ConfigError

            raise ConfigError(f"method={requested!r}: {notes.get(requested, 'unknown method')}")
        return Choice(requested, "forced by method", costs, notes)
    kh, kw = spec.kernel_size
    why = "only method" if kh * kw < DFT_TAPS else "only method (kept off OpenCV's DFT)"
    return Choice("direct", why, costs, notes)


def build(spec: BankSpec, method: str):
    """The callable that computes ``spec`` by ``method``; all set-up happens here, once."""
    return METHODS[method][0](spec)
