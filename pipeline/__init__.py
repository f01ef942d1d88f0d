"""pipeline: exact multi-channel convolution/correlation filter banks on streaming video."""

from __future__ import annotations

from .bank import FilterBank, Plan
from .config import Config, load_config
from .errors import (
    ConfigError,
    FrameError,
    InputError,
    OutputError,
    PipelineError,
    SourceLostError,
)
from .runner import Stats, run_config

__all__ = [
    "Config",
    "ConfigError",
    "FilterBank",
    "FrameError",
    "InputError",
    "OutputError",
    "PipelineError",
    "Plan",
    "SourceLostError",
    "Stats",
    "load_config",
    "run_config",
]
__version__ = "0.1.0"
