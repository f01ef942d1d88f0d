"""PyAV (FFmpeg's libraries), imported where a file is read or written: ``libav()``.

FFmpeg's own log lines (``[ac3 @ 0x…] expacc 125 is out-of-range`` for a damaged sound
packet) go to stderr unless told otherwise; the CLI keeps them off unless ``--verbose``
(``_entry.py`` sets ``PIPELINE_FFMPEG_LOG=quiet``), as it does OpenCV's. What they say is
reported in pipeline's own words (a skipped packet is counted and warned once).
"""

from __future__ import annotations

import os
from typing import Any

_set = False


def libav() -> Any:
    """The ``av`` module, FFmpeg's log level set once (quiet for the CLI)."""
    global _set
    import av

    if not _set:
        _set = True
        if os.environ.get("PIPELINE_FFMPEG_LOG") == "quiet":
            import av.logging

            av.logging.set_libav_level(av.logging.PANIC)
    return av
