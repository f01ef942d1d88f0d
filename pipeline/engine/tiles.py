"""The FFT method on tiles (overlap-save): many small transforms that stay in cache.

A full-frame transform of a 1080p plane streams two million points through memory on
every pass; 128×128 tiles are done in cache. Measured here, a 3-channel 1080p frame's
forward and inverse transforms took 36 ms full-frame and 14 ms as 128×128 tiles, though
the tiles cover 1.4× the samples (they overlap by the kernel extent - 1).

A tile of Th×Tw samples of the padded frame gives the (Th-Eh+1)×(Tw-Ew+1) outputs of the
stride-1 valid correlation that lie wholly inside it (Eh, Ew: the dilated kernel extent).
A row of tiles is a unit of work: its C_in·n forward transforms (one batched FFTW call),
the products with the kernel spectra of the tile size (summed over input channels for
dense banks), C_out·n inverse transforms, and the valid part copied into the planar
result. Workers take alternate rows, each with its own buffers and one-thread plans.
A tile holding NaN/Inf shows it in its DC bin; such a frame goes to the direct method.

Dense float32 banks pack their outputs (where the C loops are built): outputs 2j and
2j+1 come out of one complex inverse transform, as its real and imaginary parts, which
FFTW does in 0.68-0.71x the time of two real ones here (128-192 px tiles). The
multiply-accumulate then fills the full grid of bins, reading the other half of each
input spectrum mirrored from FFTW's half (``_spectral.c``), and the copy out splits the
real and imaginary parts into their planes. Measured on a 3 -> 8 bank at 720p, 160 px
tiles: inverse transforms 11.1 -> 8.1 ms a frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import native, threads
from .border import fill_planar
from .direct import DirectMethod
from .epilogue import Epilogue, Finish
from .fft import (
    Transforms,
    accumulate,
    c_products,
    kernel_spectra,
    packed_kernel_spectra,
    fftw,
    transform_ms_estimate,
    use_pyfftw,
)
from .spec import INTEGERS, BankSpec

# 2·3·5-smooth sizes (FFTW's fast codelets). 64 and 96 were measured 1.6-2.4x slower per
# frame than 128 at k = 21 (more tiles, more overlap, more calls) and are left out.
TILE_SIZES = (128, 160, 192, 256, 320, 384, 512)
CHUNK_BYTES = 8 << 20  # a worker's tile buffers (all planes, real and complex): cache-sized
C2C = 1.4  # one complex inverse transform of a tile, in real ones (0.68-0.71 of two, here)


def packed_of(spec: BankSpec) -> int:
    """How many packed inverse transforms a dense bank's tiles take (0: not packed).

    Packed where the C loops are built, for float32 banks of two or more outputs whose
    twos read the same input channels (one group, or an even number of outputs a group).
    """
    if (native.spectral is None or spec.shared or spec.c_out < 2
            or np.dtype(spec.dtype) != np.float32):
        return 0
    if spec.groups == 1:
        return -(-spec.c_out // 2)
    return spec.c_out // 2 if spec.out_per_group % 2 == 0 else 0


def chunk_tiles(spec: BankSpec, tile: tuple[int, int], per_row: int) -> int:
    """Tiles of one row a worker takes at once: its buffers for them (C_in + C_out real
    and complex planes a tile) fill ``CHUNK_BYTES``."""
    item = np.dtype(spec.dtype).itemsize
    th, tw = tile
    one = (spec.c_in + spec.c_out) * (th * tw + th * (tw // 2 + 1) * 2) * item
    return max(1, min(per_row, CHUNK_BYTES // one))


@dataclass(frozen=True)
class Tiling:
    """Tiles of ``tile`` samples, ``step`` apart, ``grid`` = (rows, cols) of them."""

    tile: tuple[int, int]
    step: tuple[int, int]
    grid: tuple[int, int]

    @property
    def count(self) -> int:
        return self.grid[0] * self.grid[1]

    def describe(self) -> str:
        return (f"{self.tile[0]}x{self.tile[1]} tiles, {self.grid[0]}x{self.grid[1]} "
                f"per plane")


def extent(spec: BankSpec) -> tuple[int, int]:
    """Rows and columns one output reads: the dilated kernel's extent."""
    (kh, kw), (dh, dw) = spec.kernel_size, spec.dilation
    return dh * (kh - 1) + 1, dw * (kw - 1) + 1


def full_size(spec: BankSpec) -> tuple[int, int]:
    """Rows and columns of the stride-1 valid correlation of the padded frame."""
    (ph, pw), (eh, ew) = spec.padded_shape, extent(spec)
    return ph - eh + 1, pw - ew + 1


def tiling_for(spec: BankSpec, size: int) -> Tiling:
    """``size``² tiles over the frame of ``spec`` (the step must stay positive)."""
    (fh, fw), (eh, ew) = full_size(spec), extent(spec)
    step = (size - eh + 1, size - ew + 1)
    return Tiling((size, size), step, (-(-fh // step[0]), -(-fw // step[1])))


def tilings(spec: BankSpec) -> list[Tiling]:
    """Square tilings of the listed sizes whose step is at least the kernel extent and
    that cut the frame in two or more (one tile over the frame is the plain fft method)."""
    eh, ew = extent(spec)
    fits = (tiling_for(spec, size) for size in TILE_SIZES if size + 1 >= 2 * max(eh, ew))
    return [t for t in fits if t.count > 1]


def tiled_cost(spec: BankSpec, k: dict[str, float], tiling: Tiling) -> float:
    """Predicted ms per frame (the planner's constants ``k``)."""
    th, tw = tiling.tile
    n = tiling.count
    products = spec.c_in if spec.shared else spec.c_out * spec.in_per_group
    copied = n * (spec.c_in * th * tw + spec.c_out * tiling.step[0] * tiling.step[1])
    inverses = packed_of(spec) * C2C or spec.c_out
    ms = n * (spec.c_in + inverses) * transform_ms_estimate((th, tw)) * k[unit_key(th)]
    ms += n * products * th * (tw // 2 + 1) * k["tile_cmac_ns"] * 1e-6
    ms += copied * k["tile_copy_ns"] * 1e-6
    ms += math.prod(spec.padded_shape) * spec.c_in * k["fft_fill_ns"] * 1e-6
    chunks = tiling.grid[0] * -(-tiling.grid[1] // chunk_tiles(spec, tiling.tile, tiling.grid[1]))
    ms += chunks * k["tile_chunk_ms"]
    return ms


class _Worker:
    """One worker's tile transforms (a chunk of ``n`` tiles, all channels at once), its
    output tiles and its multiply-accumulate scratch."""

    def __init__(self, spec: BankSpec, n: int, tile: tuple[int, int], effort: str,
                 fftw_threads: int, packed: int) -> None:
        self.tx = Transforms(spec.c_in, packed or spec.c_out, tile, spec.dtype, effort,
                             batch=(n,), fftw_threads=fftw_threads, packed=packed > 0)
        self.out = self.tx.empty_output()
        self.scratch = None if c_products(self.tx.complex) else \
            np.empty_like(self.tx.inverse_input()[0])  # numpy's multiply-accumulate only


class TiledFFTMethod:
    """Correlation of a ``BankSpec`` by overlap-save FFTs: call with ``x: (H, W, C_in)``."""

    name = "fft"

    def __init__(self, spec: BankSpec, tiling: Tiling, effort: str = "measure") -> None:
        self.spec = spec
        self.tiling = tiling
        (sh, sw), (ny, nx) = tiling.step, tiling.grid
        eh, ew = extent(spec)
        self._full = full_size(spec)
        self._padded = np.zeros((spec.c_in, ny * sh + eh - 1, nx * sw + ew - 1), spec.dtype)
        self._m = chunk_tiles(spec, tiling.tile, nx)
        self._chunks = [(row, col) for row in range(ny) for col in range(0, nx, self._m)]
        self._sources = [self._tiles(row, col, min(self._m, nx - col))
                         for row, col in self._chunks]
        parts = min(threads.CORES, len(self._chunks))
        fftw_threads = threads.CORES if parts == 1 else 1
        self._packed = packed_of(spec)
        self._workers = [_Worker(spec, self._m, tiling.tile, effort, fftw_threads, self._packed)
                         for _ in range(parts)]
        self._kernels = (packed_kernel_spectra(spec, tiling.tile, (0, 0)) if self._packed else
                         kernel_spectra(spec, tiling.tile, (0, 0), self._workers[0].tx.complex))
        # the C loops' shapes for packed outputs (a worker's chunk of tiles)
        th, tw = tiling.tile
        self._mac_shape = (spec.c_in, self._packed, spec.in_per_group,
                           self._packed // spec.groups, self._m, th, tw)
        self._split_shape = (self._packed, spec.c_out, self._m, th, tw)
        self._direct: DirectMethod | None = None
        self._given: Epilogue | None = None  # the bank's, once fused
        self._epilogue: Callable[[np.ndarray], object] | None = None  # on each chunk
        self._split_bias: np.ndarray | None = None  # in the packed scatter's stores
        self._relu = False

    def fuse(self, epilogue: Epilogue) -> bool:
        """Take on the bank's bias and activation: packed tiles apply what the C stores can
        as the scatter stores each value; the rest (or all of it, unpacked) runs on each
        chunk's tiles as they land in the result. A frame holding NaN, computed directly,
        gets all of it."""
        self._given = epilogue
        if self._packed and epilogue.in_stores:
            self._split_bias, self._relu = epilogue.bias, epilogue.relu
        else:
            self._epilogue = epilogue.apply
        return True

    @property
    def fused(self) -> bool:
        """Whether results come with the bank's bias and activation."""
        return self._given is not None

    @property
    def planning_s(self) -> float:
        return sum(w.tx.planning_s for w in self._workers)

    def _tiles(self, row: int, col: int, n: int) -> np.ndarray:
        """(C_in, n, Th, Tw) view of the padded planes: ``n`` tiles of ``row`` from ``col``."""
        (th, tw), (sh, sw) = self.tiling.tile, self.tiling.step
        p = self._padded
        s0, s1, s2 = p.strides
        return as_strided(p[:, row * sh :, col * sw :], shape=(p.shape[0], n, th, tw),
                          strides=(s0, sw * s2, s1, s2), writeable=False)

    def _multiply(self, w: _Worker, spectra: np.ndarray) -> np.ndarray:
        """The chunk's spectra times the kernel spectra: in place for a shared kernel,
        else summed over each output's input channels into the inverse's input."""
        if self.spec.shared:
            return np.multiply(spectra, self._kernels[0, 0], out=spectra)
        acc = w.tx.inverse_input()
        if self._packed:
            native.spectral.accumulate_pairs(spectra, self._kernels, acc, self._mac_shape, 0,
                                             self.tiling.tile[0])
        else:
            accumulate(self.spec, spectra, self._kernels, acc, tmp=w.scratch)
        return acc

    def _chunk(self, w: _Worker, i: int, out: np.ndarray) -> bool:
        """Chunk ``i``'s tiles into ``out``; False (nothing written) if one of them is not
        finite. The last chunk of a row may be short: its spare tiles are transformed (a
        fixed plan) but not copied out."""
        n = self._gather(w, i)
        spectra = w.tx.forward()
        if not np.isfinite(spectra[:, :n, 0, 0]).all():
            return False
        w.tx.inverse(self._multiply(w, spectra), w.out)
        row, col = self._chunks[i]
        self._scatter(w, row, col, n, out)
        if self._epilogue is not None:
            (sh, sw) = self.tiling.step
            self._epilogue(out[:, row * sh : (row + 1) * sh, col * sw : (col + n) * sw])
        return True

    def _gather(self, w: _Worker, i: int) -> int:
        """Chunk ``i``'s tiles into the worker's input; how many there are."""
        source = self._sources[i]
        n = source.shape[1]
        np.copyto(w.tx.frames[:, :n], source)
        return n

    def _scatter(self, w: _Worker, row: int, col: int, n: int, out: np.ndarray) -> None:
        """The valid part of the worker's ``n`` output tiles into the planar result (packed:
        cut at its edges, where the spare tiles of a short chunk lie)."""
        sh, sw = self.tiling.step
        if self._packed:
            height = out.shape[1]
            native.spectral.split_pairs(w.out, out, self._split_shape, out.shape[1:], row * sh,
                                        col * sw, min(sh, height - row * sh), sw, None,
                                        self._split_bias, self._relu)
            return
        band = out[:, row * sh : (row + 1) * sh, col * sw : (col + n) * sw]
        band = band.reshape(out.shape[0], sh, n, sw).transpose(0, 2, 1, 3)
        np.copyto(band, w.out[:, :n, :sh, :sw])

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
        padded frame the tiles are cut from, which they are anyway."""
        return np.dtype(dtype) in INTEGERS

    @staticmethod
    def reads_views() -> bool:
        """Any view: the frame is copied into the padded frame the tiles are cut from
        (spec.Method)."""
        return True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (H, W, C_in) of spec.dtype, any view -> (H', W', C_out) view of spec.dtype."""
        s = self.spec
        fill_planar(self._padded, x, s.pads, s.border, s.border_value)
        (sh, sw), (ny, nx) = self.tiling.step, self.tiling.grid
        # packed tiles are cut at the edge of the result; others fill whole steps
        out = np.empty((s.c_out, *(self._full if self._packed else (ny * sh, nx * sw))), s.dtype)
        finite = [True] * len(self._workers)

        def work(part: int, i: int) -> bool:
            finite[part] = finite[part] and self._chunk(self._workers[part], i, out)
            return finite[part]

        threads.run_shared(work, len(self._chunks), len(self._workers))
        if not all(finite):
            y = self._directly(x)
            if self._given is not None:  # the fallback's result is not fused
                self._given.apply(y.transpose(2, 0, 1))
            return y
        (st_h, st_w), (h_out, w_out, _) = s.stride, s.out_shape
        return out[:, : self._full[0] : st_h, : self._full[1] : st_w][:, :h_out, :w_out] \
            .transpose(1, 2, 0)

    def copied(self) -> int:
        """Samples copied into tiles and out of them per frame (the cost model's count)."""
        (th, tw), (sh, sw), n = self.tiling.tile, self.tiling.step, self.tiling.count
        return n * (self.spec.c_in * th * tw + self.spec.c_out * sh * sw)

    def copies_only(self, x: np.ndarray) -> None:
        """Just the copies into tiles and out of them, on all workers (for calibration)."""
        (sh, sw), nx = self.tiling.step, self.tiling.grid[1]
        out = np.empty((self.spec.c_out, self.tiling.grid[0] * sh, nx * sw), self.spec.dtype)
        parts = len(self._workers)

        def work(part: int) -> None:
            w = self._workers[part]
            for i in range(part, len(self._chunks), parts):
                self._scatter(w, *self._chunks[i], self._gather(w, i), out)

        threads.run_parallel(work, parts)

    def transforms_only(self) -> None:
        """Just the forward and inverse transforms of one frame's tiles: this layout's floor."""
        parts = len(self._workers)

        def work(part: int) -> None:
            w = self._workers[part]
            for _ in range(part, len(self._chunks), parts):
                spectra = w.tx.forward()
                w.tx.inverse(spectra if self.spec.shared else w.tx.inverse_input(), w.out)

        threads.run_parallel(work, parts)

    def _directly(self, x: np.ndarray) -> np.ndarray:
        """A frame holding NaN/Inf: the direct method, whose NaNs stay where they belong."""
        if self._direct is None:
            self._direct = DirectMethod(self.spec)
        return self._direct(np.ascontiguousarray(x))


def unit_key(size: int) -> str:
    """The planner constant for one transform of ``size``² tiles."""
    return f"fft_tile{size}_unit_ms"


def measure_units(dtype: np.dtype | str = "float32", repeat: int = 5) -> dict[str, float]:
    """ms per N·log2(N)/1e6 of tile transforms of each listed size, per core's share.

    A batch of 2 MiB of tiles, forward then inverse, one thread (as the workers run them);
    divided by the cores, since the workers run that many batches at once.
    """
    real = np.dtype(dtype)
    using = use_pyfftw()
    out = {}
    for size in TILE_SIZES:
        n = max(2, (2 << 20) // (size * size * real.itemsize))
        frames = (fftw().empty_aligned if using else np.empty)((n, size, size), dtype=real)
        frames[...] = 1
        if using:
            forward = fftw().builders.rfft2(frames, planner_effort="FFTW_ESTIMATE", threads=1)
            spectra = forward()
            inverse = fftw().builders.irfft2(spectra, s=(size, size),
                                             planner_effort="FFTW_ESTIMATE", threads=1)
        else:
            from scipy import fft

            def forward(f=frames):
                return fft.rfft2(f)

            spectra = forward()

            def inverse(s=spectra, t=(size, size)):
                return fft.irfft2(s, s=t)
        inverse()
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            forward()
            inverse()
            best = min(best, time.perf_counter() - start)
        units = 2 * n * transform_ms_estimate((size, size))
        out[unit_key(size)] = best * 1e3 / units / threads.CORES
    return out
