"""Referentially closed subsets of a database.

A :class:`Subset` names seed rows (``{"public.customer": "customer_id <= 10"}``) and the
child tables to follow. :func:`closure` starts from the seed rows and adds

* every **parent** row a selected row references, transitively, so that every foreign key
  among the selected tables resolves in the subset;
* on request, **child** rows that reference a seed row or a child row already taken
  (``follow_children=["public.rental"]``, at most ``limits[table]`` rows per table).
  Rows reached only as parents do not pull their children: a film reached through one
  rental does not pull every rental of that film.

Rows are keyed by the table's key (the whole row for a keyless table); a value asked for once
is never asked for again, so self-references and cycles (an employee's manager, Sakila's
``store`` <-> ``staff``) terminate. Every value is a bound parameter; the seed predicates are
the only SQL text taken from the caller, checked to parse as one boolean expression first.
Past ``row_cap`` rows the closure stops with a :class:`SubsetTooLargeError` naming the path
of foreign keys that grew it.

:func:`subset_batches` then reads the selected rows through the source's own full-load
reader, so the values are the canonical values any copy would move.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from replikit.endpoints.base import Endpoint
from replikit.errors import ConfigError, Error, TableNotFoundError
from replikit.pipeline.contracts import Batch, SupportsClose
from replikit.schema.model import ForeignKey, TableId, TableSchema
from replikit.validation._sql import Session, session

__all__ = ["Selected", "Subset", "SubsetTooLargeError", "closure", "subset_batches"]

_CHUNK = 400  # values per IN list: under SQLite's smallest host-parameter limit (999)
_SQLGLOT = {"postgres": "postgres", "mysql": "mysql", "sqlite": "sqlite", "duckdb": "duckdb"}

Seed = str | Mapping[str, Any]


class SubsetTooLargeError(ConfigError):
    """A subset would hold more rows than its ``row_cap``; the message names the path of
    foreign keys that grew it."""


@dataclass(frozen=True, slots=True)
class Subset:
    """Which rows a clone holds.

    Args:
        seeds: table -> the rows to start from: a SQL boolean expression in the source's
            dialect (``"customer_id <= 10"``), or ``{column: value}`` / ``{column: [values]}``
            (bound parameters).
        follow_children: tables whose rows referencing a seed (or followed child) row are
            taken too.
        limits: table -> most rows taken into it by following children.
        row_cap: most rows in the whole subset.
        unreached: tables no row was selected from: ``"empty"`` (created, no rows) or
            ``"exclude"`` (left out of the clone).
    """

    seeds: Mapping[str, Seed]
    follow_children: tuple[str, ...] = ()
    limits: Mapping[str, int] = field(default_factory=dict)
    row_cap: int = 100_000
    unreached: Literal["empty", "exclude"] = "empty"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("a subset needs at least one seed table: {'table': 'predicate'}")
        if self.unreached not in ("empty", "exclude"):
            raise ConfigError(f"unreached must be 'empty' or 'exclude', got {self.unreached!r}")
        if self.row_cap < 1:
            raise ConfigError(f"row_cap must be a positive number of rows, got {self.row_cap}")
        for name, limit in self.limits.items():
            if not isinstance(limit, int) or limit < 0:
                raise ConfigError(f"limits[{name!r}] must be a number of rows, got {limit!r}")

    def spec(self) -> dict[str, Any]:
        """A JSON-friendly form (cache keys)."""
        seeds = {
            k: v if isinstance(v, str) else sorted(_listed(v).items())
            for k, v in self.seeds.items()
        }
        return {
            "seeds": sorted((k, repr(v)) for k, v in seeds.items()),
            "children": sorted(self.follow_children),
            "limits": sorted(self.limits.items()),
            "row_cap": self.row_cap,
            "unreached": self.unreached,
        }


def _listed(seed: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {
        c: list(v) if isinstance(v, list | tuple | set | frozenset) else [v]
        for c, v in seed.items()
    }


@dataclass
class Selected:
    """The outcome of :func:`closure`: per table, the selected rows' keys."""

    tables: dict[TableId, TableSchema]
    keys: dict[TableId, set[tuple[Any, ...]]]
    paths: dict[TableId, str]

    def rows(self) -> int:
        """Rows selected in every table together."""
        return sum(len(k) for k in self.keys.values())

    def reached(self) -> list[TableSchema]:
        """The tables with at least one selected row."""
        return [t for tid, t in self.tables.items() if self.keys.get(tid)]


def _norm(value: Any) -> Any:
    """One form for a key value, whether a driver or a reader produced it."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str | bytes):
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return str(value)


def _row_key(table: TableSchema, columns: Sequence[str], row: Sequence[Any]) -> tuple[Any, ...]:
    names = table.key or table.column_names
    return tuple(_norm(row[columns.index(c)]) for c in names)


@dataclass
class _Step:
    table: TableId
    rows: list[tuple[Any, ...]]
    path: str
    downward: bool  # a seed or followed child: its children are followed too


class _Closure:
    """The breadth-first walk over foreign keys (one source session)."""

    def __init__(self, s: Session, tables: dict[TableId, TableSchema], subset: Subset) -> None:
        self.s = s
        self.tables = tables
        self.subset = subset
        self.keys: dict[TableId, set[tuple[Any, ...]]] = {t: set() for t in tables}
        self.paths: dict[TableId, str] = {}
        self.asked: dict[tuple[TableId, tuple[str, ...]], set[tuple[Any, ...]]] = {}
        self.children = {_resolve(tables, c) for c in subset.follow_children}
        self.limits = {_resolve(tables, t): n for t, n in subset.limits.items()}
        self.taken: dict[TableId, int] = {}
        self.total = 0

    # -- SQL ------------------------------------------------------------------------------
    def _text(self, sql: str) -> str:
        """``sql`` as literal text of a statement with parameters (``%`` doubled for the
        drivers whose marker is ``%s``: a ``%`` in a name or a predicate stays a ``%``)."""
        return sql.replace("%", "%%") if self.s.marker == "%s" else sql

    def _q(self, name: str) -> str:
        return self._text(self.s.quote(name))

    def _marks(self, n: int) -> str:
        return ", ".join([self.s.marker] * n)

    def _from(self, tid: TableId) -> str:
        cols = ", ".join(self._q(c) for c in self.tables[tid].column_names)
        name = ".".join(self._q(p) for p in (tid.schema, tid.name) if p)
        return f"SELECT {cols} FROM {name}"  # noqa: S608 - quoted identifiers

    def _fetch(self, sql: str, params: Sequence[Any], what: str) -> list[tuple[Any, ...]]:
        cur = self.s.conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            return [tuple(r) for r in cur.fetchall()]
        except Error:
            raise
        except Exception as exc:  # the driver's error, with the table and predicate named
            raise ConfigError(f"subset: reading {what} failed: {exc}") from exc
        finally:
            cur.close()

    def _matching(
        self, tid: TableId, cols: tuple[str, ...], values: list[tuple[Any, ...]], limit: int | None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``tid`` whose ``cols`` equal one of ``values`` (bound, in chunks)."""
        q, m = self._q, self.s.marker
        for i in range(0, len(values), _CHUNK):
            if limit is not None and limit <= 0:
                return
            chunk = values[i : i + _CHUNK]
            if len(cols) == 1:
                cond = f"{q(cols[0])} IN ({self._marks(len(chunk))})"
                params: list[Any] = [v[0] for v in chunk]
            else:
                one = "(" + " AND ".join(f"{q(c)} = {m}" for c in cols) + ")"
                cond = " OR ".join([one] * len(chunk))
                params = [x for v in chunk for x in v]
            tail = f" LIMIT {int(limit)}" if limit is not None else ""
            rows = self._fetch(f"{self._from(tid)} WHERE {cond}{tail}", params, str(tid))
            if limit is not None:
                limit -= len(rows)
            yield from rows

    # -- the walk -------------------------------------------------------------------------
    def run(self) -> Selected:
        queue: deque[_Step] = deque()
        for name, seed in self.subset.seeds.items():
            tid = _resolve(self.tables, name)
            rows = self._seed_rows(tid, seed)
            queue.append(_Step(tid, self._add(tid, rows, f"{tid} (seed)"), f"{tid} (seed)", True))
        while queue:
            step = queue.popleft()
            if not step.rows:
                continue
            queue.extend(self._parents(step))
            if step.downward:
                queue.extend(self._children(step))
        return Selected(self.tables, self.keys, self.paths)

    def _seed_rows(self, tid: TableId, seed: Seed) -> list[tuple[Any, ...]]:
        if isinstance(seed, str):
            check_predicate(seed, self.s.family, tid)
            sql = f"{self._from(tid)} WHERE ({self._text(seed)})"
            return self._fetch(sql, (), f"{tid} WHERE {seed}")
        table = self.tables[tid]
        conds, params = [], []
        for col, values in _listed(seed).items():
            if col not in table.column_names:
                raise ConfigError(
                    f"subset seed of {tid}: no column {col!r} "
                    f"(columns: {', '.join(table.column_names)})"
                )
            conds.append(f"{self._q(col)} IN ({self._marks(len(values))})")
            params += values
        where = " AND ".join(conds) or "1 = 1"
        return self._fetch(f"{self._from(tid)} WHERE {where}", params, f"{tid} seed")

    def _add(self, tid: TableId, rows: list[tuple[Any, ...]], path: str) -> list[tuple[Any, ...]]:
        """Keep the rows of ``tid`` not selected yet; check the row cap."""
        table = self.tables[tid]
        keys = self.keys[tid]
        new = []
        for row in rows:
            k = _row_key(table, table.column_names, row)
            if k not in keys:
                keys.add(k)
                new.append(row)
        if new:
            self.paths.setdefault(tid, path)
            self.total += len(new)
            if self.total > self.subset.row_cap:
                raise SubsetTooLargeError(
                    f"the subset would hold more than row_cap={self.subset.row_cap} rows: "
                    f"{tid} reached {len(keys)} rows along {path}. Narrow the seed, limit the "
                    f"children (limits={{'{tid}': 100}}), or raise row_cap"
                )
        return new

    def _values(
        self, step: _Step, cols: tuple[str, ...], target: tuple[TableId, tuple[str, ...]]
    ) -> list[tuple[Any, ...]]:
        """Values of ``cols`` in the step's rows, not NULL, not asked of ``target`` before."""
        names = self.tables[step.table].column_names
        idx = [names.index(c) for c in cols]
        asked = self.asked.setdefault(target, set())
        out = []
        for row in step.rows:
            v = tuple(row[i] for i in idx)
            n = tuple(_norm(x) for x in v)
            if None not in v and n not in asked:
                asked.add(n)
                out.append(v)
        return out

    def _parents(self, step: _Step) -> Iterator[_Step]:
        for fk in self.tables[step.table].foreign_keys:
            parent = fk.ref_table
            if parent not in self.tables:
                continue  # not cloned: the clone does not declare this key
            values = self._values(step, fk.columns, (parent, fk.ref_columns))
            if not values:
                continue
            rows = list(self._matching(parent, fk.ref_columns, values, None))
            path = f"{step.path} -> {parent} (parent, {_fk_name(step.table, fk)})"
            yield _Step(parent, self._add(parent, rows, path), path, False)

    def _children(self, step: _Step) -> Iterator[_Step]:
        for child in sorted(self.children):
            for fk in self.tables[child].foreign_keys:
                if fk.ref_table != step.table:
                    continue
                values = self._values(step, fk.ref_columns, (child, fk.columns))
                if not values:
                    continue
                limit = self.limits.get(child)
                left = None if limit is None else limit - self.taken.get(child, 0)
                rows = list(self._matching(child, fk.columns, values, left))
                path = f"{step.path} -> {child} (children, {_fk_name(child, fk)})"
                new = self._add(child, rows, path)
                self.taken[child] = self.taken.get(child, 0) + len(new)
                yield _Step(child, new, path, True)


def _fk_name(table: TableId, fk: ForeignKey) -> str:
    return f"{table.name}.{'+'.join(fk.columns)}"


def _resolve(tables: Mapping[TableId, TableSchema], name: str) -> TableId:
    """The cloned table called ``name`` (``schema.table``, or ``table`` in any schema)."""
    tid = TableId.parse(name)
    found = [t for t in tables if t == tid or (tid.schema is None and t.name == tid.name)]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(sorted(str(t) for t in tables)) or "none"
        raise TableNotFoundError(
            f"subset: no table {name!r} among the cloned tables ({known})", table=name
        )
    raise ConfigError(
        f"subset: {name!r} names {len(found)} tables ({', '.join(map(str, found))}); "
        "write schema.table"
    )


def check_predicate(predicate: str, family: str, table: TableId | str = "") -> None:
    """Refuse a seed predicate that is not one boolean SQL expression of the dialect.

    Raises:
        ConfigError: it does not parse, or it is more than an expression (another statement,
            a UNION...), naming the table and the parser's complaint.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    where = f"subset predicate for {table}" if table else "subset predicate"
    if not isinstance(predicate, str) or not predicate.strip():
        raise ConfigError(f"{where} is empty; write a SQL condition such as 'id <= 10'")
    try:
        text = f"SELECT 1 FROM t WHERE {predicate}"  # noqa: S608 - parsed, never run
        trees = sqlglot.parse(text, read=_SQLGLOT.get(family))
    except SqlglotError as exc:
        raise ConfigError(f"{where} does not parse: {predicate!r}: {exc}") from None
    tree = trees[0] if len(trees) == 1 else None
    if not isinstance(tree, exp.Select) or tree.args.get("where") is None or ";" in predicate:
        raise ConfigError(
            f"{where} is not one SQL condition: {predicate!r}; write a boolean expression "
            "such as 'customer_id <= 10'"
        )


def closure(source: Endpoint, tables: Sequence[TableSchema], subset: Subset) -> Selected:
    """Select the subset's rows among ``tables`` of ``source`` (see the module docstring)."""
    by_id = {t.id: t for t in tables}
    with session(source) as s:
        return _Closure(s, by_id, subset).run()


def subset_batches(
    source: Endpoint, selected: Selected | None, tables: Sequence[TableSchema]
) -> Iterator[Batch]:
    """The rows of ``tables`` (those ``selected`` holds; all when it is ``None``), as the
    source's full-load reader gives them, in batches per table."""
    reader = source.reader(list(tables))
    try:
        for table in reader.tables:
            keys = None if selected is None else selected.keys.get(table.id, set())
            if keys is not None and not keys:
                continue
            for unit in reader.units(table):
                for batch in reader.read(unit):
                    yield _kept(table, batch, keys)
    finally:
        if isinstance(reader, SupportsClose):
            reader.close()


def _kept(table: TableSchema, batch: Batch, keys: set[tuple[Any, ...]] | None) -> Batch:
    if keys is None:
        return batch
    rows = [r for r in batch.rows if _row_key(table, batch.columns, r) in keys]
    return Batch(batch.table, batch.columns, rows)
