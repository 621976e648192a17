"""The DuckDB endpoint family (``pip install "replikit[duckdb]"``: duckdb and pyarrow).

URLs: ``duckdb:///relative.duckdb``, ``duckdb:////abs/path.duckdb``, ``duckdb:///:memory:``.
A missing file is an error for reading and is created when written to. DuckDB is a full-load
source and target and a CDC *target*: changes from PostgreSQL, MySQL or SQLite are applied
in batches, net change per key, with the task's checkpoint in the same DuckDB transaction.

One process holds a DuckDB file read-write at a time: close the endpoint (or use it as a
context manager) to let another process open it.

>>> import replikit as rk
>>> with rk.endpoint("duckdb:///:memory:") as db:
...     db.home_schema()
'main'
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from replikit.endpoints.base import Capabilities, Endpoint, check_creatable
from replikit.endpoints.duckdb._connect import Database, parse_url
from replikit.endpoints.duckdb._dialect import DIALECT, DuckdbDialect
from replikit.errors import ConfigError
from replikit.mapping import Selection
from replikit.schema.model import Catalog

if TYPE_CHECKING:
    from replikit.endpoints.duckdb.apply import DuckdbChangeWriter
    from replikit.endpoints.duckdb.source import DuckdbReader
    from replikit.endpoints.duckdb.target import DuckdbWriter

__all__ = ["DuckdbDialect", "DuckdbEndpoint"]

_OPTIONS = {"batch_size", "commit_rows", "threads", "memory_limit", "indexes"}
_TEXT_OPTIONS = {"memory_limit", "indexes"}
_MEMORY = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|%)", re.IGNORECASE)


def _url_options(url: str) -> tuple[str, dict[str, Any]]:
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise ConfigError(
                f"unknown DuckDB URL parameter {key!r}; known: {', '.join(sorted(_OPTIONS))}"
            )
        if key in _TEXT_OPTIONS:
            options[key] = value
            continue
        try:
            options[key] = int(value)
        except ValueError:
            raise ConfigError(f"bad value {value!r} for DuckDB URL parameter {key!r}") from None
    return base, options


class DuckdbEndpoint(Endpoint):
    """A DuckDB database file (or an in-memory database).

    Options: ``batch_size`` (rows per batch read, default 10,000), ``commit_rows`` (rows per
    transaction when loading, default 200,000), ``threads`` (DuckDB's worker threads,
    default 1) and ``memory_limit`` (DuckDB's buffer memory, default ``"32MB"``): a load
    needs little of either (a unit from PostgreSQL is one stream DuckDB reads in one thread),
    and more of both only keeps more memory (measured, benchmarks/README.md: 1.1M rows from
    PostgreSQL, peak RSS 142 MB with 32MB and 1 thread, 160-165 MB with 48MB and 2 threads,
    178 MB with 64MB and 2, at the same speed); DuckDB's own defaults, 80% of RAM and one
    thread per core, let it keep whatever it read. Raise them for heavy queries through this
    endpoint. An index the limit cannot build is built under a higher one. And ``indexes``
    (which of a loaded table's keys and indexes are built after the load:
    ``keys``, the default: the primary key and unique ones, the non-unique indexes declared
    as left out; ``all``; ``none``: no key either, for a full load only, as CDC's upserts
    need the key).
    """

    schemes = ("duckdb",)
    family = "duckdb"
    # DuckDB commits one writer at a time and the loaders share one Python process: measured
    # PG -> DuckDB 1.1M rows, 4 loaders were no faster than 1 and took ~100 MB more RSS
    capabilities = Capabilities(cdc=False, concurrent_writes=False)
    endpoint_options = frozenset(_OPTIONS)

    def __init__(self, url: str, **options: Any) -> None:
        base, from_url = _url_options(url)
        super().__init__(url, **{**from_url, **options})
        self._location = parse_url(base)
        threads = int(self.options.get("threads", 1))
        limit = str(self.options.get("memory_limit", "32MB"))
        if not _MEMORY.fullmatch(limit):
            raise ConfigError(f"bad DuckDB memory_limit {limit!r}; e.g. '256MB', '2GB' or '50%'")
        self._db = Database(
            self._location,
            threads=threads,
            memory_limit=limit,
            limit_chosen="memory_limit" in self.options,
        )

    @property
    @override
    def dialect(self) -> DuckdbDialect:
        """DuckDB quoting, type rules and defaults."""
        return DIALECT

    @property
    def path(self) -> str | None:
        """The database file, or ``None`` for an in-memory database."""
        return self._location.path

    @override
    def check(self) -> None:
        """Open the database once; a missing file passes if its folder exists (a target)."""
        if self._db.exists():
            with self._db.connected() as conn:
                conn.execute("SELECT 1").fetchall()
            return
        assert self._location.path is not None
        check_creatable(self._location.path, "duckdb")

    @override
    def home_schema(self) -> str:
        """``main``: where a table named without a schema lives."""
        return "main"

    @override
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """User tables and views (not the ``replikit`` control schema)."""
        from replikit.endpoints.duckdb.reflect import reflect_catalog

        with self._db.connected(create=False) as conn:
            return reflect_catalog(conn, selection)

    @override
    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> DuckdbReader:
        """A :class:`~replikit.endpoints.duckdb.source.DuckdbReader` (option: ``batch_size``)."""
        from replikit.endpoints.duckdb.source import DuckdbReader

        return self._build(DuckdbReader, "reader", self._db, self._tables(tables), **options)

    @override
    def writer(self, **options: Any) -> DuckdbWriter:
        """A :class:`~replikit.endpoints.duckdb.target.DuckdbWriter` (options: ``commit_rows``,
        ``indexes``)."""
        from replikit.endpoints.duckdb.target import DuckdbWriter

        return self._build(DuckdbWriter, "writer", self._db, **options)

    def change_writer(self, **options: Any) -> DuckdbChangeWriter:
        """A CDC apply writer (checkpoints in ``replikit.replikit_checkpoints``)."""
        from replikit.endpoints.duckdb.apply import DuckdbChangeWriter

        return self._build(DuckdbChangeWriter, "change writer", self._db, **options)

    def checkpoint_store(self, **options: Any) -> DuckdbChangeWriter:
        """Task checkpoints in ``replikit.replikit_checkpoints``, read and written outside of
        an apply (apply commits its own with the data)."""
        from replikit.endpoints.duckdb.apply import DuckdbChangeWriter

        return self._build(DuckdbChangeWriter, "checkpoint store", self._db, **options)

    @contextlib.contextmanager
    def control_session(self) -> Iterator[Any]:
        """A connection in one transaction, for the control tables
        (:mod:`replikit.pipeline.control`): committed at the end of the block, rolled back
        when it raises."""
        from replikit.endpoints.duckdb._connect import rollback

        with self._db.connected() as conn:
            conn.execute("BEGIN")
            try:
                yield _OneCursor(conn)
            except BaseException:
                rollback(conn)
                raise
            conn.execute("COMMIT")

    @override
    def identity(self) -> tuple[object, ...] | None:
        """The file's device and inode; an in-memory database is only ever itself."""
        path = self._location.path
        if path is None:
            return ("duckdb-memory", id(self))
        try:
            st = os.stat(path)
        except OSError:
            return ("duckdb-path", os.path.realpath(path))
        return ("duckdb", st.st_dev, st.st_ino)

    @override
    def close(self) -> None:
        """Close the database (an in-memory one is discarded; a file is unlocked)."""
        self._db.close()


class _OneCursor:
    """A DuckDB connection as a DB-API connection whose cursor is itself (DuckDB's
    ``cursor()`` opens another connection, outside the transaction)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def cursor(self) -> Any:
        return self

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(statement, list(params))

    def fetchall(self) -> list[Any]:
        return list(self._conn.fetchall())

    def close(self) -> None:
        pass
