"""FilterBank: the semantics of SPEC section 1, resolved per frame format, then dispatched.

Everything here is about meaning: which weights, which channels meet which kernels, how
much padding goes on which side, which border. The arithmetic lives in ``engine``, which
receives a fully resolved ``BankSpec`` (correlation weights, groups, pads) once per format.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import activations, geometry
from .engine import memory, planner
from .engine.epilogue import Epilogue, Finish
from .engine.spec import INTEGERS, BankSpec, Method
from .errors import ConfigError, FrameError
from .weightfiles import to_oihw
from .options import BankOptions, check_finite, parse_bias

_ENGINE_CACHE = 8  # frame formats one bank keeps planned at once


@dataclass(frozen=True)
class Plan:
    """What a bank does on frames of ``in_shape``; ``str(plan)`` is the report of `pipeline plan`."""

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    pads: tuple[int, int, int, int]
    centre: tuple[int, int] | None
    border: str
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    num_params: int
    method: str
    reason: str
    costs: dict[str, float | None]
    notes: dict[str, str]
    reads: str = ""  # what the method takes: the source's frames as they are, or converted

    def __str__(self) -> str:
        (h, w, c), (ho, wo, co) = self.in_shape, self.out_shape
        t, b, left, r = self.pads
        lines = [
            f"frames {h}x{w}x{c} -> {ho}x{wo}x{co}  (rows x cols x channels)",
            f"padding top {t}, bottom {b}, left {left}, right {r}; border {self.border}",
            f"kernel centre (row, col) {self.centre}" if self.centre else "kernel centre: n/a",
            f"stride {self.stride}, dilation {self.dilation}, groups {self.groups}, "
            f"parameters {self.num_params}",
            f"method {self.method}: {self.reason}",
        ] + ([f"reads {self.reads}"] if self.reads else [])
        for name, cost in self.costs.items():
            shown = f"{cost:9.2f} ms/frame" if cost is not None else " " * 9 + "-"
            note = self.notes.get(name, "")
            lines.append(f"  {name:<10}{shown}  {note}".rstrip())
        return "\n".join(lines)


class FilterBank:
    """A bank of 2-D kernels applied to ``(H, W, C_in)`` frames -> ``(H', W', C_out)`` floats.

    ``weights``: 4-D in ``layout`` -- oihw ``(C_out, C_in/groups, kh, kw)`` (depthwise:
    ``(C_in·M, 1, kh, kw)``) or hwio ``(kh, kw, C_in, C_out)`` (depthwise:
    ``(kh, kw, C_in, M)``) -- or a 2-D ``(kh, kw)`` kernel applied to every channel.
    Options are keywords (or one ``options=BankOptions(...)``) taking the values of their
    YAML fields (SPEC section 1, ``options.BankOptions``); a bad one raises ``ConfigError``
    (a ``ValueError``) naming the option, the value and what is allowed.
    ``method='auto'`` picks by a cost model once per frame format (``measure=True``: by
    timing every method on a synthetic frame of that format instead).
    """

    def __init__(self, weights: Any, bias: Any = None, *, options: BankOptions | None = None,
                 **values: Any) -> None:
        if options is not None and values:
            raise TypeError("FilterBank: give options=BankOptions(...) or keywords, not both")
        self.options = options if options is not None else BankOptions(**values)
        self.weights, self.shared = self._parse_weights(weights)
        self.bias = self._parse_bias(bias)
        anchor = self.options.anchor
        kh, kw = self.kernel_size
        if anchor is not None and (anchor[0] >= kh or anchor[1] >= kw):
            raise ConfigError(f"anchor={list(anchor)} is not allowed; expected [row, col] "
                              f"inside the {kh}x{kw} kernel")
        # The kernels every method computes with: correlation, so a convolve bank turns them.
        self._corr = self.weights[..., ::-1, ::-1] if self.options.op == "convolve" \
            else self.weights
        self._bias = None if self.bias is None else self.bias.astype(self.options.dtype)
        self._engines: OrderedDict[tuple[tuple[int, int, int], str],
                                   tuple[BankSpec, planner.Choice, Method]] = OrderedDict()
        self._mixes: dict[tuple[tuple[int, int, int], str], np.ndarray] = {}  # load_mix

    # ------------------------------------------------------------------ validation
    def _parse_weights(self, weights: Any) -> tuple[np.ndarray, bool]:
        try:
            w = np.array(weights, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"weights: not a rectangular array of numbers ({e})") from None
        if w.ndim not in (2, 4) or 0 in w.shape:
            raise ConfigError(
                f"weights of shape {w.shape}: expected a 2-D (kh, kw) kernel or 4-D weights "
                f"in layout {self.options.layout}, no axis empty"
            )
        check_finite(w, "weights")
        groups = self.options.groups
        if w.ndim == 2:
            if groups != 1:
                raise ConfigError("groups needs 4-D weights; a 2-D kernel is depthwise already")
            return w, True
        depthwise = self.options.mode == "depthwise"
        w = np.ascontiguousarray(to_oihw(w, self.options.layout, depthwise))
        if depthwise and w.shape[1] != 1:
            raise ConfigError(
                f"depthwise weights of oihw shape {w.shape}: expected (C_in*M, 1, kh, kw)"
            )
        if not depthwise and w.shape[0] % groups:
            raise ConfigError(f"groups={groups}: C_out={w.shape[0]} is not a multiple of groups")
        return w, False

    def _parse_bias(self, bias: Any) -> np.ndarray | None:
        b = parse_bias(bias)
        c_out = None if self.shared else self.weights.shape[0]
        if b is not None and (b.size == 0 or (c_out is not None and b.size != c_out)):
            raise ConfigError(
                f"bias has {b.size} values; expected one per output channel ({c_out})"
            )
        return b

    # ------------------------------------------------------------------ properties
    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.weights.shape[-2], self.weights.shape[-1]

    @property
    def num_params(self) -> int:
        """Weights plus biases, counted as Keras and PyTorch count them (a 2-D kernel: once)."""
        return int(self.weights.size + (0 if self.bias is None else self.bias.size))

    def centre(self) -> tuple[int, int] | None:
        """The kernel index (row, col) that sits on the output pixel under 'same' padding."""
        return geometry.centre(self.options, self.kernel_size)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(H', W', C_out)`` for frames of ``shape`` (H, W[, C]); raises FrameError."""
        return self._resolve(_as_hwc(shape)).out_shape

    def _resolve(self, shape: tuple[int, int, int], source: np.dtype | None = None) -> BankSpec:
        h, w, c = shape
        o = self.options
        pads, size = geometry.pads_and_size(o, self.kernel_size, (h, w))
        weights, groups = self._weights_for(c)
        return BankSpec(in_shape=(h, w, c), out_shape=(*size, weights.shape[0]),
                        weights=weights, groups=groups, shared=self.shared, pads=pads,
                        border=o.border, border_value=o.border_value, stride=o.stride,
                        dilation=o.dilation, dtype=np.dtype(o.dtype),
                        source=self._source(source))

    def _weights_for(self, c: int) -> tuple[np.ndarray, int]:
        """Correlation weights ``(C_out, C_in/g, kh, kw)`` and groups for a ``c``-channel frame."""
        w = self._corr
        if self.shared:
            if self.bias is not None and self.bias.size not in (1, c):
                raise FrameError(f"bias has {self.bias.size} values; a {c}-channel frame needs {c}")
            return np.broadcast_to(w, (c, 1) + w.shape), c
        if self.options.mode == "depthwise":
            if w.shape[0] % c:
                raise FrameError(
                    f"depthwise bank has {w.shape[0]} kernels; a {c}-channel frame needs "
                    f"a multiple of {c}"
                )
            return w, c
        expected = w.shape[1] * self.options.groups
        if c != expected:
            raise FrameError(f"bank expects {expected}-channel frames, got {c} channels")
        return w, self.options.groups

    # ------------------------------------------------------------------ planning
    def _source(self, dtype: Any) -> np.dtype:
        """The dtype frames of ``dtype`` reach the methods in: uint8 and uint16 as they
        are (every method reads them, converting as it loads), others as the compute dtype."""
        given = None if dtype is None else np.dtype(dtype)
        return given if given in INTEGERS else np.dtype(self.options.dtype)

    def _planned(self, shape: tuple[int, int, int], source: Any = None
                 ) -> tuple[BankSpec, planner.Choice, Method]:
        """(spec, choice, engine) for a frame format: decided and built once, then kept."""
        key = (shape, self._source(source).str)
        entry = self._engines.get(key)
        if entry is None:
            memory.keep_freed_pages()  # before the stream's first frame buffers
            spec = self._resolve(shape, source)
            built: dict[str, Method] = {}  # methods timed by decide(): not built twice
            choice = planner.decide(spec, self.options.method, measure=self.options.measure,
                                    built=built)
            engine = built.get(choice.method) or planner.build(spec, choice.method)
            if self._bias is not None or self.options.activation.name != "none":
                engine.fuse(self._epilogue())
            if key in self._mixes:  # a format planned again (evicted): the same method
                loaded = engine.load_mix(self._mixes[key])
                assert loaded, "a method that loaded a mix once refused it"
            entry = (spec, choice, engine)
            self._engines[key] = entry
            if len(self._engines) > _ENGINE_CACHE:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(key)
        return entry

    def _engine(self, shape: tuple[int, int, int], source: Any = None) -> Method:
        return self._planned(shape, source)[2]

    def plan(self, shape: tuple[int, ...], dtype: Any = None) -> Plan:
        """What the bank does on frames of ``shape`` (H, W[, C]) and ``dtype`` (default:
        the compute dtype): padding, method, costs, how the frames are read.

        Planning builds the method for that format (FFTW plans, kernel spectra), so the
        first frame of that format then runs at full speed.
        """
        spec, choice, engine = self._planned(_as_hwc(shape), dtype)
        mix = self._mixes.get((spec.in_shape, spec.source.str))
        if mix is not None:
            reads = (f"{spec.source} frames of {mix.shape[1]} channels as they are, mixed into "
                     f"{spec.c_in} as rows are loaded (a convert stage folded in)")
        elif spec.source == spec.dtype:
            reads = f"{spec.dtype} frames"
        elif engine.takes(spec.source):
            reads = (f"{spec.source} frames as they are (to {spec.dtype} as rows are "
                     "loaded or copied in: no whole-frame copy)")
        else:
            reads = f"{spec.source} frames converted to {spec.dtype} first (a pass)"
        return Plan(
            in_shape=spec.in_shape,
            out_shape=spec.out_shape,
            pads=spec.pads,
            centre=self.centre(),
            border=spec.border if any(spec.pads) else f"{spec.border} (unused: no padding)",
            stride=spec.stride,
            dilation=spec.dilation,
            groups=spec.groups,
            num_params=self.num_params,
            method=choice.method,
            reason=choice.reason,
            costs=choice.costs,
            notes=choice.notes,
            reads=reads,
        )

    # ------------------------------------------------------------------ applying
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``frame``: (H, W) or (H, W, C_in), uint8/uint16/float -> (H', W', C_out) float."""
        x = _as_frame(frame)
        engine = self._engine(x.shape, x.dtype)
        return self._finished(engine, engine(_fed(engine, x, self.options.dtype)))

    def load_mix(self, shape: tuple[int, ...], mix: np.ndarray, dtype: Any = None
                 ) -> Callable[[np.ndarray], np.ndarray] | None:
        """Fold a per-pixel linear map before the bank into its loads: the callable
        returned takes ``(H, W, S)`` frames of ``dtype`` and computes the bank, planned for
        frames of ``shape`` (H, W, C_in), on each pixel mixed by ``mix`` (C_in, S) as the
        method loads its rows; no converted frame is made. None where the planned method
        cannot (the caller converts the frames first). A ``convert: gray`` stage is the
        mix ``[[0.114, 0.587, 0.299]]`` (BGR), summed as cv2.cvtColor sums it (bit for bit
        with OpenCV 5.1 here)."""
        key = (_as_hwc(shape), self._source(dtype).str)
        mix = np.ascontiguousarray(mix, dtype=np.float32)
        if not self._planned(*key)[2].load_mix(mix):
            return None
        self._mixes[key] = mix

        def mixed(frame: np.ndarray) -> np.ndarray:
            x = _as_frame(frame)
            if x.shape[:2] != key[0][:2] or x.shape[2] != mix.shape[1] or \
                    self._source(x.dtype).str != key[1]:
                raise FrameError(f"frame {x.shape} {x.dtype}: the bank folded a convert "
                                 f"for {key[0][:2]} frames of {mix.shape[1]} channels")
            engine = self._planned(*key)[2]  # finish_bands may have put another in
            return self._finished(engine, engine(_fed(engine, x, self.options.dtype)))

        return mixed

    def _finished(self, engine: Method, y: np.ndarray) -> np.ndarray:
        """The method's result with the bank's bias and activation, where it did not."""
        if engine.fused or y.dtype == np.uint8:  # bias, activation (and finish) band by band
            return y
        if self._bias is not None:
            y += self._bias
        return _activate(y, self.options.activation)

    def finish_bands(self, shape: tuple[int, ...], finish: Finish, dtype: Any = None) -> bool:
        """On frames of ``shape``, hand each finished band of the result (bias and
        activation applied) to ``finish`` and return uint8 ``(H', W', finish.channels)`` frames
        instead of floats (``epilogue.Finish``), for frames of ``dtype``. False where the
        method has no bands or applies the bias and activation afterwards: the caller
        finishes whole frames."""
        key = (_as_hwc(shape), self._source(dtype).str)
        spec, choice, engine = self._planned(*key)
        plain = self._bias is None and self.options.activation.name == "none"
        if (plain or engine.fused) and engine.finish_bands(finish):
            return True
        other = planner.banded(spec)  # a small kernel OpenCV had: the C kernel, in bands
        if other is None or not (plain or other.fuse(self._epilogue())):
            return False
        if key in self._mixes and not other.load_mix(self._mixes[key]):
            return False
        self._engines[key] = (spec, choice, other)
        return other.finish_bands(finish)

    def _epilogue(self) -> Epilogue:
        """The bias and activation, for a method to apply as it stores its results."""
        def apply(block: np.ndarray) -> None:  # in place, on a (C_out, rows, W') block
            if self._bias is not None:
                block += self._bias[:, None, None]
            _activate(block, self.options.activation)

        bias = None if self._bias is None else np.ascontiguousarray(self._bias, np.float32)
        return Epilogue(apply, bias, self.options.activation.name)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.weights.shape))
        o = self.options
        return (f"FilterBank({shape} {o.layout if not self.shared else '2-D'}, op={o.op}, "
                f"mode={o.mode}, padding={o.padding}, border={o.border}, method={o.method})")


def _as_hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return int(shape[0]), int(shape[1]), 1
    if len(shape) == 3 and all(int(v) >= 1 for v in shape):
        return int(shape[0]), int(shape[1]), int(shape[2])
    raise FrameError(f"frame shape {tuple(shape)}: expected (H, W) or (H, W, C)")


def _as_frame(frame: Any) -> np.ndarray:
    """The frame as an ``(H, W, C)`` array of its own dtype (checked), not copied: a
    view stays a view (``_fed`` decides)."""
    x = np.asarray(frame)
    if x.dtype.kind not in "biuf":
        raise FrameError(f"frame dtype {x.dtype}: expected uint8, uint16 or float")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or 0 in x.shape:
        raise FrameError(f"frame shape {x.shape}: expected (H, W) or (H, W, C), none empty")
    return x


def _fed(engine: Method, x: np.ndarray, dtype: Any) -> np.ndarray:
    """``x`` as ``engine`` reads it: of its own dtype where the engine ``takes`` it, else
    converted to the compute ``dtype`` (a pass over the frame); a strided view (the planar
    result of the bank before, say) as it is where the engine ``reads_views``, else
    made contiguous."""
    if x.dtype != dtype and not engine.takes(x.dtype):
        x = x.astype(dtype)  # keeps the view's memory order: a planar frame stays planar
    return x if engine.reads_views() else np.ascontiguousarray(x)


_activate = activations.apply  # a name of this module: tests watch the passes it makes
