"""MySQL/MariaDB rows into Arrow columns in bulk (the columnar full load).

The driver's text protocol hands each value over as a Python object (``int``, ``float``,
``str``, ``bytes``, ``Decimal``); the row path then makes canonical values of them one by one
(dates and timestamps parsed from their text, tinyint(1) checked to be 0/1) and the writer
builds Arrow arrays of those. Here a batch's columns go to Arrow directly: each column's
driver values into one array at C speed, then cast by Arrow (text -> date32 / timestamp,
0/1 -> bool). A batch where a cast fails (a zero date, a tinyint(1) holding 2) is converted
the row path's way (``slow``), so the zero-date policy and the errors naming the row are the
row path's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from replikit.endpoints._arrow import canonical_type
from replikit.endpoints.mysql._dialect import GEOMETRY_TYPES
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind

__all__ = ["MysqlArrow", "arrow_columns"]

Rows = Sequence[Sequence[Any]]
#: kinds read in bulk (TIME and ``other`` have text forms Arrow does not parse)
_KINDS = frozenset(
    {Kind.BOOL, Kind.INT, Kind.DECIMAL, Kind.FLOAT, Kind.STRING, Kind.TEXT, Kind.BYTES,
     Kind.DATE, Kind.TIMESTAMP, Kind.JSON, Kind.ENUM}
)  # fmt: skip


def _pyarrow() -> Any | None:
    try:
        import pyarrow
        import pyarrow.compute
    except ImportError:
        return None
    return pyarrow


class MysqlArrow:
    """One table's columns: canonical Arrow types, and driver rows -> record batches."""

    def __init__(self, pa: Any, table: TableSchema) -> None:
        self.pa = pa
        self.names = list(table.column_names)
        self.kinds = [c.type.kind for c in table.columns]
        self.types: list[Any] = [canonical_type(pa, c.type) for c in table.columns]

    def batch(self, rows: Rows, slow: Callable[[Rows], list[Sequence[Any]]]) -> Any:
        """``rows`` (driver values, the SELECT of the row path) as a record batch."""
        pa = self.pa
        columns = [[row[i] for row in rows] for i in range(len(self.names))]
        try:
            arrays = [self._array(i, values) for i, values in enumerate(columns)]
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return self._canonical(slow(rows))
        return pa.RecordBatch.from_arrays(arrays, names=self.names)

    def _array(self, i: int, values: list[Any]) -> Any:
        pa, kind, wanted = self.pa, self.kinds[i], self.types[i]
        if kind in (Kind.DATE, Kind.TIMESTAMP):  # CAST(c AS CHAR): MySQL's text
            text = pa.array(values, pa.string())
            if not pa.types.is_timestamp(wanted) or wanted.tz is None:
                return text.cast(wanted)
            return text.cast(pa.timestamp(wanted.unit)).cast(wanted)  # the session is UTC
        if kind is Kind.BOOL:
            ints = pa.array(values, pa.int64())
            if not pa.compute.all(pa.compute.is_in(ints.drop_null(), pa.array([0, 1]))).as_py():
                raise ValueError("a tinyint(1) value other than 0 and 1")
            return ints.cast(pa.bool_())
        if kind is Kind.DECIMAL and values and not isinstance(_first(values), str | type(None)):
            return pa.array(values, wanted)  # Decimal objects
        if kind is Kind.DECIMAL:
            return pa.array(values, pa.string()).cast(wanted)
        if kind in (Kind.STRING, Kind.TEXT, Kind.JSON, Kind.ENUM):
            return pa.array(values, pa.string())  # bytes here (a wrong charset) raise
        return pa.array(values, wanted)

    def _canonical(self, rows: list[Sequence[Any]]) -> Any:
        """Canonical Python rows (the row path's) as a record batch; a column Arrow cannot
        hold in its canonical type is its canonical text (see ``canonical_type``)."""
        pa = self.pa
        arrays = []
        for i, wanted in enumerate(self.types):
            values = [row[i] for row in rows]
            try:
                arrays.append(pa.array(values, wanted))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                arrays.append(pa.array([None if v is None else _text(v) for v in values]))
        return pa.RecordBatch.from_arrays(arrays, names=self.names)


def _first(values: list[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(" ")
    return value.isoformat() if isinstance(value, date) else str(value)


def arrow_columns(table: TableSchema) -> MysqlArrow | None:
    """The bulk Arrow reading of ``table``, or ``None`` (pyarrow missing, or a column of a
    kind read row by row: TIME, BIT, geometry, ``other``, arrays, UUID)."""
    pa = _pyarrow()
    if pa is None:
        return None
    for c in table.columns:
        base = c.type.native.lower().split("(")[0].split()[0] if c.type.native else ""
        if c.type.kind not in _KINDS or base == "bit" or base in GEOMETRY_TYPES:
            return None
        if canonical_type(pa, c.type) is None:
            return None
    return MysqlArrow(pa, table)
