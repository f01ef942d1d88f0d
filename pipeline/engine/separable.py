"""The separable method: a rank-r kernel as r pairs of 1-D passes.

Each kernel's singular value decomposition gives its numerical rank: trailing terms are
dropped only while what they could add stays under 10 % of the SPEC accuracy bound
(dropping σ·u·vᵀ changes an output by at most σ·‖u‖₁·‖v‖₁·max|x|), so a Gaussian or a
Sobel is rank 1 even after a float32 round trip, and a random kernel keeps its full rank.
Cheaper than direct when r·(kh + kw) < kh·kw.

A kernel that is a weighted identity plus a low-rank rest, such as an unsharp mask
``(1 + a)·δ - a·G``, has full rank r + 1 as a whole; it goes as the r pairs of passes of
the rest plus ``c·x`` (one scaled add) when that is fewer passes (``decompose``).

One kernel on every channel of a float32 frame goes to the C kernel of ``_depthwise.c``
(``depthwise.Pairs``): vertical then horizontal pass per band of rows, the border made as
rows are read, the identity term and the bank's bias and ReLU summed in. Other banks go
to OpenCV's sepFilter2D, plane by plane where the kernels differ.
"""

from __future__ import annotations

from functools import partial

import cv2
import numpy as np

from . import depthwise, threads
from .border import BORDERS, cv2_makes_border, pad
from .direct import stack_planes, sum_over_inputs
from .epilogue import Epilogue, Finish
from .spec import BankSpec
from .timing import interleaved_ms, keep_ms, saved_ms, spec_key, synthetic_frame

_BOUND = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}  # 10 % of the SPEC bound
_CANCEL = 2.0  # an identity split's parts may sum to this many times Σ|K| in magnitude
BANDS_FILE = "separable_bands.json"  # whole vs banded timings, per format and bank
_BANDS_PER_CORE = 2
_BAND_ROWS = 64  # frames shorter than this per band stay whole
_CLEARLY = 0.85  # bands are taken when they time this much of whole frames or less


def factors(kernel: np.ndarray, dtype: np.dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(column (kh,), row (kw,)), …] whose outer products sum to ``kernel`` within bound."""
    u, sigma, vt = np.linalg.svd(kernel, full_matrices=False)
    budget = _BOUND[np.dtype(dtype)] * np.abs(kernel).sum()
    reach = sigma * np.abs(u).sum(axis=0) * np.abs(vt).sum(axis=1)  # Σ|term| of each term
    dropped = np.cumsum(reach[::-1])[::-1]  # dropped[r]: what terms r, r+1, … could add
    rank = next((r for r in range(1, len(sigma) + 1)
                 if r == len(sigma) or dropped[r] <= budget), len(sigma))
    scale = np.sqrt(sigma[:rank])
    return [(u[:, r] * scale[r], vt[r] * scale[r]) for r in range(rank)]


Pairs = list[tuple[np.ndarray, np.ndarray]]


def _rest_at(kernel: np.ndarray, tap: tuple[int, int], r: int) -> float:
    """The value at ``tap`` that gives ``kernel`` rank ``r``, if its other taps have that
    rank: fitted from them (the rank-r SVD of the kernel without the tap's row and
    column, then the tap's row and column by least squares on it). Exact for a kernel
    that is a rank-r matrix plus a weight at ``tap``."""
    r0, s0 = tap
    rest = np.delete(np.delete(kernel, r0, axis=0), s0, axis=1)
    u, sigma, vt = np.linalg.svd(rest, full_matrices=False)
    cols, rows = u[:, :r] * sigma[:r], vt[:r].T  # rest ≈ cols @ rows.T
    along_row = np.linalg.lstsq(rows, np.delete(kernel[r0], s0), rcond=None)[0]
    along_col = np.linalg.lstsq(cols, np.delete(kernel[:, s0], r0), rcond=None)[0]
    return float(along_row @ along_col)


def decompose(kernel: np.ndarray, dtype: np.dtype,
              tap: tuple[int, int] | None) -> tuple[Pairs, float]:
    """The fewest 1-D pass pairs for ``kernel`` within the bound, and the weight ``c`` of
    an identity at ``tap`` (0.0: none) that goes with them: ``kernel`` = Σ col·rowᵀ +
    c·e(tap)."""
    plain = factors(kernel, dtype)
    r = len(plain) - 1  # an identity adds one to the rank of what it is added to
    if tap is None or not 1 <= r < min(kernel.shape) - 1:  # full rank: no structure to find
        return plain, 0.0
    c = float(kernel[tap]) - _rest_at(kernel, tap, r)
    rest = kernel.copy()
    rest[tap] -= c
    if abs(c) + np.abs(rest).sum() > _CANCEL * np.abs(kernel).sum():
        return plain, 0.0  # parts that mostly cancel: rounding would outgrow the bound
    pairs = factors(rest, dtype)
    return (pairs, c) if len(pairs) <= r else (plain, 0.0)


def opencv_borders(spec: BankSpec) -> bool:
    """Whether sepFilter2D makes the border itself: 'same'-shaped padding it knows."""
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    return cv2_makes_border(spec.pads, (dh * (kh - 1) + 1, dw * (kw - 1) + 1),
                            spec.in_shape[:2], spec.border)


def identity_tap(spec: BankSpec, kernel: np.ndarray) -> tuple[int, int] | None:
    """Where an identity term may sit: the tap over the output pixel when OpenCV makes the
    border (the result is then ``x`` itself there), else the kernel's largest tap."""
    if opencv_borders(spec):
        (dh, dw), (t, _, left, _) = spec.dilation, spec.pads
        if t % dh or left % dw:
            return None
        return t // dh, left // dw
    return np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)


def decompositions(spec: BankSpec) -> list[tuple[Pairs, float]]:
    """``decompose`` of each distinct kernel (one if shared, else per output and input).

    On one BLAS thread: each SVD is of one small kernel, and OpenBLAS's team of threads
    waits for every member at each step; with the cores busy with other work, the 96
    SVDs of a 32-output 63x63 bank took up to 5 s to plan instead of 0.07 s (seen here
    with two other processes spinning)."""
    kernels = spec.weights[:1, :1] if spec.shared else spec.weights
    with threads.single_threaded_blas():
        return [decompose(k, spec.dtype, identity_tap(spec, k))
                for k in kernels.reshape(-1, *spec.kernel_size)]


def passes(spec: BankSpec) -> tuple[int, int]:
    """1-D pass pairs per output pixel (Σ over the distinct kernels), and how many of those
    kernels go with an identity term (one scaled add each)."""
    found = decompositions(spec)
    return sum(len(pairs) for pairs, _ in found), sum(c != 0.0 for _, c in found)


def _dilate(v: np.ndarray, d: int) -> np.ndarray:
    if d == 1:
        return v
    out = np.zeros(d * (len(v) - 1) + 1, dtype=v.dtype)
    out[::d] = v
    return out


def default_strategy(spec: BankSpec) -> str:
    """'native' (the C kernel) for one nonzero kernel on every channel where it fits, else
    'opencv' (sepFilter2D)."""
    fits = spec.shared and depthwise.fits(spec) and depthwise.Pairs.wide_enough(spec)
    return "native" if fits and np.any(spec.weights[0, 0]) else "opencv"


class SeparableMethod:
    """Sum of rank-1 passes: call with ``x: (H, W, C_in)`` of spec.dtype."""

    name = "separable"

    def __init__(self, spec: BankSpec, strategy: str | None = None) -> None:
        self.spec = spec
        self.strategy = strategy or default_strategy(spec)
        self.fused = False  # whether results come with the bank's bias and activation
        if self.strategy == "native":
            kernel = spec.weights[0, 0]
            tap = identity_tap(spec, kernel)
            self._native = depthwise.Pairs(spec, *decompose(kernel, spec.dtype, tap), tap)
            return
        self._ddepth = cv2.CV_32F if spec.dtype == np.float32 else cv2.CV_64F
        self._in_place_border = opencv_borders(spec)
        kernels = spec.weights[:1, :1] if spec.shared else spec.weights
        self._terms = [[self._passes(k) for k in per_output] for per_output in kernels]
        self._bands = self._choose_bands()

    def fuse(self, epilogue: Epilogue) -> bool:
        """Take on the bank's bias and activation where the C kernel runs (in its stores,
        or band by band); True if this method will (then its results are final)."""
        self.fused = self.strategy == "native"
        if self.fused:
            self._native.fuse(epilogue)
        return self.fused

    def finish_bands(self, finish: Finish) -> bool:
        """Finish each band into uint8 as it is done, where the C kernel runs."""
        return self.strategy == "native" and self._native.finish_bands(finish)

    def load_mix(self, mix: np.ndarray) -> bool:
        """Mixed as rows are loaded: the C kernel's (spec.Method)."""
        return self.strategy == "native" and self._native.load_mix(mix)

    def takes(self, dtype: np.dtype) -> bool:
        """Integer frames go in as they are to the C kernel (rows converted as first
        read); sepFilter2D takes floats."""
        return self.strategy == "native" and self._native.takes(dtype)

    @staticmethod
    def reads_views() -> bool:
        """Both the C kernel and sepFilter2D read the frame as it is: contiguous."""
        return False

    def _passes(self, kernel: np.ndarray) -> tuple[Pairs, float, tuple[int, int]]:
        """One kernel's dilated 1-D pass pairs, and its identity term's weight and offset."""
        s = self.spec
        (dh, dw), tap = s.dilation, identity_tap(s, kernel)
        pairs, c = decompose(kernel, s.dtype, tap)
        dilated = [(_dilate(col, dh).astype(s.dtype), _dilate(row, dw).astype(s.dtype))
                   for col, row in pairs]
        # where c·x is read: x itself when OpenCV made the border, else the tap's place
        # in the padded source
        in_place = self._in_place_border or not c
        offset = (0, 0) if in_place else (int(tap[0]) * dh, int(tap[1]) * dw)
        return dilated, c, offset

    def _correlate(self, src: np.ndarray, terms: tuple[Pairs, float, tuple[int, int]]
                   ) -> np.ndarray:
        """Σ over rank-1 terms (and the identity term) of the stride-1 valid correlation
        of ``src``."""
        s = self.spec
        pairs, c, (dy, dx) = terms
        if self._in_place_border:
            anchor, border = (s.pads[2], s.pads[0]), BORDERS[s.border].cv2
        else:
            anchor, border = (0, 0), cv2.BORDER_CONSTANT
        acc = None
        for col, row in pairs:
            y = cv2.sepFilter2D(src, self._ddepth, row, col, anchor=anchor, borderType=border)
            acc = y if acc is None else np.add(acc, y, out=acc)
        if acc is None:  # an all-zero kernel (or an identity alone) has rank 0
            acc = np.zeros(src.shape, dtype=s.dtype)
        if c:  # c·x at the identity's offset (none when OpenCV made the border)
            h, w = src.shape[0] - dy, src.shape[1] - dx
            part = acc[:h, :w]  # OpenCV returns (H, W) for an (H, W, 1) source
            cv2.scaleAdd(src.reshape(acc.shape)[dy:, dx:], c, part, dst=part)
        return acc

    def _banded(self, src: np.ndarray, terms: tuple[Pairs, float, tuple[int, int]],
                parts: int) -> np.ndarray:
        """``_correlate`` by bands of rows on the engine's workers, each band read with the
        rows its kernel reaches beyond it: the same numbers, on every core."""
        s = self.spec
        h = src.shape[0]
        reach = s.dilation[0] * (s.kernel_size[0] - 1)
        above, below = (s.pads[0], s.pads[1]) if self._in_place_border else (0, reach)
        out = np.empty(src.shape if src.ndim == 2 or src.shape[2] > 1 else src.shape[:2],
                       dtype=s.dtype)  # as OpenCV returns it
        bands = threads.split(h, parts)

        def work(_: int, i: int) -> None:
            r0, r1 = bands[i]
            a = max(0, r0 - above)
            y = self._correlate(src[a : min(h, r1 + below)], terms)
            out[r0:r1] = y.reshape((-1, *out.shape[1:]))[r0 - a : r1 - a]

        threads.run_shared(work, len(bands))
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.strategy == "native":
            return self._native(x)
        return self._run(x, self._bands)

    def _run(self, x: np.ndarray, bands: int) -> np.ndarray:
        s = self.spec
        src = x if self._in_place_border else pad(x, s.pads, s.border, s.border_value)
        correlate = partial(self._banded, parts=bands) if bands > 1 else self._correlate
        (sh, sw), (h_out, w_out, c_out) = s.stride, s.out_shape
        if s.shared:
            y = correlate(src, self._terms[0][0]).reshape(src.shape[:2] + (-1,))
            return np.ascontiguousarray(y[: h_out * sh : sh, : w_out * sw : sw])
        sums = sum_over_inputs(
            s, src, lambda plane, o, ci: correlate(plane, self._terms[o][ci]))
        outputs = [np.ascontiguousarray(y[: h_out * sh : sh, : w_out * sw : sw]) for y in sums]
        return stack_planes(outputs, (h_out, w_out, c_out))

    def _choose_bands(self) -> int:
        """Bands of rows to run on, 1 for whole frames: OpenCV threads sepFilter2D itself
        on some frame shapes and not on others (one thread at 720x1280x3 here, two at
        1080x1920x3), so whole and banded are timed once on a synthetic frame, kept in
        the cache folder, and bands taken only when clearly faster (720p Gaussian 13x13:
        3.8 -> 2.4 ms; 1080p: no gain)."""
        s = self.spec
        bands = _BANDS_PER_CORE * threads.CORES
        if threads.budget() < 2 or s.padded_shape[0] < bands * _BAND_ROWS:
            return 1  # one core (or capped to one now: a timing would not hold later)
        key, names = f"separable bands {spec_key(s)}", ("whole", "banded")
        ms = saved_ms(BANDS_FILE, key, names)
        if ms is None:
            ms = interleaved_ms([lambda x: self._run(x, 1), lambda x: self._run(x, bands)],
                                synthetic_frame(s), repeat=3)
            keep_ms(BANDS_FILE, key, names, ms, limit=256)
        return bands if ms[1] < _CLEARLY * ms[0] else 1
