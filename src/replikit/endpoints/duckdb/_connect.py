"""DuckDB URLs and the one database instance of an endpoint; driver errors translated here.

DuckDB lets one process open a database file read-write (a second process is refused with a
lock error). An endpoint opens its database once, on first use, and gives every reader call,
load and apply its own connection to it (``cursor()``): DuckDB connections of one instance
may run in different threads at once, each in its own transaction. ``duckdb:///:memory:``
is one in-memory database per endpoint: what its writer loads, its reader sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from replikit.endpoints.base import require
from replikit.errors import ConfigError, ConnectError

__all__ = ["Database", "Location", "driver", "parse_url", "rollback"]

log = logging.getLogger(__name__)

_MEMORY = ("", "/", ":memory:", "/:memory:")
#: DuckDB's memory limit for an index the endpoint's limit cannot build (then none, if that
#: is not enough either)
BUILD_MEMORY = "256MB"


def driver() -> Any:
    """The ``duckdb`` module (MissingDependencyError with the pip hint when absent)."""
    return require("duckdb", package="duckdb", extra="duckdb", purpose="The DuckDB endpoint")


def rollback(conn: Any) -> None:
    """End the connection's transaction, if one is open (an aborted one included)."""
    # none may be open: a refused statement's handler rolled it back already
    with contextlib.suppress(driver().TransactionException):
        conn.execute("ROLLBACK")


@dataclass(frozen=True, slots=True)
class Location:
    """Where the database lives: a file path, or ``None`` in memory."""

    path: str | None


def parse_url(url: str) -> Location:
    """``duckdb:///rel.duckdb``, ``duckdb:////abs.duckdb`` or ``duckdb:///:memory:``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "duckdb":
        raise ConfigError(f"not a duckdb URL: {url!r}")
    if rest in _MEMORY:
        return Location(None)
    if not rest.startswith("/"):
        raise ConfigError(
            "duckdb URLs have no host: use duckdb:///relative.duckdb, "
            "duckdb:////abs/path.duckdb or duckdb:///:memory:"
        )
    return Location(urllib.parse.unquote(rest[1:]))


class Database:
    """The endpoint's database instance, opened on first use."""

    def __init__(
        self,
        location: Location,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        limit_chosen: bool = True,
    ) -> None:
        self.location = location
        self.threads = threads
        self.memory_limit = memory_limit
        #: whether the user set ``memory_limit`` (else a load may raise it: :meth:`widened`)
        self.limit_chosen = limit_chosen
        self._lock = threading.Lock()
        self._db: Any = None

    @property
    def where(self) -> str:
        """The path for messages."""
        return ":memory:" if self.location.path is None else repr(self.location.path)

    def exists(self) -> bool:
        """True when the database exists (an in-memory one always does)."""
        return self.location.path is None or os.path.exists(self.location.path)

    def _open(self) -> Any:
        duckdb = driver()
        path = self.location.path
        if path is not None:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ConnectError(f"cannot open DuckDB database {path!r}: no folder {folder!r}")
        config: dict[str, Any] = {}
        if self.threads is not None:
            config["threads"] = self.threads
        if self.memory_limit is not None:
            config["memory_limit"] = self.memory_limit
        try:
            return duckdb.connect(":memory:" if path is None else path, config=config)
        except duckdb.Error as exc:
            raise ConnectError(f"cannot open DuckDB database {self.where}: {exc}") from exc

    def connection(self, *, create: bool = True) -> Any:
        """A new connection to the database (UTC session time zone); ``create=False``: a
        missing file is :class:`ConnectError` instead of being created."""
        with self._lock:
            if self._db is None:
                if not create and not self.exists():
                    raise ConnectError(f"no such database file {self.location.path!r}")
                self._db = self._open()
            conn = self._db.cursor()
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    @contextlib.contextmanager
    def connected(self, *, create: bool = True) -> Iterator[Any]:
        """:meth:`connection`, closed at the end of the block."""
        conn = self.connection(create=create)
        try:
            yield conn
        finally:
            conn.close()

    def build(self, conn: Any, statement: str) -> None:
        """Run an index-building ``statement`` under the endpoint's memory limit, then, when
        DuckDB runs out of that, under :data:`BUILD_MEMORY`, then without a limit; the
        endpoint's limit again after it. (Measured, 1M rows: the primary key builds under
        32MB, 0.34 s against 0.23 s under 256MB, which took 30 MB more peak RSS; a refused
        attempt costs 0.06-0.2 s.)"""
        duckdb = driver()
        if self.memory_limit is None:
            conn.execute(statement)
            return
        try:
            for limit in (self.memory_limit, BUILD_MEMORY, None):
                if limit is None:
                    conn.execute("RESET memory_limit")
                else:
                    conn.execute(f"SET memory_limit = '{limit}'")
                try:
                    conn.execute(statement)
                except duckdb.OutOfMemoryException:
                    if limit is None:
                        raise
                    continue
                return
        finally:
            self._restore_limit(conn)

    @contextlib.contextmanager
    def widened(self, conn: Any, limit: str | None) -> Iterator[None]:
        """``limit`` as the memory limit for the block, then the endpoint's again: only where
        the user did not choose a limit and ``limit`` is given (a reader's
        ``engine_memory``, what its stream was measured fastest with)."""
        if limit is None or self.limit_chosen or self.memory_limit is None:
            yield
            return
        conn.execute(f"SET memory_limit = '{limit}'")
        try:
            yield
        finally:
            self._restore_limit(conn)

    def _restore_limit(self, conn: Any) -> None:
        """The endpoint's memory limit again; an index built over it is held in memory until
        a checkpoint writes it out (DuckDB refuses the lower limit until then)."""
        duckdb = driver()
        restore = f"SET memory_limit = '{self.memory_limit}'"
        try:
            conn.execute(restore)
        except duckdb.OutOfMemoryException:
            conn.execute("CHECKPOINT")
            try:
                conn.execute(restore)
            except duckdb.OutOfMemoryException as exc:
                log.warning("DuckDB %s keeps a memory limit above %s: %s", self.where,
                            self.memory_limit, str(exc).splitlines()[0])  # fmt: skip

    def close(self) -> None:
        """Close the database (an in-memory one is gone; a file is unlocked)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
