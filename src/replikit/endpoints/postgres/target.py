"""Full-load writing into PostgreSQL with COPY.

``load`` opens its own connection and transaction, so units load in parallel threads and a
failed unit leaves nothing behind. Each batch is one text-format ``COPY ... FROM STDIN``: the
server parses the canonical values' text forms, so ``str`` stand-ins (``infinity``, BC dates,
ISO 8601 intervals) need no special case. A rejected value becomes a
:class:`~replikit.DataError` naming table, column and row key; nothing is altered silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from replikit.endpoints.postgres import _ddl, _ledger  # noqa: E402
from replikit.endpoints.postgres._connect import Connection, connect  # noqa: E402
from replikit.endpoints.postgres._dialect import DIALECT  # noqa: E402
from replikit.endpoints.postgres._errors import (  # noqa: E402
    by_cause,
    copy_position,
    data_error,
    refusal,
    scrub,
)
from replikit.endpoints.postgres._params import ConnParams  # noqa: E402
from replikit.endpoints.postgres.reflect import reflect  # noqa: E402
from replikit.errors import (  # noqa: E402
    ConfigError,
    ConnectError,
    Error,
    SchemaError,
    UnknownOutcomeError,
)
from replikit.pipeline.contracts import Fence, table_errors  # noqa: E402
from replikit.schema.convert import Adapter, ColumnPlan, TablePlan  # noqa: E402
from replikit.schema.existing import (  # noqa: E402
    TargetRules,
    exactly,
    existing_findings,
    refuse_existing,
)
from replikit.schema.findings import Finding  # noqa: E402
from replikit.schema.identifiers import ObjectNames, object_names  # noqa: E402
from replikit.schema.model import TableId, TableSchema  # noqa: E402
from replikit.schema.report import ObjectPlan  # noqa: E402

__all__ = ["PostgresWriter"]

log = logging.getLogger(__name__)

MODES = ("drop-and-create", "truncate", "do-nothing")


def _alter(tid: TableId, col: ColumnPlan) -> str:
    name = DIALECT.quote(col.name)
    return f"ALTER TABLE {_ddl.table_name(tid)} ALTER COLUMN {name} TYPE {col.target.sql}"


RULES = TargetRules(alter=_alter)


class PostgresWriter:
    """Creates target tables, bulk-loads them with COPY, then adds indexes and keys."""

    raw_format = "postgresql-binary"
    #: :meth:`load_text` takes COPY text lines a source built (a MySQL reader's ``copy_text``)
    text_format = "postgresql-text"
    dialect = DIALECT
    atomic_units = True  # a unit is one transaction: one that failed can be loaded again
    #: a table loaded as one unit loads better (``COPY ... FREEZE`` into a table the load
    #: created, :meth:`load_text`), so ``split_rows="auto"`` splits tables only as far as
    #: their ranges can load at once (:mod:`replikit.pipeline.splitting`)
    prefers_whole_tables = True
    #: where tables without a schema land
    default_schema = "public"
    foreign_keys_in_create = False
    #: checked before each unit commits (a standby task's lease; docs/high-availability.md)
    fence: Fence | None = None
    #: connections :meth:`finish` builds indexes on at once (each build may also get the
    #: server's parallel maintenance workers)
    index_sessions = 3

    def __init__(self, params: ConnParams) -> None:
        self._params = params
        self._kept: set[TableId] = set()  # existing tables kept by truncate / do-nothing
        #: tables :meth:`prepare` created empty: a unit that is all of one may COPY FREEZE
        self._created: set[TableId] = set()
        self._names: ObjectNames | None = None  # chosen by prepare, used again by finish
        #: tables whose indexes and keys :meth:`finish_loaded` completed (finish skips them)
        self._indexed: set[TableId] = set()
        self._checks: list[tuple[ObjectPlan, str | None]] = []  # CHECKs finish added or not

    def _names_for(self, plans: Sequence[TablePlan]) -> ObjectNames:
        """The object names ``prepare`` chose, when it prepared these plans; else new ones."""
        names = self._names
        if names is None or any(p.target_id not in names.primary_key for p in plans):
            names = object_names(plans, DIALECT)
        return names

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs on this machine
        (:class:`~replikit.pipeline.contracts.SupportsPlacement`)."""
        return self._params.on_this_machine

    # -- DDL ------------------------------------------------------------------------------
    def ddl(self, plans: Sequence[TablePlan]) -> list[str]:
        """Every statement ``prepare("drop-and-create")`` and ``finish`` would run."""
        names = object_names(plans, DIALECT)
        out: list[str] = []
        for plan in plans:
            out += _ddl.create_statements(plan, names, key=False)
        finish = _ddl.finish_statements(plans, names)
        out += finish.statements
        out += [s for p in plans for _, s in _ddl.check_statements(p, names)]
        for tid, column, nxt in finish.identities:
            if nxt is not None:
                out.append(_ddl.restart_statement(tid, column, nxt))
        return out

    def object_ddl(self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]) -> list[str]:
        """The view statements :meth:`create_objects` would run (CHECKs are in :meth:`ddl`)."""
        return [s for v in views if v.converted for s in _ddl.view_statements(v)]

    def create_objects(
        self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]
    ) -> list[tuple[ObjectPlan, str | None]]:
        """The CHECKs :meth:`finish` added or left out for ``plans``, then each view created
        and queried; one PostgreSQL refuses is rolled back and reported, not raised."""
        tids = {p.target_id for p in plans}
        out = [(o, e) for o, e in self._checks if o.table in tids]
        work = [
            (v, [*_ddl.view_statements(v), f"SELECT * FROM {_ddl.table_name(v.target)} LIMIT 0"])  # noqa: S608
            for v in views
            if v.converted and v.target is not None
        ]
        if work:  # (no session for nothing to do: it is wall time at the end of a load)
            with connect(self._params) as conn:
                out += _each(conn, work)
        return out

    def check_existing(
        self, plans: Sequence[TablePlan], mode: str, *, replicate: bool = False
    ) -> list[Finding]:
        """What the existing target tables of ``plans`` cannot hold as planned (for
        ``truncate`` and ``do-nothing``; a missing table is created by :meth:`prepare`)."""
        with connect(self._params, autocommit=True) as conn:
            existing = _reflect_targets(conn, plans)
        return _findings(plans, existing, replicate)

    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """Before the load: ``drop-and-create``; or ``truncate`` / ``do-nothing``, which keep
        existing tables (refused with :class:`SchemaError` when they do not fit the plan, see
        :meth:`check_existing`) and create missing ones. A table created here gets its
        primary key from :meth:`finish`, after the load, like its other indexes.

        Each table is its own transaction: one the server refuses is named in a
        :class:`~replikit.errors.TableDdlError` raised after the others were prepared.
        """
        if mode not in MODES:
            raise ConfigError(f"unknown table preparation mode {mode!r}; use one of {MODES}")
        self._kept.difference_update(p.target_id for p in plans)
        self._created.difference_update(p.target_id for p in plans)
        self._indexed.difference_update(p.target_id for p in plans)
        self._names = object_names(plans, DIALECT)
        self._checks = []
        errors: dict[str, BaseException] = {}
        with connect(self._params) as conn:
            existing = {} if mode == "drop-and-create" else _reflect_targets(conn, plans)
            refuse_existing(_findings(plans, existing, replicate=False))
            self._kept.update(existing)
            for plan in plans:
                if plan.target_id not in existing:
                    _per_table(
                        conn,
                        plan.target_id,
                        errors,
                        partial(self._create, conn, plan),
                        params=self._params,
                    )
            ok = [p for p in plans if str(p.target_id) not in errors]
            self._created.update(p.target_id for p in ok if p.target_id not in existing)
            if mode == "truncate" and ok:
                # one statement: tables that reference each other are emptied together
                names = ", ".join(_ddl.table_name(p.target_id) for p in ok)
                try:
                    conn.execute(f"TRUNCATE {names}")  # identifiers quoted by the dialect
                except psycopg.Error as exc:
                    known = refusal(exc, "truncate", names, self._params)
                    raise known or SchemaError(
                        f"PostgreSQL refused TRUNCATE {names}: {exc}"
                    ) from exc
        if errors:
            raise table_errors(errors, f"PostgreSQL {mode}", len(plans))

    def _create(self, conn: Connection, plan: TablePlan) -> None:
        enums = {name for name, _ in _ddl.enum_types(plan)}
        assert self._names is not None
        # the primary key comes with the other indexes, after the load (finish)
        for statement in _ddl.create_statements(plan, self._names, key=False):
            if statement.startswith("CREATE TYPE"):
                name = statement.split()[2]
                exists = conn.execute("SELECT to_regtype(%s)", (name,)).fetchone()
                if name in enums and exists is not None and exists[0] is not None:
                    continue
            conn.execute(statement)

    def finish(self, plans: Sequence[TablePlan]) -> None:
        """After the load: primary keys (tables created by :meth:`prepare` get theirs here),
        unique keys, indexes, foreign keys, checks, identity restarts (not on existing tables
        that ``truncate`` / ``do-nothing`` kept as they are).

        The indexes (keys' included) build at once on up to :attr:`index_sessions`
        connections, the costliest first (rows times key width), each committed on its own
        (logged: the target is crash-safe when this returns); then, per table in one
        transaction, its keys take their built indexes (``USING INDEX``). A table one of
        whose indexes or keys fails is that table's error, its indexes built meanwhile
        dropped again, as :meth:`prepare`'s errors; a foreign key whose table or referenced
        table failed is left out. Each CHECK is added on its own: one the loaded rows violate
        is left out and reported by :meth:`create_objects`, the table is not failed. Index
        builds run with ``maintenance_work_mem`` raised to at least 256 MB per session.
        """
        names = self._names_for(plans)
        plans = [p for p in plans if p.target_id not in self._kept]
        finish = _ddl.finish_statements(plans, names)
        errors: dict[str, BaseException] = {}
        self._keys([p for p in plans if p.target_id not in self._indexed], names, errors)
        with connect(self._params) as conn:
            for tid, ref, statement in finish.foreign_keys:
                if str(tid) not in errors and str(ref) not in errors:
                    _per_table(
                        conn,
                        tid,
                        errors,
                        partial(_execute, conn, [statement]),
                        action="index",
                        params=self._params,
                    )
            checks = [
                (obj, [statement])
                for p in plans
                if str(p.target_id) not in errors
                for obj, statement in _ddl.check_statements(p, names)
            ]
            self._checks += _each(conn, checks)
            for tid, column, nxt in finish.identities:
                if str(tid) not in errors:
                    _per_table(
                        conn,
                        tid,
                        errors,
                        partial(_restart, conn, tid, column, nxt),
                        action="index",
                        params=self._params,
                    )
        if errors:
            raise table_errors(errors, "PostgreSQL indexes and keys", len(plans))

    def finish_loaded(
        self, plans: Sequence[TablePlan], *, stop: threading.Event | None = None
    ) -> None:
        """The indexes and keys of tables whose rows are all loaded, while other tables
        still load (:class:`~replikit.pipeline.contracts.SupportsEarlyFinish`): built and
        attached as :meth:`finish` does, each build committed. Foreign keys, CHECKs and
        identity restarts wait for :meth:`finish`, which builds nothing twice (a resumed
        run's finds these indexes and keys in the catalog). ``stop`` set: no further build
        starts (one running completes); :meth:`finish` builds the rest. A table one of whose
        indexes or keys fails is in the :class:`~replikit.errors.TableDdlError`, without the
        indexes built for it."""
        names = self._names_for(plans)
        plans = [p for p in plans if p.target_id not in self._kept]
        errors: dict[str, BaseException] = {}
        self._keys(plans, names, errors, stop)
        if stop is None or not stop.is_set():  # else builds may be left: finish checks
            self._indexed.update(p.target_id for p in plans if str(p.target_id) not in errors)
        if errors:
            raise table_errors(errors, "PostgreSQL indexes and keys", len(plans))

    def _keys(
        self,
        plans: Sequence[TablePlan],
        names: ObjectNames,
        errors: dict[str, BaseException],
        stop: threading.Event | None = None,
    ) -> None:
        """Every index of ``plans`` (keys' included) built on up to :attr:`index_sessions`
        connections, the costliest first; then per table, in one transaction, its keys take
        their indexes. A table in ``errors`` (here or before) loses the indexes built for it.
        """
        if not plans:  # (all finished early: no sessions opened for nothing)
            return
        builds = [b for p in plans for b in _ddl.index_builds(p, names)]
        builds.sort(key=lambda b: -b.cost)  # the longest first, the others fill in around it
        start = time.monotonic()
        built = _build_indexes(self._params, builds, errors, self.index_sessions, stop)
        with connect(self._params) as conn:
            for plan in plans:
                tid = plan.target_id
                attach = [b.attach for b in built.get(tid, []) if b.attach is not None]
                if str(tid) not in errors and attach:
                    _per_table(
                        conn,
                        tid,
                        errors,
                        partial(_execute, conn, attach),
                        action="index",
                        params=self._params,
                    )
                if str(tid) in errors:
                    _drop_built(conn, built.get(tid, []))
        if builds:
            log.info(
                "%s: %d index(es) and keys done in %.2f s",
                ", ".join(str(p.target_id) for p in plans), len(builds), time.monotonic() - start,
            )  # fmt: skip

    # -- data -----------------------------------------------------------------------------
    def load(self, plan: TablePlan, batches: Iterable[Any], *, once: str | None = None) -> int:
        """COPY every batch into ``plan``'s table in one transaction; return the row count.

        ``once``: the unit's key in the load's ledger (:meth:`start_ledger`): a unit already
        recorded is not loaded again, and this one is recorded in its own transaction.
        """
        total = 0
        with connect(self._params) as conn, conn.cursor() as cur:
            self._guard(conn)
            done = _ledger.done(conn, once)
            if done is not None:
                return done
            for batch in batches:
                total += self._copy_batch(cur, plan, batch.columns, batch.rows)
            _ledger.record(conn, once, total)
            self._fenced(conn)
            self._commit(conn, plan)
        return total

    def _commit(self, conn: Connection, plan: TablePlan) -> None:
        """Commit a unit; a connection lost meanwhile leaves its outcome unknown."""
        try:
            conn.commit()
        except psycopg.Error as exc:
            if by_cause(exc, "committing") is None:
                raise
            raise UnknownOutcomeError(
                f"lost the connection to {self._params.where()} while committing a unit of "
                f"{plan.target_id}: its rows may or may not be in the table, so the unit is "
                "not loaded again by itself; load the table again (drop-and-create or "
                f"truncate, or Task.reload) ({scrub(str(exc).strip(), self._params)})"
            ) from exc

    def start_ledger(self, load: str) -> None:
        """Create the ledger of loaded units (``replikit.replikit_load_units``) if missing."""
        with connect(self._params, autocommit=True) as conn:
            _ledger.ensure(conn)

    def end_ledger(self, load: str) -> None:
        """Forget the units of ``load``; drop the ledger when no load is left in it."""
        with connect(self._params) as conn:
            _ledger.forget(conn, load)

    def _guard(self, conn: Connection) -> None:
        """Under a lease: the server ends this unit's transaction if it idles past it."""
        if self.fence is not None:
            for statement in self.fence.session_statements("postgres"):
                conn.execute(statement)

    def _fenced(self, conn: Connection) -> None:
        """Check :attr:`fence` (a standby task's lease) just before the unit commits."""
        if self.fence is not None:
            self.fence.fence(lambda sql, params: conn.execute(sql, params).fetchall())

    def _copy_batch(
        self, cur: psycopg.Cursor[Any], plan: TablePlan, columns: Sequence[str], rows: Any
    ) -> int:
        by_source = {c.source.name: c for c in plan.columns}
        try:
            targets = [by_source[c] for c in columns]
        except KeyError as exc:
            raise SchemaError(f"{plan.target_id}: batch column {exc} is not planned") from None
        adapters = [c.target.adapt for c in targets]
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.SQL(_ddl.table_name(plan.target_id)),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in targets),
        )
        names = [c.name for c in targets]
        rows = _adapt(rows, adapters) if any(adapters) else rows
        done = 0
        try:
            with cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
                    done += 1
        except psycopg.Error as exc:  # by cause: a lost connection is no bad row
            known = by_cause(exc, f"loading {plan.target_id}") or refusal(
                exc, "load", str(plan.target_id), self._params
            )
            raise known or _row_error(exc, plan, names, rows, done) from exc
        return len(rows)

    def load_raw(
        self,
        plan: TablePlan,
        chunks: Iterable[bytes],
        *,
        once: str | None = None,
        whole: bool = False,
    ) -> int:
        """Binary COPY of raw chunks (from a PostgreSQL reader with identical types); ``once``
        and ``whole`` (``COPY ... FREEZE``) as for :meth:`load_text`."""
        freeze = whole and plan.target_id in self._created
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY{})").format(
            sql.SQL(_ddl.table_name(plan.target_id)),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in plan.columns),
            sql.SQL(", FREEZE" if freeze else ""),
        )
        return self._copy_chunks(plan, statement, chunks, once, "row", empty_first=freeze)

    def load_text(
        self,
        plan: TablePlan,
        columns: Sequence[str],
        chunks: Iterable[bytes],
        *,
        once: str | None = None,
        whole: bool = False,
    ) -> int:
        """Text COPY of whole lines of ``columns`` (target names), as a source built them;
        one transaction, ``once`` as for :meth:`load`.

        ``whole``: these are all of the table's rows (its only unit). When :meth:`prepare`
        created the table, the transaction then empties it first and loads with ``COPY ...
        FREEZE``: the rows are written frozen and all-visible, so the index builds and the
        foreign key check after the load (and the next VACUUM) do not rewrite every page to
        set hint bits. The ``TRUNCATE`` is of a table no other session writes yet, and is
        undone with the unit if the unit fails. Frozen rows are visible to other sessions'
        older snapshots as soon as the unit commits (PostgreSQL's documented caveat of
        ``FREEZE``), as an empty table would be otherwise.
        """
        freeze = whole and plan.target_id in self._created
        statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            sql.SQL(_ddl.table_name(plan.target_id)),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL(" (FREEZE)" if freeze else ""),
        )
        return self._copy_chunks(plan, statement, chunks, once, "line", empty_first=freeze)

    def _copy_chunks(
        self,
        plan: TablePlan,
        statement: sql.Composed,
        chunks: Iterable[bytes],
        once: str | None,
        unit_of_data: str,
        *,
        empty_first: bool = False,
    ) -> int:
        """COPY ``chunks`` of ready-made data in one transaction (``once``: the ledger key);
        a refused value is named by the ``unit_of_data`` (``row``, ``line``) COPY reports.
        ``empty_first``: ``TRUNCATE`` the table in the same transaction (a ``FREEZE``
        statement needs it)."""
        with connect(self._params) as conn, conn.cursor() as cur:
            self._guard(conn)
            done = _ledger.done(conn, once)
            if done is not None:
                return done
            try:
                if empty_first:
                    cur.execute(f"TRUNCATE {_ddl.table_name(plan.target_id)}")
                with cur.copy(statement) as copy:
                    for chunk in chunks:
                        copy.write(chunk)
            except psycopg.Error as exc:
                line, column = copy_position(exc)
                where = {unit_of_data: line} if line else None
                known = by_cause(exc, f"loading {plan.target_id}") or refusal(
                    exc, "load", str(plan.target_id), self._params
                )
                raise known or data_error(
                    exc, str(plan.target_id), column=column, key=where
                ) from exc
            rows = max(cur.rowcount, 0)
            _ledger.record(conn, once, rows)
            self._fenced(conn)
            self._commit(conn, plan)
            return rows


def _adapt(rows: Sequence[Sequence[Any]], adapters: list[Adapter | None]) -> list[list[Any]]:
    pairs = [(i, a) for i, a in enumerate(adapters) if a is not None]
    out = []
    for row in rows:
        new = list(row)
        for i, adapt in pairs:
            if new[i] is not None:
                new[i] = adapt(new[i])
        out.append(new)
    return out


def _row_error(
    exc: psycopg.Error, plan: TablePlan, names: list[str], rows: Any, done: int
) -> Error:
    line, column = copy_position(exc)
    index = line - 1 if line else done  # client-side failures stop at the row being written
    key_cols = plan.target_schema.key or tuple(names)
    key = None
    if 0 <= index < len(rows):
        row = rows[index]
        key = {k: row[names.index(k)] for k in key_cols if k in names}
    if column is None and 0 <= index < len(rows):
        column = _guess_column(rows[index], names)
    return data_error(exc, str(plan.target_id), column=column, key=key)


def _guess_column(row: Sequence[Any], names: list[str]) -> str | None:
    """The first column whose value psycopg cannot send (client-side errors have no column)."""
    for name, value in zip(names, row, strict=False):
        if isinstance(value, str) and "\x00" in value:
            return name
    return None


def _each(
    conn: Connection, work: Sequence[tuple[ObjectPlan, Sequence[str]]]
) -> list[tuple[ObjectPlan, str | None]]:
    """Run each object's statements in its own transaction: ``None`` or PostgreSQL's refusal."""
    out: list[tuple[ObjectPlan, str | None]] = []
    for obj, statements in work:
        try:
            with conn.transaction():
                _execute(conn, statements)
        except psycopg.Error as exc:
            out.append((obj, _first_line(exc)))
        else:
            out.append((obj, None))
    return out


#: ``maintenance_work_mem`` (kB) for index builds: sorts of a few million keys stay in memory
_INDEX_MEMORY_KB = 256 * 1024


def _index_memory(conn: Connection) -> None:
    """Raise this session's ``maintenance_work_mem`` to :data:`_INDEX_MEMORY_KB` (never lower
    it): an index build whose sort fits in memory writes no temporary files, and the server
    gives it parallel workers only with 32 MB for each."""
    row = conn.execute(
        "SELECT setting::int8 FROM pg_settings WHERE name = 'maintenance_work_mem'"
    ).fetchone()
    if row is not None and int(row[0]) < _INDEX_MEMORY_KB:
        conn.execute(f"SET maintenance_work_mem = {_INDEX_MEMORY_KB}")
    conn.commit()  # a session setting: each table's DDL still runs in its own transaction


def _build_indexes(
    params: ConnParams,
    builds: Sequence[_ddl.Build],
    errors: dict[str, BaseException],
    sessions: int,
    stop: threading.Event | None = None,
) -> dict[TableId, list[_ddl.Build]]:
    """Run ``builds`` on up to ``sessions`` connections, each build committed on its own;
    return the ones built, by table. A refused build is its table's error in ``errors`` (the
    first one; the table's builds not started yet are skipped). What an earlier run of the
    same finish committed (it stopped, and a resumed load finishes every table again) is
    not built again: a primary key's build when the table has its key, a key whose
    constraint exists, an index that exists (a key's is then only attached). ``stop`` set:
    no further build starts."""
    todo = list(builds)
    lock = threading.Lock()
    built: dict[TableId, list[_ddl.Build]] = {}
    crashed: list[BaseException] = []

    def take() -> _ddl.Build | None:
        with lock:
            while todo and not (stop is not None and stop.is_set()):
                b = todo.pop(0)
                if str(b.table) not in errors:
                    return b
            return None

    def work() -> None:
        try:
            with connect(params, autocommit=True) as conn:
                _index_memory(conn)
                while (b := take()) is not None:
                    try:
                        if b.key and _has_key(conn, b.table):
                            continue
                        index, constraint = _committed(conn, b)
                        if constraint:  # finished by an earlier run
                            continue
                        if not index:  # else built by an earlier run stopped before its attach
                            start = time.monotonic()
                            conn.execute(b.create)
                            took = time.monotonic() - start
                            log.debug("%s: index %s built in %.2f s", b.table, b.name, took)
                    except psycopg.Error as exc:
                        if conn.closed or conn.broken:  # the session, not the index: lost
                            with lock:
                                todo.insert(0, b)  # another session builds it, or we raise
                            raise
                        with lock:
                            errors.setdefault(
                                str(b.table),
                                refusal(exc, "index", str(b.table), params, schema=b.table.schema)
                                or SchemaError(f"PostgreSQL refused the DDL of {b.table}: {exc}"),
                            )
                    else:
                        with lock:
                            built.setdefault(b.table, []).append(b)
        except BaseException as exc:  # handed to the caller (a lost server, a bug)
            crashed.append(exc)

    if not todo:
        return built
    n = max(1, min(sessions, len(todo)))
    if len(todo) <= 1 or n == 1:
        work()
    else:
        threads = [
            threading.Thread(target=work, name=f"replikit-index-{i}", daemon=True) for i in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lost = [e for e in crashed if isinstance(e, psycopg.OperationalError)]
    if len(lost) < len(crashed):
        raise crashed[0]  # a bug
    if lost and todo:  # no session left for builds still to do: the server went away
        doing = f"building the index {todo[0].name} of {todo[0].table}"
        raise by_cause(lost[0], doing) or ConnectError(f"{doing}: {lost[0]}") from lost[0]
    for e in lost:  # another session did its share
        log.warning("an index build session of %s was lost: %s", params.where(), e)
    return built


def _committed(conn: Connection, b: _ddl.Build) -> tuple[bool, bool]:
    """(the index ``b`` builds exists, the key constraint it becomes exists) on its table:
    each build commits on its own, so an earlier run may have left either."""
    table = _ddl.table_name(b.table)
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s) AND c.relname = %s), "
        "EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s)",
        (table, b.name, table, b.name),
    ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1]) and b.attach is not None


def _has_key(conn: Connection, tid: TableId) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
        (_ddl.table_name(tid),),
    ).fetchone()
    return row is not None


def _drop_built(conn: Connection, builds: Sequence[_ddl.Build]) -> None:
    """Drop the indexes built for a table that failed (as when its finish was one
    transaction): a run that loads it again starts from a bare table."""
    for b in builds:
        name = DIALECT.qualified(b.table.schema or "public", b.name)
        try:
            with conn.transaction():
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        except psycopg.Error as exc:
            log.warning("could not drop index %s of failed table %s: %s", b.name, b.table, exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _execute(conn: Connection, statements: Sequence[str]) -> None:
    for statement in statements:
        conn.execute(statement)


def _per_table(
    conn: Connection,
    tid: TableId,
    errors: dict[str, BaseException],
    work: Callable[[], None],
    *,
    action: str = "create",
    params: ConnParams,
) -> None:
    """Run ``work`` for one table in its own transaction; a refusal goes into ``errors``."""
    try:
        with conn.transaction():
            work()
    except SchemaError as exc:
        errors[str(tid)] = exc
    except psycopg.Error as exc:
        errors[str(tid)] = refusal(exc, action, str(tid), params, schema=tid.schema) or (
            SchemaError(f"PostgreSQL refused the DDL of {tid}: {exc}")
        )


def _reflect_targets(conn: Connection, plans: Sequence[TablePlan]) -> dict[TableId, TableSchema]:
    """The target tables of ``plans`` that exist, as the PostgreSQL reflection sees them."""
    catalog = reflect(conn, exactly(p.target_id for p in plans))
    return {t.id: t for t in catalog.tables}


def _findings(
    plans: Sequence[TablePlan], existing: dict[TableId, TableSchema], replicate: bool
) -> list[Finding]:
    pairs = [(p, existing[p.target_id]) for p in plans if p.target_id in existing]
    return existing_findings(pairs, RULES, replicate=replicate)


def _restart(conn: Connection, tid: TableId, column: str, nxt: int | None) -> None:
    query = sql.SQL("SELECT max({}) FROM {}").format(
        sql.Identifier(column), sql.SQL(_ddl.table_name(tid))
    )
    row = conn.execute(query).fetchone()
    loaded_max = row[0] if row else None
    value = max(v for v in (nxt, None if loaded_max is None else loaded_max + 1, 1) if v)
    conn.execute(_ddl.restart_statement(tid, column, value))
