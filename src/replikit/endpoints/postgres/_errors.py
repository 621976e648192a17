"""The one place where psycopg errors become replikit errors.

Connection failures become :class:`~replikit.ConnectError` with the cause in plain words and
what to check; row failures become :class:`~replikit.DataError` naming table, column and key.
Messages never carry the password: it is scrubbed from driver text, and driver exceptions
are not chained when their text held it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from replikit.endpoints.base import hide_secret, require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402
from psycopg import errors as pgerrors  # noqa: E402

from replikit.endpoints.postgres._params import ConnParams  # noqa: E402
from replikit.errors import (  # noqa: E402
    AccessError,
    ConnectError,
    DataError,
    Error,
    SchemaError,
    TransientError,
)

__all__ = [
    "by_cause",
    "connect_error",
    "copy_position",
    "data_error",
    "read_error",
    "refusal",
    "scrub",
]


def scrub(text: str, params: ConnParams) -> str:
    """``text`` without the password (and any ``password=...`` conninfo fragment).

    The password reaches libpq as a keyword, never inside a message; this only guards
    against a driver echoing it, and matches whole occurrences only.
    """
    return _CONNINFO_PASSWORD.sub(r"\1***", hide_secret(text, params.password))


_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s']\S*)")


def connect_error(exc: psycopg.Error, params: ConnParams) -> ConnectError:
    """A :class:`ConnectError` explaining why connecting to ``params`` failed."""
    raw = scrub(str(exc).strip(), params)
    where = params.where()
    user = params.user or "(default user)"
    state = getattr(exc, "sqlstate", None) or ""
    low = raw.lower()
    if state in ("28P01", "28000") or "password authentication failed" in low:
        hint = f"login refused for user {user!r} at {where}; check the user name and password"
        return AccessError(f"{hint} (driver said: {raw})")
    if state == "3D000" or ("database" in low and "does not exist" in low):
        hint = f"database {params.dbname!r} does not exist at {where}; create it or fix the URL"
        return AccessError(f"{hint} (driver said: {raw})")
    if state == "42501" or "must be superuser or replication role" in low:
        hint = (
            f"user {user!r} lacks a privilege it needs at {where} (replication connections "
            f"need the REPLICATION attribute: ALTER ROLE {user} REPLICATION)"
        )
        return AccessError(f"{hint} (driver said: {raw})")
    if "could not translate host name" in low or "name or service not known" in low:
        hint = f"unknown host {params.host!r}; check the host name in the URL"
    elif "connection refused" in low:
        hint = f"connection refused by {where}; is PostgreSQL running and listening there?"
    elif isinstance(exc, pgerrors.ConnectionTimeout) or "timeout" in low:
        hint = (
            f"no answer from {where} within {params.connect_timeout} s (connect_timeout); "
            "check the host, port and firewall"
        )
    else:
        hint = f"could not connect to {where}"
    return ConnectError(f"{hint} (driver said: {raw})")


_COPY_CONTEXT = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:]+))?")


def copy_position(exc: psycopg.Error) -> tuple[int | None, str | None]:
    """(1-based line, column name) of a COPY FROM error, from the server's CONTEXT."""
    context = exc.diag.context or ""
    m = _COPY_CONTEXT.search(context)
    if m is None:
        return None, exc.diag.column_name
    return int(m.group(1)), m.group(2) or exc.diag.column_name


def data_error(
    exc: BaseException, table: str, *, column: str | None, key: Mapping[str, Any] | None
) -> Error:
    """A :class:`DataError` for a failed write; by cause, not by where it surfaced (see
    :func:`by_cause`), a missing table is :class:`SchemaError`."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, pgerrors.UndefinedTable | pgerrors.UndefinedColumn):
        return SchemaError(f"cannot write {table}: {message}")
    cause = by_cause(exc, f"writing {table}")
    if cause is not None:
        return cause
    return DataError(f"cannot write row: {message}", table=table, column=column, key=key)


#: admin shutdown, crash shutdown, cannot connect now (the server is restarting)
_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})


def by_cause(exc: BaseException, doing: str) -> Error | None:
    """The retryable error ``exc`` is, whatever statement raised it: a lost connection or a
    server shutting down (:class:`ConnectError`), a deadlock, serialization failure or lock
    timeout (:class:`TransientError`); ``None`` for anything else."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    state = getattr(exc, "sqlstate", None) or ""
    client_side = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not state
    if client_side or state.startswith("08") or state in _SHUTDOWN:
        return ConnectError(f"lost the connection while {doing}: {message}")
    if isinstance(exc, pgerrors.TransactionRollback | pgerrors.LockNotAvailable):
        return TransientError(f"{doing} gave up, retry: {message} ({exc.sqlstate})")
    return None


#: what to grant for each action a writer takes (``{obj}``, ``{schema}``, ``{user}``)
_GRANTS = {
    "create": "GRANT CREATE ON SCHEMA {schema} TO {user}",
    "load": "GRANT INSERT ON {obj} TO {user}",
    "truncate": "GRANT TRUNCATE ON {obj} TO {user}",
    "index": "ALTER TABLE {obj} OWNER TO {user} (indexes and keys need the owner)",
}


def refusal(
    exc: psycopg.Error, action: str, obj: str, params: ConnParams, *, schema: str | None = None
) -> SchemaError | None:
    """A :class:`SchemaError` naming the object and the missing right when the server refused
    ``action`` on ``obj`` for lack of privilege or because it is read-only; else None.

    Decided by SQLSTATE class (42501 insufficient_privilege, 25006 read_only_sql_transaction),
    never by the message text.
    """
    where = params.where()
    user = params.user or "(default user)"
    said = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", params)
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return SchemaError(
            f"cannot {action} {obj}: the target {where} is read-only (a standby, or "
            "default_transaction_read_only is on); use a writable primary database "
            f"(server said: {said})"
        )
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        grant = _GRANTS.get(action, "grant the privilege").format(
            obj=obj, schema=schema or "public", user=user
        )
        return SchemaError(
            f"cannot {action} {obj}: user {user!r} lacks the privilege at {where}; "
            f"as an administrator run: {grant} (server said: {said})"
        )
    return None


def read_error(exc: psycopg.Error, table: str, params: ConnParams) -> Error:
    """A replikit error for a failed read of ``table`` (by exception class and SQLSTATE)."""
    where = params.where()
    said = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", params)
    said = said or type(exc).__name__
    if isinstance(exc, pgerrors.UndefinedTable | pgerrors.UndefinedColumn):
        return SchemaError(
            f"cannot read {table} at {where}: it was dropped or changed after planning "
            f"({said}); plan and run the task again"
        )
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        user = params.user or "(default user)"
        return SchemaError(
            f"cannot read {table}: user {user!r} lacks SELECT at {where}; as an administrator "
            f"run: GRANT SELECT ON {table} TO {user} (server said: {said})"
        )
    if isinstance(exc, psycopg.OperationalError):
        return ConnectError(f"lost the connection to {where} while reading {table}: {said}")
    return DataError(f"cannot read {table} at {where}: {said}", table=table)
