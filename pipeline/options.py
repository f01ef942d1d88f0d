"""The one declaration of a filter bank's options (SPEC section 1): ``BankOptions``.

Each field names its parser; building a ``BankOptions`` parses every field and then checks
the rules between fields, so the object is whole and canonical, and frozen. ``FilterBank
(weights, **options)`` and a YAML bank stage both build it the same way, so a value means
the same thing, and is refused with the same message, in Python and in a config file:
``OptionError`` (a ``ConfigError``) naming the option, the value and what is allowed; the
config loader adds file:line:col and the field path from ``OptionError.option``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import activations
from .activations import Activation
from .errors import ConfigError


class OptionError(ConfigError):
    """A bad option value; ``option`` is the field it belongs to, ``value`` what was given."""

    def __init__(self, message: str, option: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.option = option
        self.value = value


OPS = ("correlate", "convolve")
MODES = ("dense", "depthwise")
ALIGNS = ("keras", "opencv")
LAYOUTS = ("oihw", "hwio")
METHODS = ("auto", "direct", "separable", "fft")
DTYPES = ("float32", "float64")
# Every library's spelling of the six canonical borders (compared lower-case, with any
# "cv2." prefix removed). "reflect" is deliberately absent: see parse_border. What each
# canonical border is to OpenCV, numpy.pad and the C kernels: engine/border.py's BORDERS.
BORDER_ALIASES = {
    "zero": "zero",
    "zeros": "zero",  # torch padding_mode
    "constant": "constant",  # numpy/ndimage (value from border_value, i.e. cval)
    "fill": "constant",  # scipy.signal boundary (value from border_value, i.e. fillvalue)
    "grid-constant": "constant",  # scipy.ndimage
    "border_constant": "constant",  # cv2
    "replicate": "replicate",  # torch, cv2
    "nearest": "replicate",  # scipy.ndimage
    "edge": "replicate",  # numpy.pad
    "border_replicate": "replicate",
    "symmetric": "symmetric",  # numpy.pad, TF
    "symm": "symmetric",  # scipy.signal
    "grid-mirror": "symmetric",  # scipy.ndimage
    "border_reflect": "symmetric",  # cv2
    "reflect101": "reflect101",
    "reflect_101": "reflect101",
    "mirror": "reflect101",  # scipy.ndimage
    "border_reflect_101": "reflect101",  # cv2 (the OpenCV default)
    "border_reflect101": "reflect101",
    "border_default": "reflect101",
    "wrap": "wrap",  # scipy, ndimage
    "circular": "wrap",  # torch
    "grid-wrap": "wrap",  # scipy.ndimage
    "border_wrap": "wrap",  # cv2
}

BORDERS = tuple(dict.fromkeys(BORDER_ALIASES.values()))  # the canonical names, in order

AMBIGUOUS_REFLECT = (
    "border 'reflect' is ambiguous: scipy.ndimage 'reflect' repeats the edge pixel "
    "(c b a | a b c, canonical 'symmetric') while numpy/PyTorch/TensorFlow 'reflect' "
    "does not (d c b | a b c d, canonical 'reflect101'); write 'symmetric' or 'reflect101'"
)



def _fail(option: str, value: Any, allowed: str) -> OptionError:
    return OptionError(f"{option}={value!r} is not allowed; expected {allowed}", option, value)


def _choice(option: str, value: Any, allowed: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise _fail(option, value, " | ".join(allowed))


def parse_op(value: Any) -> str:
    """'correlate' or 'convolve' (no bare 'conv': the two differ by a 180° kernel turn)."""
    return _choice("op", value, OPS)


def parse_mode(value: Any) -> str:
    return _choice("mode", value, MODES)


def parse_align(value: Any) -> str:
    return _choice("align", value, ALIGNS)


def parse_layout(value: Any) -> str:
    return _choice("layout", value, LAYOUTS)


def parse_method(value: Any) -> str:
    return _choice("method", value, METHODS)


def parse_dtype(value: Any) -> str:
    name = getattr(value, "__name__", None) or str(value)
    if name in DTYPES:
        return name
    raise _fail("dtype", value, " | ".join(DTYPES))


def parse_border(value: Any) -> str:
    """Canonical border name from any library's alias; the bare word 'reflect' is refused."""
    key = value.strip().lower().removeprefix("cv2.") if isinstance(value, str) else None
    if key == "reflect":
        raise OptionError(AMBIGUOUS_REFLECT, "border", value)
    if key not in BORDER_ALIASES:
        aliases = ", ".join(sorted(BORDER_ALIASES))
        raise _fail("border", value, " | ".join(BORDERS) + f" (aliases: {aliases})")
    return BORDER_ALIASES[key]


def is_int(value: Any) -> bool:
    """An int (numpy's too), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def parse_finite(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise _fail(option, value, "a finite number")
    out = float(value)
    if not math.isfinite(out):
        raise _fail(option, value, "a finite number")
    return out


# Geometry beyond any frame's: a stride or dilation past a 4K frame's side, padding past it
# on a side. Bounded so that a typo (padding: 1000000000) is refused at its line, not
# planned for minutes (the output size is checked against memory before planning too).
MAX_PADDING = 4096
MAX_STEP = 4096


def parse_pair(option: str, value: Any, *, minimum: int,
               maximum: int = MAX_STEP) -> tuple[int, int]:
    """An int or [row, col] of ints in minimum..maximum (stride, dilation, anchor)."""
    allowed = f"an int {minimum}..{maximum} or [row, col] of such ints"
    items = [value, value] if is_int(value) else value
    if not isinstance(items, list | tuple) or len(items) != 2 or not all(map(is_int, items)):
        raise _fail(option, value, allowed)
    row, col = (int(v) for v in items)
    if not (minimum <= row <= maximum and minimum <= col <= maximum):
        raise _fail(option, value, allowed)
    return row, col


@dataclass(frozen=True)
class Padding:
    """'valid' | 'same' | 'full', or explicit pixels per side (top, bottom, left, right)."""

    kind: str
    pixels: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __str__(self) -> str:
        return self.kind if self.kind != "explicit" else str(list(self.pixels))


def parse_padding(value: Any) -> Padding:
    if isinstance(value, Padding):
        return value
    allowed = (f"'valid' | 'same' | 'full' | an int 0..{MAX_PADDING} | [top, bottom, left, "
               "right] of such ints")
    if isinstance(value, str) and value.lower() in ("valid", "same", "full"):
        return Padding(value.lower())
    if is_int(value) and 0 <= value <= MAX_PADDING:
        p = int(value)
        return Padding("explicit", (p, p, p, p))
    if (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(is_int(v) and 0 <= v <= MAX_PADDING for v in value)
    ):
        t, b, left, r = (int(v) for v in value)
        return Padding("explicit", (t, b, left, r))
    raise _fail("padding", value, allowed)


def parse_activation(value: Any) -> Activation:
    """``activations.parse_activation``, refusing as an option does (OptionError)."""
    try:
        return activations.parse_activation(value)
    except activations.ActivationError as e:
        raise OptionError(str(e), "activation", value) from None


def parse_groups(value: Any) -> int:
    if not is_int(value) or value < 1:
        raise _fail("groups", value, "an int >= 1")
    return int(value)


def parse_anchor(value: Any) -> tuple[int, int] | None:
    return None if value is None else parse_pair("anchor", value, minimum=0)


def parse_stride(value: Any) -> tuple[int, int]:
    return parse_pair("stride", value, minimum=1)


def parse_dilation(value: Any) -> tuple[int, int]:
    return parse_pair("dilation", value, minimum=1)


def parse_border_value(value: Any) -> float:
    return parse_finite("border_value", value)


def parse_measure(value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise _fail("measure", value, "true or false")
    return bool(value)


def check_finite(values: Any, what: str, option: str | None = None) -> None:
    """Refuse NaN and Inf in weights or a bias (``what`` names them in the message)."""
    if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        raise OptionError(f"{what} contains NaN or Inf", option)


def parse_bias(value: Any) -> np.ndarray | None:
    """A bias as float64 ``(n,)``, or None; its length is the bank's to check."""
    if value is None:
        return None
    try:
        b = np.array(value, dtype=np.float64).reshape(-1)
    except (ValueError, TypeError):
        raise _fail("bias", value, "a list of numbers") from None
    check_finite(b, "bias", "bias")
    return b


def _option(default: Any, parse: Any) -> Any:
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True)
class BankOptions:
    """Every option of a filter bank, parsed and cross-checked (SPEC section 1).

    ``BankOptions(**values)`` parses each value with its field's parser (what a user may
    write -> the canonical value) and then checks the rules between fields; ``replace``
    does the same. Raises OptionError.
    """

    op: str = _option("correlate", parse_op)
    mode: str = _option("dense", parse_mode)
    groups: int = _option(1, parse_groups)
    padding: Padding = _option(Padding("same"), parse_padding)
    align: str = _option("keras", parse_align)
    anchor: tuple[int, int] | None = _option(None, parse_anchor)
    border: str = _option("zero", parse_border)
    border_value: float = _option(0.0, parse_border_value)
    stride: tuple[int, int] = _option((1, 1), parse_stride)
    dilation: tuple[int, int] = _option((1, 1), parse_dilation)
    activation: Activation = _option(Activation(), parse_activation)
    layout: str = _option("oihw", parse_layout)
    method: str = _option("auto", parse_method)
    dtype: str = _option("float32", parse_dtype)
    measure: bool = _option(False, parse_measure)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["parse"](getattr(self, f.name)))
        if self.padding.kind == "full" and self.stride != (1, 1):
            raise OptionError(f"padding='full' needs stride 1, got stride={list(self.stride)}",
                              "stride", list(self.stride))
        if self.anchor is not None and (self.padding.kind != "same" or self.stride != (1, 1)):
            raise OptionError("anchor applies to padding='same' with stride 1 only", "anchor",
                              list(self.anchor))
        if self.mode == "depthwise" and self.groups != 1:
            raise OptionError("groups: mode='depthwise' fixes groups to C_in; leave groups at 1",
                              "groups", self.groups)


OPTION_NAMES = frozenset(f.name for f in fields(BankOptions))
