"""Weight files and weight layouts: arrays from ``.npy``, ``.npz`` and ``.safetensors``
files, and 4-D weights from any layout to oihw. No OpenCV here: the config loader and the
model readers use it.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy as np

from .archive import open_zip
from .errors import ConfigError
from .paths import open_regular


def _npy_shape(f: Any) -> tuple[int, ...]:
    """The shape in an .npy header, without reading the data."""
    version = np.lib.format.read_magic(f)
    reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
    return reader(f)[0]


def _check_size(where: str, f: BinaryIO, key: str | None, max_elements: int | None) -> None:
    """Refuse an oversized array from its header, before allocating it."""
    if max_elements is None:
        return
    shapes = []
    if zipfile.is_zipfile(f):
        f.seek(0)
        with open_zip(where, f) as z:
            for name in z.namelist():
                if key is None or name == f"{key}.npy":
                    with z.open(name) as member:
                        shapes.append(_npy_shape(member))
    else:
        f.seek(0)
        shapes.append(_npy_shape(f))
    f.seek(0)
    for shape in shapes:
        if math.prod(shape) > max_elements:
            raise ConfigError(f"{where}: weights of shape {shape} exceed the limit of "
                              f"{max_elements} values (raise with --max-kernel/--max-outputs)")


def load_weights(path: str | os.PathLike[str], key: str | None = None,
                 max_elements: int | None = None) -> np.ndarray:
    """A float64 array from ``.npy``, ``.npz`` or ``.safetensors`` (``key`` picks one of
    several arrays: ``conv1.weight``).

    Never unpickles. The path must be a regular file (a FIFO or ``/dev/zero`` is refused
    before a byte is read); with ``max_elements``, a file larger than that many float64
    values (plus headers) is refused by its size, and an oversized array from its header,
    before any memory is taken. Raises ConfigError naming the file for anything unusable.
    """
    where = os.fspath(path)
    cap = None if max_elements is None else max_elements * 8 + (1 << 20)
    with open_regular(where, ConfigError, "weights file", cap, cannot="cannot load weights",
                      limit_hint=" (raise with --max-kernel/--max-outputs)") as f:
        if where.lower().endswith(".safetensors"):
            return _as_weights(where, _safetensor(where, key, max_elements))
        try:
            _check_size(where, f, key, max_elements)
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                if key is not None:
                    raise ConfigError(f"{where}: key={key!r} given but a .npy holds one array")
                array = loaded
            else:
                with loaded:
                    array = _pick(where, loaded, key)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            if isinstance(e, ConfigError):
                raise
            reason = e.strerror if isinstance(e, OSError) and e.strerror else \
                f"{type(e).__name__}: {e}" if isinstance(e, zipfile.BadZipFile | zlib.error) \
                else str(e)
            raise ConfigError(f"{where}: cannot load weights: {reason}") from e
    return _as_weights(where, array)


def _safetensor(where: str, key: str | None, max_elements: int | None) -> np.ndarray:
    """One tensor of a ``.safetensors`` file (its shape checked from the header first)."""
    from safetensors import SafetensorError, safe_open  # here: only weight files need it

    try:
        with safe_open(where, framework="numpy") as f:
            key = _pick_key(where, list(f.keys()), key)
            tensor = f.get_slice(key)
            shape, dtype = tuple(tensor.get_shape()), str(tensor.get_dtype())
            if dtype.startswith(("BF", "F8", "F4", "F6")):
                raise ConfigError(f"{where}: {key!r} is {dtype}, which numpy cannot hold; "
                                  "save it as float32 (tensor.float())")
            if max_elements is not None and math.prod(shape) > max_elements:
                raise ConfigError(f"{where}: {key!r} of shape {shape} exceeds the limit of "
                                  f"{max_elements} values (raise with --max-kernel/--max-outputs)")
            return f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{where}: cannot load weights: {reason}") from None


def _pick_key(where: str, names: list[str], key: str | None) -> str:
    if key is None:
        if len(names) != 1:
            raise ConfigError(f"{where}: holds {_names(names)}; say which with key")
        return names[0]
    if key not in names:
        raise ConfigError(f"{where}: no array {key!r}; it holds {_names(names)}")
    return key


def _pick(where: str, data: Any, key: str | None) -> np.ndarray:
    return data[_pick_key(where, list(data.keys()), key)]


def _names(names: list[str], shown: int = 8) -> str:
    """The arrays of an .npz for a one-line message: the first few, then how many in all."""
    if len(names) <= shown:
        return f"arrays {names}"
    return f"{len(names)} arrays ({', '.join(map(repr, names[:shown]))}, …)"


def _as_weights(where: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise ConfigError(f"{where}: weights must be real numbers, got dtype {array.dtype}")
    out = np.asarray(array, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ConfigError(f"{where}: weights contain NaN or Inf")
    return out


def to_oihw(weights: np.ndarray, layout: str, depthwise: bool) -> np.ndarray:
    """4-D weights in ``layout`` as oihw ``(C_out, C_in/groups, kh, kw)``.

    hwio is Keras: ``Conv2D`` ``(kh, kw, C_in, C_out)``; ``DepthwiseConv2D``
    ``(kh, kw, C_in, M)``, whose output channel ``k·M + q`` reads input channel ``k``.
    """
    if layout == "oihw":
        return weights
    if depthwise:
        kh, kw, c_in, m = weights.shape
        return weights.transpose(2, 3, 0, 1).reshape(c_in * m, 1, kh, kw)
    return weights.transpose(3, 2, 0, 1)
