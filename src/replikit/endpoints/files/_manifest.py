"""``_replikit_manifest.json``: the folder's commit record (checkpoints, committed changes).

The manifest is rewritten atomically (temporary file, then rename) and only after the change
files it commits are in place, so it is the one source of truth: a change file whose
sequence number is above ``change_seq`` was written by an apply that never committed (the
process died between its data files and the manifest) and is removed before the next apply;
readers never read it. A folder with a manifest is one replikit wrote; a target folder
holding other things and no manifest is refused.

The manifest also holds each task's suspended tables (``suspended``: the files target's
``replikit_suspended_tables``, see :mod:`._control`), so whatever rewrites it -- an apply, a
checkpoint, a suspension -- keeps them. Every :class:`ManifestFile` of one folder in a process
shares one lock: the applying thread, the loaders and the control store each rewrite it. On
this machine's file system the lock is also an exclusive ``flock`` on the folder, so another
process (``replikit reload`` beside a running task) waits for it rather than rewriting the
manifest from what it read before the other's write; other file systems (object stores) have
no such lock: one process at a time may write a folder there.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._ddl import MANIFEST
from replikit.errors import ConfigError, SchemaError
from replikit.pipeline import apply_support
from replikit.pipeline.contracts import Checkpoint

__all__ = ["Manifest", "ManifestFile", "refuse_foreign_root"]

_VERSION = 1
try:
    import fcntl
except ImportError:  # Windows: the lock holds within the process only
    fcntl = None  # type: ignore[assignment]


class FolderLock:
    """A re-entrant lock of one folder's manifest: held by one thread of this process at a
    time and, for ``local`` (the folder's path on this machine), by one process at a time
    (an exclusive ``flock`` on the folder, taken by the outermost hold and released with it;
    a process that dies releases it)."""

    def __init__(self, local: str | None) -> None:
        self._thread = threading.RLock()
        self._local = local if fcntl is not None else None
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread.acquire()
        try:
            if self._depth == 0 and self._local is not None and os.path.isdir(self._local):
                fd = os.open(self._local, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
        except BaseException:
            self._thread.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        fd = self._fd
        if self._depth == 0 and fd is not None:
            self._fd = None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._thread.release()


_locks: dict[tuple[str, str], FolderLock] = {}
_locks_guard = threading.Lock()


def _lock(store: Store, path: str) -> FolderLock:
    """The one lock of the manifest at ``path`` in this process."""
    protocol = store.location.protocol
    local = os.path.abspath(store.root) if protocol in ("file", "local") else None
    with _locks_guard:
        return _locks.setdefault((protocol, path), FolderLock(local))


@dataclass(slots=True)
class Manifest:
    """The manifest's content: per-task checkpoint rows, the last committed change file and
    per-task suspended tables (table -> :meth:`~replikit.pipeline.control.SuspendedTable.
    as_dict`)."""

    change_seq: int = 0
    tasks: dict[str, list[Any]] = field(default_factory=dict)
    suspended: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def checkpoint(self, task: str, where: str) -> Checkpoint | None:
        """``task``'s checkpoint (``None``: none stored)."""
        row = self.tasks.get(task)
        if row is None:
            return None
        start, position, phase, loaded, commit_ts = row
        ts = None if commit_ts is None else datetime.fromisoformat(commit_ts)
        return apply_support.checkpoint_from_row(
            task, (start, position, phase, loaded, ts), table=where
        )

    def store(self, checkpoint: Checkpoint) -> None:
        """Set ``checkpoint``'s task row."""
        task, start, position, phase, loaded, ts = apply_support.checkpoint_values(checkpoint)
        self.tasks[task] = [start, position, phase, loaded, None if ts is None else ts.isoformat()]


class ManifestFile:
    """The manifest of one root folder, read and rewritten under a lock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.path(MANIFEST)
        self.lock = _lock(store, self.path)

    def exists(self) -> bool:
        """Whether the folder has a manifest (replikit wrote it)."""
        return self.store.exists(self.path)

    def read(self) -> Manifest:
        """The manifest (empty when there is none yet)."""
        if not self.store.exists(self.path):
            return Manifest()
        text = self.store.read_text(self.path)
        try:
            doc = json.loads(text)
            suspended = {t: dict(rows) for t, rows in dict(doc.get("suspended", {})).items()}
            return Manifest(int(doc.get("change_seq", 0)), dict(doc.get("tasks", {})), suspended)
        except (ValueError, TypeError, AttributeError) as exc:
            raise SchemaError(
                f"{self.store.where}/{MANIFEST} is damaged ({exc}); restore it or start the "
                "task again into an empty folder"
            ) from None

    def write(self, manifest: Manifest) -> None:
        """Replace the manifest atomically."""
        doc: dict[str, Any] = {
            "replikit": _VERSION,
            "change_seq": manifest.change_seq,
            "tasks": manifest.tasks,
        }
        suspended = {t: rows for t, rows in manifest.suspended.items() if rows}
        if suspended:
            doc["suspended"] = suspended
        self.store.write_text(self.path, json.dumps(doc, indent=1, sort_keys=True))

    def ensure(self) -> None:
        """Write an empty manifest when there is none (marks the folder as replikit's)."""
        with self.lock:
            if not self.exists():
                self.write(Manifest())


def refuse_foreign_root(store: Store, manifest: ManifestFile) -> None:
    """A root folder that holds anything and no manifest was not written by replikit:
    :class:`ConfigError` naming what it holds (nothing is written into it)."""
    if manifest.exists():
        return
    entries = [name for name, _ in store.entries(store.root)]
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(
            f"target folder {store.where} holds files replikit did not write ({shown}); "
            "write into an empty or new folder, or one a previous replikit run wrote"
        )
