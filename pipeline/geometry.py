"""Where a bank's kernel sits on the frame: padding per side, output size, kernel centre.

Pure functions of the options, the kernel size and the frame size (SPEC section 1):
Keras/TensorFlow 'same' (the extra pixel after, or before with align opencv), 'full',
'valid', explicit pixels, an anchor; a convolve bank turns its kernel, which mirrors the
sides. Everything here is in the correlation frame the engine computes in.
"""

from __future__ import annotations

import math

from .errors import FrameError
from .options import BankOptions

Pads = tuple[int, int, int, int]


def centre(options: BankOptions, kernel: tuple[int, int]) -> tuple[int, int] | None:
    """The kernel index (row, col) that sits on the output pixel under 'same' padding."""
    if options.padding.kind != "same":
        return None
    if options.anchor is not None:
        return options.anchor
    kh, kw = kernel
    if options.align == "keras":
        return (kh - 1) // 2, (kw - 1) // 2
    return kh // 2, kw // 2


def _axis_pads(options: BankOptions, n: int, k: int, s: int, d: int,
               anchor: int | None) -> tuple[int, int]:
    """(before, after) padding of one axis of ``n`` pixels."""
    extent = d * (k - 1) + 1
    kind = options.padding.kind
    if kind == "valid":
        return 0, 0
    if kind == "full":
        return extent - 1, extent - 1
    total = max(0, (math.ceil(n / s) - 1) * s + extent - n)  # TF/Keras 'same'
    if anchor is not None:
        before = d * (anchor if options.op == "correlate" else k - 1 - anchor)
        return before, total - before
    small, big = total // 2, total - total // 2
    # keras puts the extra pixel after; turning a convolve kernel mirrors the sides.
    extra_after = (options.align == "keras") == (options.op == "correlate")
    return (small, big) if extra_after else (big, small)


def pads_and_size(options: BankOptions, kernel: tuple[int, int], frame: tuple[int, int]
                  ) -> tuple[Pads, tuple[int, int]]:
    """(top, bottom, left, right) padding and the output (H', W') for ``frame`` (H, W);
    raises FrameError when no output pixel is left."""
    (h, w), (kh, kw) = frame, kernel
    (sh, sw), (dh, dw) = options.stride, options.dilation
    if options.padding.kind == "explicit":
        pads = options.padding.pixels
    else:
        a = options.anchor or (None, None)
        pads = _axis_pads(options, h, kh, sh, dh, a[0]) + _axis_pads(options, w, kw, sw, dw, a[1])
    sizes = []
    for n, before, after, k, s, d in ((h, pads[0], pads[1], kh, sh, dh),
                                      (w, pads[2], pads[3], kw, sw, dw)):
        extent = d * (k - 1) + 1
        if n + before + after < extent:
            raise FrameError(f"frame {h}x{w} is smaller than the kernel extent "
                             f"{dh * (kh - 1) + 1}x{dw * (kw - 1) + 1} with "
                             f"padding={options.padding}")
        sizes.append((n + before + after - extent) // s + 1)
    return pads, (sizes[0], sizes[1])
