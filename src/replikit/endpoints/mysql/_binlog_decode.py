"""Row events of one table -> ``(op, table, key, before, after)`` with canonical values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replikit.changes import Op
from replikit.endpoints.mysql._binlog_rows import RowsPlan, plan
from replikit.endpoints.mysql._binlog_stream import FastRows
from replikit.endpoints.mysql._binlog_values import (
    EMPTY_SET,
    OUT_OF_RANGE,
    ZERO_DATE,
    Converter,
    base_type,
    converter,
)
from replikit.endpoints.mysql._dialect import BadValue
from replikit.endpoints.mysql._values import ZeroDates
from replikit.errors import DataError, DecodeError
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Kind

__all__ = ["Row", "TableDecoder"]

Row = tuple[Op, TableId, Any, Any, Any]
_MISSING = object()
_DATES = (Kind.DATE, Kind.TIMESTAMP)


class TableDecoder:
    """Decodes one table's row events against its reflected schema.

    ``refresh`` returns the table's current definition; it is called when a table map names
    columns the schema lacks (a DDL the reader could not parse), once per table map.
    ``lenient`` names columns a schema change already reported without a definition (gone
    again by the time the reader reflected the table): their values pass through unconverted.
    Rows are decoded from the event bytes by a :class:`~._binlog_rows.RowsPlan` per table map
    where one exists, else (and with ``fast=False``) by mysql-replication; both give the same.
    """

    def __init__(
        self,
        table: TableSchema,
        *,
        zero_dates: ZeroDates,
        tinyint1_as_bool: bool,
        refresh: Callable[[TableId], TableSchema | None],
        fast: bool = True,
    ) -> None:
        self.fast = fast
        self._zero_dates = zero_dates
        self._tinyint1_as_bool = tinyint1_as_bool
        self._refresh = refresh
        self.lenient: set[str] = set()
        self.rebuild(table)

    def rebuild(self, table: TableSchema) -> None:
        """Follow a new definition of the table."""
        self.table = table
        self.id = table.id
        self.key = table.primary_key
        self.known = frozenset(table.column_names)
        self.columns = {c.name: c for c in table.columns}
        self.convs: list[tuple[str, Converter | None, bool]] = []
        for col in table.columns:
            conv = converter(col, tinyint1_as_bool=self._tinyint1_as_bool)
            special = col.type.kind in _DATES or base_type(col) == "set"
            if conv is not None or special:
                self.convs.append((col.name, conv, special))
        self._maps: set[int] = set()
        self._plans: dict[int, tuple[Any, RowsPlan | None]] = {}

    def forget_maps(self) -> None:
        """Check the next table maps again (their ids may now name other definitions)."""
        self._maps = set()
        self._plans = {}

    def collect(self, event: Any, op: Op, out: list[Row]) -> None:
        """Append the changes of a rows event to ``out``."""
        if self.fast:
            tid = event.table_id
            cached = self._plans.get(tid)  # checked and planned for this table map before
            if cached is not None and cached[0] is event.table_map[tid]:
                rows = None if cached[1] is None else cached[1].rows(event, op)
            else:
                rows = self.fast_rows(event, op)
            if rows is not None:
                out += rows
                return
        elif event.table_id not in self._maps:
            self._check(event)
        if event.__class__ is FastRows:
            event = event.library()
        tid = self.id
        key = self.key
        try:
            if op is Op.UPDATE:
                for row in event.rows:
                    before = self._image(row["before_values"], row["before_none_sources"])
                    after = self._image(row["after_values"], row["after_none_sources"])
                    out.append((op, tid, {k: before[k] for k in key}, before, after))
            elif op is Op.INSERT:
                for row in event.rows:
                    after = self._image(row["values"], row["none_sources"])
                    out.append((op, tid, {k: after[k] for k in key}, None, after))
            else:
                for row in event.rows:
                    before = self._image(row["values"], row["none_sources"])
                    out.append((op, tid, {k: before[k] for k in key}, before, None))
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"a row of table {tid} in the binlog has text that is not valid in its column's "
                f"character set ({exc.encoding}): {exc.reason}"
            ) from None

    def _check(self, event: Any) -> None:
        names = [c.name for c in event.table_map[event.table_id].columns]
        if any(not n or n.startswith("UNKNOWN_COL") for n in names):
            raise DecodeError(
                f"a row of table {self.id} in the binlog has no column names: it was logged "
                "while binlog_row_metadata was not FULL. Set binlog_row_metadata = FULL and "
                "run a new full load of this table"
            )
        if set(names) - self.known - self.lenient:
            table = self._refresh(self.id)
            if table is not None:
                self.rebuild(table)
            unknown = set(names) - self.known - self.lenient
            if unknown:
                raise DecodeError(
                    f"rows of table {self.id} in the binlog have columns "
                    f"{', '.join(sorted(unknown))} that the table does not have now; "
                    "restart CDC with a new full load of this table"
                )
        missing = [k for k in self.key if k not in names]
        if missing:
            raise DecodeError(
                f"rows of table {self.id} in the binlog lack key columns {', '.join(missing)}"
            )
        self._maps.add(event.table_id)

    def fast_rows(self, event: Any, op: Op) -> list[Row] | None:
        """The rows of ``event`` decoded from its bytes; None: only the library can.

        The event is left unread, so ``None`` leaves :meth:`collect`'s library path open.
        """
        if event.table_id not in self._maps:
            self._check(event)
        fast = self._plan(event)
        return None if fast is None else fast.rows(event, op)

    def _plan(self, event: Any) -> RowsPlan | None:
        table_map = event.table_map[event.table_id]
        cached = self._plans.get(event.table_id)
        if cached is not None and cached[0] is table_map:
            return cached[1]
        found = plan(
            table_map,
            self.columns,
            key=self.key,
            table=self.id,
            tinyint1_as_bool=self._tinyint1_as_bool,
            zero_dates=self._zero_dates.policy,
            errors="ignore" if getattr(event, "_ignore_decode_errors", False) else "strict",
            on_zero=self._zero,
        )
        self._plans[event.table_id] = (table_map, found)
        return found

    def _image(self, values: dict[str, Any], reasons: dict[str, str]) -> dict[str, Any]:
        name = ""
        try:
            for name, conv, special in self.convs:
                value = values.get(name, _MISSING)
                if value is None:
                    if not special:
                        continue
                    reason = reasons.get(name)
                    if reason == EMPTY_SET:
                        values[name] = ""
                    elif reason in OUT_OF_RANGE:
                        values[name] = self._zero(name)
                    continue
                if value is _MISSING or conv is None:
                    continue
                value = conv(value)
                values[name] = self._zero(name) if value is ZERO_DATE else value
        except (BadValue, ValueError, TypeError, ArithmeticError) as exc:
            raise DataError(
                f"changed value of {self.columns[name].type} column cannot be read: {exc}",
                table=str(self.id),
                column=name,
                key={k: values.get(k) for k in self.key},
            ) from None
        return values

    def _zero(self, column: str) -> Any:
        """A zero/partial date: NULL where the policy allows it (counted), else BadValue."""
        self._zero_dates.handle(str(self.id), self.columns[column], "0000-00-00")
        return None
