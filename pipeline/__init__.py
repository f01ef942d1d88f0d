"""pipeline: exact multi-channel convolution/correlation filter banks on streaming video.

The public names load on first use (PEP 562), so ``python -m pipeline`` can install its
signal handlers before numpy, OpenCV and FFTW are imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "FilterBank": ".bank", "Plan": ".bank", "BankOptions": ".options",
    "Config": ".config", "load_config": ".config",
    "Stats": ".runner", "run_config": ".runner", "Model": ".model", "load_model": ".model",
    "PipelineError": ".errors", "ConfigError": ".errors", "FrameError": ".errors",
    "InputError": ".errors", "OutputError": ".errors", "SourceLostError": ".errors",
}
__all__ = [
    "BankOptions", "Config", "ConfigError", "FilterBank", "FrameError", "InputError", "Model",
    "OutputError", "PipelineError", "Plan", "SourceLostError", "Stats", "load_config",
    "load_model", "run_config",
]
assert sorted(__all__) == sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .bank import FilterBank, Plan
    from .config import Config, load_config
    from .model import Model, load_model
    from .options import BankOptions
    from .errors import (
        ConfigError,
        FrameError,
        InputError,
        OutputError,
        PipelineError,
        SourceLostError,
    )
    from .runner import Stats, run_config


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
