"""Calibration: time each primitive the cost model uses, on this machine, and save it.

`pipeline bench` runs this. Each constant comes from two timings that differ in one
quantity (taps, output channels…) so the fixed and the per-unit parts separate; the
result is written to ``calibration.json`` beside the FFTW wisdom, which planning the
common frame sizes here also fills. Medians of several runs: the machine may be noisy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np

from . import cache as disk
from . import native, planner, threads
from .border import fill_planar
from .direct import DirectMethod
from .fft import FFTMethod, save_wisdom, transform_ms_estimate
from .layout import LAYOUT_FILE
from .separable import SeparableMethod
from .spec import BankSpec
from .tiles import TiledFFTMethod, measure_units, tiling_for

Progress = Callable[[str], None]


def _median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _spec(h: int, w: int, c_in: int, c_out: int, k: int, shared: bool = False,
          border: str = "zero") -> BankSpec:
    weights = np.random.default_rng(1).standard_normal(
        (1 if shared else c_out, 1 if shared else c_in, k, k))
    if shared:
        weights = np.broadcast_to(weights, (c_in, 1, k, k))
    p = k // 2
    return BankSpec(in_shape=(h, w, c_in), out_shape=(h, w, c_out if not shared else c_in),
                    weights=weights, groups=c_in if shared else 1, shared=shared,
                    pads=(p, k - 1 - p, p, k - 1 - p), border=border, border_value=0.0,
                    stride=(1, 1), dilation=(1, 1), dtype=np.dtype(np.float32))


def _gaussian(spec: BankSpec) -> BankSpec:
    """``spec`` with a Gaussian kernel (rank 1: one pass pair) of its size."""
    k = spec.kernel_size[0]
    g = cv2.getGaussianKernel(k, k / 6, ktype=cv2.CV_64F)
    return replace(spec, weights=np.broadcast_to(g @ g.T, spec.weights.shape))


def _solve(t1: float, t2: float, a1: float, b1: float, a2: float, b2: float) -> tuple[float, float]:
    """(x, y) with t = a·x + b·y for two timings.

    Noise can push one part below zero; it is then held at 1 % of what the whole timing
    would give it alone, so the model never predicts free work.
    """
    det = a1 * b2 - a2 * b1
    x = (t1 * b2 - t2 * b1) / det
    y = (a1 * t2 - a2 * t1) / det
    return max(x, 0.01 * t1 / a1), max(y, 0.01 * t2 / b2)


def run(scale: float = 1.0, repeat: int = 5, progress: Progress = lambda _: None,
        wisdom_shapes: tuple[tuple[int, int, int], ...] = ((720, 1280, 3), (1080, 1920, 3)),
        ) -> dict[str, float]:
    """Measure every constant (frames of 720p × ``scale``), save them, return them."""
    h, w = max(16, int(720 * scale)), max(16, int(1280 * scale))
    rng = np.random.default_rng(0)
    x3 = rng.standard_normal((h, w, 3)).astype(np.float32)
    # what cameras and video files give: the C kernels and the FFT's fill read it as it is
    x8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    px = h * w
    k: dict[str, float] = {}

    progress("uint8 -> float32 copy (what OpenCV's calls need first)")
    k["convert_ns"] = _median_s(lambda: x8.astype(np.float32), repeat) / (3 * px) * 1e9

    progress("OpenCV call overhead")
    tiny = np.ones((8, 8), np.float32)
    k["call_ms"] = _median_s(lambda: cv2.filter2D(tiny, -1, np.ones((3, 3), np.float32)),
                             repeat * 20) * 1e3

    progress("filter2D per pixel and per tap")
    f3, f9 = (np.ones((n, n), np.float32) / n**2 for n in (3, 9))
    t3 = _median_s(lambda: cv2.filter2D(x3, -1, f3), repeat)
    t9 = _median_s(lambda: cv2.filter2D(x3, -1, f9), repeat)
    k["filter2d_pixel_ns"], k["filter2d_tap_ns"] = (
        v * 1e9 for v in _solve(t3, t9, 3 * px, 3 * px * 9, 3 * px, 3 * px * 81))

    progress("OpenCV UMat round trip (kernels of 130+ taps)")
    plane = np.ascontiguousarray(x3[..., 0])
    k["umat_pixel_ns"] = _median_s(lambda: cv2.UMat(plane).get(), repeat) / px * 1e9

    progress("plane accumulation")
    acc = plane.copy()
    k["add_pixel_ns"] = _median_s(lambda: np.add(acc, plane, out=acc), repeat) / px * 1e9

    progress("sepFilter2D per pixel and per tap")
    g3, g15 = (cv2.getGaussianKernel(n, 0, ktype=cv2.CV_32F) for n in (3, 15))
    s3 = _median_s(lambda: cv2.sepFilter2D(x3, -1, g3, g3), repeat)
    s15 = _median_s(lambda: cv2.sepFilter2D(x3, -1, g15, g15), repeat)
    k["sep_pixel_ns"], k["sep_tap_ns"] = (
        v * 1e9 for v in _solve(s3, s15, 3 * px, 3 * px * 6, 3 * px, 3 * px * 30))

    progress("im2col + GEMM")
    narrow, wide = _spec(h, w, 3, 8, 3), _spec(h, w, 3, 32, 3)
    gemm = {n: _median_s(lambda d=DirectMethod(s, "gemm"): d(x3), repeat)
            for n, s in (("narrow", narrow), ("wide", wide))}
    gathered, pixels = px * 27, px
    k["gemm_gather_ns"], k["gemm_mac_ns"] = (
        v * 1e9 for v in _solve(gemm["narrow"], gemm["wide"], gathered, pixels * 8 * 27,
                                gathered, pixels * 32 * 27))

    if native.available():
        progress("C kernel per output and per multiply-accumulate")
        small, large = _spec(h, w, 3, 8, 3), _spec(h, w, 3, 8, 7)
        blocked = {n: _median_s(lambda d=DirectMethod(s, "native"): d(x3), repeat)
                   for n, s in (("small", small), ("large", large))}
        outputs = px * 8
        k["native_out_ns"], k["native_mac_ns"] = (
            v * 1e9 for v in _solve(blocked["small"], blocked["large"], outputs, outputs * 27,
                                    outputs, outputs * 3 * 49))

    if native.depthwise is not None:
        progress("depthwise C kernel per output and per multiply-accumulate")
        small, large = (_spec(h, w, 3, 3, n, shared=True, border="reflect101") for n in (3, 9))
        dw = {n: _median_s(lambda d=DirectMethod(s, "depthwise"): d(x8), repeat)
              for n, s in (("small", small), ("large", large))}
        outputs = px * 3
        k["dw_out_ns"], k["dw_mac_ns"] = (
            v * 1e9 for v in _solve(dw["small"], dw["large"], outputs, outputs * 9,
                                    outputs, outputs * 81))

        progress("separable C kernel per output and per 1-D tap")
        small, large = (_gaussian(_spec(h, w, 3, 3, n, shared=True, border="reflect101"))
                        for n in (3, 15))
        sep = {n: _median_s(lambda m=SeparableMethod(s, "native"): m(x8), repeat)
               for n, s in (("small", small), ("large", large))}
        k["sepc_out_ns"], k["sepc_tap_ns"] = (
            v * 1e9 for v in _solve(sep["small"], sep["large"], outputs, outputs * 6,
                                    outputs, outputs * 30))

    progress("FFT transforms, spectrum products and fill")
    method = FFTMethod(_spec(h, w, 3, 3, 15, shared=True))
    tx = method._tx
    forward = _median_s(tx.forward, repeat)
    k["fft_unit_ms"] = forward / 3 / transform_ms_estimate(method.shape) * 1e3
    k["fft_fill_ns"] = _median_s(lambda: fill_planar(tx.frames, x8, (0, 0, 0, 0), "zero"),
                                 repeat) / (3 * px) * 1e9
    dense = FFTMethod(_spec(h, w, 3, 8, 5))  # the real accumulate loop, kernel spectra streaming
    spectra = dense._tx.forward()
    bins = spectra.shape[1] * spectra.shape[2]
    k["fft_cmac_ns"] = _median_s(lambda: dense._multiply(spectra), repeat) / (24 * bins) * 1e9

    progress("FFT tiles: transforms of each tile size, copies in and out")
    k.update(measure_units(np.float32))
    spec = _spec(h, w, 3, 3, 15, shared=True, border="reflect101")
    tiled = TiledFFTMethod(spec, tiling_for(spec, 128))
    k["tile_copy_ns"] = _median_s(lambda: tiled.copies_only(x3), repeat) / tiled.copied() * 1e9
    dense = _spec(h, w, 3, 8, 5)
    tiled_dense = TiledFFTMethod(dense, tiling_for(dense, 128))
    worker = tiled_dense._workers[0]  # one worker's chunk, in cache: its time per core
    chunk = worker.tx.forward()
    products = 24 * chunk.shape[1] * chunk.shape[2] * chunk.shape[3]
    k["tile_cmac_ns"] = _median_s(lambda: tiled_dense._multiply(worker, chunk), repeat) / \
        products / threads.CORES * 1e9
    small = _spec(64, 64, 3, 3, 3, shared=True)  # tiny tiles: the time is the fixed part
    tiny = TiledFFTMethod(small, tiling_for(small, 16))
    k["tile_chunk_ms"] = _median_s(lambda: tiny(x3[:64, :64].copy()), repeat) * 1e3 / \
        len(tiny._chunks)

    for shape in wisdom_shapes:
        progress(f"FFTW plans for {shape[1]}x{shape[0]} frames (kept as wisdom)")
        for border in ("zero", "reflect101"):
            FFTMethod(_spec(*shape, shape[2], 15, shared=True, border=border))
    save_wisdom()

    for timings in (LAYOUT_FILE, planner.TIMINGS_FILE):  # timed again on the next start
        disk.save_json(timings, {}, disk.engine_stamp())
    disk.save_json(planner.CALIBRATION_FILE, {
        "constants": k,
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cores": threads.CORES,
        "frame": [h, w],
    }, disk.engine_stamp())
    planner.constants.cache_clear()
    return k
