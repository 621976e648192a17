"""SQLite URLs and connections; sqlite3 errors are translated here.

A file database gets a private read-only connection per reader call (``mode=ro``: reading never
creates a file) and one shared write connection per endpoint (SQLite has one writer at a time,
so writers serialise on its lock). An in-memory database exists only inside its connection, so
``sqlite:///:memory:`` uses one shared connection for reading and writing: data written through
an endpoint's writer is visible to the same endpoint's reader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from replikit.errors import ConfigError, ConnectError

__all__ = ["Connections", "Location", "parse_url"]

log = logging.getLogger("replikit.sqlite")

_MEMORY = ("", "/", ":memory:", "/:memory:")


@dataclass(frozen=True, slots=True)
class Location:
    """Where the database lives: a file path, or ``None`` for an in-memory database."""

    path: str | None

    @property
    def memory(self) -> bool:
        """True for ``sqlite:///:memory:``."""
        return self.path is None


def parse_url(url: str) -> Location:
    """``sqlite:///rel.db``, ``sqlite:////abs.db``, ``sqlite:///:memory:`` or a bare path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return Location(url)
    if scheme.lower().partition("+")[0] != "sqlite":
        raise ConfigError(f"not a sqlite URL: {scheme}://...")
    if "?" in rest:
        raise ConfigError("sqlite URLs take no query parameters (pass options as keywords)")
    if rest in _MEMORY:
        return Location(None)
    if not rest.startswith("/"):
        raise ConfigError(
            "sqlite URLs have no host: use sqlite:///relative.db, sqlite:////abs/path.db "
            "or sqlite:///:memory:"
        )
    return Location(urllib.parse.unquote(rest[1:]))


def _missing(path: str) -> ConnectError:
    return ConnectError(f"no such database file {path!r}")


def translate(exc: sqlite3.Error, where: str) -> ConnectError:
    """A connection-level sqlite3 error as :class:`ConnectError`."""
    return ConnectError(f"cannot open SQLite database {where}: {exc}")


class Connections:
    """The connections of one endpoint."""

    def __init__(self, location: Location, *, timeout: float = 30.0) -> None:
        self.location = location
        self.timeout = timeout
        self.lock = threading.RLock()
        self._shared: sqlite3.Connection | None = None

    @property
    def where(self) -> str:
        """The path for messages."""
        return ":memory:" if self.location.path is None else repr(self.location.path)

    def exists(self) -> bool:
        """True when the database exists (an in-memory one always does)."""
        return self.location.path is None or os.path.exists(self.location.path)

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        log.debug("opening %s", self.where)
        try:
            conn = sqlite3.connect(
                target,
                uri=uri,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            path = self.location.path
            if path is not None and os.path.isdir(path):  # SQLite says "disk I/O error"
                raise ConnectError(
                    f"cannot open SQLite database {self.where}: it is a folder, not a database "
                    "file; name the file, e.g. sqlite:///folder/name.db"
                ) from None
            raise translate(exc, self.where) from exc
        return conn

    def _open_read(self) -> sqlite3.Connection:
        path = self.location.path
        assert path is not None
        if not os.path.exists(path):
            raise _missing(path)
        quoted = urllib.parse.quote(os.path.abspath(path))
        return self._connect(f"file:{quoted}?mode=ro", uri=True)

    @contextlib.contextmanager
    def reading(self) -> Iterator[tuple[sqlite3.Connection, bool]]:
        """A connection to read with, and whether it is shared (then hold :attr:`lock`)."""
        if self.location.memory:
            yield self.shared(), True
            return
        conn = self._open_read()
        try:
            yield conn, False
        finally:
            conn.close()

    def shared(self) -> sqlite3.Connection:
        """The endpoint's write connection (created on first use; WAL, foreign keys off)."""
        with self.lock:
            if self._shared is None:
                self._shared = self._open_write()
            return self._shared

    def _open_write(self) -> sqlite3.Connection:
        path = self.location.path
        if path is None:
            return self._connect(":memory:", uri=False)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ConnectError(f"cannot create SQLite database {path!r}: no folder {folder!r}")
        conn = self._connect(path, uri=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise translate(exc, self.where) from exc
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    def close(self) -> None:
        """Close the shared connection (an in-memory database is gone after this)."""
        with self.lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
