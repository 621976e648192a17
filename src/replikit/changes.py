"""``Change``: one row change, the common currency of CDC readers, transforms and writers."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from replikit.positions import Position
from replikit.schema.model import Column, TableId

__all__ = ["Change", "Op", "SchemaChange", "TableId", "Transaction"]


class Op(enum.StrEnum):
    """What happened to the row."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True)
class Change:
    """One row change.

    ``key`` holds the key columns' values (before the change, for updates that move the key).
    ``before`` and ``after`` are the row images the source provides; a column absent from
    ``after`` is unchanged (e.g. PostgreSQL unchanged TOAST values) and must not be written.
    ``position`` points *after* this change; ``commit_ts`` and ``txid`` identify its source
    transaction. Full loads feed transforms with ``Op.INSERT`` changes that have no position.
    """

    op: Op
    table: TableId
    key: Mapping[str, Any] = field(default_factory=dict)
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    position: Position | None = None
    commit_ts: datetime | None = None
    txid: int | str | None = None


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A source table's columns changed (seen in the log before the first row of the new shape).

    ``added`` are new columns (portable types); ``dropped`` names removed columns; ``changed``
    names columns whose type, nullability or key membership changed. Readers report what the
    log shows; the task decides: a new nullable column is added to the target, anything else
    stops the table with this change's :attr:`description`.
    """

    table: TableId
    added: tuple[Column, ...] = ()
    dropped: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    description: str = ""
    #: columns renamed (old name, new name); not also in ``added`` / ``dropped``
    renamed: tuple[tuple[str, str], ...] = ()
    #: the new definitions of ``changed`` columns, when the reader knows them
    retyped: tuple[Column, ...] = ()

    @property
    def additive(self) -> bool:
        """Only nullable columns were added: the target can follow without losing anything."""
        return (
            bool(self.added)
            and not self.dropped
            and not self.changed
            and not self.renamed
            and all(c.nullable for c in self.added)
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    """The changes of one source transaction, in commit order.

    ``position`` points after the transaction's commit: resuming from it delivers the next
    transaction. CDC readers yield transactions; a checkpoint is only ever taken between them.
    ``schema_changes`` are column changes the log showed before this transaction's rows; they
    apply before its changes. A transaction may carry no changes (e.g. only a schema change).

    ``changes`` is a tuple, or for a transaction too large for memory a collection that reads
    them back from a spill file (:class:`replikit.pipeline.spill.SpilledChanges`): consumers
    iterate it (as often as they need) and take its ``len``, but do not index it.
    """

    changes: Collection[Change]
    position: Position
    commit_ts: datetime | None = None
    txid: int | str | None = None
    schema_changes: tuple[SchemaChange, ...] = ()

    def __len__(self) -> int:
        return len(self.changes)
