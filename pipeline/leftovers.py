"""What a stopped batch leaves in its ``--out`` folder, and the next batch's account of it.

A batch stopped part-way (a signal, SIGKILL, a lost cluster) leaves its files under way at
their temporary names (``clip.<token>.partial.mkv``: they may hold the only copy of
something) and, on a cluster, the permits beside them (``.clip.mkv.<token>.revoked``).
Before any job starts, a batch writes a journal into ``--out``
(``.pipeline-batch.<token>.json``: each job's output and token) and, when it ends,
keeps in it only the jobs that left something. The next batch into that folder lists
what the journals name and still exists (``stale``), and with ``--clean`` removes it.
Only what a journal names is ever touched: a file of the user's named like ours
(``clip.partial.mkv``, or any other) is never listed, let alone removed; nor is what a
run still holds (its output locked).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .io.destination import Lock, new_token, partial_name, permit

JOURNAL = ".pipeline-batch.{}.json"
_MAX_BYTES = 16 << 20  # a journal of many thousand jobs


@dataclass(frozen=True)
class Leftover:
    """One stopped job's files: its partial output (if any) and its permit markers."""

    journal: Path
    target: Path
    token: str

    @property
    def files(self) -> list[Path]:
        final = self.target
        candidates = [partial_name(final, self.token),
                      *(permit(final, self.token, s) for s in ("permit", "taken", "revoked"))]
        return [p for p in candidates if p.exists()]

    @property
    def partial(self) -> Path | None:
        path = partial_name(self.target, self.token)
        return path if path.exists() else None


def record(out_dir: Path, jobs: list[tuple[str, str]]) -> Path:
    """A journal of ``jobs`` (output, token) in ``out_dir``, written whole (a rename)."""
    path = out_dir / JOURNAL.format(new_token())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([[os.path.abspath(t), token] for t, token in jobs]))
    os.replace(tmp, path)
    return path


def settle(journal: Path) -> None:
    """The batch ended: keep in its journal only the jobs that left something."""
    left = [item for item in _read(journal) or [] if item.files]
    if not left:
        journal.unlink(missing_ok=True)
        return
    tmp = journal.with_name(journal.name + ".tmp")
    tmp.write_text(json.dumps([[str(item.target), item.token] for item in left]))
    os.replace(tmp, journal)


def stale(out_dir: Path) -> list[Leftover]:
    """What earlier batches into ``out_dir`` left, no run holding it now; journals that
    name nothing left are removed."""
    found = []
    for journal in sorted(out_dir.glob(JOURNAL.format("*"))):
        read = _read(journal)
        if read is None:
            continue  # not one of ours to read, nor to remove
        items = [item for item in read if item.files]
        if not items:
            journal.unlink(missing_ok=True)
        found += [item for item in items if not _held(item.target)]
    return found


def clean(items: list[Leftover]) -> list[Path]:
    """Remove ``items``' files and the journals they came from; the partials removed."""
    removed = []
    for item in items:
        for path in item.files:
            path.unlink(missing_ok=True)
            if path.suffix != "" and ".partial" in path.name:
                removed.append(path)
    for journal in {item.journal for item in items}:
        settle(journal)
    return removed


def _read(journal: Path) -> list[Leftover] | None:
    """A journal's jobs; None for a file that is not one of ours (too big, not JSON, not
    a list of pairs of names)."""
    try:
        if journal.stat().st_size > _MAX_BYTES:
            return None
        data = json.loads(journal.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, list) or not all(
            isinstance(x, list) and len(x) == 2 and all(isinstance(v, str) for v in x)
            and x[1].isalnum() for x in data):
        return None
    return [Leftover(journal, Path(t), token) for t, token in data]


def _held(target: Path) -> bool:
    """Whether a run holds ``target`` now (its lock): what it writes is not stale."""
    lock = Lock(target)
    try:
        lock.acquire()
    except OSError:
        return True
    lock.release()
    return False
