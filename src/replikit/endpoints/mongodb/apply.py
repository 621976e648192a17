"""Applying CDC transactions to a MongoDB target: :class:`MongoChangeWriter`.

Changes are written by ``_id`` (the primary key's value, or a subdocument of a composite
key), with the same documents as the full load (:class:`.target.Documents`):

* insert, or update with a full image: ``replaceOne({_id}, document, upsert=True)``;
* update with some columns: ``updateOne({_id}, {$set: fields})``; one that moves the key
  reads the old document, deletes it and upserts the merged one;
* delete: ``deleteOne({_id})``; truncate: ``deleteMany({})``.

Each table's operations go out as one ordered ``bulk_write``. ``batch=True`` reduces the
transactions to their net effect per key first (:func:`~replikit.pipeline.netchange.net_changes`).

**The checkpoint.** On a replica set or sharded cluster (MongoDB 4.0+) the operations and the
task's document in ``replikit_checkpoints`` (in the URL's database) are written in one
multi-document transaction: both commit or neither does. A standalone server has no
transactions: the data is written first and the checkpoint after it, so a crash in between
applies the same changes again on restart, which converges because every operation is
idempotent (upsert, delete-if-exists, ``$set``). ``transactions=`` forces either way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from replikit._failpoints import failpoint
from replikit.changes import Change, Op
from replikit.endpoints.mongodb import _documents as d
from replikit.endpoints.mongodb._connect import Client, driver, translated
from replikit.endpoints.mongodb._dialect import DIALECT
from replikit.endpoints.mongodb.reflect import RECORDS, type_to_dict
from replikit.endpoints.mongodb.target import Documents
from replikit.errors import ConfigError, DataError, SchemaError
from replikit.pipeline import apply_support
from replikit.pipeline.apply_support import ChangeWriterBase, Key, Plans, Txs
from replikit.pipeline.contracts import Checkpoint
from replikit.pipeline.netchange import TableNet, net_changes
from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.model import TableId

__all__ = ["CHECKPOINTS", "MongoChangeWriter"]

CHECKPOINTS = "replikit_checkpoints"


class _Table:
    """One target collection: its key (source names), documents and pending operations."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.docs = Documents(plan)
        self.label = str(plan.target_id)
        by_target = {cp.name: cp for cp in plan.columns}
        self.key_target, self.key = apply_support.apply_key(plan, by_target)
        self.order = tuple(cp.source.name for cp in plan.columns)

    def key_of(self, change: Change) -> Key:
        def missing(column: str) -> DataError:
            return DataError(f"change has no value for key column {column!r}", table=self.label)

        return apply_support.change_key(self.key, change, missing)

    def ident(self, key: Key) -> Any:
        return self.docs.ident(dict(zip(self.key, key, strict=True)))

    def full(self, image: Mapping[str, Any]) -> bool:
        return all(n in image for n in self.order)


class _Ops:
    """The bulk operations of one table, in order, and the moves that need a read first."""

    def __init__(self, t: _Table) -> None:
        self.t = t
        self.ops: list[Any] = []

    def truncate(self) -> None:
        self.ops.append(driver().DeleteMany({}))

    def delete(self, keys: Sequence[Key]) -> None:
        self.ops += [driver().DeleteOne({d.ID: self.t.ident(k)}) for k in keys]

    def upsert(self, images: Sequence[Mapping[str, Any]]) -> None:
        pymongo = driver()
        for image in images:
            doc = self.t.docs.document(image)
            self.ops.append(pymongo.ReplaceOne({d.ID: doc[d.ID]}, doc, upsert=True))

    def update(self, items: Sequence[tuple[Key, Mapping[str, Any]]], db: Any, session: Any) -> None:
        pymongo = driver()
        for old, values in items:
            new = tuple(values.get(k, v) for k, v in zip(self.t.key, old, strict=True))
            ident = self.t.ident(old)
            fields = self.t.docs.fields(values, dict(zip(self.t.key, old, strict=True)))
            if new == old:
                fields.pop(d.ID, None)
                for k in self.t.key_target:
                    fields.pop(k, None)
                if fields:
                    self.ops.append(pymongo.UpdateOne({d.ID: ident}, {"$set": fields}))
                continue
            # the key moves and only some columns are known: the rest is the old document's
            self.flush(db, session)
            coll = db[self.t.plan.target_id.name]
            found = coll.find_one({d.ID: ident}, session=session)
            if found is None:
                continue  # nothing to move: the row is not in the target
            image = self.t.docs.document({**_source_row(self.t, found), **values})
            coll.delete_one({d.ID: ident}, session=session)
            coll.replace_one({d.ID: image[d.ID]}, image, upsert=True, session=session)

    def flush(self, db: Any, session: Any) -> None:
        if not self.ops:
            return
        ops, self.ops = self.ops, []
        errors = driver().errors
        try:
            db[self.t.plan.target_id.name].bulk_write(ops, ordered=True, session=session)
        except errors.BulkWriteError as exc:
            first = (exc.details.get("writeErrors") or [{}])[0]
            index = int(first.get("index", 0))
            target = getattr(ops[index], "_filter", {}) if index < len(ops) else {}
            raise DataError(
                f"MongoDB refused a change: {first.get('errmsg', exc)}", table=self.t.label,
                key={d.ID: d.relaxed(target.get(d.ID))},
            ) from None  # fmt: skip


def _source_row(t: _Table, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A target document's fields by source column name (for a key move with a partial
    image: the columns the change does not carry keep the document's values)."""
    by_target = {cp.name: cp.source.name for cp in t.plan.columns}
    row: dict[str, Any] = {}
    ident = doc.get(d.ID)
    if len(t.key_target) == 1:
        row[by_target[t.key_target[0]]] = ident
    elif isinstance(ident, Mapping):
        row.update({by_target[k]: ident.get(k) for k in t.key_target})
    row.update({by_target[k]: v for k, v in doc.items() if k in by_target and k not in row})
    return row


class MongoChangeWriter(ChangeWriterBase):
    """Applies CDC transactions to MongoDB, checkpoint included (see the module docs)."""

    dialect = DIALECT
    foreign_keys_in_create = False

    def __init__(
        self, client: Client, default_schema: str | None, *, transactions: bool | None = None
    ) -> None:
        self._client = client
        #: the database tables without one land in, and where checkpoints are kept
        self.default_schema = default_schema
        self.transactions = transactions
        self._tables: dict[TableId, _Table] = {}
        self._created = False

    def _home(self) -> Any:
        if self.default_schema is None:
            raise ConfigError(
                "a MongoDB CDC target keeps its checkpoints in the URL's database: name one "
                "(mongodb://host/shop)"
            )
        return self._client.database(self.default_schema)

    def _run(self, work: Callable[[Any], None], doing: str) -> None:
        """``work(session)`` in one transaction where the deployment has them, else
        in order with ``session=None`` (the checkpoint last)."""
        use = self.transactions
        with translated(self._client, doing):
            if use is None:
                use = self.transactions = self._client.transactions()
            if not use:
                work(None)
                return
            self._control_collection()
            with self._client.get().start_session() as session:
                session.with_transaction(work)

    def _control_collection(self) -> None:
        """Create ``replikit_checkpoints`` outside of a transaction (MongoDB before 4.4
        cannot create a collection inside one)."""
        if self._created:
            return
        home = self._home()
        if CHECKPOINTS not in home.list_collection_names():
            with contextlib.suppress(driver().errors.CollectionInvalid):  # created meanwhile
                home.create_collection(CHECKPOINTS)
        self._created = True

    # -- checkpoints -----------------------------------------------------------------------
    def read_checkpoint(self, task: str) -> Checkpoint | None:
        """The stored checkpoint of ``task`` (``None``: none stored)."""
        with translated(self._client, "read the checkpoint from"):
            doc = self._home()[CHECKPOINTS].find_one({d.ID: task})
        if doc is None:
            return None
        stamp = doc.get("commit_ts")
        when = None if stamp is None else dt.datetime.fromisoformat(stamp)
        fields = ("start_position", "position", "phase", "loaded")
        row = (*(doc.get(f) for f in fields), when)
        return apply_support.checkpoint_from_row(task, row, table=CHECKPOINTS)

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on its own."""
        self._run(lambda s: self._store(checkpoint, s), "write the checkpoint to")

    def _store(self, checkpoint: Checkpoint, session: Any) -> None:
        task, start, position, phase, loaded, commit_ts = apply_support.checkpoint_values(
            checkpoint
        )
        doc = {
            d.ID: task,
            "start_position": start,
            "position": position,
            "phase": phase,
            "loaded": loaded,
            "commit_ts": None if commit_ts is None else commit_ts.isoformat(),
            "updated_at": dt.datetime.now(dt.UTC),
        }
        self._home()[CHECKPOINTS].replace_one({d.ID: task}, doc, upsert=True, session=session)

    def drop_control(self, task: str) -> None:
        """Forget ``task``'s checkpoint; drop the collection when no task is left."""
        with translated(self._client, "drop the checkpoint from"):
            coll = self._home()[CHECKPOINTS]
            coll.delete_one({d.ID: task})
            if coll.find_one() is None:
                coll.drop()

    # -- schema ----------------------------------------------------------------------------
    def add_columns(self, plan: TablePlan, columns: Sequence[ColumnPlan]) -> None:
        """Record the new columns in the table's record (documents need no DDL)."""
        if plan.target_id.schema is None:
            raise SchemaError(f"table {plan.target_id} has no database")
        added = [
            {"name": cp.name, "type": type_to_dict(cp.target.type.with_native(cp.target.sql)),
             "nullable": True}
            for cp in columns
        ]  # fmt: skip
        with translated(self._client, "record new columns of", table=str(plan.target_id)):
            records = self._client.database(plan.target_id.schema)[RECORDS]
            record = records.find_one({d.ID: plan.target_id.name})
            if record is not None:
                known = {c["name"] for c in record["columns"]}
                new = [c for c in added if c["name"] not in known]
                if new:
                    records.update_one({d.ID: plan.target_id.name},
                                       {"$push": {"columns": {"$each": new}}})  # fmt: skip
        self._tables.pop(plan.target_id, None)

    # -- apply -----------------------------------------------------------------------------
    def _apply(
        self, plans: Plans, transactions: Txs, checkpoint: Checkpoint | None, batch: bool
    ) -> None:
        tables = apply_support.tables_for(plans, transactions, self._tables, _Table)

        def work(session: Any) -> None:
            if batch:
                for piece in apply_support.pieces(transactions):
                    net = net_changes(
                        piece,
                        keys={tid: t.key for tid, t in tables.items()},
                        columns={tid: t.order for tid, t in tables.items()},
                    )
                    for group in net.groups:
                        for tid, ops in group.items():
                            self._net(tables[tid], ops, session)
            else:
                self._in_order(tables, transactions, session)
            if checkpoint is not None:
                self._store(checkpoint, session)
            failpoint("apply.before-commit")  # recovery tests crash here

        self._run(work, "apply changes to")

    def _db(self, t: _Table) -> Any:
        schema = t.plan.target_id.schema
        if schema is None:
            raise ConfigError(f"table {t.label} has no database")
        return self._client.database(schema)

    def _net(self, t: _Table, net: TableNet, session: Any) -> None:
        ops, db = _Ops(t), self._db(t)
        net.run(ops.truncate, ops.delete, ops.upsert, lambda items: ops.update(items, db, session))
        ops.flush(db, session)

    def _in_order(self, tables: Mapping[TableId, _Table], transactions: Txs, session: Any) -> None:
        current: _Ops | None = None
        for tx in transactions:
            for change in tx.changes:
                t = tables[change.table]
                if current is None or current.t is not t:
                    if current is not None:
                        current.flush(self._db(current.t), session)
                    current = _Ops(t)
                self._one(current, change, session)
        if current is not None:
            current.flush(self._db(current.t), session)

    def _one(self, ops: _Ops, change: Change, session: Any) -> None:
        t = ops.t
        if change.op is Op.TRUNCATE:
            ops.truncate()
            return
        if change.op is Op.INSERT:
            ops.upsert([change.after or {}])
            return
        old = t.key_of(change)
        if change.op is Op.DELETE:
            ops.delete([old])
            return
        after = change.after or {}
        if t.full(after):
            new = tuple(after[k] for k in t.key)
            if new != old:
                ops.delete([old])
            ops.upsert([after])
        elif after:
            ops.update([(old, after)], self._db(t), session)

    def close(self) -> None:
        """Forget the table appliers (the endpoint keeps the client)."""
        self._tables.clear()
