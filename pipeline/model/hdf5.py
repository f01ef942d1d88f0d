"""HDF5 from a file someone else made, read in a child process: ``read_hdf5``.

libhdf5 trusts its input. Fed mutated bytes of a small Keras weights file it crashed
(SIGSEGV) on 2 of 300 and looped on 2 more (seen here, h5py 3.16, HDF5 2.0), and a valid
file can point outside itself: a dataset's *external storage* (``/etc/passwd``,
``/dev/zero`` became a kernel), external links, virtual datasets. So the bytes go to a
child process (``python -m pipeline.model.hdf5``) with a time and address-space limit,
which refuses all of those, checks every dataset's declared size against the caps and
against the bytes the file holds before reading it, and sends back plain data: a tree of
groups and datasets with their attributes. A crash, a hang or an error there is one
ConfigError here; nothing of the file reaches this process but numbers and strings.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

HEADER_BYTES = 64 << 20  # the tree's JSON (groups, attributes such as a model's config)
CHILD_MEMORY = 3 << 30  # the child's address space, beyond what it reads and keeps
SECONDS = 10.0  # the child's time, plus a second per 32 MiB of file
OBJECTS = 100_000  # groups and datasets visited (a hard link may make a cycle)
_NUMERIC = "biuf"
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class Node:
    """A group (``children``) or a dataset (``array``) of an HDF5 file, with its
    attributes (strings, numbers, lists of them). ``node["a/b"]``, ``"a" in node``,
    ``node.items()`` and ``len(node)`` read like h5py's groups."""

    attrs: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Node] | None = None
    array: np.ndarray | None = None

    def _child(self, name: str) -> Node | None:
        node: Node | None = self
        for part in name.strip("/").split("/"):
            node = None if node is None or node.children is None else node.children.get(part)
        return node

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._child(name) is not None

    def __getitem__(self, name: str) -> Node:
        node = self._child(name)
        if node is None:
            raise KeyError(name)
        return node

    def __iter__(self) -> Iterator[str]:
        return iter(self.children or {})

    def __len__(self) -> int:
        return len(self.children or {})

    def items(self) -> list[tuple[str, Node]]:
        return list((self.children or {}).items())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.array is None:
            raise TypeError("a group, not a dataset")
        return self.array if dtype is None else self.array.astype(dtype)


def is_hdf5(data: bytes) -> bool:
    """Whether ``data`` has HDF5's signature where the format puts it (byte 0, or after a
    user block of 512, 1024, 2048… bytes)."""
    at = 0
    while at + 8 <= len(data):
        if data[at:at + 8] == _SIGNATURE:
            return True
        at = 512 if at == 0 else at * 2
    return False


def read_hdf5(where: str, data: bytes, max_values: int, total_values: int) -> Node:
    """The tree of the HDF5 image ``data`` (from the file ``where``): every dataset of at
    most ``max_values`` numbers, ``total_values`` in all. Raises ConfigError naming
    ``where`` for anything malformed, outside the caps, or reaching outside the file."""
    seconds = SECONDS + len(data) / (32 << 20)
    cmd = [sys.executable, "-m", "pipeline.model.hdf5", str(max_values), str(total_values)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this process's modules
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=seconds, env=env,
                              preexec_fn=_die_with_parent, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: its HDF5 took over {seconds:.0f} s to read; a malformed "
                          "file") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot start the HDF5 reader: {e.strerror or e}") from None
    if proc.returncode < 0:
        raise ConfigError(f"{where}: its HDF5 made the reader crash "
                          f"({signal.Signals(-proc.returncode).name}); a malformed file")
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"the HDF5 reader exited {proc.returncode}"
        raise ConfigError(f"{where}: {reason}")
    try:
        return _unpack(proc.stdout)
    except (ValueError, KeyError, TypeError) as e:  # never: the child wrote it
        raise ConfigError(f"{where}: the HDF5 reader's answer is unreadable ({e})") from None


def _die_with_parent() -> None:
    """In the child, before exec: killed (SIGKILL) if the parent dies first (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _unpack(raw: bytes) -> Node:
    (size,) = struct.unpack_from("<Q", raw)
    tree = json.loads(raw[8:8 + size])
    body = memoryview(raw)[8 + size:]

    def build(entry: dict[str, Any]) -> Node:
        node = Node(attrs=entry["attrs"])
        if "children" in entry:
            node.children = {name: build(child) for name, child in entry["children"]}
        else:
            start, dtype, shape = entry["at"], np.dtype(entry["dtype"]), tuple(entry["shape"])
            count = math.prod(shape)
            if dtype.kind not in _NUMERIC or start + count * dtype.itemsize > len(body):
                raise ValueError("a dataset past the end")
            node.array = np.frombuffer(body, dtype, count, start).reshape(shape).copy()
        return node

    return build(tree)


# ------------------------------------------------------------------ the child's side
class Refused(Exception):
    """What the child says on stderr, one line, before exiting 3."""


def _attr(value: Any) -> Any:
    """An attribute as JSON: text, numbers and lists of them; None for anything else."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.generic):
        return _attr(value.item())
    if isinstance(value, np.ndarray) and value.size <= 1 << 16:
        if value.dtype.kind in "SUO" or value.dtype.kind in _NUMERIC:
            items = [_attr(v) for v in value.reshape(-1)]
            return items if None not in items else None
    return None


def _walk(h5: Any, caps: list[int], chunks: list[bytes]) -> dict[str, Any]:
    """The JSON tree of the group ``h5``; datasets' bytes appended to ``chunks``.
    ``caps``: values left for one dataset, values left in all, objects left to visit."""
    import h5py

    caps[2] -= 1
    if caps[2] < 0:
        raise Refused(f"more than {OBJECTS} groups and datasets")
    entry: dict[str, Any] = {"attrs": _attributes(h5), "children": []}
    for name in h5:
        link = h5.get(name, getlink=True)
        place = f"{h5.name.rstrip('/')}/{name}"
        if not isinstance(link, h5py.HardLink):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise Refused(f"{place} is {kind}; a model file must hold its data itself")
        item = h5[name]
        if isinstance(item, h5py.Group):
            entry["children"].append([name, _walk(item, caps, chunks)])
        elif isinstance(item, h5py.Dataset):
            caps[2] -= 1
            entry["children"].append([name, _dataset(item, place, caps, chunks)])
        else:
            raise Refused(f"{place}: neither a group nor a dataset")
    return entry


def _attributes(obj: Any) -> dict[str, Any]:
    out = {}
    for key in obj.attrs:
        try:
            value = _attr(obj.attrs[key])
        except (OSError, TypeError, ValueError):  # a type h5py cannot read: not ours
            continue
        if value is not None:
            out[str(key)] = value
    return out


def _dataset(ds: Any, place: str, caps: list[int], chunks: list[bytes]) -> dict[str, Any]:
    """A dataset checked before a byte of it is read: stored in the file (no external
    storage, not virtual), numbers, within the caps, and (unfiltered) as large on disk as
    its shape says."""
    if ds.is_virtual:
        raise Refused(f"{place} is a virtual dataset (its data lies in other files)")
    if ds.external:
        files = ", ".join(str(f[0]) for f in ds.external)
        raise Refused(f"{place} keeps its data in {files} (external storage); a model file "
                      "must hold its data itself")
    if ds.shape is None:
        raise Refused(f"{place}: an empty dataset (no dataspace)")
    if ds.dtype.kind not in _NUMERIC:
        raise Refused(f"{place}: holds {ds.dtype}, not numbers")
    shape = tuple(int(n) for n in ds.shape or ())
    count = 1
    for n in shape:
        count *= n
    if count > caps[0] or count > caps[1]:
        raise Refused(f"{place}: shape {shape} holds {count} values; limit {min(caps[:2])} "
                      "(raise with --max-kernel/--max-outputs)")
    declared = count * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if ds.id.get_create_plist().get_nfilters() == 0 and stored < declared:
        raise Refused(f"{place}: declares {declared} bytes of data and holds {stored}")
    caps[1] -= count
    array = np.ascontiguousarray(ds[()] if shape else np.asarray(ds[()]).reshape(()))
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    at = sum(len(c) for c in chunks)
    chunks.append(array.tobytes())
    return {"attrs": _attributes(ds), "at": at, "dtype": array.dtype.str, "shape": list(shape)}


def _child(max_values: int, total_values: int) -> int:
    import io
    import resource

    data = sys.stdin.buffer.read()
    limit = CHILD_MEMORY + 2 * len(data) + 16 * total_values
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    import h5py

    chunks: list[bytes] = []
    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            tree = _walk(h5, [max_values, total_values, OBJECTS], chunks)
    except Refused as e:
        print(e, file=sys.stderr)
        return 3
    except Exception as e:  # noqa: BLE001 - whatever malformed bytes raise, one line
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"not a readable HDF5 file ({type(e).__name__}: {reason[:200]})", file=sys.stderr)
        return 3
    header = json.dumps(tree).encode()
    if len(header) > HEADER_BYTES:
        print(f"its HDF5 attributes take {len(header)} bytes; limit {HEADER_BYTES}",
              file=sys.stderr)
        return 3
    out = sys.stdout.buffer
    out.write(struct.pack("<Q", len(header)))
    out.write(header)
    for chunk in chunks:
        out.write(chunk)
    out.flush()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C to the group: quietly gone
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))
