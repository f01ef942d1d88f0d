"""The separable method: a rank-r kernel as r pairs of 1-D passes (OpenCV sepFilter2D).

Each kernel's singular value decomposition gives its numerical rank: trailing terms are
dropped only while what they could add stays under 10 % of the SPEC accuracy bound
(dropping σ·u·vᵀ changes an output by at most σ·‖u‖₁·‖v‖₁·max|x|), so a Gaussian or a
Sobel is rank 1 even after a float32 round trip, and a random kernel keeps its full rank.
Cheaper than direct when r·(kh + kw) < kh·kw.
"""

from __future__ import annotations

import cv2
import numpy as np

from .border import CV2_BORDER, cv2_makes_border, pad
from .direct import _stack, sum_over_inputs
from .spec import BankSpec

_BOUND = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}  # 10 % of the SPEC bound


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


def rank(spec: BankSpec) -> int:
    """Total 1-D pass pairs per output pixel: Σ of the ranks of the distinct kernels."""
    kernels = spec.weights[:1, :1] if spec.shared else spec.weights
    return sum(len(factors(k, spec.dtype)) for k in kernels.reshape(-1, *spec.kernel_size))


def _dilate(v: np.ndarray, d: int) -> np.ndarray:
    if d == 1:
        return v
    out = np.zeros(d * (len(v) - 1) + 1, dtype=v.dtype)
    out[::d] = v
    return out


class SeparableMethod:
    """Sum of rank-1 sepFilter2D passes: call with ``x: (H, W, C_in)`` of spec.dtype."""

    name = "separable"

    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        self._ddepth = cv2.CV_32F if spec.dtype == np.float32 else cv2.CV_64F
        dh, dw = spec.dilation
        kernels = spec.weights[:1, :1] if spec.shared else spec.weights
        self._terms = [
            [[(_dilate(col, dh).astype(spec.dtype), _dilate(row, dw).astype(spec.dtype))
              for col, row in factors(k, spec.dtype)] for k in per_output]
            for per_output in kernels
        ]
        (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
        # sepFilter2D makes the border itself when the padding is exactly 'same'-shaped.
        self._in_place_border = cv2_makes_border(
            spec.pads, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), spec.in_shape[:2], spec.border)

    def _correlate(self, src: np.ndarray, terms: list) -> np.ndarray:
        """Σ over rank-1 terms of the stride-1 valid correlation of ``src``."""
        s = self.spec
        if self._in_place_border:
            anchor, border = (s.pads[2], s.pads[0]), CV2_BORDER[s.border]
        else:
            anchor, border = (0, 0), cv2.BORDER_CONSTANT
        acc = None
        for col, row in terms:
            y = cv2.sepFilter2D(src, self._ddepth, row, col, anchor=anchor, borderType=border)
            acc = y if acc is None else np.add(acc, y, out=acc)
        if acc is None:  # an all-zero kernel has rank 0
            acc = np.zeros(src.shape, dtype=s.dtype)
        return acc

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = self.spec
        src = x if self._in_place_border else pad(x, s.pads, s.border, s.border_value)
        (sh, sw), (h_out, w_out, c_out) = s.stride, s.out_shape
        if s.shared:
            y = self._correlate(src, self._terms[0][0]).reshape(src.shape[:2] + (-1,))
            return np.ascontiguousarray(y[: h_out * sh : sh, : w_out * sw : sw])
        sums = sum_over_inputs(
            s, src, lambda plane, o, ci: self._correlate(plane, self._terms[o][ci]))
        outputs = [np.ascontiguousarray(y[: h_out * sh : sh, : w_out * sw : sw]) for y in sums]
        return _stack(outputs, (h_out, w_out, c_out))
