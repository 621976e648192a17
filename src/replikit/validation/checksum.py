"""Key-segment checksums computed inside PostgreSQL and MySQL/MariaDB.

Where both sides are one of these servers and every compared column has a canonical text
form both can produce (below), each side computes, per segment of the key, ``count(*)`` and
the sum of a 60-bit digest of every row's canonical text (the first 15 hex digits of its
md5; sums are exact: PostgreSQL sums bigints as numeric, MySQL as DECIMAL), in one
``GROUP BY`` scan.
Segments whose three numbers agree are equal; a dirty segment is split again (bisected)
until it is small enough to compare row by row. Only dirty segments' rows leave the servers.

The row text (the contract of ``shared/research/validation.md`` §2): ``concat_ws(chr(31),
null mask, token, ...)`` where the mask has one ``0``/``1`` per column (``concat_ws`` skips
NULLs) and each token is the value's canonical text:

==============================  ===============================  ============================
kind                            PostgreSQL                       MySQL / MariaDB
==============================  ===============================  ============================
int, bool                       ``x::text`` (bool as ``0/1``)    ``CAST(x AS CHAR)``
decimal (same scale both sides) ``x::text``                      ``CAST(x AS CHAR)``
text, varchar, char, enum       ``x::text`` (char unpadded)      ``CONVERT(x USING utf8mb4)``
date                            ``x::text`` (ISO)                ``CAST(x AS CHAR)``
timestamp (UTC sessions)        ``to_char(.. US)``               ``DATE_FORMAT(.. %f)``
uuid                            ``x::text``                      ``LOWER(x)``
bytes                           ``encode(x, 'hex')``             ``LOWER(HEX(x))``
anything, PostgreSQL to         ``x::text`` (same native type)
PostgreSQL
==============================  ===============================  ============================

Other columns (floats, JSON, times across engines...) have no common server-side form: the
table is then compared row by row. The checksum is a pre-filter: a segment the servers render
differently only costs a row comparison (the Python canonical form decides), never a miss,
because equal checksums need equal text for every row, and each rendering is injective.

PostgreSQL to PostgreSQL (14 or later, every column of the same native type) needs no text:
each row is hashed as a record (``hash_record_extended``, each type's own hash function; the
types whose equality is looser than the canonical form, floats, intervals, JSON, unbounded
numerics, enter as their text, strings in the "C" collation), mixed by ``hashint8extended``
(the record hash is linear in its columns' hashes). A third of the cost of hashing the row's
text. The planner is told not to sort (it takes each key for a group of its own).

A table of many segments is cut into key ranges (``parallel_tables`` left over by the tables
running at once) checksummed and bisected at once, each on its own connections, as units of
the task's executor (threads by default; a process pool or a Dask cluster gets them pickled).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from replikit.endpoints.base import Endpoint
from replikit.errors import Error
from replikit.pipeline.contracts import KeyRange
from replikit.schema.model import TableSchema
from replikit.schema.types import Kind, Type
from replikit.validation._sql import Session, session

if TYPE_CHECKING:
    from replikit.validate import _Setup

__all__ = ["Outcome", "compare"]

log = logging.getLogger("replikit.validate")

_FAMILIES = ("postgres", "mysql")
#: rows per segment at the first level, and the largest dirty segment compared row by row
SEGMENT_ROWS = 10_000
LEAF_ROWS = 1_000
FANOUT = 64
#: first-level segments per key range compared at once (fewer: the table is not cut)
CHUNK_SEGMENTS = 8
_GROUP = 80  # arguments per concat (PostgreSQL functions take at most 100)


@dataclass
class Outcome:
    """Rows proven equal by checksums, and the key ranges left to compare row by row
    (``None``: the whole table)."""

    equal_rows: int = 0
    dirty: list[KeyRange | None] = field(default_factory=list)


# -- canonical text per column ----------------------------------------------------------------
def _pg(col: str, t: Type, same: bool, fixed: bool = False) -> str | None:
    if same:
        return f"{col}::text"
    k = t.kind
    if fixed and k in (Kind.STRING, Kind.TEXT):
        return f"rtrim({col}::text, ' ')"  # CHAR(n) on either side: no trailing spaces
    if k is Kind.BOOL:
        return f"{col}::int::text"
    if k in (Kind.INT, Kind.DECIMAL, Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.DATE, Kind.UUID):
        return f"{col}::text"
    if k is Kind.TIMESTAMP:
        return f"to_char({col}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if k is Kind.BYTES:
        return f"encode({col}, 'hex')"
    return None


def _my(col: str, t: Type, same: bool, fixed: bool = False) -> str | None:
    k = t.kind
    if fixed and k in (Kind.STRING, Kind.TEXT):
        return f"TRIM(TRAILING ' ' FROM CONVERT({col} USING utf8mb4))"
    if k in (Kind.INT, Kind.BOOL, Kind.DECIMAL, Kind.DATE):
        return f"CAST({col} AS CHAR)"
    if k in (Kind.STRING, Kind.TEXT, Kind.ENUM):
        return f"CONVERT({col} USING utf8mb4)"
    if k is Kind.UUID:
        return f"LOWER(CONVERT({col} USING utf8mb4))"
    if k is Kind.TIMESTAMP:
        return f"DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%S.%f')"
    if k is Kind.BYTES:
        return f"LOWER(HEX({col}))"
    return None


def _pairable(s: Type, t: Type, same_dialect: bool) -> bool:
    """Whether a column's two types render the same value to the same text."""
    if same_dialect and s.native and s.native == t.native:
        return True
    if s.kind is Kind.DECIMAL or t.kind is Kind.DECIMAL:
        return s.kind is t.kind and s.scale is not None and s.scale == t.scale
    groups = (
        {Kind.INT, Kind.BOOL},
        {Kind.STRING, Kind.TEXT, Kind.ENUM},
        {Kind.DATE},
        {Kind.TIMESTAMP},
        {Kind.UUID, Kind.STRING},
        {Kind.BYTES},
    )
    return any(s.kind in g and t.kind in g for g in groups)


@dataclass(frozen=True)
class _Side:
    """One side's table, key column and row digest expression."""

    endpoint: Endpoint
    table: str
    key: str | None
    digest: str
    #: the digest for PostgreSQL before 14 (no ``hash_record_extended``); "" when the same
    plain: str = ""
    _open: list[Any] = field(default_factory=list, compare=False)

    def session(self) -> Session:
        """This side's connection, opened on first use (kept until :meth:`close`)."""
        if not self._open:
            stack = contextlib.ExitStack()
            opened = stack.enter_context(session(self.endpoint))
            self._open.extend([stack, opened])
            if self.endpoint.family == "postgres":
                # the planner takes every key for its own segment and sorts a million rows
                # to group them into a hundred; hashing them is a tenth of that
                opened.conn.execute("SET enable_sort = off")
                opened.conn.commit()
        found: Session = self._open[1]
        return found

    def for_server(self) -> _Side:
        """This side with the digest its server can compute."""
        if not self.plain:
            return self
        version = int(self.session().conn.info.server_version)
        return self if version >= 140000 else replace(self, digest=self.plain, plain="")

    def close(self) -> None:
        if self._open:
            self._open[0].close()
            self._open.clear()


def _concat(family: str, parts: Sequence[str], sep: str) -> str:
    if len(parts) <= _GROUP:
        return f"concat_ws({sep}, {', '.join(parts)})"
    groups = [_concat(family, parts[i : i + _GROUP], sep) for i in range(0, len(parts), _GROUP)]
    return _concat(family, groups, sep)


#: PostgreSQL types whose own hash function (the default hash operator class) tells apart
#: exactly the values the canonical form tells apart; others are hashed as their text
_HASHED = re.compile(
    r"(smallint|integer|bigint|boolean|date|uuid|bytea|"
    r"timestamp(\(\d\))? with(out)? time zone|time(\(\d\))? without time zone|"
    r"numeric\(\d+,\d+\))$"
)
_HASHED_TEXT = re.compile(r"(text|character varying(\(\d+\))?|character\(\d+\))$")


def _pg_hashed(col: str, native: str) -> str:
    """How a column enters a hashed PostgreSQL record (same native type on both sides):
    itself, text in the "C" collation (a nondeterministic collation would hash 'A' and 'a'
    alike), or its text form (floats: ``-0`` and ``0`` are equal but differ; intervals,
    unconstrained numerics, JSON... likewise)."""
    if _HASHED.match(native):
        return col
    if _HASHED_TEXT.match(native):
        return f'{col} COLLATE "C"'
    return f"{col}::text"


def _row_digest(
    family: str, exprs: Sequence[str], nullable: Sequence[str], raw: bool, hashed: bool = False
) -> str:
    """A 60-bit integer per row (summed per segment): the first 15 hex digits of the md5 of
    the row's canonical text. ``nullable``: the columns that may be NULL on either side (one
    mask digit each). ``raw``: PostgreSQL on both sides with every column of the same type,
    where the row's own text form (``ROW(...)::text``: NULL empty, strings quoted when needed,
    so injective) is the canonical text and PostgreSQL's 64-bit ``hashtextextended`` the
    digest, at a third of the cost. ``hashed`` (``raw``, PostgreSQL 14 or later on both
    sides; ``exprs`` from :func:`_pg_hashed`): no text at all, the record's own 64-bit hash
    (``hash_record_extended``: each column's type hash, NULLs included), mixed again by
    ``hashint8extended`` -- the record hash is linear in its columns' hashes, so without
    the mix two rows swapping a column's values would leave a segment's sum unchanged.
    About a third of the text form's cost again."""
    if family == "postgres":
        if hashed:
            return f"hashint8extended(hash_record_extended(ROW({', '.join(exprs)}), 0), 0)"
        if raw:
            return f"hashtextextended(ROW({', '.join(exprs)})::text, 0)"
        mask = [f"({c} IS NULL)::int" for c in nullable]
        parts = [f"concat({', '.join(mask)})"] if mask else []
        text = _concat(family, [*parts, *exprs], "chr(31)")
        return f"('x' || left(md5({text}), 15))::bit(60)::bigint"
    mask = [f"({c} IS NULL)" for c in nullable]
    parts = [f"CONCAT({', '.join(mask)})"] if mask else []
    text = _concat(family, [*parts, *exprs], "CHAR(31 USING utf8mb4)")
    return f"CAST(CONV(LEFT(MD5({text}), 15), 16, 10) AS UNSIGNED)"


def _sides(source: Endpoint, target: Endpoint, setup: _Setup) -> tuple[_Side, _Side] | None:
    fams = (source.family, target.family)
    if any(f not in _FAMILIES for f in fams):
        return None
    # Lossy columns need no exclusion: equal checksums need the same text for every row on
    # both servers, so a value the conversion would change cannot pass as equal; any
    # mismatch is decided in Python, through the writer's conversion.
    same = fams[0] == fams[1]
    src_cols = {c.name: c for c in setup.source_table.columns}
    tgt_cols = {c.name: c for c in setup.target_table.columns}
    plan_types = {cp.source.name: cp.source.type for cp in setup.plan.columns}
    per_side: list[tuple[list[str], list[str]]] = [([], []), ([], [])]
    raw = same and fams[0] == "postgres"
    for c in setup.columns:
        s_type = src_cols[c.source].type if c.source in src_cols else plan_types[c.source]
        t_type = tgt_cols[c.target].type
        if not _pairable(s_type, t_type, same):
            log.debug("%s: column %s has no common checksum form", setup.plan.source.id, c.source)
            return None
        for i, (ep, name, typ) in enumerate(
            ((source, c.source, s_type), (target, c.target, t_type))
        ):
            col = ep.dialect.quote(name)
            native_same = same and s_type.native == t_type.native and bool(s_type.native)
            raw = raw and native_same
            render = _pg if ep.family == "postgres" else _my
            expr = render(col, typ, native_same, s_type.fixed or t_type.fixed)
            if expr is None:
                log.debug("%s: no checksum form for %s (%s)", setup.plan.source.id, name, typ)
                return None
            per_side[i][0].append(expr)
            nullable = src_cols[c.source].nullable if c.source in src_cols else True
            if nullable or tgt_cols[c.target].nullable:
                per_side[i][1].append(col)
    key = _int_key(setup, src_cols, tgt_cols)
    out = []
    for i, (ep, table) in enumerate(((source, setup.source_table), (target, setup.target_table))):
        exprs, cols = per_side[i]
        digest = plain = ""
        if raw:  # the columns themselves, not their ::text casts
            names = [c.source if i == 0 else c.target for c in setup.columns]
            exprs = [ep.dialect.quote(n) for n in names]
            natives = [
                (src_cols if i == 0 else tgt_cols)[n].type.native.lower()
                if n in (src_cols if i == 0 else tgt_cols)
                else ""
                for n in names
            ]
            hashed = [_pg_hashed(e, t) for e, t in zip(exprs, natives, strict=True)]
            digest = _row_digest(ep.family, hashed, cols, raw, hashed=True)
            plain = _row_digest(ep.family, exprs, cols, raw)
        else:
            digest = _row_digest(ep.family, exprs, cols, raw)
        key_name = None if key is None else key[i]
        out.append(
            _Side(
                ep,
                _qualified(ep, table),
                None if key_name is None else ep.dialect.quote(key_name),
                digest,
                plain,
            )
        )
    return out[0], out[1]


def _qualified(ep: Endpoint, table: TableSchema) -> str:
    q = ep.dialect.quote
    tid = table.id
    return f"{q(tid.schema)}.{q(tid.name)}" if tid.schema else q(tid.name)


def _int_key(
    setup: _Setup, src_cols: dict[str, Any], tgt_cols: dict[str, Any]
) -> tuple[str, str] | None:
    """The names on both sides of the key's first column when it is an integer (segments cut
    its range; a compound key's rows are partitioned by its first column just as well)."""
    if not setup.key:
        return None
    col = setup.columns[setup.key[0]]
    types = (src_cols.get(col.source), tgt_cols.get(col.target))
    if any(t is None or t.type.kind is not Kind.INT for t in types):
        return None
    return col.source, col.target


# -- the queries --------------------------------------------------------------------------------
_Sums = dict[int, tuple[int, int]]
_Paths = dict[tuple[int, ...], tuple[int, int]]  # a segment's path of numbers -> count, sum
_RANGES_PER_QUERY = 500


def _query(
    side: _Side, lo: int | None, width: int | None, bounds: tuple[int, int] | None
) -> tuple[str, list[Any]]:
    params: list[Any] = []
    where = ""
    if bounds is not None and side.key is not None:
        where = f" WHERE {side.key} >= %s AND {side.key} < %s"
        params += [bounds[0], bounds[1]]
    if side.key is None or width is None or lo is None:
        seg, inner_key = "0", ""
    else:
        div = "/" if side.endpoint.family == "postgres" else "DIV"
        seg = f"((k - %s) {div} %s)"
        inner_key = f"{side.key} AS k, "
        params = [lo, width, *params]
    sql = (
        f"SELECT {seg} AS seg, count(*), sum(d) "  # noqa: S608
        f"FROM (SELECT {inner_key}{side.digest} AS d FROM {side.table}{where}) s GROUP BY 1"
    )
    return sql, params


def _level_query(
    side: _Side, lo: int, widths: Sequence[int], ranges: Sequence[tuple[int, int]]
) -> tuple[str, list[Any]]:
    """The sums of one bisection level: the rows of ``ranges`` (the dirty segments of the
    level above, or the whole span), grouped by their path of segment numbers from ``lo``
    (``widths``: each level's segment width; a segment's number within its parent is its
    offset from the parent's start divided by its width)."""
    assert side.key is not None
    div = "/" if side.endpoint.family == "postgres" else "DIV"
    params: list[Any] = []
    exprs = []
    rest_sql, rest_params = "(k - %s)", [lo]  # the key's offset within its parent segment
    for i, width in enumerate(widths):
        exprs.append(f"({rest_sql} {div} %s) AS i{i}")
        params += [*rest_params, width]
        rest_sql, rest_params = f"mod({rest_sql}, %s)", [*rest_params, width]
    where = " OR ".join(f"({side.key} >= %s AND {side.key} < %s)" for _ in ranges)
    inner_params = [b for r in ranges for b in r]
    groups = ", ".join(str(i + 1) for i in range(len(widths)))
    sql = (
        f"SELECT {', '.join(exprs)}, count(*), sum(d) "  # noqa: S608
        f"FROM (SELECT {side.key} AS k, {side.digest} AS d FROM {side.table} WHERE {where}) s "
        f"GROUP BY {groups}"
    )
    return sql, [*params, *inner_params]


def _run(side: _Side, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    s = side.session()
    cur = s.conn.cursor()
    if side.endpoint.family == "mysql":
        sql = sql.replace("%", "%%").replace("%%s", "%s")
    cur.execute(sql, params)
    rows = [tuple(r) for r in cur.fetchall()]
    s.conn.rollback()  # read only; nothing held between queries
    return rows


def _sums(rows: list[tuple[Any, ...]]) -> _Sums:
    return {int(seg): (int(n), int(d or 0)) for seg, n, d in rows}


def _span(side: _Side) -> tuple[int | None, int | None]:
    rows = _run(side, f"SELECT min({side.key}), max({side.key}) FROM {side.table}", [])  # noqa: S608
    lo, hi = rows[0]
    return (None if lo is None else int(lo)), (None if hi is None else int(hi))


class _Pair:
    """Both sides, queried at once (one thread each)."""

    def __init__(self, source: _Side, target: _Side) -> None:
        self.sides = (source, target)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="replikit-checksum")

    def both(self, fn: Callable[[_Side], Any]) -> tuple[Any, Any]:
        a, b = (self.pool.submit(fn, s) for s in self.sides)
        return a.result(), b.result()

    def sums(
        self, lo: int | None, width: int | None, bounds: tuple[int, int] | None
    ) -> tuple[_Sums, _Sums]:
        def one(side: _Side) -> _Sums:
            return _sums(_run(side, *_query(side, lo, width, bounds)))

        return self.both(one)

    def level(
        self, lo: int, widths: list[int], parents: dict[tuple[int, ...], tuple[int, int]]
    ) -> tuple[_Paths, _Paths]:
        """Both sides' sums of one bisection level (see :func:`_level_query`), the parents'
        ranges ``_RANGES_PER_QUERY`` at a time."""
        ranges = list(parents.values())

        def one(side: _Side) -> _Paths:
            found: _Paths = {}
            for i in range(0, len(ranges), _RANGES_PER_QUERY):
                sql, params = _level_query(side, lo, widths, ranges[i : i + _RANGES_PER_QUERY])
                for row in _run(side, sql, params):
                    *path, n, d = row
                    found[tuple(int(p) for p in path)] = (int(n), int(d or 0))
            return found

        return self.both(one)

    def close(self) -> None:
        self.pool.shutdown()
        for side in self.sides:
            side.close()


def compare(
    source: Endpoint,
    target: Endpoint,
    setup: _Setup,
    *,
    executor: Executor | None = None,
    parallel: int = 1,
) -> Outcome | None:
    """Compare ``setup``'s table by segment checksums; ``None`` when the two servers have
    no common canonical form for it (the caller compares row by row).

    A table of more than ``parallel`` first-level segments is cut into ``parallel`` key
    ranges (``CHUNK_SEGMENTS`` segments at least each) compared at once on ``executor``
    (``None``: threads of this process), each with its own connection to each side."""
    sides = _sides(source, target, setup)
    if sides is None:
        return None
    pair = _Pair(*sides)
    try:
        pair.sides = pair.both(_Side.for_server)
        if sides[0].key is None:
            return _whole(pair)
        return _segments(pair, setup.source_table, executor, parallel)
    except Error as exc:
        log.info("%s: checksums failed (%s); comparing row by row", setup.plan.source.id, exc)
        return None
    except Exception as exc:  # a server that renders or sums otherwise than expected
        log.info("%s: checksums failed (%s); comparing row by row", setup.plan.source.id, exc)
        return None
    finally:
        pair.close()


def _whole(pair: _Pair) -> Outcome:
    a, b = pair.sums(None, None, None)
    if a == b:
        return Outcome(equal_rows=sum(v[0] for v in a.values()))
    return Outcome(dirty=[None])


def _segments(
    pair: _Pair, table: TableSchema, executor: Executor | None, parallel: int
) -> Outcome:
    spans = pair.both(_span)
    lows = [s[0] for s in spans if s[0] is not None]
    highs = [s[1] for s in spans if s[1] is not None]
    if not lows:
        return Outcome()
    lo, hi = min(lows), max(highs) + 1
    # no estimate (a table never analyzed): as many rows as keys in the span, at most
    rows = table.estimated_rows or (hi - lo)
    pieces = max(1, rows // SEGMENT_ROWS)
    chunks = max(1, min(parallel, pieces // CHUNK_SEGMENTS))
    if chunks == 1:
        out = Outcome()
        _bisect(pair, lo, hi, pieces, out)
        return out
    width = -(-(hi - lo) // pieces)
    per = -(-pieces // chunks)
    jobs = []
    for c_lo in range(lo, hi, per * width):
        c_hi = min(hi, c_lo + per * width)
        jobs.append((c_lo, c_hi, -(-(c_hi - c_lo) // width)))
    fresh = [replace(side, _open=[]) for side in pair.sides]  # no connection: picklable
    log.debug("checksums of %s in %d key ranges at once", table.id, len(jobs))
    return _merged(_run_jobs(executor, len(jobs), fresh, jobs))


def _run_jobs(
    executor: Executor | None, workers: int, sides: list[_Side], jobs: list[tuple[int, int, int]]
) -> list[Outcome]:
    if executor is not None:
        try:
            futures = [executor.submit(_chunk, sides[0], sides[1], *job) for job in jobs]
            return [f.result() for f in futures]
        except Error:
            raise
        except Exception as exc:  # e.g. an endpoint of a third party that does not pickle
            log.info("key ranges not run on %s (%s); running them in threads", executor, exc)
    with ThreadPoolExecutor(workers, thread_name_prefix="replikit-checksum-range") as pool:
        return list(pool.map(lambda job: _chunk(sides[0], sides[1], *job), jobs))


def _merged(parts: list[Outcome]) -> Outcome:
    out = Outcome()
    for part in parts:
        out.equal_rows += part.equal_rows
        out.dirty += part.dirty
    return out


def _chunk(source: _Side, target: _Side, lo: int, hi: int, pieces: int) -> Outcome:
    """The checksums of the key range ``[lo, hi)`` in ``pieces`` segments, bisected (a unit
    of work for an executor: module-level, its arguments picklable)."""
    pair = _Pair(replace(source, _open=[]), replace(target, _open=[]))  # its own sessions
    try:
        out = Outcome()
        _bisect(pair, lo, hi, pieces, out)
        return out
    finally:
        pair.close()


def _bisect(pair: _Pair, lo: int, hi: int, pieces: int, out: Outcome) -> None:
    """Checksum ``[lo, hi)`` in ``pieces`` segments, then every dirty segment in ``FANOUT``
    smaller ones, level by level (one query per side and level, for all the dirty segments
    of the level at once), down to segments of at most ``LEAF_ROWS`` rows, which go to
    ``out.dirty`` to be compared row by row."""
    column = pair.sides[0].key or ""
    widths = [max(1, -(-(hi - lo) // max(1, pieces)))]
    parents: dict[tuple[int, ...], tuple[int, int]] = {(): (lo, hi)}
    while parents:
        a, b = pair.level(lo, widths, parents)
        log.debug("level %d, widths %s: %d | %d segments", len(widths), widths, len(a), len(b))
        dirty: dict[tuple[int, ...], tuple[int, int]] = {}
        for path in sorted(set(a) | set(b)):
            p_lo, p_hi = parents[path[:-1]]
            s_lo = p_lo + path[-1] * widths[-1]
            s_hi = min(p_hi, s_lo + widths[-1])
            x, y = a.get(path, (0, 0)), b.get(path, (0, 0))
            if x == y:
                out.equal_rows += x[0]
            elif max(x[0], y[0]) <= LEAF_ROWS or s_hi - s_lo <= 1:
                out.dirty.append(KeyRange((column,), (s_lo,), (s_hi,)))
            else:
                dirty[path] = (s_lo, s_hi)
        parents = dirty
        widths.append(max(1, -(-widths[-1] // FANOUT)))
