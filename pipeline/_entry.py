"""The console script and ``python -m pipeline``: signals handled from the first instant.

Until a run installs its own handlers (which finalise outputs), SIGINT, SIGTERM and SIGHUP
end the process at once with 130/143/129: nothing has been written yet, and a
KeyboardInterrupt raised inside an import would print a traceback. FFmpeg's and OpenCV's
log lines are kept off stderr unless --verbose is given; both read their environment
when OpenCV loads, so this happens before anything else is imported.
"""

from __future__ import annotations

import os
import signal
import sys

from .signals import STOP_SIGNALS


def _early_exit(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def steady_heap() -> None:
    """Keep freed frame buffers in the heap instead of returning them to the kernel.

    glibc unmaps every large block (a 1080p float frame is tens of MB) when it is freed
    and maps it again for the next frame: page faults every frame, and an RSS that jumps
    by a frame at a time. A stream allocates the same sizes over and over, so a high
    mmap threshold and no trimming make RSS settle at the working set and stay there.
    (glibc only; elsewhere nothing happens.)
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    mallopt(m_mmap_threshold, 512 << 20)
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_arena_max, 1)  # the per-thread arenas shrink on their own schedule


def main() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _early_exit)
    if "--verbose" not in sys.argv[1:]:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
        os.environ.setdefault("PIPELINE_FFMPEG_LOG", "quiet")  # PyAV's libraries (io/libav.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # pools that spin slow the others
    steady_heap()
    from .cli import main as cli_main

    cli_main()
