"""The MongoDB target's control records (a :class:`~replikit.pipeline.control.ControlStore`):
collections ``replikit_suspended_tables`` and ``replikit_apply_exceptions`` in the URL's
database, next to ``replikit_checkpoints``.

One document per suspended (or reloading) table, ``_id`` the task and table; one per apply
exception, ``_id`` its fingerprint (a record written again after a replay stays one document).
Each write is acknowledged before the data that leaves the table or the change out is
written, as the SQL control tables are committed before it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any, Final

from typing_extensions import override

from replikit.endpoints.mongodb._connect import Client, driver, translated
from replikit.pipeline.control import (
    ApplyException,
    ControlStore,
    SuspendedTable,
    latest_exceptions,
)

__all__ = ["EXCEPTIONS", "SUSPENDED", "MongoControlStore"]

SUSPENDED: Final = "replikit_suspended_tables"
EXCEPTIONS: Final = "replikit_apply_exceptions"


class MongoControlStore(ControlStore):
    """The control collections of database ``database`` (see the module docs)."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database

    def __repr__(self) -> str:
        return f"MongoControlStore(database={self._database!r})"

    def _coll(self, name: str) -> Any:
        return self._client.database(self._database)[name]

    @override
    def suspend(self, table: SuspendedTable) -> None:
        """Record ``table`` as suspended (or reloading), replacing its previous document."""
        doc = {"_id": _table_id(table.task, table.table), **table.as_dict()}
        with translated(self._client, f"record table {table.table} as suspended in"):
            self._coll(SUSPENDED).replace_one({"_id": doc["_id"]}, doc, upsert=True)

    @override
    def resume(self, task: str, table: str) -> None:
        """Delete ``table``'s document."""
        with translated(self._client, f"record table {table} as resumed in"):
            self._coll(SUSPENDED).delete_one({"_id": _table_id(task, table)})

    @override
    def suspended(self, task: str) -> list[SuspendedTable]:
        """``task``'s suspended (or reloading) tables, by table name."""
        with translated(self._client, "read the suspended tables from"):
            docs = list(self._coll(SUSPENDED).find({"task": task}))
        return sorted((SuspendedTable.from_dict(d) for d in docs), key=lambda s: s.table)

    @override
    def record(self, exceptions: Sequence[ApplyException]) -> None:
        """Insert each record not there yet (by fingerprint)."""
        duplicate = driver().errors.DuplicateKeyError
        with translated(self._client, "record apply exceptions in"):
            coll = self._coll(EXCEPTIONS)
            for e in exceptions:
                with contextlib.suppress(duplicate):  # recorded before this replay
                    coll.insert_one({"_id": e.fingerprint, **e.as_dict()})

    @override
    def exceptions(
        self, task: str, *, table: str | None = None, limit: int | None = 100
    ) -> list[ApplyException]:
        """``task``'s apply exceptions, the latest first (of ``table`` only, when given)."""
        query = {"task": task} if table is None else {"task": task, "table": table}
        with translated(self._client, "read the apply exceptions from"):
            docs = list(self._coll(EXCEPTIONS).find(query))
        records = (ApplyException.from_dict(d) for d in docs)
        return latest_exceptions(records, table=table, limit=limit)

    @override
    def drop(self, task: str) -> None:
        """Delete ``task``'s documents; drop each collection once no task is left in it."""
        with translated(self._client, f"drop the control records of task {task!r} from"):
            for name in (SUSPENDED, EXCEPTIONS):
                coll = self._coll(name)
                coll.delete_many({"task": task})
                if coll.find_one() is None:
                    coll.drop()


def _table_id(task: str, table: str) -> str:
    return json.dumps([task, table])
