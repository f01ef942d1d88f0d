"""From what a user typed to an (unopened) source: ``--source`` / ``source:`` values."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError
from .base import FrameSource
from .live import camera_source, url_source
from .sources import (
    IMAGE_EXTENSIONS,
    ImageSequenceSource,
    SyntheticSource,
    VideoFileSource,
    check_regular_file,
    image_files,
    is_url,
)


def open_source(spec: str | int, live: dict | None = None) -> FrameSource:
    """The source a ``--source`` value names (not opened yet).

    An int or digits: a camera; ``synthetic…``: the test pattern; a URL: a stream; a
    folder, glob or ``%05d`` pattern: images; an image file: a one-frame sequence;
    anything else: a video file. ``live``: keyword options for camera/URL sources
    (read_timeout, retry, …).
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return camera_source(int(spec), **(live or {}))
    text = str(spec)
    if text.startswith("synthetic"):
        return SyntheticSource.parse(text)
    if is_url(text):
        return url_source(text, **(live or {}))
    if os.path.isfile(text):  # a real file is itself, even named like a pattern or glob
        return _file_source(text)
    if os.path.isdir(text) or any(c in text for c in "*?[") or re.search(r"%0?\d*d", text):
        files = image_files(text)
        if not files:
            what = "is a directory with no image files" if os.path.isdir(text) else \
                "no image files match"
            raise InputError(f"{text}: {what}")
        return ImageSequenceSource(files, text)
    return _file_source(text)


def _file_source(text: str) -> FrameSource:
    if Path(text).suffix.lower() in IMAGE_EXTENSIONS:
        check_regular_file(text)
        return ImageSequenceSource([text], text)
    return VideoFileSource(text)
