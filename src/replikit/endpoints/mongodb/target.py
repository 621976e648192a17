"""Full-load writing into MongoDB: rows become documents, bulk inserts of bounded batches.

The primary key becomes ``_id`` (its one value, or a subdocument of a composite key in key
order); the other columns are top-level fields, values adapted by the plan
(:mod:`._dialect`: Decimal128, UTC dates, binaries, embedded JSON). A table without a key
gets ObjectIds (it can be loaded, not replicated). A document-mode table read from MongoDB
(``_id``, ``_doc``) is written back as its documents. Documents go out with
``insert_many(ordered=False)`` in batches of ``write_batch``; a document MongoDB refuses
(a duplicate key, over 16 MiB) is a :class:`~replikit.DataError` naming the table and key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from typing_extensions import override

from replikit.endpoints.mongodb import _ddl
from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb._connect import Client, driver, translated
from replikit.endpoints.mongodb._dialect import DIALECT, MAX_DOCUMENT
from replikit.endpoints.mongodb.reflect import RECORDS
from replikit.errors import ConfigError, DataError, Error, SchemaError
from replikit.pipeline.contracts import Batch, SupportsPrepare, Writer, table_errors
from replikit.schema.convert import ColumnPlan, TablePlan

__all__ = ["MODES", "Documents", "MongoWriter"]

MODES = ("drop-and-create", "create", "truncate", "do-nothing")


class Documents:
    """How rows of one plan become documents (shared by the loader and the applier)."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.table = str(plan.target_id)
        self.whole = _ddl.document_mode(plan)
        self.key = plan.target_schema.key
        self._cols: dict[str, ColumnPlan] = {}

    def column(self, name: str) -> ColumnPlan:
        """The plan of the column rows call ``name`` (a source name)."""
        cp = self._cols.get(name)
        if cp is None:
            cp = self._cols[name] = self.plan.planned_column(name)
        return cp

    def fields(
        self, image: Mapping[str, Any], key: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``image`` (source column names) as target field names and adapted values."""
        out: dict[str, Any] = {}
        for name, value in image.items():
            cp = self.column(name)
            adapt = cp.target.adapt
            try:
                out[cp.name] = value if value is None or adapt is None else adapt(value)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise DataError.unwritable(value, exc, table=self.table, column=cp.name,
                                           key=key or self._shown(image)) from exc  # fmt: skip
        return out

    def document(self, image: Mapping[str, Any]) -> dict[str, Any]:
        """The document of a full row; one MongoDB could not hold (over 16 MiB, or values
        BSON cannot encode) is a :class:`~replikit.DataError` naming its key, on every
        server (some wire-compatible servers do not check the size)."""
        if self.whole:
            doc = self._whole(image)
        else:
            fields = self.fields(image)
            doc = d.document_of(fields, self.key) if self.key else fields
        if _maybe_large(doc):
            bad = bad_document([doc])
            if bad is not None:
                raise DataError(bad[1], table=self.table, key={"_id": d.relaxed(bad[0])})
        return doc

    def ident(self, key: Mapping[str, Any]) -> Any:
        """The ``_id`` of the document whose key columns (source names) hold ``key``."""
        if self.whole:
            return d.from_canonical(str(key[self._source(d.ID)]))
        fields = self.fields(key)
        if len(self.key) == 1:
            return fields[self.key[0]]
        return {k: fields[k] for k in self.key}

    def _whole(self, image: Mapping[str, Any]) -> dict[str, Any]:
        text = image[self._source(d.DOC)]
        try:
            doc = d.from_canonical(str(text))
        except ValueError as exc:
            raise DataError(f"_doc is not Extended JSON: {exc}", table=self.table,
                            key=self._shown(image)) from exc  # fmt: skip
        if not isinstance(doc, dict):
            raise DataError("_doc is not a document", table=self.table, key=self._shown(image))
        return doc

    def _source(self, target: str) -> str:
        for cp in self.plan.columns:
            if cp.name == target or cp.source.name == target:
                return cp.source.name
        raise SchemaError(f"table {self.table} has no column {target}")

    def _shown(self, image: Mapping[str, Any]) -> dict[str, Any]:
        names = [cp.source.name for cp in self.plan.columns if cp.name in self.key]
        return {n: image.get(n) for n in names} if names else {}


class MongoWriter(Writer, SupportsPrepare):
    """Creates, truncates or keeps collections, loads documents, then creates indexes."""

    dialect = DIALECT
    foreign_keys_in_create = False

    def __init__(
        self, client: Client, default_schema: str | None, *, write_batch: int = 1000
    ) -> None:
        self._client = client
        #: the database a table id without one lands in (the URL's)
        self.default_schema = default_schema
        self.write_batch = write_batch

    def close(self) -> None:
        """Close the client of an unpickled writer (in another process); the endpoint's own
        client is the endpoint's to close."""
        if self._client.unpickled:
            self._client.close()

    def _db(self, plan: TablePlan) -> Any:
        if plan.target_id.schema is None:
            raise ConfigError(
                f"table {plan.target_id} has no database: name one in the URL "
                "(mongodb://host/shop) or map the table to one (Mappings.rename_schema)"
            )
        return self._client.database(plan.target_id.schema)

    def ddl(self, plans: Sequence[TablePlan]) -> list[str]:
        """The commands ``prepare("drop-and-create")`` and ``finish`` run, as shell text."""
        out: list[str] = []
        for plan in plans:
            db = f"use {plan.target_id.schema}"
            if not out or out[-1] != db:
                out.append(db)
            out += [str(c) for c in _ddl.drop(plan) + _ddl.create(plan)]
            out += [str(c) for c in _ddl.index_commands(plan)]
        return out

    @override
    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """``drop-and-create``, ``create`` (refused for an existing collection),
        ``truncate`` or ``do-nothing`` (a missing collection is created)."""
        if mode not in MODES:
            raise ConfigError(f"unknown table preparation mode {mode!r}; use one of {MODES}")
        errors: dict[str, BaseException] = {}
        for plan in plans:
            try:
                with translated(self._client, "prepare", table=str(plan.target_id)):
                    db = self._db(plan)
                    for command in self._commands(db, plan, mode):
                        command.run(db)
            except Error as exc:
                errors[str(plan.target_id)] = exc
        if errors:
            raise table_errors(errors, f"MongoDB {mode}", len(plans))

    @staticmethod
    def _commands(db: Any, plan: TablePlan, mode: str) -> list[_ddl.Command]:
        name = plan.target_id.name
        _refuse_id_column(plan)
        exists = name in db.list_collection_names()
        if mode == "drop-and-create":
            return _ddl.drop(plan) + _ddl.create(plan)
        if exists and mode == "create":
            raise SchemaError(f"collection {plan.target_id} already exists")
        if not exists:
            return _ddl.create(plan)
        record = db[RECORDS].find_one({d.ID: name})
        key = list(plan.target_schema.key)
        if record is not None and list(record.get("key", [])) != key:
            raise SchemaError(
                f"collection {plan.target_id} holds a table keyed by {record.get('key')}, "
                f"not {key}; use drop-and-create or map the table elsewhere"
            )
        return _ddl.truncate(plan) if mode == "truncate" else []

    @override
    def load(self, plan: TablePlan, batches: Iterable[Batch]) -> int:
        """Insert the rows as documents, ``write_batch`` at a time, unordered."""
        docs = Documents(plan)
        with translated(self._client, "write", table=str(plan.target_id)):
            coll = self._db(plan)[plan.target_id.name]
        total = 0
        pending: list[dict[str, Any]] = []
        for batch in batches:
            for row in batch.rows:
                pending.append(docs.document(dict(zip(batch.columns, row, strict=True))))
                if len(pending) >= self.write_batch:
                    total += self._insert(coll, docs, pending)
                    pending = []
        if pending:
            total += self._insert(coll, docs, pending)
        return total

    def _insert(self, coll: Any, docs: Documents, pending: list[dict[str, Any]]) -> int:
        import bson

        errors = driver().errors
        try:
            with translated(self._client, "write", table=docs.table):
                try:
                    coll.insert_many(pending, ordered=False)
                except errors.BulkWriteError as exc:
                    raise _refused(docs, pending, exc.details) from None
        except DataError:
            raise
        except (Error, bson.errors.BSONError, OverflowError) as exc:
            bad = bad_document(pending)
            if bad is not None:
                raise DataError(bad[1], table=docs.table, key={"_id": d.relaxed(bad[0])}) from exc
            raise
        return len(pending)

    @override
    def finish(self, plans: Sequence[TablePlan]) -> None:
        """Create the unique keys and indexes of each table."""
        errors: dict[str, BaseException] = {}
        for plan in plans:
            try:
                with translated(self._client, "create an index of", table=str(plan.target_id)):
                    db = self._db(plan)
                    for command in _ddl.index_commands(plan):
                        command.run(db)
            except Error as exc:
                errors[str(plan.target_id)] = exc
        if errors:
            raise table_errors(errors, "MongoDB indexes", len(plans))


def _refuse_id_column(plan: TablePlan) -> None:
    """A column called ``_id`` that is not the whole key would overwrite the document's
    ``_id`` (the key): refused before anything is created."""
    key = plan.target_schema.key
    if _ddl.document_mode(plan) or key == (d.ID,) or not key:
        return
    if any(cp.name == d.ID for cp in plan.columns):
        raise SchemaError(
            f"table {plan.target_id} has a column _id that is not its key ({', '.join(key)}): "
            "in MongoDB the key is _id. Rename the column (Mappings.rename_column) or drop it "
            "with a transform"
        )


def _refused(
    docs: Documents, pending: list[dict[str, Any]], details: Mapping[str, Any]
) -> DataError:
    errors = list(details.get("writeErrors", []))
    first = errors[0] if errors else {}
    index = int(first.get("index", 0))
    ident = pending[index].get(d.ID) if index < len(pending) else None
    more = f" ({len(errors)} documents of this batch refused)" if len(errors) > 1 else ""
    return DataError(
        f"MongoDB refused a document: {first.get('errmsg', 'write error')}{more}",
        table=docs.table,
        key={"_id": d.relaxed(ident)},
    )


#: documents whose strings and binaries add up to this many bytes are measured exactly
_MEASURE = 1024 * 1024


def _maybe_large(doc: Mapping[str, Any]) -> bool:
    size = 0
    for value in doc.values():
        if isinstance(value, Mapping | list):
            return True
        if isinstance(value, str | bytes):
            size += len(value)
    return size * 4 >= _MEASURE  # a str of n characters is at most 4n bytes of UTF-8


def bad_document(pending: Iterable[Mapping[str, Any]]) -> tuple[Any, str] | None:
    """The ``_id`` of the first document BSON cannot encode or MongoDB cannot hold, and why."""
    import bson

    from replikit.endpoints.mongodb._connect import codec

    for doc in pending:
        try:
            size = len(bson.encode(doc, codec_options=codec()))
        except (bson.errors.BSONError, OverflowError) as exc:
            return doc.get(d.ID), f"document cannot be encoded as BSON: {exc}"
        if size > MAX_DOCUMENT:
            return doc.get(d.ID), f"document is larger than MongoDB's 16 MiB ({size} bytes)"
    return None
