"""The direct (spatial) method: the depthwise C kernel, OpenCV filter2D per kernel, the
channel-mixing C kernel, or im2col + BLAS GEMM.

filter2D switches to its own single-threaded float64 DFT once a kernel has 130 taps or
more (50 for other depth pairs): slower than staying direct up to k ≈ 19, and it spreads
a NaN over the whole frame. It never does so on a sub-matrix, so at or above that size
the padded frame goes in as a UMat and the kernel runs on an ROI of it: OpenCV reads the
pixels around the ROI (our padding) instead of making a border, and stays direct.

Depthwise banks (one kernel per channel, float32, unit stride) go to the C kernel of
``_depthwise.c`` where it was built (``depthwise.py``): it reads the interleaved frame as
it is and makes the border as it reads, with no padded copy and no split into planes.

Channel-mixing banks and other dilations go to the register-blocked C kernel of
``_correlate.c`` (float32, unit stride): the padded frame is split into channel planes
once and bands of output rows are shared out to the engine's workers, each band written
straight into a planar ``(C_out, H', W')`` result returned as an ``(H', W', C_out)`` view.
Where that kernel cannot run (float64, strides, or an install without a C compiler) GEMM
does: each band of output rows becomes an im2col block (C_in/g·kh·kw rows, one contiguous
copy per tap) multiplied by the weight matrix, into the same planar result.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import depthwise, native, threads
from .border import BORDERS, cv2_makes_border, fill_planar, pad
from .epilogue import Epilogue, Finish
from .native import loops
from .spec import INTEGERS, BankSpec

DFT_TAPS = 130  # cv2's switch for 32F->32F (and 8U->8U); other depth pairs switch at 50
_BAND_BYTES = 2 << 20  # an im2col band is about this size: it stays in L2


class DirectMethod:
    """Spatial correlation of a ``BankSpec``: call with ``x: (H, W, C_in)`` of spec.dtype."""

    name = "direct"

    def __init__(self, spec: BankSpec, strategy: str | None = None) -> None:
        self.spec = spec
        self._kernels = np.ascontiguousarray(spec.weights, dtype=spec.dtype)
        self._ddepth = cv2.CV_32F if spec.dtype == np.float32 else cv2.CV_64F
        kh, kw = spec.kernel_size
        self._big = kh * kw >= (DFT_TAPS if spec.dtype == np.float32 else 50)
        self.strategy = strategy or default_strategy(spec)
        self._in_place_border = self._cv2_can_border()
        if self.strategy in ("gemm", "native"):  # the padded frame as channel planes
            self._planes = np.empty((spec.c_in, *spec.padded_shape), dtype=spec.dtype)
        og, cg = spec.out_per_group, spec.in_per_group
        if self.strategy == "gemm":
            h_out, w_out = spec.out_shape[:2]
            self._rows = cg * kh * kw
            self._band = max(1, min(h_out, _BAND_BYTES // max(
                self._rows * w_out * spec.dtype.itemsize, 1)))
            self._starts = list(range(0, h_out, self._band))
            self._parts = min(threads.CORES, len(self._starts))
            self._buffers = [np.empty(self._rows * self._band * w_out, dtype=spec.dtype)
                             for _ in range(self._parts)]  # one im2col buffer per worker
            self._gemm_weights = [
                np.ascontiguousarray(self._kernels[g * og : (g + 1) * og].reshape(og, -1))
                for g in range(spec.groups)
            ]
        if self.strategy == "native":
            # per group: its input planes and its weights as (C_in/g, kh, kw, C_out/g), so
            # one tap's weights for the block of output channels being computed are adjacent
            self._native_groups = [
                (self._planes[g * cg : (g + 1) * cg],
                 np.ascontiguousarray(self._kernels[g * og : (g + 1) * og].transpose(1, 2, 3, 0)))
                for g in range(spec.groups)
            ]
            self._native_shape = (cg, og, *spec.padded_shape, *spec.out_shape[:2],
                                  kh, kw, *spec.dilation)
            self._native_bands = threads.split(spec.out_shape[0],
                                               _NATIVE_BANDS_PER_CORE * threads.CORES)
        if self.strategy == "depthwise":
            self._depthwise = depthwise.Kernel2D(spec)
        self._epilogue: Callable[[np.ndarray], object] | None = None
        self._finish: Finish | None = None
        self._native_bias: list[np.ndarray | None] = [None] * spec.groups
        self._relu = False
        self.fused = False  # whether results come with the bank's bias and activation

    def fuse(self, epilogue: Epilogue) -> bool:
        """Take on the bank's bias and activation, if this method can without another pass
        over the whole result: the C kernel applies what its stores can, the rest runs on
        each band of rows as it is finished. True if this method will (then its results
        are final)."""
        self.fused = self.strategy in ("native", "depthwise")
        if self.strategy == "depthwise":
            self._depthwise.fuse(epilogue)
        elif self.fused and epilogue.in_stores:
            og, bias = self.spec.out_per_group, epilogue.bias
            self._native_bias = [None if bias is None else bias[g * og : (g + 1) * og]
                                 for g in range(self.spec.groups)]
            self._relu = epilogue.relu
        elif self.fused:
            self._epilogue = epilogue.apply
        return self.fused

    def finish_bands(self, finish: Finish) -> bool:
        """Finish each band into uint8 as it is done, where this method has bands (the C
        kernels: depthwise and channel-mixing)."""
        if self.strategy == "depthwise":
            return self._depthwise.finish_bands(finish)
        if self.strategy != "native":
            return False
        self._finish = finish
        return True

    def load_mix(self, mix: np.ndarray) -> bool:
        """Mixed as rows are loaded: the depthwise C kernel's (spec.Method)."""
        return self.strategy == "depthwise" and self._depthwise.load_mix(mix)

    def takes(self, dtype: np.dtype) -> bool:
        """Integer frames go in as they are where the frame is read by the depthwise
        kernel (rows converted as first read) or copied into channel planes anyway
        (converted by that copy); OpenCV's filter2D takes floats."""
        if self.strategy == "depthwise":
            return self._depthwise.takes(dtype)
        return self.strategy in ("native", "gemm") and np.dtype(dtype) in INTEGERS

    def reads_views(self) -> bool:
        """The C kernel and GEMM copy the frame into channel planes first (spec.Method)."""
        return self.strategy in ("native", "gemm")

    def _cv2_can_border(self) -> bool:
        """Whether filter2D may make the border itself (no padded copy of the frame)."""
        s = self.spec
        return self.strategy == "filter2d" and not self._big and cv2_makes_border(
            s.pads, s.kernel_size, s.in_shape[:2], s.border)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (H, W, C_in) of spec.dtype (a view where ``reads_views``) ->
        (H', W', C_out) of spec.dtype."""
        if self.strategy == "native":
            return self._native(x)
        if self.strategy == "depthwise":
            return self._depthwise(x)
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
                                borderType=BORDERS[s.border].cv2)
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
        outputs = sum_over_inputs(
            s, src, lambda plane, o, ci: self._correlate(plane, self._kernels[o, ci]))
        return stack_planes(outputs, (h_out, w_out, c_out))

    # -------------------------------------------------------------------- GEMM path
    def _gemm(self, x: np.ndarray) -> np.ndarray:
        """Planar im2col of output-row bands, one BLAS matmul per band and group.

        Bands are shared out to the engine's workers, each with its own im2col buffer;
        BLAS runs single-threaded meanwhile (engine/threads.py says why).
        """
        s = self.spec
        planes = self._planes
        fill_planar(planes, x, s.pads, s.border, s.border_value)  # (C, Hp, Wp)
        (kh, kw), (sh, sw), (dh, dw) = s.kernel_size, s.stride, s.dilation
        h_out, w_out, c_out = s.out_shape
        cg, og = s.in_per_group, s.out_per_group
        out = np.empty((c_out, h_out, w_out), dtype=s.dtype)
        sc, sr, sx = planes.strides
        rows, band = self._rows, self._band

        def work(part: int, index: int) -> None:
            buf = self._buffers[part]
            r0 = self._starts[index]
            n = min(band, h_out - r0)
            cols = buf[: rows * n * w_out].reshape(cg, kh, kw, n, w_out)
            for g, weights in enumerate(self._gemm_weights):
                # (c, i, j, r, col) -> planes[g·cg + c, (r0 + r)·sh + i·dh, col·sw + j·dw]
                view = as_strided(
                    planes[g * cg, r0 * sh :],
                    shape=(cg, kh, kw, n, w_out),
                    strides=(sc, dh * sr, dw * sx, sh * sr, sw * sx),
                )
                np.copyto(cols, view)
                target = out[g * og : (g + 1) * og, r0 : r0 + n].reshape(og, n * w_out)
                np.matmul(weights, cols.reshape(rows, n * w_out), out=target)

        with threads.single_threaded_blas():
            threads.run_shared(work, len(self._starts), self._parts)
        return out.transpose(1, 2, 0)

    # ----------------------------------------------------------- C kernel path
    def _native(self, x: np.ndarray) -> np.ndarray:
        """Bands of output rows shared out to the workers; the kernel releases the GIL."""
        s = self.spec
        fill_planar(self._planes, x, s.pads, s.border, s.border_value)  # (C, Hp, Wp)
        out = np.empty((s.c_out, *s.out_shape[:2]), dtype=s.dtype)
        og, bands = s.out_per_group, self._native_bands
        final = None if self._finish is None else \
            np.empty((*s.out_shape[:2], self._finish.channels), dtype=np.uint8)

        def work(_: int, index: int) -> None:
            rows = slice(*bands[index])
            for g, (planes, weights) in enumerate(self._native_groups):
                loops.correlate(planes, weights, out[g * og : (g + 1) * og],
                                self._native_shape, *bands[index], None,
                                self._native_bias[g], self._relu)
            if self._epilogue is not None:
                self._epilogue(out[:, rows])
            if final is not None:
                self._finish.apply(out[:, rows].transpose(1, 2, 0), final[rows])

        threads.run_shared(work, len(bands))
        return out.transpose(1, 2, 0) if final is None else final


_NATIVE_BANDS_PER_CORE = 8  # enough bands that a worker slowed by another thread does fewer


def default_strategy(spec: BankSpec) -> str:
    """The depthwise C kernel where it fits; filter2D when every output reads one channel
    at unit steps; else the C kernel (float32, unit stride) when it was built; else GEMM."""
    if depthwise.fits(spec):
        return "depthwise"
    if spec.unit_steps and (spec.shared or spec.in_per_group == 1):
        return "filter2d"
    if native.available() and spec.dtype == np.float32 and spec.stride == (1, 1):
        return "native"
    return "gemm"


def sum_over_inputs(spec: BankSpec, src: np.ndarray,
                    correlate: Callable[[np.ndarray, int, int], np.ndarray]) -> list[np.ndarray]:
    """Per output channel ``o``: Σ over its group's input channels ``ci`` of
    ``correlate(plane, o, ci)``, where plane is input channel g(o)·cg + ci of ``src``."""
    planes = [np.ascontiguousarray(src[..., c]) for c in range(spec.c_in)]
    outputs = []
    for o in range(spec.c_out):
        first = spec.group_of(o) * spec.in_per_group
        acc = None
        for ci in range(spec.in_per_group):
            y = correlate(planes[first + ci], o, ci)
            acc = np.array(y) if acc is None else np.add(acc, y, out=acc)
        outputs.append(acc)
    return outputs


def stack_planes(planes: list[np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    """Channel planes ``(H, W)`` -> one ``(H, W, C)`` array."""
    if len(planes) == 1:
        return planes[0].reshape(shape)
    if len(planes) <= 512:  # CV_CN_MAX
        return cv2.merge(planes).reshape(shape)
    return np.stack(planes, axis=-1)
