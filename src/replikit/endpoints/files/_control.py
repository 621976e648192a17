"""The files target's control records (a :class:`~replikit.pipeline.control.ControlStore`).

Suspended tables live in the manifest (``suspended``, per task and table), next to the
checkpoint and rewritten atomically with it (temporary file, then rename). A suspension is in
the manifest before the apply that leaves the table's changes out moves the checkpoint past
them, and a table is recorded ``reloading`` before its reload replaces its folder: a run after
a stop or a crash keeps a suspended table suspended, and loads a table whose reload did not
finish again, instead of writing its changes over a half-finished load or resuming it as if no
change had been skipped.

Apply exceptions (rows or changes a ``skip-row`` policy set aside) are one small JSON file each,
``_replikit_exceptions/<fingerprint>.json`` (hidden from readers, as the manifest is), written
atomically before the apply that leaves the row out: a record written again after a replay is
the same file, and many of them do not make every apply rewrite a bigger manifest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Final

from typing_extensions import override

from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._manifest import ManifestFile, refuse_foreign_root
from replikit.errors import SchemaError
from replikit.pipeline.control import (
    ApplyException,
    ControlStore,
    SuspendedTable,
    latest_exceptions,
)

__all__ = ["EXCEPTIONS", "FilesControlStore"]

log = logging.getLogger("replikit.control")

#: the folder (under the root) of the apply exceptions, one JSON file each
EXCEPTIONS: Final = "_replikit_exceptions"


class FilesControlStore(ControlStore):
    """Suspended tables in the manifest, apply exceptions in ``_replikit_exceptions/`` (see
    the module docs). A write into a folder replikit did not write is refused, as a load
    is."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._manifest = ManifestFile(store)
        self._folder = store.path(EXCEPTIONS)

    def __repr__(self) -> str:
        return f"FilesControlStore({self._store.where})"

    def _writable(self) -> None:
        refuse_foreign_root(self._store, self._manifest)
        self._manifest.ensure()

    # -- suspended tables: the manifest ------------------------------------------------------
    @override
    def suspend(self, table: SuspendedTable) -> None:
        """Record ``table`` as suspended (or reloading) in the manifest."""
        with self._manifest.lock:
            self._writable()
            manifest = self._manifest.read()
            manifest.suspended.setdefault(table.task, {})[table.table] = table.as_dict()
            self._manifest.write(manifest)
        log.info("table %s suspended (task %s): %s", table.table, table.task, table.reason)

    @override
    def resume(self, task: str, table: str) -> None:
        """Remove ``table``'s record from the manifest."""
        with self._manifest.lock:
            if not self._manifest.exists():
                return
            manifest = self._manifest.read()
            if manifest.suspended.get(task, {}).pop(table, None) is not None:
                self._manifest.write(manifest)

    @override
    def suspended(self, task: str) -> list[SuspendedTable]:
        """``task``'s suspended (or reloading) tables, by table name."""
        if not self._manifest.exists():
            return []
        rows = self._manifest.read().suspended.get(task, {})
        return [
            SuspendedTable.from_dict({**row, "task": task, "table": name})
            for name, row in sorted(rows.items())
        ]

    # -- apply exceptions: one file each -----------------------------------------------------
    @override
    def record(self, exceptions: Sequence[ApplyException]) -> None:
        """Write each record not written yet (by fingerprint)."""
        if not exceptions:
            return
        with self._manifest.lock:
            self._writable()
            for e in exceptions:
                path = f"{self._folder}/{e.fingerprint}.json"
                if not self._store.exists(path):
                    doc = {**e.as_dict(), "fingerprint": e.fingerprint}
                    self._store.write_text(path, json.dumps(doc, sort_keys=True, default=str))

    def _records(self, task: str) -> list[tuple[str, ApplyException]]:
        out = []
        for name, is_dir in self._store.entries(self._folder):
            if is_dir or name.startswith(".") or not name.endswith(".json"):
                continue  # a temporary file of a write that did not finish
            path = f"{self._folder}/{name}"
            try:
                record = ApplyException.from_dict(json.loads(self._store.read_text(path)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise SchemaError(
                    f"{self._store.location.protocol}://{path} is damaged ({exc}); move it "
                    "away to read the other apply exceptions"
                ) from None
            if record.task == task:
                out.append((path, record))
        return out

    @override
    def exceptions(
        self, task: str, *, table: str | None = None, limit: int | None = 100
    ) -> list[ApplyException]:
        """``task``'s apply exceptions, the latest first (of ``table`` only, when given)."""
        records = (e for _, e in self._records(task))
        return latest_exceptions(records, table=table, limit=limit)

    @override
    def drop(self, task: str) -> None:
        """Remove ``task``'s suspended tables and apply exceptions (the folder of the
        exceptions too, once it is empty)."""
        with self._manifest.lock:
            if self._manifest.exists():
                manifest = self._manifest.read()
                if manifest.suspended.pop(task, None) is not None:
                    self._manifest.write(manifest)
            for path, _ in self._records(task):
                self._store.remove(path)
            if self._store.isdir(self._folder) and not self._store.files_under(self._folder):
                self._store.remove_tree(self._folder)
