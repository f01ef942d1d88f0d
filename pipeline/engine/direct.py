"""The direct (spatial) method: OpenCV filter2D for unit steps, im2col + BLAS GEMM otherwise.

filter2D switches to its own single-threaded float64 DFT once a kernel has 130 taps or
more (50 for other depth pairs): slower than staying direct up to k ≈ 19, and it spreads
a NaN over the whole frame. It never does so on a sub-matrix, so at or above that size
the padded frame goes in as a UMat and the kernel runs on an ROI of it: OpenCV reads the
pixels around the ROI (our padding) instead of making a border, and stays direct.
"""

from __future__ import annotations

import cv2
import numpy as np

from .border import CV2_BORDER, pad
from .spec import BankSpec

DFT_TAPS = 130  # cv2's switch for 32F->32F (and 8U->8U); other depth pairs switch at 50
_BAND_BYTES = 4 << 20  # im2col rows are built in bands of about this size


class DirectMethod:
    """Spatial correlation of a ``BankSpec``: call with ``x: (H, W, C_in)`` of spec.dtype."""

    name = "direct"

    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        self._kernels = np.ascontiguousarray(spec.weights, dtype=spec.dtype)
        self._ddepth = cv2.CV_32F if spec.dtype == np.float32 else cv2.CV_64F
        kh, kw = spec.kernel_size
        self._big = kh * kw >= (DFT_TAPS if spec.dtype == np.float32 else 50)
        self.strategy = "filter2d" if spec.unit_steps else "gemm"
        self._in_place_border = self._cv2_can_border()
        if self.strategy == "gemm":
            self._gemm_weights = [
                self._kernels[g * spec.out_per_group : (g + 1) * spec.out_per_group]
                .reshape(spec.out_per_group, -1)
                .T.copy()
                for g in range(spec.groups)
            ]

    def _cv2_can_border(self) -> bool:
        """Whether filter2D may make the border itself (no padded copy of the frame)."""
        s = self.spec
        t, b, left, r = s.pads
        kh, kw = s.kernel_size
        h, w = s.in_shape[:2]
        return (
            self.strategy == "filter2d"
            and not self._big
            and s.border in ("zero", "replicate", "symmetric", "reflect101")
            and (t + b, left + r) == (kh - 1, kw - 1)
            and max(t, b) < h
            and max(left, r) < w
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (H, W, C_in) contiguous, spec.dtype -> (H', W', C_out) of spec.dtype."""
        if self.strategy == "gemm":
            return self._gemm(x)
        return self._filter2d(x)

    # ----------------------------------------------------------------- filter2D path
    def _correlate(self, src: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """Valid-size correlation of ``src`` (already padded unless the border is in place)."""
        s = self.spec
        h_out, w_out = s.out_shape[:2]
        if self._in_place_border:
            t, _, left, _ = s.pads
            return cv2.filter2D(src, self._ddepth, kernel, anchor=(left, t),
                                borderType=CV2_BORDER[s.border])
        if self._big:
            roi = cv2.UMat(cv2.UMat(src), (0, h_out), (0, w_out))
            return cv2.filter2D(roi, self._ddepth, kernel, anchor=(0, 0)).get()
        out = cv2.filter2D(src, self._ddepth, kernel, anchor=(0, 0),
                           borderType=cv2.BORDER_CONSTANT)
        return out[:h_out, :w_out]

    def _filter2d(self, x: np.ndarray) -> np.ndarray:
        s = self.spec
        src = x if self._in_place_border else pad(x, s.pads, s.border, s.border_value)
        h_out, w_out, c_out = s.out_shape
        if s.shared:  # one kernel on every channel: filter2D does all channels in one pass
            return self._correlate(src, self._kernels[0, 0]).reshape(h_out, w_out, c_out)
        planes = [np.ascontiguousarray(src[..., c]) for c in range(s.c_in)]
        outputs = []
        for o in range(c_out):
            first = s.group_of(o) * s.in_per_group
            acc = None
            for ci in range(s.in_per_group):
                y = self._correlate(planes[first + ci], self._kernels[o, ci])
                acc = np.array(y) if acc is None else np.add(acc, y, out=acc)
            outputs.append(acc)
        return _stack(outputs, (h_out, w_out, c_out))

    # -------------------------------------------------------------------- GEMM path
    def _gemm(self, x: np.ndarray) -> np.ndarray:
        """im2col of output-row bands, one BLAS matmul per band and group."""
        s = self.spec
        xp = pad(x, s.pads, s.border, s.border_value)
        (kh, kw), (sh, sw), (dh, dw) = s.kernel_size, s.stride, s.dilation
        eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        h_out, w_out, c_out = s.out_shape
        cg, og = s.in_per_group, s.out_per_group
        windows = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(0, 1))
        windows = windows[::sh, ::sw, :, ::dh, ::dw][:h_out, :w_out]  # (H', W', C, kh, kw)
        out = np.empty((h_out, w_out, c_out), dtype=s.dtype)
        row_bytes = w_out * cg * kh * kw * x.itemsize
        band = max(1, _BAND_BYTES // max(row_bytes, 1))
        for r0 in range(0, h_out, band):
            r1 = min(h_out, r0 + band)
            for g, weights in enumerate(self._gemm_weights):
                cols = windows[r0:r1, :, g * cg : (g + 1) * cg].reshape(-1, cg * kh * kw)
                y = cols @ weights  # (rows·W', og)
                out[r0:r1, :, g * og : (g + 1) * og] = y.reshape(r1 - r0, w_out, og)
        return out


def _stack(planes: list[np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    """Channel planes ``(H, W)`` -> one contiguous ``(H, W, C)`` array."""
    if len(planes) == 1:
        return planes[0].reshape(shape)
    return cv2.merge(planes).reshape(shape)
