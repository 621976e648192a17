"""Full-load writing into MySQL/MariaDB.

``load`` opens its own connection and transaction per unit (units load in parallel threads; a
failed unit leaves nothing behind), with foreign key checks off (keys are added after the
load). Rows are adapted column by column with the plan's adapters, then written in chunks:

* ``method="load-data"`` (default): ``LOAD DATA LOCAL INFILE`` from a temporary file per chunk
  (see :mod:`replikit.endpoints.mysql._load`). MySQL turns errors of a LOCAL load into
  warnings and skips or alters the row, so every chunk's warning count is checked: any warning
  rolls the unit back and the chunk is replayed row by row with INSERTs, in a transaction that
  is rolled back, to name the failing row.
* ``method="insert"``: multi-row ``INSERT`` statements built by the driver.

Strict ``sql_mode`` makes MySQL refuse (not clip) out-of-range and too-long values; the
adapters refuse what MySQL would still round silently (extra decimal places, NaN). Every
refusal is a :class:`~replikit.DataError` naming table, column and key.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from replikit.endpoints.mysql import _ddl, _ledger
from replikit.endpoints.mysql._connect import (
    connect,
    data_error,
    driver_of,
    error_code,
    error_text,
    load_driver,
    scrub,
)
from replikit.endpoints.mysql._dialect import DIALECT, BadValue
from replikit.endpoints.mysql._limits import live_limits
from replikit.endpoints.mysql._load import Load, load_for
from replikit.endpoints.mysql._params import ConnParams
from replikit.endpoints.mysql.reflect import Server, reflect, server_info
from replikit.errors import (
    ConfigError,
    ConnectError,
    DataError,
    Error,
    SchemaError,
    UnknownOutcomeError,
)
from replikit.pipeline.contracts import Batch, Fence, table_errors
from replikit.schema.convert import ColumnPlan, Fidelity, TablePlan
from replikit.schema.existing import (
    TargetRules,
    exactly,
    existing_findings,
    judge_existing,
    refuse_existing,
)
from replikit.schema.findings import Finding
from replikit.schema.limits import Limits
from replikit.schema.model import Column, TableId, TableSchema
from replikit.schema.report import ObjectPlan
from replikit.schema.types import Kind

__all__ = ["METHODS", "MODES", "MysqlWriter"]

log = logging.getLogger(__name__)

MODES = ("drop-and-create", "truncate", "do-nothing")
METHODS = ("load-data", "insert")
_LOST = {2006, 2013, 2055}
_NO_LOCAL_INFILE = {1148, 2068, 3948, 4166}  # server or client refuses LOAD DATA LOCAL


def _modify(tid: TableId, col: ColumnPlan) -> str:
    null = "" if col.nullable else " NOT NULL"
    return (
        f"ALTER TABLE {_ddl.table_name(tid)} MODIFY {DIALECT.quote(col.name)} "
        f"{col.target.sql}{null}"
    )


_FULL_UNICODE = ("utf8mb4", "binary")
_TEXT_KINDS = (Kind.STRING, Kind.TEXT, Kind.ENUM, Kind.JSON, Kind.OTHER)


def _judge(col: ColumnPlan, found: Column) -> tuple[Fidelity, str | None]:
    """:func:`judge_existing`, and the column's character set must hold every character."""
    verdict = judge_existing(col.target.type, found.type)
    charset = (found.collation or "").split("_")[0].lower()
    if not charset or charset in _FULL_UNICODE or verdict[0] is Fidelity.UNSUPPORTED:
        return verdict
    source = (col.source.collation or "").split("_")[0].lower()
    if col.source.type.kind in _TEXT_KINDS and source != charset:
        return Fidelity.UNSUPPORTED, (
            f"its character set {charset} cannot hold every character (utf8mb4 can)"
        )
    return verdict


RULES = TargetRules(fold=str.lower, judge=_judge, alter=_modify)


class _LocalInfileDisabled(Exception):
    """LOAD DATA LOCAL is switched off: fall back to INSERTs."""


class MysqlWriter:
    """Creates target tables, bulk-loads them, then adds keys, indexes and foreign keys.

    ``problems`` collects what was done differently from the plan (key columns narrowed,
    prefix indexes, indexes left out). Tables land in the URL's database
    (``default_schema`` is None: target table ids carry no schema).
    """

    dialect = DIALECT
    atomic_units = True  # a unit is one transaction: one that failed can be loaded again
    default_schema: str | None = None
    foreign_keys_in_create = False
    #: checked before each commit (a standby task's lease; docs/high-availability.md)
    fence: Fence | None = None

    def __init__(
        self, params: ConnParams, *, method: str = "load-data", chunk_rows: int = 5_000
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown MySQL load method {method!r}; use one of {METHODS}")
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be positive, got {chunk_rows}")
        self._params = params
        self.method = method
        self.chunk_rows = chunk_rows
        self.problems: list[str] = []
        self._server: Server | None = None
        self._settings: tuple[int, int, bool] | None = None
        self._no_local_infile = False
        self._loads: dict[tuple[str, tuple[str, ...]], Load] = {}
        self._kept: set[TableId] = set()  # existing tables kept by truncate / do-nothing
        self._checks: list[tuple[ObjectPlan, str | None]] = []  # CHECKs finish added or not

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs on this machine
        (:class:`~replikit.pipeline.contracts.SupportsPlacement`)."""
        return self._params.on_this_machine

    # -- DDL ------------------------------------------------------------------------------
    @property
    def server(self) -> Server:
        """Version and flavor of the target server (asked once)."""
        if self._server is None:
            conn = connect(self._params, autocommit=True)
            try:
                self._server = server_info(conn)
            finally:
                conn.close()
        return self._server

    def limits(self, *, replicate: bool = False) -> Limits:
        """This server's InnoDB limits (:mod:`~replikit.endpoints.mysql._limits`): its flavor
        and page size, and ``max_allowed_packet`` when rows travel in INSERTs (CDC,
        ``method="insert"``, or a server that refuses LOAD DATA LOCAL)."""
        if self._settings is None:
            conn = connect(self._params, autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@innodb_page_size, @@max_allowed_packet, @@local_infile")
                    page, packet, local = cur.fetchone()
                self._settings = (int(page), int(packet), bool(int(local)))
            finally:
                conn.close()
        page, packet, local = self._settings
        inserts = replicate or self.method == "insert" or not local or self._no_local_infile
        return live_limits(
            flavor=self.server.flavor, page_size=page, packet=packet if inserts else None
        )

    def _generator(self) -> _ddl.Ddl:
        return _ddl.Ddl(self.server.flavor)

    def ddl(self, plans: Sequence[TablePlan]) -> list[str]:
        """Every statement ``prepare("drop-and-create")`` and ``finish`` would run."""
        gen = self._generator()
        out = [s for p in plans for s in gen.create(p)]
        out += gen.finish(plans)
        out += [s for p in plans for _, s in gen.checks(p)]
        for plan in plans:
            nxt = _next_value(plan)
            if nxt is not None:
                out.append(gen.restart(plan.target_id, nxt))
        return out

    def object_ddl(self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]) -> list[str]:
        """The view statements :meth:`create_objects` would run (CHECKs are in :meth:`ddl`)."""
        gen = self._generator()
        return [gen.view(v) for v in views if v.converted]

    def create_objects(
        self, plans: Sequence[TablePlan], views: Sequence[ObjectPlan]
    ) -> list[tuple[ObjectPlan, str | None]]:
        """The CHECKs :meth:`finish` added or left out for ``plans``, then each view created
        and queried (one the query fails on is dropped); refusals are reported, not raised."""
        tids = {p.target_id for p in plans}
        out = [(o, e) for o, e in self._checks if o.table in tids]
        gen = self._generator()
        work: list[tuple[ObjectPlan, list[str], str | None]] = []
        for v in views:
            if v.converted and v.target is not None:
                name = _ddl.table_name(v.target)
                check = f"SELECT * FROM {name} LIMIT 0"  # noqa: S608 (quoted identifier)
                work.append((v, [gen.view(v), check], f"DROP VIEW IF EXISTS {name}"))
        return out + self._each(work)

    def _each(
        self, work: Sequence[tuple[ObjectPlan, list[str], str | None]]
    ) -> list[tuple[ObjectPlan, str | None]]:
        """Run each object's statements: ``None`` or MySQL's refusal (then its undo runs)."""
        driver = load_driver(self._params.driver)
        conn = connect(self._params, autocommit=True)
        out: list[tuple[ObjectPlan, str | None]] = []
        try:
            with conn.cursor() as cur:
                for obj, statements, undo in work:
                    try:
                        for statement in statements:
                            cur.execute(statement)
                            cur.fetchall()
                    except driver.Error as exc:
                        out.append((obj, error_text(exc)))
                        if undo:
                            with contextlib.suppress(driver.Error):
                                cur.execute(undo)
                    else:
                        out.append((obj, None))
        finally:
            conn.close()
        return out

    def _execute_tables(
        self, groups: Sequence[tuple[TableId | None, Sequence[str]]]
    ) -> dict[str, BaseException]:
        """Run each table's statements on one connection; a refused table's error is returned
        (by target table name) and the next table goes on."""
        driver = load_driver(self._params.driver)
        conn = connect(self._params, autocommit=True)
        errors: dict[str, BaseException] = {}
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION foreign_key_checks = 0")
                with contextlib.suppress(driver.Error):  # MySQL 8.0.x: read-only once set
                    cur.execute("SET SESSION explicit_defaults_for_timestamp = 1")
                for tid, statements in groups:
                    for statement in statements:
                        try:
                            cur.execute(statement)
                        except driver.Error as exc:
                            errors[str(tid)] = SchemaError(
                                f"MySQL refused: {error_text(exc)}\n  statement: {statement}"
                            )
                            break
        finally:
            conn.close()
        return errors

    def check_existing(
        self, plans: Sequence[TablePlan], mode: str, *, replicate: bool = False
    ) -> list[Finding]:
        """What the existing target tables of ``plans`` cannot hold as planned (for
        ``truncate`` and ``do-nothing``; a missing table is created by :meth:`prepare`)."""
        existing = self._existing(plans)
        return _findings(plans, existing, replicate=replicate)

    def _existing(self, plans: Sequence[TablePlan]) -> dict[TableId, TableSchema]:
        """The target tables of ``plans`` that exist in the URL's database, reflected."""
        conn = connect(self._params, autocommit=True)
        try:
            catalog = reflect(conn, self._params.database, exactly(p.target_id for p in plans))
        finally:
            conn.close()
        found = {t.id.name.lower(): t for t in catalog.tables}
        return {
            p.target_id: found[p.target_id.name.lower()]
            for p in plans
            if p.target_id.name.lower() in found
        }

    def prepare(self, plans: Sequence[TablePlan], mode: str) -> None:
        """Before the load: ``drop-and-create``; or ``truncate`` / ``do-nothing``, which keep
        existing tables (refused with :class:`SchemaError` when they do not fit the plan, see
        :meth:`check_existing`) and create missing ones.

        A table the server refuses is named in a :class:`~replikit.errors.TableDdlError`
        raised after the others were prepared.
        """
        if mode not in MODES:
            raise ConfigError(f"unknown table preparation mode {mode!r}; use one of {MODES}")
        self._kept.difference_update(p.target_id for p in plans)
        self._checks = []
        existing = {} if mode == "drop-and-create" else self._existing(plans)
        refuse_existing(_findings(plans, existing))
        self._kept.update(existing)
        gen = self._generator()
        created = [p for p in plans if p.target_id not in existing]
        errors = self._execute_tables([(p.target_id, gen.create(p)) for p in created])
        self.problems += gen.problems
        if mode == "truncate":
            truncates = [
                (p.target_id, [f"TRUNCATE TABLE {_ddl.table_name(p.target_id)}"])
                for p in plans
                if p.target_id in existing and str(p.target_id) not in errors
            ]
            errors |= self._execute_tables(truncates)
        if errors:
            raise table_errors(errors, f"MySQL {mode}", len(plans))

    def finish(self, plans: Sequence[TablePlan]) -> None:
        """After the load: keys, indexes, foreign keys, CHECKs, AUTO_INCREMENT restarts.

        Per table, as :meth:`prepare`; a foreign key to a table that failed is left out. Not
        on existing tables that ``truncate`` / ``do-nothing`` kept as they are. Each CHECK is
        added on its own: one the loaded rows violate is left out and reported by
        :meth:`create_objects`, the table is not failed.
        """
        plans = [p for p in plans if p.target_id not in self._kept]
        gen = self._generator()
        errors = self._execute_tables([(t, [s]) for t, s in gen.table_alters(plans)])
        ok = [p for p in plans if str(p.target_id) not in errors]
        errors |= self._execute_tables([(t, [s]) for t, s in gen.foreign_key_alters(ok, ok)])
        self.problems += gen.problems
        checks = [
            (obj, [statement], None)
            for p in plans
            if str(p.target_id) not in errors
            for obj, statement in gen.checks(p)
        ]
        if checks:
            self._checks += self._each(checks)
        restarts = [
            (p, _next_value(p))
            for p in plans
            if _ddl.auto_column(p) is not None and str(p.target_id) not in errors
        ]
        if restarts:
            self._restart(gen, restarts)
        if errors:
            raise table_errors(errors, "MySQL indexes and keys", len(plans))

    def _restart(self, gen: _ddl.Ddl, restarts: list[tuple[TablePlan, int | None]]) -> None:
        conn = connect(self._params, autocommit=True)
        try:
            with conn.cursor() as cur:
                for plan, nxt in restarts:
                    column = _ddl.auto_column(plan)
                    assert column is not None
                    q = DIALECT.quote(column)
                    cur.execute(f"SELECT MAX({q}) FROM {_ddl.table_name(plan.target_id)}")  # noqa: S608
                    (top,) = cur.fetchone()
                    value = max(v for v in (nxt, None if top is None else int(top) + 1, 1) if v)
                    cur.execute(gen.restart(plan.target_id, value))
        finally:
            conn.close()

    # -- data -----------------------------------------------------------------------------
    def load(self, plan: TablePlan, batches: Iterable[Batch], *, once: str | None = None) -> int:
        """Write every batch of one unit in one transaction; return the number of rows.

        ``once``: the unit's key in the load's ledger (:meth:`start_ledger`): a unit already
        recorded is not loaded again, and this one is recorded in its own transaction.
        """
        conn = connect(self._params, local_infile=self.method == "load-data")
        total = 0
        pending: list[Sequence[Any]] = []
        load: Load | None = None
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION foreign_key_checks = 0")
            done = _ledger.done(conn, once)
            if done is not None:
                conn.rollback()
                return done
            for batch in batches:
                current = self._load_for(plan, batch.columns)
                if load is not None and current is not load and pending:
                    total += self._flush(conn, load, pending)
                    pending = []
                load = current
                pending.extend(_adapt(load, batch.rows))
                if len(pending) >= self.chunk_rows:
                    total += self._flush(conn, load, pending)
                    pending = []
            if load is not None and pending:
                total += self._flush(conn, load, pending)
            _ledger.record(conn, once, total)
            if self.fence is not None:  # a standby task's lease: checked just before COMMIT
                self.fence.fence(functools.partial(_rows, conn))
            self._commit(conn, plan)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            conn.close()
        return total

    def _commit(self, conn: Any, plan: TablePlan) -> None:
        """Commit a unit; a connection lost meanwhile leaves its outcome unknown."""
        driver = driver_of(conn)
        try:
            conn.commit()
        except driver.Error as exc:
            if error_code(exc) not in _LOST and not isinstance(exc, driver.module.InterfaceError):
                raise
            raise UnknownOutcomeError(
                f"lost the connection to {self._params.where()} while committing a unit of "
                f"{plan.target_id}: its rows may or may not be in the table, so the unit is "
                "not loaded again by itself; load the table again (drop-and-create or "
                f"truncate, or Task.reload) ({scrub(error_text(exc), self._params)})"
            ) from exc

    def start_ledger(self, load: str) -> None:
        """Create the ledger of loaded units (``replikit_load_units``) if missing."""
        conn = connect(self._params, autocommit=True)
        try:
            _ledger.ensure(conn)
        finally:
            conn.close()

    def end_ledger(self, load: str) -> None:
        """Forget the units of ``load``; drop the ledger when no load is left in it."""
        conn = connect(self._params)
        try:
            _ledger.forget(conn, load)
        finally:
            conn.close()

    def _load_for(self, plan: TablePlan, columns: tuple[str, ...]) -> Load:
        key = (str(plan.target_id), columns)
        load = self._loads.get(key)
        if load is None:
            load = self._loads[key] = load_for(plan, columns)
        return load

    def _flush(self, conn: Any, load: Load, rows: list[Sequence[Any]]) -> int:
        if self.method == "load-data" and not self._no_local_infile:
            try:
                return self._load_data(conn, load, rows)
            except _LocalInfileDisabled:
                self._no_local_infile = True
                log.warning(
                    "%s does not allow LOAD DATA LOCAL INFILE (local_infile=OFF); writing "
                    "with multi-row INSERTs instead (about half the speed)",
                    self._params.where(),
                )
        return self._insert(conn, load, rows)

    def _insert(self, conn: Any, load: Load, rows: list[Sequence[Any]]) -> int:
        driver = driver_of(conn)
        try:
            with conn.cursor() as cur:
                cur.executemany(load.insert_head + load.placeholders, rows)
        except driver.Error as exc:
            raise self._failure(conn, load, rows, exc) from None
        return len(rows)

    def _load_data(self, conn: Any, load: Load, rows: list[Sequence[Any]]) -> int:
        driver = driver_of(conn)
        try:
            data = load.tsv(rows)
        except UnicodeEncodeError:
            raise self._failure(conn, load, rows, None) from None
        fd, path = tempfile.mkstemp(prefix="replikit-", suffix=".tsv")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            with conn.cursor() as cur:
                cur.execute(load.load_sql, (path,))
                loaded = cur.rowcount
                warnings = driver.warning_count(conn, cur)
        except driver.Error as exc:
            if error_code(exc) in _NO_LOCAL_INFILE:
                raise _LocalInfileDisabled from None
            raise self._failure(conn, load, rows, exc) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if warnings or loaded != len(rows):
            raise self._failure(conn, load, rows, None, warnings=self._warnings(conn))
        return len(rows)

    @staticmethod
    def _warnings(conn: Any) -> list[str]:
        with conn.cursor() as cur:
            cur.execute("SHOW WARNINGS LIMIT 5")
            return [f"{r[2]} ({r[0]} {r[1]})" for r in cur.fetchall()]

    def _failure(
        self,
        conn: Any,
        load: Load,
        rows: list[Sequence[Any]],
        exc: BaseException | None,
        *,
        warnings: Sequence[str] = (),
    ) -> Error:
        """Roll back, replay the chunk row by row to find the failing row, return its error."""
        if exc is not None and error_code(exc) in _LOST:
            return ConnectError(
                f"lost the connection writing {load.table} at {self._params.where()}: "
                f"{scrub(error_text(exc), self._params)}"
            )
        with contextlib.suppress(Exception):
            conn.rollback()
        found = self._replay(conn, load, rows)
        if found is not None:
            return found
        what = error_text(exc) if exc is not None else "; ".join(warnings) or "rows were skipped"
        if exc is not None:
            return data_error(exc, load.table, key=None)
        return DataError(f"MySQL did not load the rows as sent: {what}", table=load.table)

    def _replay(self, conn: Any, load: Load, rows: list[Sequence[Any]]) -> Error | None:
        driver = driver_of(conn)
        sql = load.insert_head + load.placeholders
        try:
            with conn.cursor() as cur:
                for row in rows:
                    try:
                        cur.execute(sql, row)
                    except driver.Error as exc:
                        return data_error(exc, load.table, key=load.key_of(row))
                    except UnicodeEncodeError as exc:
                        return DataError(
                            f"cannot encode a text value: {exc.reason}",
                            table=load.table,
                            key=load.key_of(row),
                        )
                    if driver.warning_count(conn, cur):
                        (message,) = self._warnings(conn)[:1] or ["a warning"]
                        return DataError(
                            f"MySQL would alter the value: {message}",
                            table=load.table,
                            key=load.key_of(row),
                        )
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
        return None


def _findings(
    plans: Sequence[TablePlan], existing: dict[TableId, TableSchema], *, replicate: bool = False
) -> list[Finding]:
    pairs = [(_ddl.as_created(p), existing[p.target_id]) for p in plans if p.target_id in existing]
    return existing_findings(pairs, RULES, replicate=replicate)


def _adapt(load: Load, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Select the written columns and apply the adapters, column by column."""
    picked = rows
    if load.positions != tuple(range(len(rows[0]) if rows else 0)):
        picked = [tuple(r[i] for i in load.positions) for r in rows]
    if not load.adapters or not picked:
        return list(picked)
    columns = list(zip(*picked, strict=True))
    for index, adapt in load.adapters:
        try:
            columns[index] = tuple([None if v is None else adapt(v) for v in columns[index]])
        except (BadValue, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
            _raise_bad_row(load, picked, index, adapt)
            raise DataError(f"cannot adapt a batch: {exc}", table=load.table) from exc
    return list(zip(*columns, strict=True))


def _raise_bad_row(load: Load, rows: Sequence[Sequence[Any]], index: int, adapt: Any) -> None:
    for row in rows:
        value = row[index]
        if value is None:
            continue
        try:
            adapt(value)
        except (BadValue, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
            raise DataError.unwritable(
                value, exc, table=load.table, column=load.names[index], key=load.key_of(row)
            ) from None


def _next_value(plan: TablePlan) -> int | None:
    for col in plan.columns:
        if col.source.identity is not None and col.target.type.kind.value == "int":
            return col.source.identity.next_value
    return None


def _rows(conn: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())
