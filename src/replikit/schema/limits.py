"""Target limits as data, and the plan's findings for what exceeds them.

A table the target cannot create (too many columns, a row or a key too large) would fail at
DDL time, and a value the target cannot hold would fail at its row. The plan knows each
target's :class:`Limits` (every dialect has ``limits``; a connected writer may refine them
with the live server's settings, e.g. MySQL's ``max_allowed_packet``) and
:func:`limit_findings` reports what a plan exceeds, naming the limit, the table's number
and the fix:

* columns per table, index columns, a table's row and page-record size, a key's length
  whose DDL the server refuses: ``unsupported`` (the task does not start);
* a key or a value that only some values exceed (a PostgreSQL btree entry over 2,704 bytes,
  a text value over ``max_allowed_packet``): ``lossy``, rows holding such values are refused.

Identifier lengths are not here: they are each dialect's
:class:`~replikit.schema.names.IdentifierRules`, judged by
:func:`~replikit.schema.identifiers.name_findings`. The per-target numbers and how they
were checked against real servers are in docs/limits.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from replikit.schema.convert import ColumnPlan, Fidelity, TablePlan
from replikit.schema.findings import Finding
from replikit.schema.types import Kind, Type

__all__ = ["Limits", "RowSize", "Sizes", "limit_findings", "value_bytes"]

_DROP = "rk.transforms.drop_columns(frozenset({{{cols}}}), tables=frozenset({{{table!r}}}))"


@dataclass(frozen=True, slots=True)
class RowSize:
    """A size estimate: the total in bytes and each column's share (largest first)."""

    total: int
    columns: tuple[tuple[str, int], ...] = ()

    def largest(self, n: int = 3) -> list[str]:
        """The names of the ``n`` columns that take the most bytes."""
        ranked = sorted(self.columns, key=lambda c: -c[1])
        return [name for name, size in ranked[:n] if size > 0]


class Sizes(Protocol):
    """A target's storage model: how many bytes a planned table, row or key takes."""

    def row(self, plan: TablePlan) -> RowSize | None:
        """The row size the server checks at CREATE TABLE (``None``: no such check)."""
        ...

    def record(self, plan: TablePlan) -> RowSize | None:
        """The largest record on a data page (``None``: no such check)."""
        ...

    def key(self, plan: TablePlan, columns: Sequence[str], *, unique: bool) -> int | None:
        """The largest key entry of an index on ``columns`` (``None``: unbounded or unknown)."""
        ...


class _NoSizes:
    """No storage model: only counts and value sizes are checked."""

    def row(self, plan: TablePlan) -> RowSize | None:
        return None

    def record(self, plan: TablePlan) -> RowSize | None:
        return None

    def key(self, plan: TablePlan, columns: Sequence[str], *, unique: bool) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class Limits:
    """What one target can create and hold (``None``: no limit the plan checks).

    Attributes:
        dialect: the target's name, for messages (``"MariaDB/InnoDB"``...).
        max_columns: columns per table.
        min_columns: the fewest columns a table can have (MySQL, SQLite, DuckDB: 1; a
            PostgreSQL table may have none).
        max_row_bytes: the row the server checks at CREATE TABLE, large objects counted by
            their in-row pointer (MySQL: 65,535 bytes), per :attr:`sizes`.
        max_record_bytes: the largest record on a data page (InnoDB: less than half a page,
            8,125 bytes with 16 KiB pages), per :attr:`sizes`.
        max_index_key_bytes: the longest key entry of an index.
        max_index_columns: columns per index.
        max_value_bytes: the largest value a write can carry.
        value_limit: what sets ``max_value_bytes`` (``"max_allowed_packet"``...).
        value_fix: how to raise it, when the target can (``""``: it cannot).
        key_per_value: ``True``: a key entry over the limit is refused row by row
            (PostgreSQL: lossy); ``False``: the DDL is refused (MySQL: unsupported).
        long_unique: unique keys over the key limit are enforced through a hash (MariaDB).
        long_index_prefix: a one-column plain index over the key limit is shortened to a
            prefix by the server (MySQL, MariaDB) rather than refused.
        foreign_keys: the target creates foreign keys (``False``: DuckDB, which enforces
            them and cannot defer or add them after the load; MongoDB, which has none; the
            plan says so, lossy).
        no_foreign_keys: why, for the plan's finding.
        sizes: the storage model the byte limits are judged with.
    """

    dialect: str
    max_columns: int | None = None
    min_columns: int = 0
    max_row_bytes: int | None = None
    max_record_bytes: int | None = None
    max_index_key_bytes: int | None = None
    max_index_columns: int | None = None
    max_value_bytes: int | None = None
    value_limit: str = "the largest value"
    value_fix: str = ""
    key_per_value: bool = False
    long_unique: bool = False
    long_index_prefix: bool = False
    foreign_keys: bool = True
    #: why the target creates no foreign keys (with ``foreign_keys=False``)
    no_foreign_keys: str = "enforces foreign keys at once and cannot add them after the load"
    sizes: Sizes = field(default_factory=_NoSizes, compare=False, repr=False)


# -- value sizes --------------------------------------------------------------------------
_FIXED_BYTES = {
    Kind.BOOL: 1,
    Kind.DATE: 4,
    Kind.TIME: 12,
    Kind.TIMESTAMP: 12,
    Kind.UUID: 16,
    Kind.INTERVAL: 64,
    Kind.ENUM: 1024,
}


def value_bytes(t: Type) -> int | None:
    """The most bytes a value of portable type ``t`` can take (UTF-8 for text);
    ``None``: unbounded (bounded only by the database it comes from)."""
    if t.kind in (Kind.INT, Kind.FLOAT):
        return (t.bits or 64) // 8 + 1
    if t.kind is Kind.DECIMAL:
        return None if t.precision is None else t.precision + 2
    if t.kind is Kind.STRING:
        return None if t.length is None else 4 * t.length
    if t.kind is Kind.BYTES:
        return t.length
    return _FIXED_BYTES.get(t.kind)


def _mib(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20:,} MiB"
    return f"{n:,} bytes"


# -- findings ----------------------------------------------------------------------------
def limit_findings(
    plans: Sequence[TablePlan], limits: Limits, source: Limits | None = None
) -> list[Finding]:
    """Findings for every limit of ``limits`` that ``plans`` exceed.

    ``source`` is the source's limits: a value of an unbounded type (text, bytes, JSON) is at
    most the source's ``max_value_bytes``, so values can exceed the target's only when that
    is larger (or unknown).
    """
    out: list[Finding] = []
    for plan in plans:
        out += _columns(plan, limits)
        out += _row(plan, limits)
        out += _keys(plan, limits)
        out += _values(plan, limits, source)
        out += _foreign_keys(plan, limits)
    return out


def _foreign_keys(plan: TablePlan, limits: Limits) -> list[Finding]:
    """A lossy finding per foreign key a target that creates none leaves out."""
    if limits.foreign_keys:
        return []
    return [
        _finding(
            plan,
            f"foreign key ({', '.join(fk.columns)}) to {fk.ref_table} is not created: "
            f"{limits.dialect} {limits.no_foreign_keys}; every row arrives, the constraint "
            "does not",
            "keep the constraint in the source or the application, or exclude the table",
            Fidelity.LOSSY,
        )
        for fk in plan.target_schema.foreign_keys
    ]


def _finding(
    plan: TablePlan, reason: str, fix: str, fidelity: Fidelity = Fidelity.UNSUPPORTED
) -> Finding:
    return Finding.about(str(plan.source.id), reason, kind="limit", fix=fix, fidelity=fidelity)


def _drop(plan: TablePlan, names: Sequence[str], *, more: bool = False) -> str:
    cols = ", ".join([repr(n) for n in names] + (["..."] if more else []))
    return _DROP.format(cols=cols, table=str(plan.source.id))


def _columns(plan: TablePlan, limits: Limits) -> list[Finding]:
    n, top = len(plan.columns), limits.max_columns
    if n < limits.min_columns:
        return [
            _finding(
                plan,
                f"the table has {n:,} columns and {limits.dialect} needs at least "
                f"{limits.min_columns:,} (limit: columns per table >= {limits.min_columns:,}); "
                f"CREATE TABLE {plan.target_id} would fail and its rows could not be held",
                "exclude the table (Mappings().exclude(...)), or give it a column in the "
                "source (ALTER TABLE ... ADD COLUMN)",
            )
        ]
    if top is None or n <= top:
        return []
    extra = [c.source.name for c in plan.columns[top:]]
    drop = _drop(plan, extra[:3], more=len(extra) > 3)
    return [
        _finding(
            plan,
            f"the table has {n:,} columns and {limits.dialect} takes at most {top:,} "
            f"columns per table (limit: columns per table = {top:,}); "
            f"CREATE TABLE {plan.target_id} would fail",
            f"leave at least {n - top:,} columns out, e.g. the last ones: transforms=[{drop}]; "
            "or split the table into two tasks that each leave out a different part",
        )
    ]


def _row(plan: TablePlan, limits: Limits) -> list[Finding]:
    checks = (
        (limits.max_row_bytes, limits.sizes.row(plan), "row size (large objects not counted)"),
        (limits.max_record_bytes, limits.sizes.record(plan), "record size on a data page"),
    )
    for top, size, what in checks:
        if top is not None and size is not None and size.total > top:
            big = size.largest()
            overrides = ", ".join(f"'{plan.source.id}.{c}': 'longtext'" for c in big[:2])
            return [
                _finding(
                    plan,
                    f"a row takes up to {size.total:,} bytes and {limits.dialect} allows "
                    f"at most {top:,} (limit: {what} = {top:,} bytes); largest columns: "
                    f"{', '.join(big)}; CREATE TABLE {plan.target_id} would fail",
                    "store the largest columns as large objects with a type override "
                    f"(TaskSettings(type_overrides={{{overrides}}})), leave columns out "
                    f"(transforms=[{_drop(plan, big)}]), or split the table",
                )
            ]
    return []


def _indexes(plan: TablePlan) -> Iterator[tuple[str, tuple[str, ...], bool, bool]]:
    """(label, columns, unique, primary) of every plain-column key and index."""
    schema = plan.target_schema
    if schema.primary_key:
        yield "primary key", schema.primary_key, True, True
    for u in schema.unique:
        yield f"unique key ({', '.join(u)})", u, True, False
    for i in schema.indexes:
        if not i.expressions and not i.where and i.columns:
            yield f"index {i.name}", i.columns, i.unique, False


def _keys(plan: TablePlan, limits: Limits) -> list[Finding]:
    out: list[Finding] = []
    names = {c.name: c.source.name for c in plan.columns}
    for label, columns, unique, primary in _indexes(plan):
        source_cols = [names.get(c, c) for c in columns]
        top_n = limits.max_index_columns
        if top_n is not None and len(columns) > top_n:
            out.append(
                _finding(
                    plan,
                    f"{label} has {len(columns)} columns and {limits.dialect} takes at most "
                    f"{top_n} per index (limit: columns per index = {top_n})",
                    f"leave columns of the key out (transforms=[{_drop(plan, source_cols)}])",
                )
            )
            continue
        out += _key_length(plan, limits, label, columns, source_cols, unique, primary)
    return out


def _key_length(
    plan: TablePlan,
    limits: Limits,
    label: str,
    columns: tuple[str, ...],
    source_cols: list[str],
    unique: bool,
    primary: bool,
) -> list[Finding]:
    top = limits.max_index_key_bytes
    if top is None:
        return []
    size = limits.sizes.key(plan, columns, unique=unique)
    if limits.key_per_value:
        if size is not None and size <= top:
            return []
        how = "can take more" if size is None else f"can take up to {size:,} bytes"
        return [
            _finding(
                plan,
                f"{label}: a key entry {how} and {limits.dialect} refuses entries over "
                f"{top:,} bytes (limit: index key size = {top:,} bytes); rows whose key "
                "values are that long are refused",
                "keep key values short in the source, or set a type override to a bounded "
                f"type (e.g. 'varchar(n)') for {', '.join(source_cols)}",
                Fidelity.LOSSY,
            )
        ]
    if size is None or size <= top:
        return []
    hashed = unique and limits.long_unique
    prefixed = not unique and len(columns) == 1 and limits.long_index_prefix
    if not primary and (hashed or prefixed):
        return []  # the server enforces it through a hash, or indexes a prefix
    return [
        _finding(
            plan,
            f"{label} takes up to {size:,} bytes per key and {limits.dialect} allows at most "
            f"{top:,} (limit: index key length = {top:,} bytes); the key cannot be created",
            "set a type override to a shorter type for "
            f"{', '.join(source_cols)} (TaskSettings(type_overrides={{...: 'varchar(n)'}})), "
            "or leave key columns out",
        )
    ]


def _values(plan: TablePlan, limits: Limits, source: Limits | None) -> list[Finding]:
    top = limits.max_value_bytes
    if top is None:
        return []
    ceiling = source.max_value_bytes if source is not None else None
    over: list[ColumnPlan] = []
    for c in plan.columns:
        most = value_bytes(c.source.type)
        if most is None:
            most = ceiling  # a source of unknown bounds (a custom reader) is not judged
        if most is not None and most > top:
            over.append(c)
    return [
        Finding.about(
            str(plan.source.id),
            f"values can be larger than {_mib(top)} ({limits.dialect}: {limits.value_limit} = "
            f"{_mib(top)}); writing a row that holds a larger value fails",
            kind="limit",
            fix=" or ".join(
                x for x in (limits.value_fix, f"keep values of {c.source.name} smaller") if x
            ),
            column=c.source.name,
            fidelity=Fidelity.LOSSY,
        )
        for c in over
    ]
