"""The SQLite endpoint family (stdlib ``sqlite3``; no extra to install).

URLs: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` (or a bare
path ending in ``.db``/``.sqlite``/``.sqlite3``). A missing file is an error for reading
(``ConnectError: no such database file``) and is created when written to.

``sqlite:///:memory:`` is one shared connection: what the endpoint's writer loads, its reader
and ``reflect`` see, until :meth:`SqliteEndpoint.close`. It is useful in tests and notebooks,
but cannot be a CDC source.

Options are keywords or URL query parameters (``sqlite:///app.db?cdc_setup=true``); a keyword
wins over the URL. CDC reads the changes that triggers record (:mod:`.cdc`); replikit creates
those triggers on the source only when asked to (``cdc_setup=True``).

>>> import replikit as rk
>>> with rk.endpoint("sqlite:///:memory:") as db:
...     db.capabilities.schemas
False
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from replikit.endpoints.base import Capabilities, Endpoint, check_creatable
from replikit.endpoints.sqlite._connect import Connections, parse_url
from replikit.endpoints.sqlite._dialect import DIALECT, SqliteDialect
from replikit.errors import ConfigError, TableNotFoundError
from replikit.mapping import Selection
from replikit.schema.model import Catalog, TableId, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.sqlite.apply import SqliteChangeWriter
    from replikit.endpoints.sqlite.cdc import SqliteChangeReader
    from replikit.endpoints.sqlite.source import SqliteReader
    from replikit.endpoints.sqlite.target import SqliteWriter
    from replikit.positions import SqliteSeq

__all__ = ["SqliteDialect", "SqliteEndpoint"]

_OPTIONS = {"timeout", "batch_size", "commit_rows", "cdc_setup"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _url_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without its query, and the options the query sets (typed)."""
    base, sep, query = url.partition("?")
    if not sep or "://" not in base:
        return url, {}
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True):
        if key not in _OPTIONS:
            raise ConfigError(
                f"unknown SQLite URL parameter {key!r}; known: {', '.join(sorted(_OPTIONS))}"
            )
        options[key] = _typed(key, value)
    return base, options


def _typed(key: str, value: str) -> Any:
    try:
        if key == "cdc_setup":
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError(value)
            return value.lower() in _TRUE
        return float(value) if key == "timeout" else int(value)
    except ValueError:
        raise ConfigError(f"bad value {value!r} for SQLite URL parameter {key!r}") from None


class SqliteEndpoint(Endpoint):
    """A SQLite database file (or an in-memory database).

    Options: ``timeout`` (seconds to wait for a lock, default 30), ``batch_size`` (rows per
    batch read, default 10,000), ``commit_rows`` (rows per write transaction, default 10,000;
    a load of Arrow batches also commits every ~2 MB of them), ``cdc_setup`` (default False:
    replikit may create the CDC change table and triggers on this database, and remake them
    after ``ALTER TABLE ... ADD COLUMN``).
    """

    schemes = ("sqlite",)
    family = "sqlite"
    capabilities = Capabilities(schemas=False, concurrent_writes=False, cdc=True)

    endpoint_options = frozenset(_OPTIONS)

    def __init__(self, url: str, **options: Any) -> None:
        base, from_url = _url_options(url)
        super().__init__(url, **{**from_url, **options})
        self._location = parse_url(base)
        timeout = float(self.options.get("timeout", 30.0))
        self._conns = Connections(self._location, timeout=timeout)

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
        check_creatable(self._location.path, "sqlite")

    @override
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """User tables (not ``sqlite_%``, nor replikit's own tables,
        :mod:`replikit.endpoints._reserved`) and chosen views."""
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

        return self._build(SqliteReader, "reader", self._conns, self._resolve(tables), **options)

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
                        raise TableNotFoundError(f"no table {name!r} in {self.url}", table=name)
                    found[name] = schema
        return [
            t if isinstance(t, TableSchema) else found[t.name if isinstance(t, TableId) else str(t)]
            for t in tables
        ]

    @override
    def writer(self, **options: Any) -> SqliteWriter:
        """A :class:`~replikit.endpoints.sqlite.target.SqliteWriter` (options: ``commit_rows``)."""
        from replikit.endpoints.sqlite.target import SqliteWriter

        return self._build(SqliteWriter, "writer", self._conns, **options)

    # -- CDC: triggers into a change table (see .cdc) --------------------------------------
    def cdc_setup(self, tables: Sequence[TableSchema], *, task: str) -> None:
        """Check the change triggers of ``tables`` (creating them with ``cdc_setup=True``).

        ConfigError for an in-memory database, for tables without a primary key (rows named
        only by a rowid that ``VACUUM`` may renumber cannot be matched on a target) and, without
        the opt-in, for tables whose triggers are missing or stale. Without the opt-in this
        only reads the source.
        """
        from replikit.endpoints.sqlite import cdc

        cdc.setup(self, tables, task=task, create=bool(self.options.get("cdc_setup", False)))

    def cdc_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> contextlib.AbstractContextManager[tuple[SqliteReader, SqliteSeq]]:
        """A full-load reader that reads every table inside one read transaction, and the
        change position of that snapshot (exact handoff; WAL mode keeps writers going).

        The reader may be used from any threads inside the block, one unit after another or
        several at once. ``task`` is registered as reading from the position.
        """
        return self._snapshot(tables, task)

    def cdc_reload_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> contextlib.AbstractContextManager[tuple[SqliteReader, SqliteSeq]]:
        """:meth:`cdc_snapshot` for a full load resumed after a stop: ``task``'s registered
        position stays where its checkpoint is (the purge keeps the changes its stream
        replays); the reader sees exactly the changes up to the yielded position."""
        return self._snapshot(tables, None)

    @contextlib.contextmanager
    def _snapshot(
        self, tables: Sequence[TableSchema], task: str | None
    ) -> Iterator[tuple[SqliteReader, SqliteSeq]]:
        from replikit.endpoints.sqlite import cdc
        from replikit.endpoints.sqlite.source import Pinned, SqliteReader

        batch_size = int(self.options.get("batch_size", 10_000))
        with cdc.snapshot(self, tables, task=task) as (conn, mark):
            pinned = Pinned(conn, self.url)
            try:
                yield SqliteReader(self._conns, tables, batch_size=batch_size, pinned=pinned), mark
            finally:
                pinned.release()

    def cdc_start(self, tables: Sequence[TableSchema], *, task: str) -> SqliteSeq:
        """The current change position (after the last recorded change); registers ``task``
        as reading from it, so another task's purge keeps its changes."""
        from replikit.endpoints.sqlite import cdc

        return cdc.start(self, tables, task=task)

    def current_position(self) -> SqliteSeq:
        """The last change sequence recorded so far (the change table's high-water mark)."""
        from replikit.endpoints.sqlite import cdc

        return cdc.current(self)

    def cdc_reader(
        self, tables: Sequence[TableSchema], *, task: str, **options: Any
    ) -> SqliteChangeReader:
        """A polling change reader for ``tables`` (options: see ``SqliteChangeReader``)."""
        from replikit.endpoints.sqlite.cdc import SqliteChangeReader

        return SqliteChangeReader(self, tables, task=task, **options)

    def cdc_teardown(self, *, task: str) -> None:
        """Forget ``task``; drop the triggers and change table once no task uses them."""
        from replikit.endpoints.sqlite import cdc

        cdc.teardown(self, task=task)

    def change_writer(self, **options: Any) -> SqliteChangeWriter:
        """A CDC apply writer (checkpoints in the ``replikit_checkpoints`` table)."""
        from replikit.endpoints.sqlite.apply import SqliteChangeWriter

        return self._build(SqliteChangeWriter, "change writer", self._conns, **options)

    def checkpoint_store(self, **options: Any) -> SqliteChangeWriter:
        """Task checkpoints in this database's control table (read and written outside of
        an apply; apply commits its own with the data)."""
        from replikit.endpoints.sqlite.apply import SqliteChangeWriter

        return self._build(SqliteChangeWriter, "checkpoint store", self._conns, **options)

    @contextlib.contextmanager
    def control_session(self) -> Iterator[Any]:
        """The write connection in one transaction, for the control tables
        (:mod:`replikit.pipeline.control`): committed at the end of the block, rolled back
        when it raises."""
        with self._conns.lock:
            conn = self._conns.shared()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _locked(self, shared: bool) -> contextlib.AbstractContextManager[Any]:
        return self._conns.lock if shared else contextlib.nullcontext()

    @override
    def identity(self) -> tuple[object, ...] | None:
        """The file's device and inode (any spelling, symlinks included); an in-memory
        database is only ever itself."""
        path = self._location.path
        if path is None:
            return ("sqlite-memory", id(self))
        try:
            st = os.stat(path)
        except OSError:
            return ("sqlite-path", os.path.realpath(path))
        return ("sqlite", st.st_dev, st.st_ino)

    def close(self) -> None:
        """Close the write connection (an in-memory database is discarded)."""
        self._conns.close()
