#!/usr/bin/env python
"""Per-frame ms of FilterBank (auto and each forced method) against the peers, interleaved.

Cases (ISSUE 3 / ../shared/PERF_NOTES.md):
  A  one kernel on each of 3 channels, 1920x1080, reflect101, random and gaussian kernels
  B  dense 3 -> 8 (Conv2D), 1280x720, zero border
  M  a trained dense chain (issue 20): 3 -> 16 k relu -> 16 -> 16 k relu, 1280x720 uint8
     frames, one .onnx file (made by torch.onnx.export) run by pipeline.load_model, by
     onnxruntime's CPU session and by torch channels-last; each peer's time includes
     making its NCHW float32 input from the uint8 HWC frame, as a video frame arrives
  U  case A on the uint8 frame a camera or video file gives (issue 19): u8 -> f32 against
     cv2.filter2D / sepFilter2D with ddepth CV_32F, and u8 -> u8 (our bank writing 8-bit
     results band by band, saturating as the saturate policy does) against cv2.filter2D /
     GaussianBlur u8 -> u8
Peers: cv2.filter2D, cv2.sepFilter2D (gaussian kernels), scipy.signal.fftconvolve with
workers = cores, torch conv2d channels_last (when torch is installed), and the FFTW
transform floor (C_in forward + C_out inverse full-frame transforms of the frame's measured
FFT shape) and, when the fft method runs on tiles, its own floor (the tiles' transforms alone).

Every repetition times every contender once, in turn, so a noisy neighbour slows them
all alike; the table shows medians and ratios from this one run. "auto is" names how auto
runs: filter2D and sepF2D are the peers' own calls (a ratio there is a tie, within noise),
sepF2D+ adds an identity term, C kernel and dw kernel (depthwise) the direct method's own,
sep kernel the separable method's own (depthwise), fft / fft tiles the FFT's.
Run by hand:

    python scripts/bench_engine.py            # both cases, every k
    python scripts/bench_engine.py --case B --ks 3 5 11 --repeat 5
    python scripts/bench_engine.py --case U --repeat 7
    python scripts/bench_engine.py --case M --ks 3 5 --repeat 15 [--ort-spinning]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/pyfftw load

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
from scipy import signal  # noqa: E402

from pipeline import FilterBank  # noqa: E402
from pipeline.config import Encode  # noqa: E402
from pipeline.encode import Encoder  # noqa: E402
from pipeline.engine.epilogue import Finish  # noqa: E402
from pipeline.engine import layout, threads  # noqa: E402
from pipeline.engine.sizes import fft_shape  # noqa: E402
from pipeline.kernels import gaussian  # noqa: E402

try:
    import torch

    torch.set_num_threads(threads.CORES)
except ImportError:
    torch = None

SLOW_S = 2.0  # a contender slower than this per frame is timed once, not `repeat` times


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def interleave(contenders: dict, repeat: int) -> dict[str, float]:
    """Median ms per contender; every round times each once, in turn (after a warm-up)."""
    samples: dict[str, list[float]] = {}
    for name, fn in contenders.items():
        samples[name] = [timed(fn)]  # warm-up: planning, first-touch
    slow = {n for n, s in samples.items() if s[0] > SLOW_S * 1e3}
    for name in slow:
        samples[name] = [timed(contenders[name])]
    order = [n for n in contenders if n not in slow]
    shuffle = np.random.default_rng(1).permutation
    for _ in range(repeat):  # a fresh order each round: no contender always follows another
        for i in shuffle(len(order)):
            samples[order[i]].append(timed(contenders[order[i]]))
    return {n: float(np.median(s[1:] if len(s) > 1 else s)) for n, s in samples.items()}


def fft_floor(c_in: int, c_out: int, shape: tuple[int, int]):
    """A callable doing just the C_in forward and C_out inverse transforms of ``shape``."""
    import pyfftw

    fh, fw = shape
    a = pyfftw.empty_aligned((c_in, fh, fw), dtype="float32")
    b = pyfftw.empty_aligned((c_in, fh, fw // 2 + 1), dtype="complex64")
    c = pyfftw.empty_aligned((c_out, fh, fw // 2 + 1), dtype="complex64")
    d = pyfftw.empty_aligned((c_out, fh, fw), dtype="float32")
    fwd = pyfftw.FFTW(a, b, axes=(1, 2), flags=("FFTW_MEASURE",), threads=threads.CORES)
    inv = pyfftw.FFTW(c, d, axes=(1, 2), direction="FFTW_BACKWARD",
                      flags=("FFTW_MEASURE", "FFTW_DESTROY_INPUT"), threads=threads.CORES)
    a[:] = 1.0
    c[:] = 1.0

    def run():
        fwd()
        inv(normalise_idft=False)

    return run


def floors(bank: FilterBank, x: np.ndarray) -> dict:
    """The full-frame FFTW floor of the frame, and (when the fft method runs on tiles) the
    floor of its own layout: its tiles' transforms alone, on the same workers."""
    bank(x)
    engine = bank._engine(x.shape)
    spec = engine.spec
    out = {"FFTW floor": fft_floor(spec.c_in, spec.c_out,
                                   fft_shape(layout.fft_need(spec), spec.dtype))}
    out["own floor"] = getattr(engine, "transforms_only", out["FFTW floor"])
    return out


def runs_as(plan) -> str:
    """What auto's method is, in a word: where it is a peer's own call, that call's name."""
    note = plan.notes.get(plan.method, "")
    if plan.method == "direct":
        return "filter2D" if note.startswith("filter2D") else \
            "dw kernel" if note.startswith("depthwise") else \
            "C kernel" if "C kernel" in note else "GEMM"
    if plan.method == "separable":
        call = "sep kernel" if "C kernel" in note else "sepF2D"
        return call + ("+" if "identity" in note else "")
    return "fft tiles" if "tiles" in note else "fft"


def torch_conv(x: np.ndarray, weights: np.ndarray, groups: int, padding: int, mode: str):
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    xt = xt.contiguous(memory_format=torch.channels_last)
    wt = torch.from_numpy(np.ascontiguousarray(weights))
    if mode != "zeros":  # reflect101 == torch 'reflect', applied as F.pad like Conv2d does
        def run():
            padded = torch.nn.functional.pad(xt, (padding,) * 4, mode="reflect")
            return torch.nn.functional.conv2d(padded, wt, groups=groups)
        return run
    return lambda: torch.nn.functional.conv2d(xt, wt, padding=padding, groups=groups)


def case_a(k: int, kind: str, repeat: int, rng) -> dict:
    x = rng.standard_normal((1080, 1920, 3)).astype(np.float32)
    kernel = gaussian(sigma=k / 6, size=k) if kind == "gauss" else rng.standard_normal((k, k))
    kernel = kernel.astype(np.float32)
    xc = np.ascontiguousarray(x.transpose(2, 0, 1))
    banks = {m: FilterBank(kernel, align="opencv", border="reflect101", method=m)
             for m in ("auto", "direct", "separable", "fft")}
    c = {f"pl:{m}": (lambda b=b: b(x)) for m, b in banks.items()}
    c["filter2D"] = lambda: cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if kind == "gauss":
        g = cv2.getGaussianKernel(k, k / 6, ktype=cv2.CV_32F)
        c["sepFilter2D"] = lambda: cv2.sepFilter2D(x, -1, g, g, borderType=cv2.BORDER_REFLECT_101)

    def fftconv():
        with scipy.fft.set_workers(threads.CORES):
            return signal.fftconvolve(xc, kernel[None, ::-1, ::-1], mode="same", axes=(1, 2))

    c["fftconvolve"] = fftconv
    if torch is not None and k <= 31:
        c["torch CL"] = torch_conv(x, np.repeat(kernel[None, None], 3, 0), 3, k // 2, "reflect")
    c.update(floors(banks["fft"], x))
    times = interleave(c, repeat)
    times["auto is"] = runs_as(banks["auto"].plan(x.shape))
    return times


def case_u(k: int, kind: str, repeat: int, rng) -> dict:
    x = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    kernel = gaussian(sigma=k / 6, size=k) if kind == "gauss" else \
        rng.standard_normal((k, k)) / k  # results mostly within 0..255
    kernel = kernel.astype(np.float32)
    bank = FilterBank(kernel, align="opencv", border="reflect101")
    to8 = FilterBank(kernel, align="opencv", border="reflect101")
    encoder = Encoder(Encode(policy="saturate", range=[0, 255]), x.shape)
    finish = Finish(encoder.band, 3, encoder.in_stores, encoder.count_nans)
    if not to8.finish_bands(x.shape, finish, x.dtype):  # FFT: whole frames, as
        to8 = lambda frame: encoder(bank(frame))  # noqa: E731  a run then encodes them
    border = cv2.BORDER_REFLECT_101
    c = {"pl:u8>f32": lambda: bank(x), "pl:u8>u8": lambda: to8(x),
         "filter2D>f32": lambda: cv2.filter2D(x, cv2.CV_32F, kernel, borderType=border),
         "filter2D>u8": lambda: cv2.filter2D(x, -1, kernel, borderType=border)}
    if kind == "gauss":
        g = cv2.getGaussianKernel(k, k / 6, ktype=cv2.CV_32F)
        c["sepF2D>f32"] = lambda: cv2.sepFilter2D(x, cv2.CV_32F, g, g, borderType=border)
        c["Gaussian>u8"] = lambda: cv2.GaussianBlur(x, (k, k), k / 6, borderType=border)
    times = interleave(c, repeat)
    times["auto is"] = runs_as(bank.plan(x.shape, x.dtype))
    times["best >f32"] = min(v for n, v in times.items() if n.endswith(">f32") and
                             not n.startswith("pl:"))
    times["best >u8"] = min(v for n, v in times.items() if n.endswith(">u8") and
                            not n.startswith("pl:"))
    return times


def case_b(k: int, repeat: int, rng) -> dict:
    x = rng.standard_normal((720, 1280, 3)).astype(np.float32)
    w = rng.standard_normal((8, 3, k, k)).astype(np.float32)
    banks = {m: FilterBank(w, padding="same", border="zero", method=m)
             for m in ("auto", "direct", "separable", "fft")}
    c = {f"pl:{m}": (lambda b=b: b(x)) for m, b in banks.items()}
    planes = [np.ascontiguousarray(x[..., i]) for i in range(3)]

    def filter2d_pairs():
        return [sum(cv2.filter2D(planes[i], -1, w[o, i], borderType=cv2.BORDER_CONSTANT)
                    for i in range(3)) for o in range(8)]

    c["filter2D x24"] = filter2d_pairs
    xc = np.ascontiguousarray(x.transpose(2, 0, 1))[None]

    def fftconv():
        with scipy.fft.set_workers(threads.CORES):
            return signal.fftconvolve(xc, w[:, :, ::-1, ::-1], mode="same", axes=(2, 3)).sum(1)

    c["fftconvolve"] = fftconv
    if torch is not None:
        c["torch CL"] = torch_conv(x, w, 1, k // 2, "zeros")
    c.update(floors(banks["fft"], x))
    times = interleave(c, repeat)
    times["auto is"] = runs_as(banks["auto"].plan(x.shape))
    return times


def case_m(k: int, repeat: int, rng, spinning: bool = False) -> dict:
    import tempfile

    import onnxruntime

    from pipeline import load_model

    torch.manual_seed(k)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, k, padding=k // 2), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, k, padding=k // 2), torch.nn.ReLU()).eval()
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dense.onnx")
        torch.onnx.export(net, (torch.zeros(1, 3, 720, 1280),), path, dynamo=False)
        model = load_model(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads.CORES
        # its workers spin after a run by default, slowing whatever runs next (PERF_NOTES E):
        # in a frame pipeline, the decoder and encoder threads (--ort-spinning keeps it)
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(path, options,
                                               providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    net = net.to(memory_format=torch.channels_last)

    def ort():
        x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)
        return session.run(None, {name: x})[0]

    def torch_cl():
        with torch.no_grad():
            x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
            return net(x.contiguous(memory_format=torch.channels_last))

    c = {"pl:model": lambda: model(frame), "onnxruntime": ort, "torch CL": torch_cl}
    want = ort()[0].transpose(1, 2, 0)
    np.testing.assert_allclose(model(frame), want, atol=1e-4 * np.abs(want).max())
    times = interleave(c, repeat)
    times["auto is"] = runs_as(model.banks[1].plan((720, 1280, 16)))
    return times


def table(title: str, rows: list[tuple[int, dict]], ratios: list[tuple[str, str, str]]) -> None:
    names = list(dict.fromkeys(n for _, t in rows for n in t if n != "auto is"))
    print(f"\n{title}  (ms per frame, median; ratios from the same run)")
    head = f"{'k':>4} {'auto is':>9} " + " ".join(f"{n:>12}" for n in names)
    head += " " + " ".join(f"{label:>14}" for label, _, _ in ratios)
    print(head)
    for k, t in rows:
        line = f"{k:>4} {t['auto is']:>9} " + " ".join(f"{t.get(n, float('nan')):>12.1f}" for n in names)
        for _, num, den in ratios:
            if den == "best peer":
                peers = [v for n, v in t.items() if n != "auto is" and not n.startswith("pl:")
                         and not n.endswith("floor") and not n.startswith("best")]
                value = t[num] / min(peers)
            else:
                value = t[num] / t.get(den, float("nan"))
            line += f" {value:>14.2f}"
        print(line)
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["A", "B", "U", "M", "both"], default="both")
    parser.add_argument("--ks", type=int, nargs="*")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=["random", "gauss"])
    parser.add_argument("--ort-spinning", action="store_true",
                        help="case M: leave onnxruntime's spinning workers on (its default)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"cores {threads.CORES}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'absent'}")
    if args.case in ("A", "both"):
        for kind in args.kinds:
            ks = args.ks or [3, 5, 7, 9, 11, 15, 21, 31, 51, 101]
            rows = [(k, case_a(k, kind, args.repeat, rng)) for k in ks]
            ratios = [("auto/best peer", "pl:auto", "best peer"),
                      ("auto/filter2D", "pl:auto", "filter2D"),
                      ("fft/floor", "pl:fft", "FFTW floor"),
                      ("fft/own floor", "pl:fft", "own floor")]
            if kind == "gauss":
                ratios.append(("auto/sepF2D", "pl:auto", "sepFilter2D"))
            table(f"A: 3 channels 1920x1080, reflect101, {kind} kernel", rows, ratios)
    if args.case == "U":
        for kind in args.kinds:
            ks = args.ks or [3, 5, 7, 9, 11, 15, 21, 31, 51, 101]
            rows = [(k, case_u(k, kind, args.repeat, rng)) for k in ks]
            table(f"U: uint8 frames, 3 channels 1920x1080, reflect101, {kind} kernel", rows,
                  [("u8>f32/best", "pl:u8>f32", "best >f32"),
                   ("u8>u8/best", "pl:u8>u8", "best >u8")])
    if args.case == "M":
        rows = [(k, case_m(k, args.repeat, rng, args.ort_spinning)) for k in args.ks or [3]]
        table("M: dense chain 3 -> 16 -> 16 (relu), 1280x720 uint8, one .onnx", rows,
              [("model/ort", "pl:model", "onnxruntime"), ("model/torch", "pl:model", "torch CL")])
    if args.case in ("B", "both"):
        ks = args.ks or [3, 5, 7, 11, 15, 21, 31]
        rows = [(k, case_b(k, args.repeat, rng)) for k in ks]
        ratios = [("auto/best peer", "pl:auto", "best peer"),
                  ("auto/torch", "pl:auto", "torch CL"),
                  ("fft/floor", "pl:fft", "FFTW floor"),
                  ("fft/own floor", "pl:fft", "own floor")]
        table("B: dense 3 -> 8, 1280x720, zero border", rows, ratios)


if __name__ == "__main__":
    main()
