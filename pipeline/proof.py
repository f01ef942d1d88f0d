"""Proof that a batch output is whole and current: a small manifest beside it.

``batch`` skips an output on a rerun only when ``.<name>.pipeline.json`` beside it says
it was finished from this very input (size, modification time, a digest of its first and
last MiB) with this very config (a digest of the validated stages, the encode policy and
every weights file they read) and still is that file (size and the same digest of its
own). Anything else (no manifest, an empty or cut file, an input or config that changed)
is done again; ``--force`` redoes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError
from .paths import open_regular

FORMAT = "pipeline-batch-proof/1"
_SAMPLE = 1 << 20  # bytes read at each end of a file for its digest


def proof_path(target: str | os.PathLike[str]) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.pipeline.json")


def _sample(path: str | os.PathLike[str]) -> str:
    """A digest of a file's size and its first and last MiB (cheap on any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(str(size).encode())
        digest.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(size - _SAMPLE, _SAMPLE))
            digest.update(f.read(_SAMPLE))
    return digest.hexdigest()


def identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an input is: a file by size, time and sampled digest; a folder of images by
    the same of every file in it."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        listing = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                         for e in os.scandir(path) if e.is_file())
        return {"folder": hashlib.sha256(repr(listing).encode()).hexdigest()}
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sample": _sample(path)}


def config_fingerprint(config: Any, video: Any = None) -> str:
    """A digest of what decides the output's pixels: the validated stages and encode
    policy (not comments or layout of the YAML), the content of every weights file they
    read (weights, biases, models), the codec settings (``video``: the command line's), and the version of
    pipeline."""
    digest = hashlib.sha256(__version__.encode())
    digest.update(config.model_dump_json(include={"stages", "encode"}).encode())
    if video is not None and video.chosen():
        digest.update(repr(video).encode())
    for path in config.files_read():  # weights, biases, models
        with open_regular(path, ConfigError, "weights file", cannot="cannot load weights") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_proof(target: str | os.PathLike[str], source: str, fingerprint: str,
                frames: int) -> None:
    """Record that ``target`` is finished (atomically: a cut manifest never reads)."""
    record = {"format": FORMAT, "input": identity(source), "config": fingerprint,
              "output": {"size": os.stat(target).st_size, "sample": _sample(target)},
              "frames": frames}
    path = proof_path(target)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; this is not one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unproven(target: str | os.PathLike[str], source: str, fingerprint: str) -> str | None:
    """None when ``target`` is a finished output of ``source`` under this config; else
    why it must be done (again)."""
    target = Path(target)
    if not target.exists():
        return "new"
    try:
        record = json.loads(proof_path(target).read_text())
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return "no proof it was finished"
    except (OSError, ValueError):
        return "no proof it was finished"
    try:
        if record.get("config") != fingerprint:
            return "the config changed"
        if record.get("input") != identity(source):
            return "the input changed"
        output = record.get("output") or {}
        if not target.is_file() or output.get("size") != target.stat().st_size or \
                output.get("sample") != _sample(target):
            return "the output is not the one finished"
    except OSError as e:
        return f"cannot check it ({e.strerror})"
    return None

