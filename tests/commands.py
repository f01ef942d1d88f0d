"""The CLI as a user runs it, from the tests: ``cli(*args)``, ``python -m pipeline ARGS``
in a subprocess (Python's own warnings off: a test reads stderr for pipeline's lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: object, cwd: Path | None = None, timeout: float = 300,
        background: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
    """The finished run (stdout and stderr as text), or with ``background`` the running
    process (its pipes open)."""
    command = [sys.executable, "-m", "pipeline", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if background:
        return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
