"""The one place that imports a MySQL driver, opens connections and translates driver errors.

Two DB-API drivers are supported: mysqlclient (``MySQLdb``, C, about 1.6x faster than PyMySQL
end to end in ``benchmarks/full_load_mysql.py``) and PyMySQL (pure Python, always installed with
``replikit[mysql]`` because the binlog reader needs it). ``driver="auto"`` takes mysqlclient
when it is importable.

Every connection gets replikit's session: ``time_zone='+00:00'`` (TIMESTAMP values read and
written as UTC instants, whatever the server's zone), a strict ``sql_mode`` without
``NO_BACKSLASH_ESCAPES`` (the drivers escape with backslashes) and with
``NO_AUTO_VALUE_ON_ZERO`` (a loaded 0 stays 0 in an AUTO_INCREMENT column), utf8mb4, and long
network timeouts so a slow consumer of a streaming read is not cut off.

Connection failures become :class:`~replikit.ConnectError`, row failures
:class:`~replikit.DataError` naming table, column and key; the password never appears in a
message and driver exceptions whose text held it are not chained.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replikit.endpoints.base import hide_secret, require
from replikit.endpoints.mysql._params import ConnParams
from replikit.errors import (
    AccessError,
    ConnectError,
    DataError,
    Error,
    MissingDependencyError,
    SchemaError,
    TransientError,
)

#: client/server error numbers of a connection that is gone (gone away, lost, killed)
LOST_CONNECTION = frozenset({2006, 2013, 2055, 1927, 4031, 1053})
#: a transaction the server gave up that may succeed when run again: deadlock, lock wait timeout
TRANSIENT = frozenset({1213, 1205})

__all__ = [
    "SQL_MODE",
    "Driver",
    "connect",
    "connect_error",
    "data_error",
    "driver_of",
    "load_driver",
    "read_error",
    "scrub",
    "setup_session",
]

log = logging.getLogger("replikit.mysql")

SQL_MODE = (
    "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
)
_TIMEOUT = 86_400  # seconds a streaming read may wait for its consumer


@dataclass(frozen=True, slots=True)
class Driver:
    """One DB-API driver module and the pieces replikit uses from it."""

    name: str
    module: Any
    ss_cursor: type[Any]
    Error: type[Exception]
    OperationalError: type[Exception]

    def warning_count(self, conn: Any, cursor: Any) -> int:
        """Warnings of the last statement run by ``cursor`` on ``conn``."""
        if self.name == "mysqlclient":
            return int(conn.warning_count())
        return int(cursor.warning_count)


def _mysqlclient() -> Driver:
    mod = importlib.import_module("MySQLdb")
    cursors = importlib.import_module("MySQLdb.cursors")
    return Driver("mysqlclient", mod, cursors.SSCursor, mod.Error, mod.OperationalError)


def _pymysql() -> Driver:
    mod = require("pymysql", package="PyMySQL", extra="mysql", purpose="The MySQL endpoint")
    cursors = importlib.import_module("pymysql.cursors")
    return Driver("pymysql", mod, cursors.SSCursor, mod.Error, mod.OperationalError)


_LOADED: dict[str, Driver] = {}


def load_driver(name: str = "auto") -> Driver:
    """The driver called ``name`` (``auto``: mysqlclient if installed, else PyMySQL)."""
    if name in _LOADED:
        return _LOADED[name]
    if name == "mysqlclient":
        try:
            driver = _mysqlclient()
        except ImportError as exc:
            raise MissingDependencyError(
                "mysqlclient", "mysqlclient", "driver=mysqlclient"
            ) from exc
    elif name == "pymysql":
        driver = _pymysql()
    else:
        try:
            driver = _mysqlclient()
        except ImportError:
            driver = _pymysql()
    _LOADED[name] = driver
    return driver


def driver_of(conn: Any) -> Driver:
    """The driver a caller-supplied connection belongs to."""
    module = type(conn).__module__
    if module.startswith("MySQLdb"):
        return load_driver("mysqlclient")
    if module.startswith("pymysql"):
        return load_driver("pymysql")
    raise TypeError(f"not a MySQLdb or PyMySQL connection: {type(conn).__name__}")


def setup_session(conn: Any, *, sql_mode: bool = True) -> None:
    """Apply replikit's session settings (see the module docstring) to ``conn``."""
    settings = [
        "time_zone = '+00:00'",
        f"net_write_timeout = {_TIMEOUT}",
        f"net_read_timeout = {_TIMEOUT}",
    ]
    if sql_mode:
        settings.append(f"sql_mode = '{SQL_MODE}'")
    with conn.cursor() as cur:
        cur.execute("SET SESSION " + ", ".join(settings))


def connect(params: ConnParams, *, autocommit: bool = False, local_infile: bool = False) -> Any:
    """A DB-API connection to ``params`` with replikit's session; ``ConnectError`` on failure.

    ``params.connect_timeout`` bounds the TCP connect, the server greeting, the login and the
    session setup (PyMySQL would otherwise wait for a silent server's greeting for ever);
    after that, reads may take as long as the server needs and a dead peer is found by TCP
    keepalive probes (:func:`_keep_alive`).
    """
    driver = load_driver(params.driver)
    user = params.user or "the default user"
    log.debug("connecting to %s as %s with %s", params.where(), user, driver.name)
    bounded = {"read_timeout": params.connect_timeout, "write_timeout": params.connect_timeout}
    try:
        if driver.name == "mysqlclient":
            kwargs = params.mysqlclient_kwargs(autocommit=autocommit)
            if local_infile:
                kwargs["local_infile"] = 1
            conn = driver.module.connect(**kwargs)
        else:
            conn = driver.module.connect(
                **params.pymysql_kwargs(autocommit=autocommit, local_infile=local_infile, **bounded)
            )
    except driver.Error as exc:
        err = connect_error(exc, params)
        hidden = bool(params.password) and str(params.password) in str(exc)
        raise err from (None if hidden else exc)
    except UnicodeEncodeError:  # PyMySQL sends the login in Latin-1; no part of it is shown
        raise ConnectError(
            f"cannot log in to {params.where()} with {driver.name}: the user name or password "
            "holds characters outside Latin-1, which it cannot send (mysqlclient can: "
            "mysql+mysqldb://)"
        ) from None
    try:
        setup_session(conn)
    except driver.Error as exc:
        conn.close()
        raise ConnectError(
            f"could not set up a session at {params.where()}: {scrub(str(exc), params)}"
        ) from None
    _keep_alive(conn, driver, params.connect_timeout)
    return conn


def _keep_alive(conn: Any, driver: Driver, seconds: int) -> None:
    """Unbound the reads of an established connection; let TCP keepalives find a dead peer.

    A long statement (an index build, a big sort before the first row) must not be cut off,
    so the connect-time read timeout is lifted; a silent peer is detected after ``seconds``
    idle seconds and 3 unanswered probes ``seconds`` apart.
    """
    if driver.name == "pymysql":
        # PyMySQL re-applies these before each read and write; None means wait as needed
        conn._read_timeout = None
        conn._write_timeout = None
        fd = conn._sock.fileno() if conn._sock is not None else -1
    else:
        fd = conn.fileno()
    if fd < 0:
        return
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", seconds), ("TCP_KEEPINTVL", seconds)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        if hasattr(socket, "TCP_KEEPCNT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def scrub(text: str, params: ConnParams) -> str:
    """``text`` without the password: whole occurrences only, so ``(using password: NO)``
    and words that happen to contain a short password stay readable. The drivers get the
    password as a keyword and do not put it in their messages; this is a second guard."""
    return hide_secret(text, params.password)


def error_code(exc: BaseException) -> int | None:
    """The server/client error number of a driver exception, when it has one."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def error_text(exc: BaseException) -> str:
    """The message of a driver exception without its error number."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return str(args[1])
    return str(exc)


def connect_error(exc: BaseException, params: ConnParams) -> ConnectError:
    """A :class:`ConnectError` explaining why connecting to ``params`` failed."""
    raw = scrub(error_text(exc).strip(), params)
    code = error_code(exc)
    where = params.where()
    user = params.user or "(default user)"
    low = raw.lower()
    if code in (1044, 1045, 1698) or "access denied" in low:
        hint = f"login refused for user {user!r} at {where}; check the user name and password"
        return AccessError(f"{hint} (driver said: {raw})")
    if code == 1049 or "unknown database" in low:
        hint = f"database {params.database!r} does not exist at {where}; create it or fix the URL"
        return AccessError(f"{hint} (driver said: {raw})")
    if code == 2005 or ("unknown" in low and "host" in low):
        hint = f"unknown host {params.host!r}; check the host name in the URL"
    elif _timed_out(exc, code):
        hint = (
            f"no answer from {where} within {params.connect_timeout} s (connect_timeout); "
            "check the host, port and firewall"
        )
    elif code in (2002, 2003) or "can't connect" in low:
        hint = f"connection refused by {where}; is the MySQL/MariaDB server running there?"
    else:
        hint = f"could not connect to {where}"
    return ConnectError(f"{hint} (driver said: {raw})")


def _timed_out(exc: BaseException, code: int | None) -> bool:
    """True when connecting gave up waiting (PyMySQL keeps the socket error it wraps;
    libmysqlclient reports a handshake that never came as a lost connection, 2013)."""
    return isinstance(getattr(exc, "original_exception", None), TimeoutError) or code == 2013


def data_error(
    exc: BaseException,
    table: str,
    *,
    column: str | None = None,
    key: Mapping[str, Any] | None = None,
) -> Error:
    """A :class:`DataError` for a failed write; by cause, not by where it surfaced: a lost
    connection is :class:`ConnectError`, a deadlock or lock wait timeout
    :class:`TransientError` (both retried), a missing table :class:`SchemaError`."""
    message = error_text(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = error_code(exc)
    if code in (1146, 1054):
        return SchemaError(f"cannot write {table}: {message}")
    if code in LOST_CONNECTION:
        return ConnectError(f"lost the connection while writing {table}: {message}")
    if code in TRANSIENT:
        return TransientError(f"writing {table} gave up, retry: {message} (error {code})")
    if column is None:
        column = column_in_message(message)
    return DataError(f"cannot write row: {message}", table=table, column=column, key=key)


def read_error(exc: BaseException, table: str, params: ConnParams) -> Error:
    """A replikit error for a failed read of ``table`` (decided by the error number)."""
    code = error_code(exc)
    said = scrub(error_text(exc).strip(), params) or type(exc).__name__
    where = params.where()
    if code in (1146, 1054):  # no such table / column
        return SchemaError(
            f"cannot read {table} at {where}: it was dropped or changed after planning "
            f"({said}); plan and run the task again"
        )
    if code in (1142, 1143):  # SELECT denied on table / column
        user = params.user or "(default user)"
        return SchemaError(
            f"cannot read {table}: user {user!r} lacks SELECT at {where}; as an administrator "
            f"run: GRANT SELECT ON {table} TO {user!r} (server said: {said})"
        )
    return DataError(f"cannot read {table} at {where}: {said}", table=table)


def column_in_message(message: str) -> str | None:
    """The column a MySQL error message names (``... for column `db`.`t`.`c` at row 1``)."""
    m = re.search(r"column\s+((?:`[^`]*`\.)*`[^`]*`|'[^']*')", message, re.I)
    if m is None:
        return None
    last = m.group(1).split(".")[-1]
    return last.strip("`'")
