"""The engine's compiled kernels, where this install built them.

``loops`` (``_correlate.c``): the direct method's register-blocked correlation; None after
an install without a C compiler, and the direct method then runs channel-mixing banks by
im2col + GEMM. ``depthwise`` (``_depthwise.c``): its correlation of interleaved frames
with one kernel per channel; None, and such banks go to OpenCV's filter2D.
``spectral`` (``_spectral.c``): the FFT method's fused multiply-accumulate
of complex64 spectra; None, and numpy does it a pass per product.
"""

from __future__ import annotations

try:
    from . import _correlate as loops
except ImportError:  # installed without a C compiler
    loops = None

try:
    from . import _depthwise as depthwise
except ImportError:  # installed without a C compiler
    depthwise = None

try:
    from . import _spectral as spectral
except ImportError:  # installed without a C compiler
    spectral = None


def available() -> bool:
    """Whether the direct method's C kernel was built with this install."""
    return loops is not None


def depthwise_fits(channels: int) -> bool:
    """Whether the depthwise kernel was built and takes frames of ``channels`` channels
    (they must divide its block of vectors: 1, 2, 3, 4, 6, 8, 12, … with AVX-512)."""
    return depthwise is not None and depthwise.block()[0] % channels == 0


def instruction_set() -> str:
    """The variant the kernel uses on this CPU ('avx512', 'avx2', 'generic'), or 'absent'."""
    return loops.instruction_set() if loops is not None else "absent"
