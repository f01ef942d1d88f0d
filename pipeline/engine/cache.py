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
            json.dump(data, f, indent=1)  # insertion order kept: update_json drops the oldest
        os.replace(tmp, folder / name)
    except OSError:
        return False
    return True


def update_json(name: str, key: str, value: Any, limit: int | None = None) -> None:
    """Set one entry; with ``limit``, the oldest entries go once there are more."""
    data = load_json(name)
    data.pop(key, None)  # re-inserted last: the newest
    data[key] = value
    while limit is not None and len(data) > limit:
        del data[next(iter(data))]
    save_json(name, data)
