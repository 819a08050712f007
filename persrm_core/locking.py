"""One materialization of an artifact at a time: a lock file beside the artifact.

A second writer is refused at once (not queued), with a message naming the artifact and the
lock, so two runs never interleave their writes to one checkpoint or table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout


class ArtifactBusy(RuntimeError):
    pass


@contextlib.contextmanager
def artifact_lock(target: str | Path) -> Iterator[None]:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ArtifactBusy(f"{target}: another materialization is writing this artifact "
                           f"(lock {lock_path}); wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()
