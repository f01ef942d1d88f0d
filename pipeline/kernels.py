"""Kernel factories; construction only, never application (weight files: weightfiles.py).

Every built-in returns a float64 ``(kh, kw)`` kernel written for correlation (the way
OpenCV's own filters apply it). Where OpenCV or SciPy already builds the kernel, it is
asked for it, so a built-in equals the library's filter of the same name.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from .errors import ConfigError
from .options import is_int


def _bad(kernel: str, param: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"builtin {kernel}: {param}={value!r} is not allowed; expected {expected}")


def _size(kernel: str, value: Any, *, odd: bool = False, param: str = "size") -> tuple[int, int]:
    """An int or [rows, cols], each in 1..1023 (and odd where the kernel needs a centre)."""
    items = [value, value] if is_int(value) else value
    expected = f"an int or [rows, cols] in 1..1023{', odd' if odd else ''}"
    if not isinstance(items, list | tuple) or len(items) != 2 or not all(map(is_int, items)):
        raise _bad(kernel, param, value, expected)
    if not all(1 <= v <= 1023 and (v % 2 or not odd) for v in items):
        raise _bad(kernel, param, value, expected)
    return int(items[0]), int(items[1])


def _positive(kernel: str, param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise _bad(kernel, param, value, "a finite number > 0")
    if not (math.isfinite(value) and value > 0):
        raise _bad(kernel, param, value, "a finite number > 0")
    return float(value)


def _number(kernel: str, param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise _bad(kernel, param, value, "a finite number")
    if not math.isfinite(value):
        raise _bad(kernel, param, value, "a finite number")
    return float(value)


def _axis(kernel: str, value: Any) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise _bad(kernel, "axis", value, "0 (along rows, d/dy) or 1 (along columns, d/dx)")
    return int(value)


def _sigma_size(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1


def identity(size: int = 1) -> np.ndarray:
    """A 1 at the centre of a ``size``×``size`` (odd) kernel: output = input."""
    h, w = _size("identity", size, odd=True)
    k = np.zeros((h, w))
    k[h // 2, w // 2] = 1.0
    return k


def box(size: int | list[int] = 3, normalize: bool = True) -> np.ndarray:
    """Mean (or, with ``normalize: false``, sum) over a ``size`` window (cv2.boxFilter)."""
    h, w = _size("box", size)
    return np.full((h, w), 1.0 / (h * w) if normalize else 1.0)


def gaussian(sigma: float | list[float] = 1.0, size: int | list[int] | None = None) -> np.ndarray:
    """Sampled Gaussian, sum 1, as cv2.getGaussianKernel; ``size`` defaults to 2·ceil(3σ)+1.

    ``sigma`` and ``size`` take one value or [rows, cols] (cv2.GaussianBlur's sigmaY, sigmaX).
    """
    sr, sc = sigma if isinstance(sigma, list | tuple) and len(sigma) == 2 else (sigma, sigma)
    sr, sc = _positive("gaussian", "sigma", sr), _positive("gaussian", "sigma", sc)
    h, w = _size("gaussian", size, odd=True) if size is not None else (
        _sigma_size(sr), _sigma_size(sc))
    col = cv2.getGaussianKernel(h, sr, ktype=cv2.CV_64F)
    row = cv2.getGaussianKernel(w, sc, ktype=cv2.CV_64F)
    return col @ row.T


def _deriv(name: str, dy: int, dx: int, ksize: int) -> np.ndarray:
    ky, kx = cv2.getDerivKernels(dx, dy, ksize, normalize=False, ktype=cv2.CV_64F)[::-1]
    return ky @ kx.T


def sobel(axis: int = 1, size: int = 3, order: int = 1) -> np.ndarray:
    """Sobel derivative of ``order`` along ``axis`` (0: rows, d/dy; 1: columns, d/dx), as cv2.Sobel.

    ``size`` is 1, 3, 5 or 7 (1: the plain [-1, 0, 1] difference, no smoothing).
    """
    axis = _axis("sobel", axis)
    if size not in (1, 3, 5, 7) or isinstance(size, bool):
        raise _bad("sobel", "size", size, "1, 3, 5 or 7")
    if order not in (1, 2) or isinstance(order, bool) or order >= max(size, 3):
        raise _bad("sobel", "order", order, "1 or 2 (below size)")
    return _deriv("sobel", order if axis == 0 else 0, order if axis == 1 else 0, size)


def scharr(axis: int = 1) -> np.ndarray:
    """3×3 Scharr first derivative along ``axis`` (0: d/dy, 1: d/dx), as cv2.Scharr."""
    axis = _axis("scharr", axis)
    return _deriv("scharr", 1 - axis, axis, cv2.FILTER_SCHARR)


def laplacian(size: int = 1) -> np.ndarray:
    """Laplacian as cv2.Laplacian with ``ksize=size`` (1: the 4-neighbour kernel; 3, 5, 7: Sobel)."""
    if size not in (1, 3, 5, 7) or isinstance(size, bool):
        raise _bad("laplacian", "size", size, "1, 3, 5 or 7")
    d2x = _deriv("laplacian", 0, 2, size)
    d2y = _deriv("laplacian", 2, 0, size)
    n = max(d2x.shape + d2y.shape)
    out = np.zeros((n, n))
    for part in (d2x, d2y):
        r, c = (n - part.shape[0]) // 2, (n - part.shape[1]) // 2
        out[r : r + part.shape[0], c : c + part.shape[1]] += part
    return out


def log(sigma: float = 1.4, size: int | None = None) -> np.ndarray:
    """Laplacian of Gaussian: scipy.ndimage.gaussian_laplace's response to a unit impulse.

    ``size`` defaults to 2·round(4σ)+1, the whole support ndimage uses, so the bank equals
    ``gaussian_laplace(x, sigma)`` (the impulse response of a linear filter is its kernel).
    """
    from scipy import ndimage

    sigma = _positive("log", "sigma", sigma)
    n = _size("log", size, odd=True) if size is not None else (2 * int(4 * sigma + 0.5) + 1,) * 2
    impulse = np.zeros(n)
    impulse[n[0] // 2, n[1] // 2] = 1.0
    # The response of a correlation to an impulse is the kernel turned 180°; LoG is symmetric.
    return ndimage.gaussian_laplace(impulse, sigma, mode="constant")[::-1, ::-1].copy()


def dog(sigma1: float = 1.0, sigma2: float = 1.6, size: int | None = None) -> np.ndarray:
    """Difference of Gaussians ``gaussian(sigma1) - gaussian(sigma2)`` on one ``size``."""
    s1, s2 = _positive("dog", "sigma1", sigma1), _positive("dog", "sigma2", sigma2)
    n = size if size is not None else _sigma_size(max(s1, s2))
    return gaussian(s1, n) - gaussian(s2, n)


def gabor(
    size: int = 21,
    sigma: float = 4.0,
    angle: float = 0.0,
    wavelength: float = 10.0,
    gamma: float = 0.5,
    phase: float = 0.0,
) -> np.ndarray:
    """Gabor kernel, cv2.getGaborKernel; ``angle`` and ``phase`` in degrees (OpenCV: radians).

    ``angle`` is the orientation of the normal to the stripes, ``wavelength`` the stripe
    period in pixels, ``gamma`` the spatial aspect ratio.
    """
    h, w = _size("gabor", size, odd=True)
    return cv2.getGaborKernel(
        (w, h),
        _positive("gabor", "sigma", sigma),
        math.radians(_number("gabor", "angle", angle)),
        _positive("gabor", "wavelength", wavelength),
        _positive("gabor", "gamma", gamma),
        math.radians(_number("gabor", "phase", phase)),
        ktype=cv2.CV_64F,
    )


def sharpen(amount: float = 1.0) -> np.ndarray:
    """``identity - amount·laplacian(1)``; amount 1 is the classic [[0,-1,0],[-1,5,-1],[0,-1,0]]."""
    return identity(3) - _number("sharpen", "amount", amount) * laplacian(1)


def unsharp(sigma: float = 1.5, amount: float = 1.0, size: int | None = None) -> np.ndarray:
    """Unsharp mask ``(1 + amount)·identity - amount·gaussian(sigma)``: x + amount·(x - blur x).

    The same as ``cv2.addWeighted(x, 1 + amount, cv2.GaussianBlur(x, 0, sigma), -amount, 0)``.
    """
    g = gaussian(sigma, size)
    k = -_number("unsharp", "amount", amount) * g
    k[g.shape[0] // 2, g.shape[1] // 2] += 1.0 + amount
    return k


def emboss(strength: float = 1.0) -> np.ndarray:
    """The classic 3×3 emboss [[-2,-1,0],[-1,1,1],[0,1,2]] blended with identity by ``strength``."""
    relief = np.array([[-2.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]])
    return identity(3) + _number("emboss", "strength", strength) * relief


def motion_blur(size: int = 9, angle: float = 0.0) -> np.ndarray:
    """A line of ``size`` pixels through the centre at ``angle`` degrees (0: horizontal), sum 1."""
    n = _size("motion_blur", size, odd=True)[0]
    line = np.zeros((n, n))
    line[n // 2, :] = 1.0
    centre = ((n - 1) / 2.0, (n - 1) / 2.0)
    rot = cv2.getRotationMatrix2D(centre, _number("motion_blur", "angle", angle), 1.0)
    k = cv2.warpAffine(line, rot, (n, n), flags=cv2.INTER_LINEAR)
    return k / k.sum()


BUILTINS: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f
    for f in (identity, box, gaussian, sobel, scharr, laplacian, log, dog, gabor,
              sharpen, unsharp, emboss, motion_blur)
}


def make_kernel(name: str, **params: Any) -> np.ndarray:
    """The built-in kernel ``name`` with ``params``; raises ConfigError naming what is wrong."""
    try:
        factory = BUILTINS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"builtin={name!r} is not a built-in kernel; expected one of {', '.join(BUILTINS)}"
        ) from None
    allowed = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"builtin {name}: unknown parameter {unknown[0]!r}; allowed: {', '.join(allowed)}"
        )
    return factory(**params)


def describe_builtins() -> list[tuple[str, str, str]]:
    """(name, parameters with defaults, first line of the docstring) for each built-in."""
    rows = []
    for name, f in BUILTINS.items():
        params = ", ".join(
            f"{p.name}={p.default!r}" for p in inspect.signature(f).parameters.values()
        )
        rows.append((name, params, (f.__doc__ or "").strip().splitlines()[0]))
    return rows
