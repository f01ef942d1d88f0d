"""Zip archives someone else made (a Keras ``.keras``, an ``.npz``), read within caps.

Python's ``zipfile`` reads the whole central directory when it opens an archive, and a
member inflates to whatever it holds: a 3 MB ``.keras`` whose ``config.json`` inflated
to 3 GiB held 6.2 GB of memory for a minute. Here the directory's size is read from the
archive's end record first, and a member is inflated a chunk at a time, counting, up to
its cap.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import BinaryIO

from .errors import ConfigError

DIRECTORY_BYTES = 1 << 20  # the central directory: thousands of members, far more than any
_CHUNK = 1 << 20
_FAILURES = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
             RuntimeError, ValueError, struct.error)


def directory_size(f: BinaryIO) -> int:
    """The central directory's size in bytes by the archive's end record (ZIP64 too);
    0 where there is no end record (``zipfile`` then says it is not a zip)."""
    f.seek(0, 2)
    size = f.tell()
    span = min(size, 22 + 0xFFFF)
    f.seek(size - span)
    tail = f.read(span)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return 0
    cd_size = struct.unpack_from("<I", tail, at + 12)[0]
    locator = at - 20
    if cd_size == 0xFFFFFFFF and locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        (record,) = struct.unpack_from("<Q", tail, locator + 8)
        f.seek(record)
        zip64 = f.read(56)
        if len(zip64) == 56 and zip64[:4] == b"PK\x06\x06":
            cd_size = struct.unpack_from("<Q", zip64, 40)[0]
    f.seek(0)
    return int(cd_size)


def open_zip(where: str, f: BinaryIO) -> zipfile.ZipFile:
    """``f`` as a zip archive once its directory is known to be small; raises ConfigError
    naming ``where``."""
    try:
        listed = directory_size(f)
        if listed > DIRECTORY_BYTES:
            raise ConfigError(f"{where}: its zip directory is {listed} bytes; limit "
                              f"{DIRECTORY_BYTES}")
        return zipfile.ZipFile(f)
    except _FAILURES as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: not a readable zip archive ({_reason(e)})") from None


def read_member(where: str, archive: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """Member ``name`` inflated, refused as soon as it passes ``cap`` bytes (whatever
    its header claims); raises ConfigError naming ``where`` and the member."""
    parts: list[bytes] = []
    total = 0
    try:
        with archive.open(name) as member:
            while chunk := member.read(_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise ConfigError(f"{where}: {name} inflates past {_size(cap)} (limit)")
                parts.append(chunk)
    except _FAILURES as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where}: {name}: cannot inflate it ({_reason(e)})") from None
    return b"".join(parts)


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 1 << 20 else f"{n} bytes"
