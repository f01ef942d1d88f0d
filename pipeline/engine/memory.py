"""Freed frame buffers kept in the process, so the next frame's are not fresh pages.

A stream allocates the same large arrays every frame (planes, results, casts). glibc
serves an allocation above its mmap threshold (at most 32 MiB, so a 720p x 16 float32
result, 59 MB, always) with a fresh mapping and unmaps it on free: every frame then
takes a page fault per 4 KiB it writes. Measured here: a 3 -> 16 -> 16 k3 chain at 720p,
48 ms a frame, 31 ms with the buffers kept (README "Trained models").

``keep_freed_pages`` raises the mmap threshold and the trim threshold (``mallopt``), so
freed buffers stay in the heap and are reused; memory stays flat in a steady stream (the
same sizes come back each frame). Process-wide, glibc only, at most once;
``$PIPELINE_KEEP_PAGES=0`` leaves the allocator as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 512 << 20  # a buffer above this is still mapped (and unmapped) alone
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top beyond this goes back to the OS

_done: list[bool] = []


def keep_freed_pages() -> bool:
    """Set glibc's thresholds once; True where they were set (glibc, not opted out)."""
    if _done:
        return _done[0]
    ok = False
    if os.environ.get("PIPELINE_KEEP_PAGES", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl, macOS): its own allocator
            mallopt = None
        if mallopt is not None:
            ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done.append(ok)
    return ok
