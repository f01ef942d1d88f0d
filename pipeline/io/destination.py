"""An output path claimed by one run: a lock beside it and a temporary name no one else has.

What a run writes goes to ``<stem>.<token>.partial<ext>`` (the real extension last, for
FFmpeg's muxer; same folder, so the final rename is atomic), created exclusively: a
user's ``out.partial.mp4`` or a file another run left (a recording cut by SIGKILL) is
never opened, truncated or removed. A run only ever removes what it created.

Two runs writing one output at once would interleave (RELIABILITY X3), so the
destination is locked first (``flock`` on ``.<name>.pipeline-lock`` beside it, which
also says who holds it): the second run stops before writing anything, naming the first.
The kernel drops the lock when its holder dies, even by SIGKILL, so a stale lock file
only means an unlocked one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from pathlib import Path

from ..errors import OutputError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): outputs are not locked there
    fcntl = None  # type: ignore[assignment]

PARTIAL = ".partial"  # every temporary name holds it: <stem>.<token>.partial<ext>


def partial_name(final: Path, token: str) -> Path:
    """``out.mp4`` -> ``out.<token>.partial.mp4``."""
    return final.with_name(f"{final.stem}.{token}{PARTIAL}{final.suffix}")


def new_token() -> str:
    return secrets.token_hex(4)


class Lock:
    """An exclusive, non-blocking claim on ``final`` (released on close, or by death)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.path = final.with_name(f".{final.name}.pipeline-lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"cannot create {self.final}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                raise OutputError(
                    f"{self.final}: another run is writing it ({owner or 'owner unknown'}); "
                    "nothing was written") from None
            try:  # its last holder may have removed it between our open and our lock
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%H:%M:%S')}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still held: nobody can lock the old file after
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def permit(final: Path, token: str, state: str = "permit") -> Path:
    """``.out.mkv.<token>.permit`` beside ``final``: a batch's leave to commit the output
    its job ``token`` writes (cluster.Permits); ``taken`` once the job commits,
    ``revoked`` once the batch has given the job up."""
    return final.with_name(f".{final.name}.{token}.{state}")


class Revoked(OutputError):
    """The batch that asked for an output gave it up before it was committed."""


def take_permit(final: Path, token: str) -> None:
    """Before a commit: take the batch's permit for ``token`` (atomically, a rename), or
    raise Revoked where the batch revoked it; nothing happens where there is none (a run
    of its own, or a local batch, whose workers stop with it)."""
    try:
        os.rename(permit(final, token), permit(final, token, "taken"))
        return
    except FileNotFoundError:
        pass
    revoked = permit(final, token, "revoked")
    if revoked.exists():
        revoked.unlink(missing_ok=True)  # read: the batch is gone and so is this claim
        raise Revoked(f"{final}: the batch that asked for it gave it up (its cluster was "
                      "lost); not given its final name")


class Destination:
    """The final path of one output, and this run's temporary file or folder for it.

    ``claim()`` checks, locks and creates the temporary; then exactly one of
    ``commit()`` (rename into place), ``keep()`` (leave the temporary, named, for the
    user) or ``discard()`` (remove it) ends the claim. A batch on a cluster gives its jobs
    permits (``take_permit``): a worker that outlived the batch's view of it never
    commits what the batch reported unfinished.
    """

    def __init__(self, final: str | os.PathLike[str], force: bool = False,
                 inputs: list[str] | None = None, token: str | None = None) -> None:
        self.final = Path(final)
        self.force = force
        self.inputs = inputs or []
        self.token = token or new_token()
        self.asked = self.token  # the token a batch knows the job by (permits)
        self.tmp: Path | None = None
        self._folder = False
        self._lock = Lock(self.final)

    def check(self) -> None:
        """Before anything is created: not an input, not a folder, not replaced unasked."""
        final = self.final
        for source in self.inputs:
            if os.path.exists(source) and os.path.exists(final) and \
                    os.path.samefile(source, final):
                raise OutputError(f"{final}: output would overwrite the input {source}")
            if os.path.realpath(source) == os.path.realpath(final):
                raise OutputError(f"{final}: output would overwrite the input {source}")
        if final.exists() or final.is_symlink():
            if final.is_dir():
                raise OutputError(f"{final}: is a directory")
            if not self.force:
                raise OutputError(f"{final}: exists (use --force to replace it)")
        folder = final.parent if str(final.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"cannot create {final}: no such directory {folder}")

    def claim(self, folder: bool = False) -> Path:
        """Lock the destination and create this run's temporary file, or with ``folder``
        a temporary folder ``<name>.<token>.partial`` (its caller checks the names)."""
        if not folder:
            self.check()
        self._lock.acquire()
        try:
            if not folder:
                self.check()  # again under the lock: another run may have finished since
            while True:
                tmp = self.final.with_name(f"{self.final.name}.{self.token}{PARTIAL}") \
                    if folder else partial_name(self.final, self.token)
                try:
                    if folder:
                        os.mkdir(tmp)
                    else:
                        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                    break
                except FileExistsError:  # someone's file: leave it, take another name
                    self.token = new_token()
        except OSError as e:
            self._lock.release()
            raise OutputError(f"cannot create {self.final}: {e.strerror}") from None
        except BaseException:
            self._lock.release()
            raise
        self.tmp, self._folder = tmp, folder
        return tmp

    def commit(self) -> None:
        """The temporary becomes the final file (atomically replacing an older one), once
        any permit is taken; Revoked (the temporary kept, named) where it was revoked."""
        assert self.tmp is not None and not self._folder
        try:
            take_permit(self.final, self.asked)
        except Revoked as e:
            kept = self.keep()
            raise Revoked(f"{e}; kept as {kept}") from None
        os.replace(self.tmp, self.final)
        permit(self.final, self.asked, "taken").unlink(missing_ok=True)
        self.tmp = None
        self._lock.release()

    def keep(self) -> Path | None:
        """Leave the temporary where it is (the user's now); its path."""
        kept, self.tmp = self.tmp, None
        self._lock.release()
        return kept

    def discard(self) -> None:
        """Remove the temporary (only ever this run's own) and let go of the lock."""
        if self.tmp is not None:
            if self._folder:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self.tmp.unlink(missing_ok=True)
            self.tmp = None
        self._lock.release()
