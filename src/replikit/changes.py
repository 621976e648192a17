"""``Change``: one row change, the common currency of CDC readers, transforms and writers."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from replikit.positions import Position
from replikit.schema.model import TableId

__all__ = ["Change", "Op", "TableId", "Transaction"]


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
class Transaction:
    """The changes of one source transaction, in commit order.

    ``position`` points after the transaction's commit: resuming from it delivers the next
    transaction. CDC readers yield transactions; a checkpoint is only ever taken between them.
    """

    changes: tuple[Change, ...]
    position: Position
    commit_ts: datetime | None = None
    txid: int | str | None = None

    def __len__(self) -> int:
        return len(self.changes)
