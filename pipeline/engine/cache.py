"""The user's cache folder: FFTW wisdom, measured FFT sizes, calibrated cost constants.

``$PIPELINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipeline``, else ``~/.cache/pipeline``.
Everything here is an optimisation: a missing, unreadable or corrupt file means "start
from the shipped defaults", never an error; writes are atomic (temp file + rename).

What was measured holds only for the code and machine that measured it, so a file may be
stamped: ``engine_stamp()`` (calibrated constants, timed close calls and layouts: the
engine's own code and compiled kernels, the libraries it calls, the CPU) or
``fftw_stamp()`` (measured FFT sizes: pyFFTW and the CPU). A file whose stamp differs is
read as empty, so an upgrade times again instead of deciding with another build's numbers.
"""

from __future__ import annotations

from importlib import metadata

import hashlib
import json
import os
import platform
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

STAMP_KEY = "_stamp"
_ENGINE = Path(__file__).parent
_BUILT = (".py", ".c", ".h", ".so", ".pyd")  # sources and the compiled kernels


def cache_dir() -> Path:
    explicit = os.environ.get("PIPELINE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def fftw_stamp() -> str:
    """pyFFTW's version and the CPU: what a measured FFT size depends on. The version is
    read from the install's metadata: importing pyFFTW costs 0.19 s of a start."""
    try:
        version = metadata.version("pyfftw")
    except metadata.PackageNotFoundError:
        version = "absent"
    return f"pyfftw {version}; {_cpu()}"


@cache
def engine_stamp() -> str:
    """A digest of the engine's files (its code and compiled kernels), the versions of the
    libraries it calls and the CPU: what a calibrated constant or a timing depends on."""
    import cv2
    import numpy

    digest = hashlib.sha256()
    for path in sorted(p for p in _ENGINE.iterdir() if p.suffix in _BUILT):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    scipy = metadata.version("scipy")  # not imported for it: most runs never need it
    versions = f"numpy {numpy.__version__}, scipy {scipy}, cv2 {cv2.__version__}"
    return f"{digest.hexdigest()[:16]}; {versions}; {fftw_stamp()}"


def load_json(name: str, stamp: str | None = None) -> dict[str, Any]:
    """The file's entries; none when it is missing or corrupt, or was written under
    another ``stamp`` than the one given."""
    try:
        data = json.loads((cache_dir() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or (stamp is not None and data.get(STAMP_KEY) != stamp):
        return {}
    data.pop(STAMP_KEY, None)
    return data


def save_json(name: str, data: dict[str, Any], stamp: str | None = None) -> bool:
    """Write ``data`` (under ``stamp`` when given) atomically; False (and nothing changed)
    when the folder is not writable."""
    folder = cache_dir()
    if stamp is not None:
        data = {STAMP_KEY: stamp, **data}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)  # insertion order kept: update_json drops the oldest
        os.replace(tmp, folder / name)
    except OSError:
        return False
    return True


def update_json(name: str, key: str, value: Any, limit: int | None = None,
                stamp: str | None = None) -> None:
    """Set one entry; with ``limit``, the oldest entries go once there are more. Entries
    written under another stamp are dropped."""
    data = load_json(name, stamp)
    data.pop(key, None)  # re-inserted last: the newest
    data[key] = value
    while limit is not None and len(data) > limit:
        del data[next(iter(data))]
    save_json(name, data, stamp)
