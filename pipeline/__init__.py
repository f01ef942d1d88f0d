"""pipeline: exact multi-channel convolution/correlation filter banks on streaming video."""

from __future__ import annotations

from .bank import FilterBank, Plan
from .errors import (
    ConfigError,
    FrameError,
    InputError,
    OutputError,
    PipelineError,
    SourceLostError,
)

__all__ = [
    "ConfigError",
    "FilterBank",
    "FrameError",
    "InputError",
    "OutputError",
    "PipelineError",
    "Plan",
    "SourceLostError",
]
__version__ = "0.1.0"
