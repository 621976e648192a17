"""PostgreSQL endpoint family (light: importing this module does not import psycopg).

``postgresql://user:password@host:port/dbname?sslmode=require`` -- every query parameter is
passed to libpq as a connection keyword, so TLS settings (``sslmode``, ``sslrootcert``...)
reach every connection this endpoint opens. The heavy modules (``reflect``, ``source``,
``target``) import the driver when first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from replikit.endpoints._server import ServerEndpoint
from replikit.endpoints.base import Capabilities
from replikit.endpoints.postgres._dialect import DIALECT, PostgresDialect
from replikit.endpoints.postgres._params import ConnParams
from replikit.mapping import Selection
from replikit.schema.model import Catalog

if TYPE_CHECKING:
    from replikit.endpoints.postgres.source import PostgresReader
    from replikit.endpoints.postgres.target import PostgresWriter

__all__ = ["PostgresDialect", "PostgresEndpoint"]


class PostgresEndpoint(ServerEndpoint):
    """A PostgreSQL database, as a source (full load) and a target (COPY bulk load).

    Change data capture reads logical decoding (pgoutput) through a replication slot and a
    publication named ``replikit_<task>``; ``cdc_setup`` checks ``wal_level``, privileges and
    replica identity first, ``cdc_teardown`` drops both. ``cdc_reader`` takes ``mode="poll"``
    to read through SQL instead of streaming. Changes are applied with checkpoints in
    ``replikit.replikit_checkpoints``.
    """

    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres", "postgresql+psycopg")
    family: ClassVar[str] = "postgres"
    _package = "replikit.endpoints.postgres"
    _change_reader = "PostgresChangeReader"
    _change_writer = "PostgresChangeWriter"
    params: ConnParams
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


_IDENTITY = """
SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system())
            ELSE coalesce(inet_server_addr()::text, 'local') || ':' || current_setting('port')
       END,
       (SELECT oid FROM pg_database WHERE datname = current_database())
"""
