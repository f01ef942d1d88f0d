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


def _early_exit(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, _early_exit)
    if "--verbose" not in sys.argv[1:]:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # pools that spin slow the others
    from .cli import main as cli_main

    cli_main()
