"""FilterBank: the semantics of SPEC section 1, resolved per frame format, then dispatched.

Everything here is about meaning: which weights, which channels meet which kernels, how
much padding goes on which side, which border. The arithmetic lives in ``engine``, which
receives a fully resolved ``BankSpec`` (correlation weights, groups, pads) once per format.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from .engine import planner
from .engine.epilogue import Epilogue
from .engine.spec import BankSpec
from .errors import ConfigError, FrameError
from .kernels import to_oihw
from .options import (
    Activation,
    Padding,
    _is_int,
    parse_activation,
    parse_align,
    parse_border,
    parse_dtype,
    parse_finite,
    parse_layout,
    parse_method,
    parse_mode,
    parse_op,
    parse_padding,
    parse_pair,
)

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
        ]
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
    Every option takes the values of its YAML field (SPEC section 1); a bad one raises
    ``ConfigError`` (a ``ValueError``) naming the option, the value and what is allowed.
    ``method='auto'`` picks by a cost model once per frame format (``measure=True``: by
    timing every method on a synthetic frame of that format instead).
    """

    def __init__(
        self,
        weights: Any,
        bias: Any = None,
        *,
        op: str = "correlate",
        mode: str = "dense",
        groups: int = 1,
        padding: Any = "same",
        align: str = "keras",
        anchor: Any = None,
        border: str = "zero",
        border_value: float = 0.0,
        stride: Any = 1,
        dilation: Any = 1,
        activation: str | None = None,
        layout: str = "oihw",
        method: str = "auto",
        dtype: str = "float32",
        measure: bool = False,
    ) -> None:
        self.op = parse_op(op)
        self.mode = parse_mode(mode)
        self.padding: Padding = parse_padding(padding)
        self.align = parse_align(align)
        self.border = parse_border(border)
        self.border_value = parse_finite("border_value", border_value)
        self.stride = parse_pair("stride", stride, minimum=1)
        self.dilation = parse_pair("dilation", dilation, minimum=1)
        self.activation: Activation = parse_activation(activation)
        self.layout = parse_layout(layout)
        self.method = parse_method(method)
        self.dtype = parse_dtype(dtype)
        self.measure = bool(measure)
        if not _is_int(groups) or groups < 1:
            raise ConfigError(f"groups={groups!r} is not allowed; expected an int >= 1")
        self.groups = int(groups)
        self.weights, self.shared = self._parse_weights(weights)
        self.bias = self._parse_bias(bias)
        self.anchor = self._parse_anchor(anchor)
        if self.padding.kind == "full" and self.stride != (1, 1):
            raise ConfigError(f"padding='full' needs stride 1, got stride={list(self.stride)}")
        # The kernels every method computes with: correlation, so a convolve bank turns them.
        self._corr = self.weights[..., ::-1, ::-1] if self.op == "convolve" else self.weights
        self._bias = None if self.bias is None else self.bias.astype(self.dtype)
        self._engines: OrderedDict[tuple[int, int, int], Any] = OrderedDict()

    # ------------------------------------------------------------------ validation
    def _parse_weights(self, weights: Any) -> tuple[np.ndarray, bool]:
        try:
            w = np.array(weights, dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"weights: not a rectangular array of numbers ({e})") from None
        if w.ndim not in (2, 4) or 0 in w.shape:
            raise ConfigError(
                f"weights of shape {w.shape}: expected a 2-D (kh, kw) kernel or 4-D weights "
                f"in layout {self.layout}, no axis empty"
            )
        if not np.isfinite(w).all():
            raise ConfigError("weights contain NaN or Inf")
        if w.ndim == 2:
            if self.groups != 1:
                raise ConfigError("groups needs 4-D weights; a 2-D kernel is depthwise already")
            return w, True
        depthwise = self.mode == "depthwise"
        if depthwise and self.groups != 1:
            raise ConfigError("groups: mode='depthwise' fixes groups to C_in; leave groups at 1")
        w = np.ascontiguousarray(to_oihw(w, self.layout, depthwise))
        if depthwise and w.shape[1] != 1:
            raise ConfigError(
                f"depthwise weights of oihw shape {w.shape}: expected (C_in*M, 1, kh, kw)"
            )
        if not depthwise and w.shape[0] % self.groups:
            raise ConfigError(
                f"groups={self.groups}: C_out={w.shape[0]} is not a multiple of groups"
            )
        return w, False

    def _parse_bias(self, bias: Any) -> np.ndarray | None:
        if bias is None:
            return None
        try:
            b = np.array(bias, dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            raise ConfigError(f"bias={bias!r} is not allowed; expected a list of numbers") from None
        if not np.isfinite(b).all():
            raise ConfigError("bias contains NaN or Inf")
        c_out = None if self.shared else self.weights.shape[0]
        if b.size == 0 or (c_out is not None and b.size != c_out):
            raise ConfigError(
                f"bias has {b.size} values; expected one per output channel ({c_out})"
            )
        return b

    def _parse_anchor(self, anchor: Any) -> tuple[int, int] | None:
        if anchor is None:
            return None
        a = parse_pair("anchor", anchor, minimum=0)
        kh, kw = self.kernel_size
        if a[0] >= kh or a[1] >= kw:
            raise ConfigError(
                f"anchor={list(a)} is not allowed; expected [row, col] inside the {kh}x{kw} kernel"
            )
        if self.padding.kind != "same" or self.stride != (1, 1):
            raise ConfigError("anchor applies to padding='same' with stride 1 only")
        return a

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
        if self.padding.kind != "same":
            return None
        if self.anchor is not None:
            return self.anchor
        kh, kw = self.kernel_size
        if self.align == "keras":
            return (kh - 1) // 2, (kw - 1) // 2
        return kh // 2, kw // 2

    # ------------------------------------------------------------------ geometry
    def _axis_pads(self, n: int, k: int, s: int, d: int, anchor: int | None) -> tuple[int, int]:
        """(before, after) padding of one axis of ``n`` pixels, in the correlation frame."""
        extent = d * (k - 1) + 1
        kind = self.padding.kind
        if kind == "valid":
            return 0, 0
        if kind == "full":
            return extent - 1, extent - 1
        total = max(0, (math.ceil(n / s) - 1) * s + extent - n)  # TF/Keras 'same'
        if anchor is not None:
            before = d * (anchor if self.op == "correlate" else k - 1 - anchor)
            return before, total - before
        small, big = total // 2, total - total // 2
        # keras puts the extra pixel after; turning a convolve kernel mirrors the sides.
        extra_after = (self.align == "keras") == (self.op == "correlate")
        return (small, big) if extra_after else (big, small)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(H', W', C_out)`` for frames of ``shape`` (H, W[, C]); raises FrameError."""
        return self._resolve(_as_hwc(shape)).out_shape

    def _resolve(self, shape: tuple[int, int, int]) -> BankSpec:
        h, w, c = shape
        kh, kw = self.kernel_size
        if self.padding.kind == "explicit":
            pads = self.padding.pixels
        else:
            a = self.anchor or (None, None)
            pads = self._axis_pads(h, kh, self.stride[0], self.dilation[0], a[0]) + \
                self._axis_pads(w, kw, self.stride[1], self.dilation[1], a[1])
        sizes = []
        for n, before, after, k, s, d in (
            (h, pads[0], pads[1], kh, self.stride[0], self.dilation[0]),
            (w, pads[2], pads[3], kw, self.stride[1], self.dilation[1]),
        ):
            extent = d * (k - 1) + 1
            if n + before + after < extent:
                raise FrameError(
                    f"frame {h}x{w} is smaller than the kernel extent {d * (kh - 1) + 1}x"
                    f"{self.dilation[1] * (kw - 1) + 1} with padding={self.padding}"
                )
            sizes.append((n + before + after - extent) // s + 1)
        weights, groups = self._weights_for(c)
        return BankSpec(
            in_shape=(h, w, c),
            out_shape=(sizes[0], sizes[1], weights.shape[0]),
            weights=weights,
            groups=groups,
            shared=self.shared,
            pads=pads,
            border=self.border,
            border_value=self.border_value,
            stride=self.stride,
            dilation=self.dilation,
            dtype=np.dtype(self.dtype),
        )

    def _weights_for(self, c: int) -> tuple[np.ndarray, int]:
        """Correlation weights ``(C_out, C_in/g, kh, kw)`` and groups for a ``c``-channel frame."""
        w = self._corr
        if self.shared:
            if self.bias is not None and self.bias.size not in (1, c):
                raise FrameError(f"bias has {self.bias.size} values; a {c}-channel frame needs {c}")
            return np.broadcast_to(w, (c, 1) + w.shape), c
        if self.mode == "depthwise":
            if w.shape[0] % c:
                raise FrameError(
                    f"depthwise bank has {w.shape[0]} kernels; a {c}-channel frame needs "
                    f"a multiple of {c}"
                )
            return w, c
        expected = w.shape[1] * self.groups
        if c != expected:
            raise FrameError(f"bank expects {expected}-channel frames, got {c} channels")
        return w, self.groups

    # ------------------------------------------------------------------ planning
    def _planned(self, shape: tuple[int, int, int]) -> tuple[BankSpec, planner.Choice, Any]:
        """(spec, choice, engine) for a frame format: decided and built once, then kept."""
        entry = self._engines.get(shape)
        if entry is None:
            spec = self._resolve(shape)
            built: dict[str, Any] = {}  # methods timed by decide(): not built a second time
            choice = planner.decide(spec, self.method, measure=self.measure, built=built)
            engine = built.get(choice.method) or planner.build(spec, choice.method)
            if hasattr(engine, "fuse") and (self._bias is not None or
                                            self.activation.name != "none"):
                engine.fuse(self._epilogue())
            entry = (spec, choice, engine)
            self._engines[shape] = entry
            if len(self._engines) > _ENGINE_CACHE:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(shape)
        return entry

    def _engine(self, shape: tuple[int, int, int]) -> Any:
        return self._planned(shape)[2]

    def plan(self, shape: tuple[int, ...]) -> Plan:
        """What the bank does on frames of ``shape`` (H, W[, C]): padding, method, costs.

        Planning builds the method for that format (FFTW plans, kernel spectra), so the
        first frame of that format then runs at full speed.
        """
        spec, choice, _ = self._planned(_as_hwc(shape))
        return Plan(
            in_shape=spec.in_shape,
            out_shape=spec.out_shape,
            pads=spec.pads,
            centre=self.centre(),
            border=self.border if any(spec.pads) else f"{self.border} (unused: no padding)",
            stride=self.stride,
            dilation=self.dilation,
            groups=spec.groups,
            num_params=self.num_params,
            method=choice.method,
            reason=choice.reason,
            costs=choice.costs,
            notes=choice.notes,
        )

    # ------------------------------------------------------------------ applying
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``frame``: (H, W) or (H, W, C_in), uint8/uint16/float -> (H', W', C_out) float."""
        x = _as_compute(frame, self.dtype)
        engine = self._engine(x.shape)
        y = engine(x)
        if getattr(engine, "fused", False):  # bias and activation applied band by band
            return y
        if self._bias is not None:
            y += self._bias
        return _activate(y, self.activation)

    def _epilogue(self) -> Epilogue:
        """The bias and activation, for a method to apply as it stores its results."""
        def apply(block: np.ndarray) -> None:  # in place, on a (C_out, rows, W') block
            if self._bias is not None:
                block += self._bias[:, None, None]
            _activate(block, self.activation)

        bias = None if self._bias is None else np.ascontiguousarray(self._bias, np.float32)
        return Epilogue(apply, bias, self.activation.name)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.weights.shape))
        return (
            f"FilterBank({shape} {self.layout if not self.shared else '2-D'}, op={self.op}, "
            f"mode={self.mode}, padding={self.padding}, border={self.border}, "
            f"method={self.method})"
        )


def _as_hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return int(shape[0]), int(shape[1]), 1
    if len(shape) == 3 and all(int(v) >= 1 for v in shape):
        return int(shape[0]), int(shape[1]), int(shape[2])
    raise FrameError(f"frame shape {tuple(shape)}: expected (H, W) or (H, W, C)")


def _as_compute(frame: Any, dtype: str) -> np.ndarray:
    """The frame as a contiguous ``(H, W, C)`` array of the compute dtype (never wraps)."""
    x = np.asarray(frame)
    if x.dtype.kind not in "biuf":
        raise FrameError(f"frame dtype {x.dtype}: expected uint8, uint16 or float")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or 0 in x.shape:
        raise FrameError(f"frame shape {x.shape}: expected (H, W) or (H, W, C), none empty")
    return np.ascontiguousarray(x, dtype=dtype)


def _activate(y: np.ndarray, act: Activation) -> np.ndarray:
    """The activation, in place on ``y``."""
    if act.name == "relu":
        np.maximum(y, 0, out=y)
    elif act.name == "abs":
        np.abs(y, out=y)
    elif act.name == "square":
        np.square(y, out=y)
    elif act.name == "sigmoid":
        special.expit(y, out=y)
    elif act.name == "tanh":
        np.tanh(y, out=y)
    elif act.name == "clip":
        np.clip(y, act.lo, act.hi, out=y)
    return y
