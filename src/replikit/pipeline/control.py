"""The task's control tables about failures: ``replikit_suspended_tables`` and
``replikit_apply_exceptions``, and the typed API that writes and reads them.

They live in the target next to ``replikit_checkpoints`` (schema ``replikit`` on PostgreSQL and
DuckDB, a ``replikit_`` prefix in the target database on MySQL/MariaDB and SQLite):

``replikit_suspended_tables``
    one row per (task, table) a policy suspended: ``state`` (``suspended``, or ``reloading``
    while ``Task.reload`` loads it again), the ``reason`` (the error, with what to do), the
    source ``position`` the table stopped at and ``suspended_at``. A row outlives the run:
    a task started again keeps the table suspended until it is reloaded.
``replikit_apply_exceptions``
    one row per row or change an error policy set aside (``skip-row``) or a conflict it logged
    (``log``): ``kind`` (``data-error`` or ``conflict``), the source ``table_name``, the
    ``op``, the row ``key`` (JSON), the ``column_name`` at fault, the ``error``, the source
    ``position`` and ``created_at``. ``fingerprint`` makes a row recorded again after a replay
    one row, not two.

The rows are written in their own target transaction just before the data transaction that
leaves the row out, so a crash between the two replays the change, which fails again and is
recorded again (the same row, by its fingerprint): nothing is skipped without its record.

Readers (``replikit status``, the status page) use :func:`read_suspended`,
:func:`read_exceptions` and :func:`count_exceptions` with the target endpoint and the task id;
they work with the task stopped.

:class:`ControlStore` is the interface the pipeline writes through. Endpoints that hold control
tables implement :class:`SupportsControl` (a DB-API session in one transaction) and get a
:class:`SqlControlStore`; the SQL of each family is the data in :data:`FLAVORS`. Endpoints
without SQL keep the same records their own way and hand out their store through
:class:`SupportsControlStore`: files targets in their manifest (next to the checkpoint),
MongoDB targets in collections of the URL's database.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast, runtime_checkable

from typing_extensions import override

from replikit.errors import CapabilityError, Error

__all__ = [
    "EXCEPTIONS",
    "FLAVORS",
    "SUSPENDED",
    "ApplyException",
    "ControlStore",
    "Flavor",
    "SqlControlStore",
    "SupportsControl",
    "SupportsControlStore",
    "SuspendedTable",
    "control_cursor",
    "control_store",
    "count_exceptions",
    "latest_exceptions",
    "read_exceptions",
    "read_suspended",
    "table_exists",
]

log = logging.getLogger("replikit.control")

SUSPENDED = "replikit_suspended_tables"
EXCEPTIONS = "replikit_apply_exceptions"

ExceptionKind = Literal["data-error", "conflict"]
SuspendState = Literal["suspended", "reload-requested", "reloading"]
_STATES = frozenset({"suspended", "reload-requested", "reloading"})
_KINDS = frozenset({"data-error", "conflict"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspendedTable:
    """A table an error policy suspended: its changes are not applied until it is reloaded.

    Attributes:
        task: the task id.
        table: the source table (as in the statistics, e.g. ``public.orders``).
        state: ``suspended``; ``reload-requested`` when ``replikit reload`` asked a running
            task to reload it; ``reloading`` while a reload runs.
        reason: what stopped it and what to do.
        position: the source position the table stopped at (``str(position)``), if known.
        suspended_at: when (UTC).
    """

    task: str
    table: str
    state: SuspendState = "suspended"
    reason: str = ""
    position: str | None = None
    suspended_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (time in ISO 8601)."""
        return {
            "task": self.task,
            "table": self.table,
            "state": self.state,
            "reason": self.reason,
            "position": self.position,
            "suspended_at": self.suspended_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SuspendedTable:
        """The record :meth:`as_dict` gave (a store that keeps documents reads it back)."""
        state = str(doc.get("state", "suspended"))
        return cls(
            task=str(doc["task"]),
            table=str(doc["table"]),
            state=cast(SuspendState, state if state in _STATES else "suspended"),
            reason=str(doc.get("reason") or ""),
            position=doc.get("position"),
            suspended_at=_utc(doc.get("suspended_at")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyException:
    """A row or change an error policy set aside, or a conflict it logged.

    Attributes:
        task: the task id.
        table: the source table.
        kind: ``data-error`` (a value the target refused) or ``conflict`` (CDC apply found
            the row in a state the change did not expect).
        error: the error message (table, column and key named).
        op: ``insert``, ``update``, ``delete`` or ``load`` (a full-load row).
        key: the row's key, by column name (``None`` when it is not known).
        column: the column at fault, when the target said.
        position: the source position of the change (``str(position)``), if any.
        created_at: when it was recorded (UTC).
    """

    task: str
    table: str
    kind: ExceptionKind
    error: str
    op: str = ""
    key: Mapping[str, Any] | None = None
    column: str | None = None
    position: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def fingerprint(self) -> str:
        """Identifies the record across replays (everything but the time)."""
        text = json.dumps(
            [self.task, self.table, self.kind, self.op, self._key_text(), self.column,
             self.position, self.error],
            default=str,
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _key_text(self) -> str | None:
        return None if self.key is None else json.dumps(dict(self.key), default=str)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (key values as text when JSON has no type for them)."""
        return {
            "task": self.task,
            "table": self.table,
            "kind": self.kind,
            "op": self.op,
            "key": None if self.key is None else json.loads(self._key_text() or "null"),
            "column": self.column,
            "error": self.error,
            "position": self.position,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ApplyException:
        """The record :meth:`as_dict` gave (a store that keeps documents reads it back)."""
        kind = str(doc.get("kind", "data-error"))
        return cls(
            task=str(doc["task"]),
            table=str(doc["table"]),
            kind=cast(ExceptionKind, kind if kind in _KINDS else "data-error"),
            error=str(doc.get("error") or ""),
            op=str(doc.get("op") or ""),
            key=doc.get("key"),
            column=doc.get("column"),
            position=doc.get("position"),
            created_at=_utc(doc.get("created_at")),
        )


# -- the SQL of each family, as data ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Flavor:
    """How one family names, creates and fills the control tables."""

    prefix: str  # "replikit." where the target has schemas, else ""
    param: str  # the driver's placeholder: "%s" or "?"
    text: str  # a short text type (task, table, state)
    long_text: str  # an unbounded text type
    time: str  # a UTC timestamp type
    exists: str = ""  # one parameter (the table's name); a truthy row when the table exists
    qualified_exists: bool = False  # the parameter is the qualified name
    create_schema: str | None = None
    #: taken first in a transaction that creates control objects: two PostgreSQL sessions
    #: running the same ``CREATE ... IF NOT EXISTS`` at once collide on the catalog (the
    #: schema's name, a table's type name); MySQL's metadata locks and SQLite's write lock
    #: serialize them already
    create_lock: str | None = None
    ignore_insert: str = "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"
    naive_times: bool = False  # the driver wants naive UTC datetimes
    text_times: bool = False  # the driver stores times as ISO text

    def table(self, name: str) -> str:
        """The qualified control table name."""
        return self.prefix + name

    def preamble(self) -> list[str]:
        """The statements that come before creating control tables: the creation lock and
        the control schema, where the family has them."""
        return [s for s in (self.create_lock, self.create_schema) if s is not None]

    def creates(self) -> list[str]:
        """The statements that create both tables when missing."""
        out = self.preamble()
        out.append(
            f"CREATE TABLE IF NOT EXISTS {self.table(SUSPENDED)} ("
            f"task {self.text} NOT NULL, table_name {self.text} NOT NULL, "
            f"state {self.text} NOT NULL, reason {self.long_text} NOT NULL, "
            f"position {self.long_text}, suspended_at {self.time} NOT NULL, "
            "PRIMARY KEY (task, table_name))"
        )
        out.append(
            f"CREATE TABLE IF NOT EXISTS {self.table(EXCEPTIONS)} ("
            f"fingerprint {self.text} NOT NULL PRIMARY KEY, task {self.text} NOT NULL, "
            f"table_name {self.text} NOT NULL, kind {self.text} NOT NULL, op {self.text} NOT NULL, "
            f"row_key {self.long_text}, column_name {self.text}, error {self.long_text} NOT NULL, "
            f"position {self.long_text}, created_at {self.time} NOT NULL)"
        )
        return out

    def when(self, ts: datetime) -> Any:
        """``ts`` as the driver stores it."""
        ts = ts.astimezone(UTC)
        if self.text_times:
            return ts.isoformat()
        return ts.replace(tzinfo=None) if self.naive_times else ts


#: the one advisory lock every replikit writer takes before creating or dropping control
#: objects in a PostgreSQL target (checkpoints, status, exceptions, leases, the unit ledger)
PG_CONTROL_LOCK = "SELECT pg_advisory_xact_lock(4242000000000001)"

FLAVORS: dict[str, Flavor] = {
    "postgres": Flavor(
        "replikit.", "%s", "text", "text", "timestamptz",
        exists="SELECT to_regclass(%s) IS NOT NULL", qualified_exists=True,
        create_schema="CREATE SCHEMA IF NOT EXISTS replikit", create_lock=PG_CONTROL_LOCK,
    ),
    "mysql": Flavor(
        "", "%s", "VARCHAR(255)", "LONGTEXT", "DATETIME(6)",
        exists="SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s",
        ignore_insert="INSERT IGNORE INTO {table} ({columns}) VALUES ({values})",
        naive_times=True,
    ),
    "sqlite": Flavor(
        "", "?", "TEXT", "TEXT", "TEXT",
        exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", text_times=True,
    ),
    "duckdb": Flavor(
        "replikit.", "?", "VARCHAR", "VARCHAR", "TIMESTAMPTZ",
        exists="SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'replikit' AND table_name = %s",
        create_schema="CREATE SCHEMA IF NOT EXISTS replikit",
    ),
}  # fmt: skip

_EXCEPTION_COLUMNS = (
    "fingerprint", "task", "table_name", "kind", "op", "row_key", "column_name", "error",
    "position", "created_at",
)  # fmt: skip
_SUSPENDED_COLUMNS = ("task", "table_name", "state", "reason", "position", "suspended_at")


@runtime_checkable
class SupportsControl(Protocol):
    """An endpoint that holds replikit's control tables (PostgreSQL, MySQL/MariaDB, SQLite,
    DuckDB)."""

    family: str

    def control_session(self) -> AbstractContextManager[Any]:
        """A DB-API connection in one transaction: committed when the block ends, rolled
        back when it raises."""
        ...


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


@contextlib.contextmanager
def control_cursor(endpoint: SupportsControl, doing: str) -> Iterator[Any]:
    """A cursor in one transaction of ``endpoint``'s control session: committed when the
    block ends, rolled back when it raises. A driver's error becomes :class:`~replikit.Error`
    naming ``doing`` and the endpoint."""
    try:
        with endpoint.control_session() as conn:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                cur.close()
    except Error:
        raise
    except Exception as exc:
        raise Error(f"{doing} in the control tables of {endpoint!r} failed: {exc}") from exc


def table_exists(cur: Any, flavor: Flavor, name: str) -> bool:
    """Whether control table ``name`` exists (``cur``: a control-session cursor)."""
    named = flavor.table(name) if flavor.qualified_exists else name
    cur.execute(flavor.exists.replace("%s", flavor.param), (named,))
    return any(row[0] for row in cur.fetchall())


class ControlStore(abc.ABC):
    """Where one target keeps its tasks' suspended tables and apply exceptions.

    Each write is durable when the method returns, before the data (and the checkpoint) that
    leaves a table or a change out is committed: a crash in between finds the record (see the
    module docs). Reading before anything was written finds nothing.
    """

    # -- writing ----------------------------------------------------------------------------
    @abc.abstractmethod
    def suspend(self, table: SuspendedTable) -> None:
        """Record ``table`` as suspended (or reloading), replacing its previous record."""

    @abc.abstractmethod
    def resume(self, task: str, table: str) -> None:
        """Forget that ``table`` was suspended (after it was reloaded)."""

    @abc.abstractmethod
    def record(self, exceptions: Sequence[ApplyException]) -> None:
        """Add ``exceptions`` (a record already there, by fingerprint, stays one record)."""

    @abc.abstractmethod
    def drop(self, task: str) -> None:
        """Delete ``task``'s records."""

    # -- reading ----------------------------------------------------------------------------
    @abc.abstractmethod
    def suspended(self, task: str) -> list[SuspendedTable]:
        """The tables of ``task`` that are suspended (or reloading), by table name."""

    @abc.abstractmethod
    def exceptions(
        self, task: str, *, table: str | None = None, limit: int | None = 100
    ) -> list[ApplyException]:
        """``task``'s apply exceptions, the latest first (of ``table`` only, when given)."""

    def count_exceptions(self, task: str) -> dict[str, int]:
        """How many apply exceptions ``task`` has, by table."""
        counts: dict[str, int] = {}
        for e in self.exceptions(task, limit=None):
            counts[e.table] = counts.get(e.table, 0) + 1
        return dict(sorted(counts.items()))


@runtime_checkable
class SupportsControlStore(Protocol):
    """An endpoint that keeps the control records without SQL (files, MongoDB)."""

    def control_store(self) -> ControlStore | None:
        """Its store (``None``: this endpoint, as configured, keeps none)."""
        ...


def latest_exceptions(
    records: Iterable[ApplyException], *, table: str | None, limit: int | None
) -> list[ApplyException]:
    """``records`` (of ``table`` only, when given) the latest first, at most ``limit``: the
    order :meth:`ControlStore.exceptions` returns (for stores that filter in Python)."""
    chosen = [e for e in records if table is None or e.table == table]
    chosen.sort(key=lambda e: e.table)
    chosen.sort(key=lambda e: e.created_at, reverse=True)
    return chosen if limit is None else chosen[: max(0, limit)]


class SqlControlStore(ControlStore):
    """The control tables of an endpoint that holds them (:class:`SupportsControl`).

    Every method runs in one target transaction of its own (see the module docs for why that
    is safe). The tables are created on the first write; reading before that finds nothing.

    Args:
        endpoint: the target (or control) endpoint.
    """

    def __init__(self, endpoint: SupportsControl) -> None:
        flavor = FLAVORS.get(endpoint.family)
        if flavor is None:  # pragma: no cover - families register a flavor with the protocol
            raise CapabilityError(f"{endpoint.family} endpoints hold no control tables")
        self._endpoint = endpoint
        self.flavor = flavor
        self._created = False

    def __repr__(self) -> str:
        return f"SqlControlStore({self._endpoint!r})"

    @contextlib.contextmanager
    def _session(self, doing: str, *, create: bool) -> Iterator[Any]:
        with control_cursor(self._endpoint, doing) as cur:
            if create and not self._created:
                for statement in self.flavor.creates():
                    cur.execute(statement)
            yield cur
        if create:
            self._created = True

    def _sql(self, text: str) -> str:
        return text.replace("%s", self.flavor.param)

    def _exists(self, cur: Any, name: str) -> bool:
        return table_exists(cur, self.flavor, name)

    # -- writing ----------------------------------------------------------------------------
    @override
    def suspend(self, table: SuspendedTable) -> None:
        """Record ``table`` as suspended (or reloading), replacing its previous row."""
        name = self.flavor.table(SUSPENDED)
        with self._session(f"suspending {table.table}", create=True) as cur:
            cur.execute(
                self._sql(f"DELETE FROM {name} WHERE task = %s AND table_name = %s"),  # noqa: S608
                (table.task, table.table),
            )
            marks = ", ".join(["%s"] * len(_SUSPENDED_COLUMNS))
            cur.execute(
                self._sql(f"INSERT INTO {name} ({', '.join(_SUSPENDED_COLUMNS)}) VALUES ({marks})"),  # noqa: S608
                (table.task, table.table, table.state, table.reason, table.position,
                 self.flavor.when(table.suspended_at)),
            )  # fmt: skip
        log.info("table %s suspended (task %s): %s", table.table, table.task, table.reason)

    @override
    def resume(self, task: str, table: str) -> None:
        """Forget that ``table`` was suspended (after it was reloaded)."""
        name = self.flavor.table(SUSPENDED)
        with self._session(f"resuming {table}", create=True) as cur:
            cur.execute(
                self._sql(f"DELETE FROM {name} WHERE task = %s AND table_name = %s"),  # noqa: S608
                (task, table),
            )

    @override
    def record(self, exceptions: Sequence[ApplyException]) -> None:
        """Add ``exceptions`` (a record already there, by fingerprint, stays one row)."""
        if not exceptions:
            return
        statement = self._sql(
            self.flavor.ignore_insert.format(
                table=self.flavor.table(EXCEPTIONS),
                columns=", ".join(_EXCEPTION_COLUMNS),
                values=", ".join(["%s"] * len(_EXCEPTION_COLUMNS)),
            )
        )
        with self._session("recording apply exceptions", create=True) as cur:
            for e in exceptions:
                cur.execute(
                    statement,
                    (e.fingerprint, e.task, e.table, e.kind, e.op, e._key_text(), e.column,
                     e.error, e.position, self.flavor.when(e.created_at)),
                )  # fmt: skip

    @override
    def drop(self, task: str) -> None:
        """Delete ``task``'s rows; drop each table when no task is left in it."""
        with self._session(f"dropping the control rows of task {task!r}", create=False) as cur:
            for name in (SUSPENDED, EXCEPTIONS):
                if not self._exists(cur, name):
                    continue
                table = self.flavor.table(name)
                cur.execute(self._sql(f"DELETE FROM {table} WHERE task = %s"), (task,))  # noqa: S608
                cur.execute(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608
                if not cur.fetchall():
                    cur.execute(f"DROP TABLE {table}")
        self._created = False

    # -- reading ----------------------------------------------------------------------------
    @override
    def suspended(self, task: str) -> list[SuspendedTable]:
        """The tables of ``task`` that are suspended (or reloading), by table name."""
        with self._session("reading suspended tables", create=False) as cur:
            if not self._exists(cur, SUSPENDED):
                return []
            cur.execute(
                self._sql(
                    f"SELECT {', '.join(_SUSPENDED_COLUMNS)} FROM {self.flavor.table(SUSPENDED)} "  # noqa: S608
                    "WHERE task = %s ORDER BY table_name"
                ),
                (task,),
            )
            rows = cur.fetchall()
        return [
            SuspendedTable(
                task=_text(r[0]), table=_text(r[1]), state=_text(r[2]), reason=_text(r[3]),
                position=_text(r[4]), suspended_at=_utc(_text(r[5])),
            )
            for r in rows
        ]  # fmt: skip

    @override
    def exceptions(
        self, task: str, *, table: str | None = None, limit: int | None = 100
    ) -> list[ApplyException]:
        """``task``'s apply exceptions, the latest first (of ``table`` only, when given)."""
        columns = ", ".join(_EXCEPTION_COLUMNS[1:])
        where = "task = %s" + (" AND table_name = %s" if table is not None else "")
        params: tuple[Any, ...] = (task,) if table is None else (task, table)
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        with self._session("reading apply exceptions", create=False) as cur:
            if not self._exists(cur, EXCEPTIONS):
                return []
            cur.execute(
                self._sql(
                    f"SELECT {columns} FROM {self.flavor.table(EXCEPTIONS)} WHERE {where} "  # noqa: S608
                    f"ORDER BY created_at DESC, table_name{tail}"
                ),
                params,
            )
            rows = cur.fetchall()
        return [_exception(r) for r in rows]

    @override
    def count_exceptions(self, task: str) -> dict[str, int]:
        """How many apply exceptions ``task`` has, by table."""
        with self._session("counting apply exceptions", create=False) as cur:
            if not self._exists(cur, EXCEPTIONS):
                return {}
            cur.execute(
                self._sql(
                    f"SELECT table_name, count(*) FROM {self.flavor.table(EXCEPTIONS)} "  # noqa: S608
                    "WHERE task = %s GROUP BY table_name ORDER BY table_name"
                ),
                (task,),
            )
            return {_text(t): int(n) for t, n in cur.fetchall()}


def _exception(row: Sequence[Any]) -> ApplyException:
    task, table, kind, op, key, column, error, position, created = (_text(v) for v in row)
    return ApplyException(
        task=task, table=table, kind=kind, op=op,
        key=None if key is None else json.loads(key), column=column, error=error,
        position=position, created_at=_utc(created),
    )  # fmt: skip


def control_store(endpoint: object) -> ControlStore | None:
    """The control store of ``endpoint``; ``None`` when it keeps no control records (then
    suspensions and exceptions live only in the task's statistics and log)."""
    if isinstance(endpoint, SupportsControlStore):
        return endpoint.control_store()
    if isinstance(endpoint, SupportsControl) and endpoint.family in FLAVORS:
        return SqlControlStore(endpoint)
    return None


def _store(target: object) -> ControlStore:
    from replikit.endpoints.base import Endpoint, endpoint

    ep = target if isinstance(target, Endpoint) else endpoint(target)
    store = control_store(ep)
    if store is None:
        raise CapabilityError(f"{ep.url} keeps no replikit control records")
    return store


def read_suspended(target: object, task: str) -> list[SuspendedTable]:
    """The suspended tables of ``task`` in ``target`` (an endpoint or a URL)."""
    return _store(target).suspended(task)


def read_exceptions(
    target: object, task: str, *, table: str | None = None, limit: int | None = 100
) -> list[ApplyException]:
    """The latest apply exceptions of ``task`` in ``target`` (an endpoint or a URL)."""
    return _store(target).exceptions(task, table=table, limit=limit)


def count_exceptions(target: object, task: str) -> dict[str, int]:
    """The number of apply exceptions of ``task`` in ``target``, by table."""
    return _store(target).count_exceptions(task)
