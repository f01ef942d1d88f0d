"""The one place that validates each filter-bank option (SPEC section 1).

``FilterBank`` and the YAML models both call these parsers, so a value means the same
thing, and is refused with the same message, in Python and in a config file. Each parser
takes what a user may write and returns the canonical value, or raises ``ConfigError``
naming the option, the value and what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

OPS = ("correlate", "convolve")
MODES = ("dense", "depthwise")
ALIGNS = ("keras", "opencv")
LAYOUTS = ("oihw", "hwio")
METHODS = ("auto", "direct", "separable", "fft")
DTYPES = ("float32", "float64")
BORDERS = ("zero", "constant", "replicate", "symmetric", "reflect101", "wrap")

# Every library's spelling of the six canonical borders (compared lower-case, with any
# "cv2." prefix removed). "reflect" is deliberately absent: see parse_border.
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

AMBIGUOUS_REFLECT = (
    "border 'reflect' is ambiguous: scipy.ndimage 'reflect' repeats the edge pixel "
    "(c b a | a b c, canonical 'symmetric') while numpy/PyTorch/TensorFlow 'reflect' "
    "does not (d c b | a b c d, canonical 'reflect101'); write 'symmetric' or 'reflect101'"
)

ACTIVATIONS = ("none", "relu", "abs", "square", "sigmoid", "tanh", "clip(lo, hi)")
_CLIP = re.compile(r"^clip\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$")


def _fail(option: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{option}={value!r} is not allowed; expected {allowed}")


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
        raise ConfigError(AMBIGUOUS_REFLECT)
    if key not in BORDER_ALIASES:
        aliases = ", ".join(sorted(BORDER_ALIASES))
        raise _fail("border", value, " | ".join(BORDERS) + f" (aliases: {aliases})")
    return BORDER_ALIASES[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def parse_finite(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise _fail(option, value, "a finite number")
    out = float(value)
    if not math.isfinite(out):
        raise _fail(option, value, "a finite number")
    return out


def parse_pair(option: str, value: Any, *, minimum: int) -> tuple[int, int]:
    """An int or [row, col] of ints >= minimum (stride, dilation, anchor)."""
    allowed = f"an int >= {minimum} or [row, col] of such ints"
    items = [value, value] if _is_int(value) else value
    if not isinstance(items, list | tuple) or len(items) != 2 or not all(map(_is_int, items)):
        raise _fail(option, value, allowed)
    row, col = (int(v) for v in items)
    if row < minimum or col < minimum:
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
    allowed = "'valid' | 'same' | 'full' | an int >= 0 | [top, bottom, left, right] ints >= 0"
    if isinstance(value, str) and value.lower() in ("valid", "same", "full"):
        return Padding(value.lower())
    if _is_int(value) and value >= 0:
        p = int(value)
        return Padding("explicit", (p, p, p, p))
    if (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(_is_int(v) and v >= 0 for v in value)
    ):
        t, b, left, r = (int(v) for v in value)
        return Padding("explicit", (t, b, left, r))
    raise _fail("padding", value, allowed)


@dataclass(frozen=True)
class Activation:
    """An elementwise function applied after the bias; ``lo``/``hi`` only for clip."""

    name: str = "none"
    lo: float = 0.0
    hi: float = 0.0

    def __str__(self) -> str:
        return f"clip({self.lo:g}, {self.hi:g})" if self.name == "clip" else self.name


def parse_activation(value: Any) -> Activation:
    allowed = " | ".join(ACTIVATIONS)
    if value is None:
        return Activation()
    if not isinstance(value, str):
        raise _fail("activation", value, allowed)
    text = value.strip().lower()
    if text in ("none", "linear", "identity"):
        return Activation()
    if text in ACTIVATIONS:
        return Activation(text)
    match = _CLIP.match(text)
    if match:
        try:
            lo, hi = (float(v) for v in match.groups())
        except ValueError:
            raise _fail("activation", value, allowed) from None
        if math.isfinite(lo) and math.isfinite(hi) and lo <= hi:
            return Activation("clip", lo, hi)
    raise _fail("activation", value, allowed + " with finite lo <= hi")
