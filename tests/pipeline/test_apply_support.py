"""The family-independent pieces of the change writers (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replikit.changes import Change, Op, Transaction
from replikit.errors import SchemaError
from replikit.pipeline.apply_support import checkpoint_from_row, checkpoint_values, units
from replikit.pipeline.contracts import Checkpoint
from replikit.positions import PgLsn, SqliteSeq
from replikit.schema.model import TableId

T, U = TableId("s", "t"), TableId("s", "u")


def test_units_keep_source_order_and_group_consecutive_truncates() -> None:
    ins = Change(Op.INSERT, T, after={"id": 1})
    txs = [
        Transaction((ins, Change(Op.TRUNCATE, T)), PgLsn(1)),
        Transaction((Change(Op.TRUNCATE, U), ins), PgLsn(2)),
        Transaction((Change(Op.TRUNCATE, U),), PgLsn(3)),
    ]
    got = list(units(txs))
    assert got[0] is ins
    assert [c.table for c in got[1]] == [T, U]  # one TRUNCATE statement for both
    assert got[2] is ins
    assert [c.table for c in got[3]] == [U]
    assert len(got) == 4


def test_checkpoint_row_round_trip() -> None:
    cp = Checkpoint(
        "t1",
        start=PgLsn(5),
        position=PgLsn(9),
        phase="full-load",
        loaded=frozenset({"b", "a"}),
        commit_ts=datetime(2026, 1, 2, tzinfo=UTC),
    )
    task, *row = checkpoint_values(cp)
    assert task == "t1" and row[3] == '["a", "b"]'
    assert checkpoint_from_row("t1", row, table="replikit_checkpoints") == cp
    bare = Checkpoint("t2", start=SqliteSeq(3))
    assert checkpoint_from_row("t2", checkpoint_values(bare)[1:], table="x") == bare


@pytest.mark.parametrize(
    "row", [(None, None, "weird", "[]", None), (None, None, "cdc", "not json", None)]
)
def test_damaged_checkpoint_row_names_the_table(row: tuple[object, ...]) -> None:
    with pytest.raises(SchemaError, match="replikit_checkpoints row of task 't'"):
        checkpoint_from_row("t", row, table="replikit_checkpoints")
