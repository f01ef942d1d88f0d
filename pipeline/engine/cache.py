"""The user's cache folder: FFTW wisdom, measured FFT sizes, calibrated cost constants.

``$PIPELINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipeline``, else ``~/.cache/pipeline``.
Everything here is an optimisation: a missing, unreadable or corrupt file means "start
from the shipped defaults", never an error; writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    explicit = os.environ.get("PIPELINE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline"


def load_json(name: str) -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_json(name: str, data: dict[str, Any]) -> bool:
    """Write ``data`` atomically; False (and nothing changed) when the folder is not writable."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, folder / name)
    except OSError:
        return False
    return True


def update_json(name: str, key: str, value: Any) -> None:
    data = load_json(name)
    data[key] = value
    save_json(name, data)
