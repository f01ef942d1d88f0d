"""Exceptions of pipeline. Each carries the CLI exit code of SPEC section 4.

Every class also inherits the builtin a Python caller would expect (PyAV's habit), so
``except ValueError`` around ``FilterBank(...)`` works without importing pipeline.
"""

from __future__ import annotations

LOSSY = 6  # finished, outputs final, but frames were lost on the way in (--strict only)
INTERNAL = 70  # a bug: one line, never an unhandled traceback, never 1


class PipelineError(Exception):
    """Base of every error pipeline raises on purpose; ``exit_code`` is the CLI's."""

    exit_code = 1


class ConfigError(PipelineError, ValueError):
    """A bad option value, weight array or YAML config (exit 2)."""

    exit_code = 2


class FrameError(PipelineError, ValueError):
    """A frame that does not fit the bank: channels, dtype, smaller than the kernel (exit 3)."""

    exit_code = 3


class InputError(PipelineError, OSError):
    """An input that cannot be read or decoded (exit 3)."""

    exit_code = 3


class OutputError(PipelineError, OSError):
    """An output that cannot be created, written or verified (exit 4)."""

    exit_code = 4


class SourceLostError(PipelineError, ConnectionError):
    """A live source that could not be (re)opened within its budget (exit 5)."""

    exit_code = 5


class Interrupted(PipelineError):
    """A signal arrived before any frame was processed (exit 130/143/129, set by whoever
    knows which signal it was)."""

    exit_code = 130
