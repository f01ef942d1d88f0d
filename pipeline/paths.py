"""Opening a file a user named, safely: a regular file within a size cap, or an error.

A path can name a FIFO (``open`` blocks forever), a device (``/dev/zero`` reads forever)
or a socket. Each is refused before a byte is read: the file is opened without blocking
and checked on the open descriptor (no window between a check and the open).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO


def open_regular(path: str | os.PathLike[str], error: type[Exception], what: str,
                 max_bytes: int | None = None, limit_hint: str = "",
                 cannot: str | None = None) -> BinaryIO:
    """``path`` opened for reading, once it is known to be a regular file of at most
    ``max_bytes``; else ``error("<path>: <why>")``. ``what`` names the file in messages
    ("config"); ``cannot`` is the words before an OS error ("cannot read config").
    The caller closes the file."""
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise error(f"{where}: is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"{where}: {cannot or 'cannot read ' + what}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{where}: is a directory, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{where}: not a regular file (a {_kind(info.st_mode)}); "
                        f"a {what} must be a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(f"{where}: {what} is {_size(info.st_size)}; limit "
                        f"{_limit(max_bytes)}{limit_hint}")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _limit(n: int) -> str:
    return f"{n / 2**20:.4g} MiB" if n >= 1 << 20 else f"{n} bytes"
