"""The FFT method: FFTW plans, aligned buffers and kernel spectra made once per stream.

Per frame: C_in forward real transforms (one batched FFTW call), a multiply-accumulate of
the spectra over input channels, C_out inverse transforms written straight into the
result. Borders come from padding the frame in space first, so the valid part of the
circular correlation equals the direct method; a zero border needs no written padding,
only enough spare rows and columns that the circular wrap lands in zeros.

A NaN or Inf anywhere in a frame makes every bin of its spectrum non-finite; the DC bin
(the sum of the plane) shows it, and that frame is computed by the direct method instead.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from functools import cache

from typing import Any

import numpy as np

from . import cache as disk
from . import native, threads
from .border import fill_planar
from .direct import DirectMethod
from .epilogue import Epilogue, Finish
from .sizes import fft_shape
from .spec import INTEGERS, BankSpec

_UNLOADED = object()
# pyFFTW, imported on first use: importing it costs 0.19 s of every start (it imports
# dask.array where dask is installed), and banks that never use the FFT need none of it.
pyfftw: Any = _UNLOADED


def fftw() -> Any:
    """The pyfftw module; None where it cannot be imported (pyFFTW is a dependency; without
    it the fft method still works, on scipy.fft)."""
    global pyfftw
    if pyfftw is _UNLOADED:
        try:
            import pyfftw as module
        except ImportError:  # exercised by tests that hide pyfftw
            module = None
        pyfftw = module
    return pyfftw

WISDOM_FILE = "fftw_wisdom.json"
EFFORTS = {"estimate": "FFTW_ESTIMATE", "measure": "FFTW_MEASURE", "patient": "FFTW_PATIENT"}


@cache
def load_wisdom() -> bool:
    """Import the saved FFTW wisdom once per process; True if any was imported."""
    if fftw() is None:
        return False
    saved = disk.load_json(WISDOM_FILE)
    parts = tuple(saved.get(k, "").encode("ascii") for k in ("double", "single", "long"))
    return any(parts) and any(fftw().import_wisdom(parts))


def save_wisdom() -> None:
    """Export everything FFTW has learnt in this process to the cache folder."""
    if fftw() is None:
        return
    double, single, long = (w.decode("ascii") for w in fftw().export_wisdom())
    disk.save_json(WISDOM_FILE, {"double": double, "single": single, "long": long})


def use_pyfftw() -> bool:
    if fftw() is None:
        warnings.warn("pyFFTW is not importable: the fft method runs on scipy.fft (slower)",
                      RuntimeWarning, stacklevel=3)
        return False
    return True


class Transforms:
    """Forward r2c over (C_in, *batch, Fh, Fw) and inverse c2r over (C_out, *batch, Fh,
    Fw//2+1), both on the last two axes, planned once with ``fftw_threads`` threads.
    ``packed``: the inverse is c2c over (C_out, *batch, Fh, Fw) instead (each of its
    C_out outputs holds two real results, as its real and imaginary parts)."""

    def __init__(self, c_in: int, c_out: int, shape: tuple[int, int], dtype: np.dtype,
                 effort: str, batch: tuple[int, ...] = (),
                 fftw_threads: int = threads.CORES, packed: bool = False) -> None:
        fh, fw = shape
        self.shape = shape
        self.threads = fftw_threads
        self.real = np.dtype(dtype)
        self.complex = np.result_type(self.real, np.complex64)
        self.packed = packed
        self.fftw = use_pyfftw()
        empty = fftw().empty_aligned if self.fftw else np.empty
        self.frames = empty((c_in, *batch, fh, fw), dtype=self.real)
        self.spectra = empty((c_in, *batch, fh, fw // 2 + 1), dtype=self.complex)
        self._out = (c_out, *batch, fh, fw)
        self._out_dtype = self.complex if packed else self.real
        bins = fw if packed else fw // 2 + 1
        self._inverse_in = empty((c_out, *batch, fh, bins), dtype=self.complex)
        self.planning_s = 0.0
        if self.fftw:
            load_wisdom()
            start = time.perf_counter()
            flags = (EFFORTS[effort],)
            self._forward = fftw().FFTW(self.frames, self.spectra, axes=(-2, -1),
                                        flags=flags, threads=fftw_threads)
            self._inverse = fftw().FFTW(self._inverse_in, empty(self._out, self._out_dtype),
                                        axes=(-2, -1), direction="FFTW_BACKWARD",
                                        flags=(*flags, "FFTW_DESTROY_INPUT"),
                                        threads=fftw_threads)
            self.planning_s = time.perf_counter() - start
            if self.planning_s > 0.05:  # new plans were measured: keep what FFTW learnt
                save_wisdom()
        self.frames[...] = 0  # planning scribbles on the arrays
        self._inverse_in[...] = 0

    def empty_output(self) -> np.ndarray:
        return (fftw().empty_aligned if self.fftw else np.empty)(self._out, self._out_dtype)

    def inverse_input(self) -> np.ndarray:
        """A scratch (C_out, …, Fw//2+1) buffer the multiply-accumulate may write into."""
        return self._inverse_in

    def forward(self) -> np.ndarray:
        """rfft2 of ``self.frames`` into ``self.spectra``."""
        if self.fftw:
            self._forward()
        else:
            from scipy import fft

            self.spectra[...] = fft.rfft2(self.frames, axes=(-2, -1), workers=self.threads)
        return self.spectra

    def inverse(self, spectra: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Unnormalised irfft2 of ``spectra`` (destroyed) into ``out``."""
        if self.fftw:
            self._inverse(spectra, out, normalise_idft=False)
        else:
            from scipy import fft

            inverse = fft.ifft2 if self.packed else functools.partial(fft.irfft2, s=self.shape)
            out[...] = inverse(spectra, axes=(-2, -1), norm="forward", workers=self.threads)
        return out


def _placed(spec: BankSpec, shape: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """The kernels (one if shared) placed at -``offset`` in ``shape`` planes, circularly."""
    fh, fw = shape
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    weights = spec.weights[:1, :1] if spec.shared else spec.weights
    rows = (np.arange(kh) * dh - offset[0]) % fh
    cols = (np.arange(kw) * dw - offset[1]) % fw
    placed = np.zeros(weights.shape[:2] + (fh, fw))
    placed[..., rows[:, None], cols[None, :]] = weights
    return placed


def kernel_spectra(spec: BankSpec, shape: tuple[int, int], offset: tuple[int, int],
                   dtype: np.dtype) -> np.ndarray:
    """conj(rfft2(kernel placed at -``offset``, circularly)) / (Fh·Fw), of ``dtype``:
    (1, 1, Fh, Fw//2+1) for a shared kernel, else (C_out, C_in/g, Fh, Fw//2+1)."""
    placed = _placed(spec, shape, offset)
    return (np.conj(np.fft.rfft2(placed, axes=(2, 3))) / math.prod(shape)).astype(dtype)


def packed_kernel_spectra(spec: BankSpec, shape: tuple[int, int], offset: tuple[int, int]
                          ) -> np.ndarray:
    """The full-grid spectra (as ``kernel_spectra``, all Fw bins) of outputs 2j and 2j+1
    as one: K[2j] + i·K[2j+1], complex64 (C_out/2 rounded up, C_in/g, Fh, Fw); an odd
    last output is packed with nothing. The inverse of Σ spectrum·K is then output 2j in
    its real part and 2j+1 in its imaginary part."""
    full = np.conj(np.fft.fft2(_placed(spec, shape, offset), axes=(2, 3))) / math.prod(shape)
    if len(full) % 2:
        full = np.concatenate([full, np.zeros_like(full[:1])])
    return (full[0::2] + 1j * full[1::2]).astype(np.complex64)


def c_products(complex_dtype: np.dtype) -> bool:
    """Whether ``accumulate`` runs the C loop for spectra of ``complex_dtype`` (complex64,
    where the install built it); else numpy, which needs a scratch buffer."""
    return native.spectral is not None and np.dtype(complex_dtype) == np.complex64


def accumulate(spec: BankSpec, spectra: np.ndarray, kernels: np.ndarray, acc: np.ndarray,
               rows: tuple[int, int] | None = None, tmp: np.ndarray | None = None) -> None:
    """``acc[o] = Σ_c spectra[g(o)·cg + c] · kernels[o, c]``: each output's input channels.

    ``spectra``: (C_in, …, Fh, B), ``kernels``: (C_out, C_in/g, Fh, B) (broadcast over the
    middle axes, the tiles), ``acc``: (C_out, …, Fh, B); bin rows ``rows`` of each (all
    when None). The C loop where ``c_products``; otherwise numpy, a pass per product and
    per sum, with ``tmp`` (scratch shaped ``acc[0]``, at least ``rows`` long). Either way
    memory-bound on the kernel spectra when they do not fit in the cache; blocking the
    bin rows finer bought numpy nothing but call overhead, measured.
    """
    a, b = rows if rows is not None else (0, spectra.shape[-2])
    if c_products(spectra.dtype):
        fh, cols = spectra.shape[-2:]
        n = spectra.size // (spectra.shape[0] * fh * cols)
        native.spectral.accumulate(
            spectra, kernels, acc, (spec.c_in, spec.c_out, spec.in_per_group,
                                    spec.out_per_group, n, fh * cols), a * cols, b * cols)
        return
    cg, og = spec.in_per_group, spec.out_per_group
    spectra, kernels, acc = spectra[..., a:b, :], kernels[..., a:b, :], acc[..., a:b, :]
    tmp = np.empty_like(acc[0]) if tmp is None else tmp[..., : b - a, :]
    for o in range(spec.c_out):
        first = (o // og) * cg
        np.multiply(spectra[first], kernels[o, 0], out=acc[o])
        for c in range(1, cg):
            np.multiply(spectra[first + c], kernels[o, c], out=tmp)
            np.add(acc[o], tmp, out=acc[o])


class FFTMethod:
    """Correlation of a ``BankSpec`` by FFT: call with ``x: (H, W, C_in)`` of spec.dtype."""

    name = "fft"

    def __init__(self, spec: BankSpec, effort: str = "measure") -> None:
        self.spec = spec
        h, w, c_in = spec.in_shape
        t, b, left, r = spec.pads
        (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
        # Zero border: the frame sits at the origin and the wrap supplies the zeros.
        self._wrap = spec.border == "zero"
        if self._wrap:
            need = (h + max(t, b), w + max(left, r))
            self._offset = (t, left)
        else:
            need = spec.padded_shape
            self._offset = (0, 0)
        self.shape = fft_shape(need, spec.dtype)
        # rows/cols of the stride-1 valid correlation, before subsampling by the stride
        self._full = (spec.padded_shape[0] - dh * (kh - 1), spec.padded_shape[1] - dw * (kw - 1))
        self._tx = Transforms(c_in, spec.c_out, self.shape, spec.dtype, effort)
        self._kernels = kernel_spectra(spec, self.shape, self._offset, self._tx.complex)
        # bands of bin rows, more than workers: each takes the next as it comes free
        self._bands = threads.split(self._tx.spectra.shape[1], 4 * threads.CORES)
        rows = max(b - a for a, b in self._bands)  # numpy's scratch, a worker's band
        self._scratch = [None if c_products(self._tx.complex) else
                         np.empty_like(self._tx.inverse_input()[0, :rows])
                         for _ in range(threads.CORES)]
        self._direct: DirectMethod | None = None
        self.fused = False  # bias and activation: the bank's, afterwards

    def fuse(self, epilogue: Epilogue) -> bool:
        """Full-frame transforms store nothing band by band: the bank applies them."""
        return False

    @staticmethod
    def finish_bands(finish: Finish) -> bool:
        """No bands of output rows to finish: the caller finishes whole frames."""
        return False

    @staticmethod
    def load_mix(mix: np.ndarray) -> bool:
        """No loads of rows to mix in: the caller converts first."""
        return False

    @staticmethod
    def takes(dtype: np.dtype) -> bool:
        """Integer frames go in as they are: converted as they are copied into the
        transforms' input, which they are anyway."""
        return np.dtype(dtype) in INTEGERS

    @staticmethod
    def reads_views() -> bool:
        """Any view: the frame is copied into the transforms' input (spec.Method)."""
        return True

    def _fill(self, x: np.ndarray) -> None:
        """The frame (padded unless the wrap supplies zeros) into the planar FFT input."""
        s = self.spec
        if self._wrap:
            fill_planar(self._tx.frames, x, (0, 0, 0, 0), "zero")
        else:
            fill_planar(self._tx.frames, x, s.pads, s.border, s.border_value)

    def _multiply(self, spectra: np.ndarray) -> np.ndarray:
        """Σ over each output's input channels of spectrum · kernel spectrum, on all cores."""
        k, bands = self._kernels, self._bands
        if self.spec.shared:  # in place: the inverse may destroy the forward's output
            def work(_: int, band: int) -> None:
                a, b = bands[band]
                np.multiply(spectra[:, a:b], k[0, :, a:b], out=spectra[:, a:b])

            threads.run_shared(work, len(bands))
            return spectra
        acc = self._tx.inverse_input()

        def mac(part: int, band: int) -> None:
            a, b = bands[band]
            accumulate(self.spec, spectra, k, acc, (a, b), self._scratch[part])

        threads.run_shared(mac, len(bands))
        return acc

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (H, W, C_in) of spec.dtype, any view -> (H', W', C_out) view of spec.dtype."""
        self._fill(x)
        spectra = self._tx.forward()
        if not np.isfinite(spectra[:, 0, 0]).all():
            return self._directly(x)
        out = self._tx.inverse(self._multiply(spectra), self._tx.empty_output())
        (sh, sw), (h_out, w_out, _) = self.spec.stride, self.spec.out_shape
        return out[:, : self._full[0] : sh, : self._full[1] : sw][:, :h_out, :w_out].transpose(
            1, 2, 0)

    def _directly(self, x: np.ndarray) -> np.ndarray:
        """A frame holding NaN/Inf: the direct method, whose NaNs stay where they belong."""
        if self._direct is None:
            self._direct = DirectMethod(self.spec)
        return self._direct(np.ascontiguousarray(x))

    @property
    def planning_s(self) -> float:
        return self._tx.planning_s


def spectra_bytes(spec: BankSpec, shape: tuple[int, int]) -> int:
    """Memory the kernel spectra of ``spec`` take at FFT ``shape``."""
    kernels = 1 if spec.shared else spec.c_out * spec.in_per_group
    item = 8 if spec.dtype == np.float32 else 16
    return kernels * shape[0] * (shape[1] // 2 + 1) * item


def transform_ms_estimate(shape: tuple[int, int]) -> float:
    """Model units for one real 2-D transform of ``shape``: N·log2 N / 1e6."""
    n = shape[0] * shape[1]
    return n * math.log2(max(n, 2)) / 1e6
