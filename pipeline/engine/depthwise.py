"""Depthwise banks on interleaved frames, by the C kernels of ``_depthwise.c``.

A bank with one kernel per channel (C_out = C_in = groups; one kernel for all channels
included), float32 and unit stride, is computed on the ``(H, W, C)`` frame as it comes:
the border is made as the rows are read, so there is no padded copy of the frame and no
split into channel planes. Bands of output rows are shared out to the engine's workers,
and the bank's bias and ReLU are applied as values are stored (other activations on each
band as it is finished).

A dense bank on one-channel frames (C_in = 1, C_out = M) runs the same way: the frame's one
channel is replicated into M lanes as its rows are loaded, each lane with its own kernel.
And a per-pixel linear map before the bank (a ``convert: gray`` stage) is folded into those
loads (``load_mix``): the kernels read the BGR frame as it comes.

``Kernel2D`` is the direct method's (``direct.py``): every tap of the kernel.
``Pairs`` is the separable method's (``separable.py``): the rank-1 pairs of a kernel,
each a vertical pass into row buffers and a horizontal pass from them, plus an identity
term ``c·x`` as a 1x1 kernel at its tap, all summed into one result.

1080p, 3 channels, one random k×k kernel, against cv2.filter2D: 0.71-0.78x for k = 3-11;
a Gaussian against cv2.sepFilter2D: 0.52-0.69x at k = 5-21, 0.34-0.57x at 31-101 (README).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import native, threads
from .border import BORDERS, margins_fit
from .epilogue import Epilogue, Finish
from .spec import BankSpec

_BANDS_PER_CORE = 8  # enough bands that a worker slowed by another thread does fewer
# what the kernels read as it comes (the C ``kind``): an integer frame's rows are converted
# to float as they are first read, never the whole frame
KINDS = {np.dtype(np.float32): 0, np.dtype(np.uint8): 1, np.dtype(np.uint16): 2}


# the bytes the C stores also write, abs or not, and the C reduce code (REDUCES)
Stores = tuple[np.ndarray, bool, int] | None
REDUCES = {None: 0, "l2": 1}  # what the stores make of a pixel's channels: each, or sqrt(a²+b²)
NO_STORES = (None, False, 0)


def fits(spec: BankSpec) -> bool:
    """Whether the kernels compute ``spec``: one kernel per channel (C_out = C_in =
    groups), or a dense bank on one channel (C_in = 1: replicated into C_out lanes as it is
    loaded); float32, unit stride, an output channel count that divides their block of
    vectors (1, 2, 3, 4, 6, 8, 12, … with AVX-512), and pads within one reflection of the
    frame."""
    per_channel = spec.groups == spec.c_in == spec.c_out
    replicated = spec.c_in == 1 and spec.groups == 1
    return ((per_channel or replicated) and spec.dtype == np.float32
            and spec.stride == (1, 1) and native.depthwise_fits(spec.c_out)
            and margins_fit(spec.pads, spec.in_shape[:2], spec.border))


def row_bands(rows: int, parts: int, step: int) -> tuple[tuple[int, int], ...]:
    """``threads.split`` of ``rows`` with every band but the last a multiple of ``step``
    (the rows the kernels sum at once: fewer rows left over to sum one by one)."""
    blocks = threads.split(-(-rows // step), parts)
    return tuple((a * step, min(z * step, rows)) for a, z in blocks if a * step < rows)


def _per_channel(values: np.ndarray, channels: int) -> np.ndarray:
    """float32 ``(channels, …)``: ``values`` (one set for all channels, or one each)."""
    return np.ascontiguousarray(np.broadcast_to(values, (channels, *values.shape[1:])),
                                dtype=np.float32)


class _Banded:
    """What both kernels share: the bands, the border and the bank's epilogue."""

    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        t, _, left, _ = spec.pads
        h_out, w_out, lanes = spec.out_shape
        self._geometry = (*spec.in_shape[:2], lanes, h_out, w_out, *spec.kernel_size,
                          *spec.dilation, t, left)
        # (lanes, S) float32: what each lane reads of a source pixel's S values; None: the
        # pixel's own channel. A one-channel frame into M lanes: each lane reads it.
        self._mix = None if spec.c_in == lanes else np.ones((lanes, 1), np.float32)
        self._border = (BORDERS[spec.border].c,
                        0.0 if spec.border == "zero" else float(spec.border_value))
        self._bands = row_bands(h_out, _BANDS_PER_CORE * threads.CORES,
                                native.depthwise.block()[1])
        self._bias: np.ndarray | None = None  # (C,) float32, added as values are stored
        self._relu = False
        self._epilogue: Callable[[np.ndarray], object] | None = None
        self._finish: Finish | None = None

    def finish_bands(self, finish: Finish) -> bool:
        """Finish each band into uint8 as it is done (``epilogue.Finish``): in the C
        kernel's stores, row by row, where it is the encoder's common policy alone and
        the activation is applied there too; else on each band as it is finished."""
        self._finish = finish
        return True

    def load_mix(self, mix: np.ndarray) -> bool:
        """Read frames of S channels, each pixel mixed by ``mix`` (C_in, S) into the C_in
        channels the bank is planned for, as rows are loaded (one product, then fused
        multiply-adds: for three channels the middle one's product first, then the first,
        then the last, as cv2.cvtColor sums BGR2GRAY; else in channel order)."""
        mix = np.asarray(mix, np.float64)
        if mix.ndim != 2 or mix.shape[0] != self.spec.c_in:
            return False
        spread = np.eye(self.spec.c_in) if self._mix is None else self._mix.astype(np.float64)
        self._mix = np.ascontiguousarray(spread @ mix, np.float32)  # rows of mix, exactly
        return True

    def _in_stores(self) -> bool:
        f = self._finish
        if f is None or f.absolute is None or self._epilogue is not None:
            return False
        if f.reduce is not None:  # the magnitude of the two channels, a byte a pixel
            return f.reduce in REDUCES and self.spec.c_out == 2 and f.channels == 1
        return f.channels == self.spec.c_out

    def fuse(self, epilogue: Epilogue) -> None:
        """Apply the bank's bias and activation: in the stores where they can, else on each
        band as it is finished."""
        if epilogue.in_stores:
            if epilogue.bias is not None:  # a shared kernel's bias may be one value for all
                self._bias = _per_channel(epilogue.bias, self.spec.c_out)
            self._relu = epilogue.relu
        else:
            self._epilogue = epilogue.apply

    @staticmethod
    def takes(dtype: np.dtype) -> bool:
        """Whether frames of ``dtype`` are read as they come: float32, uint8, uint16."""
        return np.dtype(dtype) in KINDS

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (H, W, C_in) (S channels after ``load_mix``) float32, uint8 or uint16,
        contiguous -> (H', W', C_out) float32."""
        out = np.empty(self.spec.out_shape, dtype=np.float32)
        kind = KINDS[x.dtype]
        finish = self._finish
        final = None if finish is None else \
            np.empty((*self.spec.out_shape[:2], finish.channels), dtype=np.uint8)
        stores = (final, finish.absolute, REDUCES[finish.reduce]) if self._in_stores() \
            else None

        def work(_: int, index: int) -> None:
            r0, r1 = self._bands[index]
            nans = self._rows(x, out, r0, r1, kind, stores)
            if nans and finish.nans is not None:
                finish.nans(nans)
            if self._epilogue is not None:  # it takes a planar (C, rows, W') view
                self._epilogue(out[r0:r1].transpose(2, 0, 1))
            if final is not None and stores is None:
                finish.apply(out[r0:r1], final[r0:r1])

        threads.run_shared(work, len(self._bands))
        return out if final is None else final

    def _rows(self, x: np.ndarray, out: np.ndarray, r0: int, r1: int, kind: int,
              stores: Stores) -> int | None:
        """Rows r0..r1 of ``out`` (and of ``stores``' bytes); the NaNs met there, if any."""
        raise NotImplementedError

    def _tail(self, stores: Stores) -> tuple:
        """The C calls' last arguments: bytes, absolute, mix, reduce."""
        final, absolute, reduce = stores or NO_STORES
        return final, absolute, self._mix, reduce


class Kernel2D(_Banded):
    """Every tap of each channel's kernel (the direct method)."""

    def __init__(self, spec: BankSpec) -> None:
        super().__init__(spec)
        self._weights = np.ascontiguousarray(spec.weights[:, 0], dtype=np.float32)

    def _rows(self, x: np.ndarray, out: np.ndarray, r0: int, r1: int, kind: int,
              stores: Stores) -> int | None:
        return native.depthwise.correlate(x, self._weights, out, self._geometry, *self._border,
                                          self.spec.shared, r0, r1, None, self._bias,
                                          self._relu, False, kind, *self._tail(stores))


class Pairs(_Banded):
    """Σ col·rowᵀ (rank-1 pairs, undilated) + c·e(tap): one kernel on every channel (the
    separable method). Frames must be at least one block wide (``wide_enough``)."""

    def __init__(self, spec: BankSpec, pairs: list[tuple[np.ndarray, np.ndarray]], c: float,
                 tap: tuple[int, int] | None) -> None:
        super().__init__(spec)
        channels = spec.c_in
        self._pairs = [(_per_channel(col[None], channels), _per_channel(row[None], channels))
                       for col, row in pairs]
        self._identity = None
        if c:  # c·x read at the tap: a 1x1 kernel on a frame shifted by the tap's offset
            (i, j), (dh, dw) = tap, spec.dilation
            g = self._geometry
            self._identity = (np.full((channels, 1, 1), c, np.float32),
                              (*g[:5], 1, 1, 1, 1, g[9] - int(i) * dh, g[10] - int(j) * dw))

    @staticmethod
    def wide_enough(spec: BankSpec) -> bool:
        floats = native.depthwise.block()[0]
        return min(spec.in_shape[1], spec.out_shape[1]) * spec.c_in >= floats

    def _rows(self, x: np.ndarray, out: np.ndarray, r0: int, r1: int, kind: int,
              stores: Stores) -> int | None:
        last = len(self._pairs) - (self._identity is None)  # the call that finishes a value
        nans = None
        for n, (col, row) in enumerate(self._pairs):
            end = n == last
            nans = native.depthwise.separable(
                x, col, row, out, self._geometry, *self._border, True, r0, r1, None,
                self._bias if end else None, self._relu and end, n > 0, kind,
                *self._tail(stores if end else None))
        if self._identity is not None:
            weights, geometry = self._identity
            nans = native.depthwise.correlate(
                x, weights, out, geometry, *self._border, True, r0, r1, None, self._bias,
                self._relu, bool(self._pairs), kind, *self._tail(stores))
        return nans
