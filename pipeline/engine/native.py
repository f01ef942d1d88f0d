"""The direct method's compiled kernel (``_correlate.c``), where this install built it.

``loops`` is the extension module, or None after an install without a C compiler: the
direct method then runs channel-mixing banks by im2col + GEMM instead.
"""

from __future__ import annotations

try:
    from . import _correlate as loops
except ImportError:  # installed without a C compiler
    loops = None


def available() -> bool:
    """Whether the C kernel was built with this install."""
    return loops is not None


def instruction_set() -> str:
    """The variant the kernel uses on this CPU ('avx512', 'avx2', 'generic'), or 'absent'."""
    return loops.instruction_set() if loops is not None else "absent"
