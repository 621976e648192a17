"""Full-load reading from MongoDB: ``_id`` ranges read in parallel, documents to rows.

A collection with more (estimated) documents than ``split_rows`` is cut into ``_id`` ranges
of about that many documents each, with bounds taken by walking the ``_id`` index
(``find().sort(_id).skip(n).limit(1)``). MongoDB compares ``_id`` values of different type
classes (numbers, strings, ObjectIds...) by class first and a range query only matches its
own class, so a collection whose smallest and largest ``_id`` differ in class is read as one
unit: a range would miss documents. Each unit is one cursor sorted by ``_id``.

A reader made with ``snapshot_at`` (a cluster time, ``(seconds, increment)``) reads every
collection as it was at that time: each of its queries, the bounds of the ranges too, is a
``find`` command with read concern ``{level: "snapshot", atClusterTime}`` (MongoDB 5.0+ on a
replica set or sharded cluster), so units read in parallel, in other threads or processes,
see one state (a reload at an exact change-stream position: ``cdc.reload_snapshot``).
MongoDB keeps that history for ``minSnapshotHistoryWindowInSeconds`` (300 s by default): a
read running longer fails with SnapshotTooOld, which says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

from typing_extensions import override

from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb._connect import Client, translated
from replikit.endpoints.mongodb._dialect import DIALECT
from replikit.endpoints.mongodb.reflect import Reflected
from replikit.errors import DataError, SchemaError
from replikit.pipeline.contracts import Batch, KeyRange, Reader, Unit
from replikit.schema.convert import Fidelity
from replikit.schema.findings import Finding
from replikit.schema.model import TableId, TableSchema

__all__ = ["MongoReader", "type_class"]

_CLASSES = {
    "int": "number",
    "long": "number",
    "double": "number",
    "decimal": "number",
    "string": "string",
    "symbol": "string",
}


def type_class(value: Any) -> str:
    """The class MongoDB compares a value in (numbers together, strings together)."""
    name = d.type_name(value)
    return _CLASSES.get(name, name.partition(".")[0])


class MongoReader(Reader):
    """Reads collections as tables (document or table mode, as reflected)."""

    dialect = DIALECT

    def __init__(
        self,
        client: Client,
        tables: Sequence[TableSchema],
        reflected: Reflected,
        *,
        batch_size: int = 1000,
        snapshot_at: tuple[int, int] | None = None,
    ) -> None:
        self._client = client
        self._tables = tuple(tables)
        self._by_id = {t.id: t for t in self._tables}
        self._reflected = reflected
        self.batch_size = batch_size
        #: the cluster time every read is at (``None``: each read sees the collection now)
        self.snapshot_at = snapshot_at

    @property
    @override
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        return self._tables

    def shape(self, table: TableId) -> d.TableShape:
        """How documents of ``table`` become rows."""
        try:
            return self._reflected.shapes[table]
        except KeyError:
            raise SchemaError(f"this reader was not made for table {table}") from None

    def source_findings(self) -> list[Finding]:
        """Columns of mixed BSON types in the sample: lossy, with the mix seen."""
        return [
            Finding(
                str(tid),
                column,
                "mixed",
                "json",
                Fidelity.LOSSY,
                why,
                kind="value",
                fix="read the collection in document mode (mode='document'), or clean the "
                "field's values to one type at the source",
            )
            for (tid, column), why in self._reflected.mixed.items()
            if tid in self._by_id
        ]

    @override
    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """One unit, or ``_id`` ranges of about ``split_rows`` documents."""
        rows = table.estimated_rows or 0
        if split_rows is None or rows <= split_rows:
            return [Unit(table.id)]
        coll = self._client.collection(table.id.schema, table.id.name)
        with translated(self._client, "split", table=str(table.id)):
            ends = [self._first_id(coll, 1), self._first_id(coll, -1)]
            if ends[0] is None or type_class(ends[0]) != type_class(ends[1]):
                return [Unit(table.id)]
            pieces = math.ceil(rows / split_rows)
            step = max(1, rows // pieces)
            bounds: list[Any] = []
            for i in range(1, pieces):
                found = list(self._find(coll, {}, {d.ID: 1}, direction=1, skip=i * step, limit=1))
                if found and (not bounds or found[0][d.ID] != bounds[-1]):
                    bounds.append(found[0][d.ID])
        edges: list[Any] = [None, *bounds, None]
        count = len(edges) - 1
        return [
            Unit(
                table.id,
                KeyRange(
                    (d.ID,),
                    None if lo is None else (lo,),
                    None if hi is None else (hi,),
                ),
                index=i,
                count=count,
            )
            for i, (lo, hi) in enumerate(itertools.pairwise(edges))
        ]

    @override
    def read(self, unit: Unit) -> Iterator[Batch]:
        """Stream the documents of ``unit`` as rows, in ``_id`` order."""
        table = self._table(unit.table)
        shape = self.shape(unit.table)
        coll = self._client.collection(table.id.schema, table.id.name)
        query = _range(unit.range)
        rows: list[list[Any]] = []
        with translated(self._client, "read", table=str(table.id)):
            for doc in self._find(coll, query, None, direction=1, batch_size=self.batch_size):
                rows.append(_row(shape, doc, table.id))
                if len(rows) >= self.batch_size:
                    yield Batch(table.id, shape.names, rows)
                    rows = []
        if rows:
            yield Batch(table.id, shape.names, rows)

    def close(self) -> None:
        """Close the client of an unpickled reader (in another process); the endpoint's own
        client is the endpoint's to close (its change streams may be open)."""
        if self._client.unpickled:
            self._client.close()

    def _first_id(self, coll: Any, direction: int) -> Any:
        found = list(self._find(coll, {}, {d.ID: 1}, direction=direction, limit=1))
        return found[0][d.ID] if found else None

    def _find(
        self,
        coll: Any,
        query: dict[str, Any],
        projection: dict[str, Any] | None,
        *,
        direction: int,
        skip: int = 0,
        limit: int = 0,
        batch_size: int | None = None,
    ) -> Iterator[Any]:
        """The documents of ``coll`` matching ``query``, sorted by ``_id`` in ``direction``:
        a plain ``find``, or at :attr:`snapshot_at` a ``find`` command with snapshot read
        concern (its cursor's ``getMore`` s read at the same time)."""
        if self.snapshot_at is None:
            cursor = coll.find(query, projection).sort(d.ID, direction)
            if skip:
                cursor = cursor.skip(skip)
            if limit:
                cursor = cursor.limit(limit)
            if batch_size:
                cursor = cursor.batch_size(batch_size)
            return iter(cursor)
        from bson.timestamp import Timestamp

        from replikit.endpoints.mongodb._connect import codec

        command: dict[str, Any] = {"find": coll.name, "filter": query, "sort": {d.ID: direction}}
        if projection is not None:
            command["projection"] = projection
        if skip:
            command["skip"] = skip
        if limit:
            command["limit"] = limit
            command["singleBatch"] = True
        if batch_size:
            command["batchSize"] = batch_size
        command["readConcern"] = {"level": "snapshot",
                                  "atClusterTime": Timestamp(*self.snapshot_at)}  # fmt: skip
        cursor = coll.database.cursor_command(
            command, read_preference=coll.read_preference, codec_options=codec()
        )
        return iter(cursor)

    def _table(self, tid: TableId) -> TableSchema:
        try:
            return self._by_id[tid]
        except KeyError:
            raise SchemaError(f"this reader was not made for table {tid}") from None


def _row(shape: d.TableShape, doc: Any, table: TableId) -> list[Any]:
    try:
        return shape.row(doc)
    except ValueError as exc:
        raise DataError(
            f"document cannot be read as a row: {exc}", table=str(table),
            key={d.ID: d.relaxed(doc.get(d.ID))},
        ) from exc  # fmt: skip


def _range(rng: KeyRange | None) -> dict[str, Any]:
    if rng is None:
        return {}
    cond: dict[str, Any] = {}
    if rng.lower is not None:
        cond["$gte"] = rng.lower[0]
    if rng.upper is not None:
        cond["$lt"] = rng.upper[0]
    return {d.ID: cond} if cond else {}
