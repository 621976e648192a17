"""Change-stream events -> changes, sans-IO (documents in, :class:`Change` s out).

One :class:`EventDecoder` per watched collection turns the event documents MongoDB's change
streams deliver (``watch(full_document="updateLookup")``) into row changes with the same
columns and values as the full load (:class:`._documents.TableShape`):

===============  ========================================================================
event            change
===============  ========================================================================
insert           insert, after = the row of ``fullDocument``
update           update, after = the row of ``fullDocument`` (the document as looked up;
                 a full image, so the apply is an idempotent upsert); ``fullDocument``
                 null means the document was gone at lookup time, so a delete follows in
                 the stream: nothing to apply (counted as ``skipped``)
replace          update with the full image of ``fullDocument``
delete           delete by key
drop, rename,    a :class:`~replikit.changes.SchemaChange` that stops the table: its source
dropDatabase,    is gone or renamed, so its changes can no longer be followed
invalidate
anything else    nothing (index and collection-option events do not change rows)
===============  ========================================================================

The key is the ``_id`` of ``fullDocument`` when the event has one, else of ``documentKey``
(on a sharded collection ``documentKey`` also holds the shard key). Pre-images
(``fullDocumentBeforeChange``, MongoDB 6.0+ with ``changeStreamPreAndPostImages``) become
``before``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from replikit.changes import Change, Op, SchemaChange
from replikit.endpoints.mongodb import _documents as d
from replikit.errors import DataError
from replikit.schema.model import TableId

__all__ = ["ROW_EVENTS", "SCHEMA_EVENTS", "EventDecoder", "commit_time", "txn_of"]

ROW_EVENTS: Final = frozenset({"insert", "update", "replace", "delete"})
SCHEMA_EVENTS: Final = frozenset({"drop", "rename", "dropDatabase", "invalidate"})


def commit_time(event: Mapping[str, Any]) -> dt.datetime | None:
    """When the change committed: ``wallTime`` (MongoDB 6.0+), else ``clusterTime``."""
    wall = event.get("wallTime")
    if isinstance(wall, dt.datetime):
        return wall if wall.tzinfo is not None else wall.replace(tzinfo=dt.UTC)
    ts: Any = event.get("clusterTime")
    if ts is not None and hasattr(ts, "time"):
        return dt.datetime.fromtimestamp(int(ts.time), dt.UTC)
    if isinstance(ts, dt.datetime):
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)
    return None


def txn_of(event: Mapping[str, Any]) -> str | None:
    """The multi-document transaction an event belongs to (``None``: a single write)."""
    number = event.get("txnNumber")
    if number is None:
        return None
    lsid = event.get("lsid") or {}
    return f"{d.relaxed(lsid.get('id'))}:{int(number)}"


@dataclass
class EventDecoder:
    """Decodes the events of one collection's change stream."""

    table: TableId
    shape: d.TableShape
    #: update events whose document was gone at lookup time (a delete follows them)
    skipped: int = 0
    _described: dict[str, str] = field(default_factory=dict)

    def decode(self, event: Mapping[str, Any]) -> Change | SchemaChange | None:
        """The change of ``event``, a schema change that stops the table, or ``None``."""
        op = str(event.get("operationType"))
        if op in SCHEMA_EVENTS:
            return SchemaChange(self.table, description=self._why(op, event))
        if op not in ROW_EVENTS:
            return None
        full = event.get("fullDocument")
        before = event.get("fullDocumentBeforeChange")
        ident = self._ident(event, full)
        key = self._key(ident)
        before_row = None if before is None else self._row(before, ident)
        if op == "delete":
            return Change(Op.DELETE, self.table, key=key, before=before_row)
        if full is None:
            self.skipped += 1
            return None
        after = self._row(full, ident)
        kind = Op.INSERT if op == "insert" else Op.UPDATE
        return Change(kind, self.table, key=key, before=before_row, after=after)

    def _ident(self, event: Mapping[str, Any], full: Any) -> Any:
        if isinstance(full, Mapping) and d.ID in full:
            return full[d.ID]
        doc_key = event.get("documentKey") or {}
        if d.ID not in doc_key:
            raise DataError(f"{event.get('operationType')} event without a documentKey._id",
                            table=str(self.table))  # fmt: skip
        return doc_key[d.ID]

    def _key(self, ident: Any) -> dict[str, Any]:
        try:
            return self.shape.key_of(ident)
        except ValueError as exc:
            raise DataError(str(exc), table=str(self.table), key={d.ID: d.relaxed(ident)}) from exc

    def _row(self, doc: Mapping[str, Any], ident: Any) -> dict[str, Any]:
        try:
            return dict(zip(self.shape.names, self.shape.row(doc), strict=True))
        except ValueError as exc:
            raise DataError(
                f"changed document cannot be read as a row: {exc}", table=str(self.table),
                key={d.ID: d.relaxed(ident)},
            ) from exc  # fmt: skip

    def _why(self, op: str, event: Mapping[str, Any]) -> str:
        if op == "rename":
            to = event.get("to") or {}
            return (f"collection renamed to {to.get('db')}.{to.get('coll')} at the source "
                    "(rename event)")  # fmt: skip
        if op == "dropDatabase":
            return "database dropped at the source (dropDatabase event)"
        if op == "invalidate":
            return "the change stream was invalidated (the collection was dropped or renamed)"
        return "collection dropped at the source (drop event)"
