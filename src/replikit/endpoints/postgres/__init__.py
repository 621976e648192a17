"""PostgreSQL endpoint family (light: importing this module does not import psycopg).

``postgresql://user:password@host:port/dbname?sslmode=require`` -- every query parameter is
passed to libpq as a connection keyword, so TLS settings (``sslmode``, ``sslrootcert``...)
reach every connection this endpoint opens. The heavy modules (``reflect``, ``source``,
``target``) import the driver when first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from replikit.endpoints.base import Capabilities, Endpoint
from replikit.endpoints.postgres._dialect import DIALECT, PostgresDialect
from replikit.endpoints.postgres._params import ConnParams
from replikit.mapping import Selection
from replikit.schema.model import Catalog, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.postgres.apply import PostgresChangeWriter
    from replikit.endpoints.postgres.cdc import PostgresChangeReader
    from replikit.endpoints.postgres.source import PostgresReader
    from replikit.endpoints.postgres.target import PostgresWriter
    from replikit.pipeline.contracts import Reader
    from replikit.positions import Position

__all__ = ["PostgresDialect", "PostgresEndpoint"]


class PostgresEndpoint(Endpoint):
    """A PostgreSQL database, as a source (full load) and a target (COPY bulk load)."""

    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres", "postgresql+psycopg")
    family: ClassVar[str] = "postgres"
    capabilities: ClassVar[Capabilities] = Capabilities(
        cdc=True, schemas=True, raw_copy="postgresql-binary"
    )

    endpoint_options = frozenset({"batch_rows", "bulk_min_rows"})

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.params = ConnParams.from_url(url, self.url)

    @property
    def dialect(self) -> PostgresDialect:
        """PostgreSQL quoting and type rules."""
        return DIALECT

    def check(self) -> None:
        """Connect once and run a trivial query; ``ConnectError`` explains any failure."""
        from replikit.endpoints.postgres._connect import connect

        with connect(self.params, autocommit=True) as conn:
            conn.execute("SELECT 1")

    def home_schema(self) -> str | None:
        """``public``: target tables without a schema land there."""
        return "public"

    def identity(self) -> tuple[object, ...] | None:
        """The cluster's system identifier and the database's oid (``None`` when the user
        may not read ``pg_control_system()``: then the server address, port and database)."""
        from replikit.endpoints.postgres._connect import connect

        with connect(self.params, autocommit=True) as conn:
            row = conn.execute(_IDENTITY).fetchone()
        assert row is not None
        return ("postgres", *row)

    def reflect(self, selection: Selection | None = None) -> Catalog:
        """The user tables and views selected by ``selection`` (None: all)."""
        from replikit.endpoints.postgres._connect import connect
        from replikit.endpoints.postgres.reflect import reflect

        with connect(self.params) as conn:
            return reflect(conn, selection)

    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> PostgresReader:
        """A full-load reader for ``tables`` ("schema.table", ``TableId`` or ``TableSchema``)."""
        from replikit.endpoints.postgres.source import PostgresReader

        return self._build(PostgresReader, "reader", self.params, self._tables(tables), **options)

    def writer(self, **options: Any) -> PostgresWriter:
        """A COPY-based full-load writer into this database."""
        from replikit.endpoints.postgres.target import PostgresWriter

        return self._build(PostgresWriter, "writer", self.params, **options)

    # -- CDC: logical decoding (pgoutput) -------------------------------------------------
    def cdc_setup(self, tables: Sequence[TableSchema], *, task: str) -> None:
        """Preflight (wal_level, privileges, replica identity) and the task's publication."""
        from replikit.endpoints.postgres import cdc

        cdc.setup(self.params, tables, task=task)

    def cdc_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> AbstractContextManager[tuple[Reader, Position]]:
        """The task's slot, created with an exported snapshot that the full-load reader uses."""
        from replikit.endpoints.postgres import cdc

        return cdc.snapshot(self.params, tables, task=task)

    def cdc_start(self, tables: Sequence[TableSchema], *, task: str) -> Position:
        """The task's slot (created if missing) and its position: "now" for a CDC-only task."""
        from replikit.endpoints.postgres import cdc

        return cdc.start(self.params, tables, task=task)

    def cdc_reader(
        self, tables: Sequence[TableSchema], *, task: str, **options: Any
    ) -> PostgresChangeReader:
        """A pgoutput change reader on the task's slot (streaming; ``mode="poll"`` for SQL)."""
        from replikit.endpoints.postgres.cdc import PostgresChangeReader

        return PostgresChangeReader(self.params, tables, task=task, **options)

    def cdc_teardown(self, *, task: str) -> None:
        """Drop the task's slot and publication (idempotent)."""
        from replikit.endpoints.postgres import cdc

        cdc.teardown(self.params, task=task)

    def change_writer(self, **options: Any) -> PostgresChangeWriter:
        """A CDC apply writer (checkpoints in ``replikit.replikit_checkpoints``)."""
        from replikit.endpoints.postgres.apply import PostgresChangeWriter

        return self._build(PostgresChangeWriter, "change writer", self.params, **options)

    def checkpoint_store(self, **options: Any) -> PostgresChangeWriter:
        """Task checkpoints in this database's control table (read and written outside of
        an apply; apply commits its own with the data)."""
        from replikit.endpoints.postgres.apply import PostgresChangeWriter

        return self._build(PostgresChangeWriter, "checkpoint store", self.params, **options)


_IDENTITY = """
SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system())
            ELSE coalesce(inet_server_addr()::text, 'local') || ':' || current_setting('port')
       END,
       (SELECT oid FROM pg_database WHERE datname = current_database())
"""
