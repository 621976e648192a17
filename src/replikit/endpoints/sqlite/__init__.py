"""The SQLite endpoint family (stdlib ``sqlite3``; no extra to install).

URLs: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` (or a bare
path ending in ``.db``/``.sqlite``/``.sqlite3``). A missing file is an error for reading
(``ConnectError: no such database file``) and is created when written to.

``sqlite:///:memory:`` is one shared connection: what the endpoint's writer loads, its reader
and ``reflect`` see, until :meth:`SqliteEndpoint.close`. It is useful in tests and notebooks.

>>> import replikit as rk
>>> with rk.endpoint("sqlite:///:memory:") as db:
...     db.capabilities.schemas
False
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from replikit.endpoints.base import Capabilities, Endpoint
from replikit.endpoints.sqlite._conn import Connections, parse_url
from replikit.endpoints.sqlite._dialect import DIALECT, SqliteDialect
from replikit.errors import ConnectError, SchemaError
from replikit.mapping import Selection
from replikit.schema.model import Catalog, TableId, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.sqlite.source import SqliteReader
    from replikit.endpoints.sqlite.target import SqliteWriter

__all__ = ["SqliteDialect", "SqliteEndpoint"]

_OPTIONS = {"timeout", "batch_size", "commit_rows"}


class SqliteEndpoint(Endpoint):
    """A SQLite database file (or an in-memory database).

    Options: ``timeout`` (seconds to wait for a lock, default 30), ``batch_size`` (rows per
    batch read, default 10,000), ``commit_rows`` (rows per write transaction, default 10,000).
    """

    schemes = ("sqlite",)
    family = "sqlite"
    capabilities = Capabilities(schemas=False, concurrent_writes=False, cdc=False)

    def __init__(self, url: str, **options: Any) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown SQLite endpoint options: {', '.join(sorted(unknown))}")
        super().__init__(url, **options)
        self._location = parse_url(url)
        self._conns = Connections(self._location, timeout=float(options.get("timeout", 30.0)))

    @property
    @override
    def dialect(self) -> SqliteDialect:
        """SQLite quoting, type rules and defaults."""
        return DIALECT

    @property
    def path(self) -> str | None:
        """The database file, or ``None`` for an in-memory database."""
        return self._location.path

    @override
    def check(self) -> None:
        """Open the database once; a missing file passes if it could be created as a target."""
        if self._conns.exists():
            with self._conns.reading() as (conn, _):
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        assert self._location.path is not None
        folder = os.path.dirname(os.path.abspath(self._location.path))
        if not os.path.isdir(folder):
            raise ConnectError(
                f"no such database file {self._location.path!r} (and no folder {folder!r} "
                "to create it in)"
            )

    @override
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """User tables (not ``sqlite_%``/``_replikit_%``) and views chosen by ``selection``."""
        from replikit.endpoints.sqlite.reflect import reflect_catalog

        with self._conns.reading() as (conn, shared), self._locked(shared):
            return reflect_catalog(conn, selection)

    @override
    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> SqliteReader:
        """A :class:`~replikit.endpoints.sqlite.source.SqliteReader` for ``tables``.

        ``tables`` holds names, ``TableId`` s (schema ignored) or ``TableSchema`` s; ``None``
        means every user table. Options: ``batch_size``.
        """
        from replikit.endpoints.sqlite.source import SqliteReader

        batch_size = int(options.pop("batch_size", self.options.get("batch_size", 10_000)))
        if options:
            raise TypeError(f"unknown reader options: {', '.join(sorted(options))}")
        return SqliteReader(self._conns, self._resolve(tables), batch_size=batch_size)

    def _resolve(self, tables: Sequence[Any] | None) -> list[TableSchema]:
        from replikit.endpoints.sqlite.reflect import reflect_table

        if tables is None:
            return list(self.reflect().tables)
        wanted = [t for t in tables if not isinstance(t, TableSchema)]
        found: dict[str, TableSchema] = {}
        if wanted:
            with self._conns.reading() as (conn, shared), self._locked(shared):
                for item in wanted:
                    name = item.name if isinstance(item, TableId) else str(item)
                    schema = reflect_table(conn, name)
                    if schema is None:
                        raise SchemaError(f"no table {name!r} in {self.url}")
                    found[name] = schema
        return [
            t if isinstance(t, TableSchema) else found[t.name if isinstance(t, TableId) else str(t)]
            for t in tables
        ]

    @override
    def writer(self, **options: Any) -> SqliteWriter:
        """A :class:`~replikit.endpoints.sqlite.target.SqliteWriter` (options: ``commit_rows``)."""
        from replikit.endpoints.sqlite.target import SqliteWriter

        commit_rows = int(options.pop("commit_rows", self.options.get("commit_rows", 10_000)))
        if options:
            raise TypeError(f"unknown writer options: {', '.join(sorted(options))}")
        return SqliteWriter(self._conns, commit_rows=commit_rows)

    def _locked(self, shared: bool) -> contextlib.AbstractContextManager[Any]:
        return self._conns.lock if shared else contextlib.nullcontext()

    @override
    def close(self) -> None:
        """Close the write connection (an in-memory database is discarded)."""
        self._conns.close()
