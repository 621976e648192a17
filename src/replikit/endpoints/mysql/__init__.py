"""MySQL and MariaDB endpoint family (light: importing this module imports no driver).

``mysql://user:password@host:port/db`` or ``mariadb://...``; ``mysql+pymysql://`` /
``mysql+mysqldb://`` or ``?driver=`` pick the driver (default: mysqlclient when installed,
else PyMySQL). TLS settings in the URL (``ssl_mode``, ``ssl_ca``, ``ssl_cert``, ``ssl_key``)
reach every connection, the binlog stream's included. A table's schema is its database: a
source URL with a database reflects that database, one without reflects every non-system
database; a target URL must name the database the tables are written into.

>>> import replikit as rk
>>> ep = rk.endpoint("mysql://app:secret@db.example/shop")
>>> ep
MysqlEndpoint('mysql://app:***@db.example/shop')
>>> ep.capabilities.cdc
True
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from replikit.endpoints.base import Capabilities, Endpoint
from replikit.endpoints.mysql._dialect import DIALECT, MysqlDialect
from replikit.endpoints.mysql._params import ConnParams
from replikit.errors import ConfigError
from replikit.mapping import Selection
from replikit.schema.model import Catalog, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.mysql.apply import MysqlChangeWriter
    from replikit.endpoints.mysql.cdc import MysqlChangeReader
    from replikit.endpoints.mysql.source import MysqlReader
    from replikit.endpoints.mysql.target import MysqlWriter
    from replikit.pipeline.contracts import Reader
    from replikit.positions import Position

__all__ = ["MysqlDialect", "MysqlEndpoint"]

_READER_OPTIONS = {"batch_rows", "zero_dates", "tinyint1_as_bool"}
_WRITER_OPTIONS = {"method", "chunk_rows"}


class MysqlEndpoint(Endpoint):
    """A MySQL (8.0+) or MariaDB (10.5+) database: full-load source and target, binlog CDC.

    Options (keywords, also accepted by :meth:`reader` / :meth:`writer`): ``batch_rows`` (rows
    per batch read, default 1,000), ``zero_dates`` (``"null"``: zero dates read as NULL in
    nullable columns, refused in NOT NULL ones; ``"error"``: always refused),
    ``tinyint1_as_bool`` (default True), ``method`` (writer: ``"load-data"`` or ``"insert"``),
    ``chunk_rows`` (writer: rows per LOAD DATA / INSERT round).
    """

    schemes: ClassVar[tuple[str, ...]] = (
        "mysql",
        "mariadb",
        "mysql+pymysql",
        "mysql+mysqldb",
        "mariadb+pymysql",
        "mariadb+mysqldb",
    )
    family: ClassVar[str] = "mysql"
    capabilities: ClassVar[Capabilities] = Capabilities(cdc=True, schemas=True)

    endpoint_options = frozenset(_READER_OPTIONS | _WRITER_OPTIONS)

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.params = ConnParams.from_url(url, self.url)

    @property
    @override
    def dialect(self) -> MysqlDialect:
        """MySQL quoting and type rules."""
        return DIALECT

    @override
    def check(self) -> None:
        """Connect once and run a trivial query; ``ConnectError`` explains any failure."""
        from replikit.endpoints.mysql._connect import connect

        conn = connect(self.params, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        finally:
            conn.close()

    @override
    def identity(self) -> tuple[object, ...] | None:
        """The server: ``@@server_id``, ``@@hostname``, ``@@port`` and ``@@datadir`` (MariaDB
        has no ``@@server_uuid``); tables are named with their schema, so one server is one
        namespace."""
        from replikit.endpoints.mysql._connect import connect

        conn = connect(self.params, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@server_id, @@hostname, @@port, @@datadir")
                row = cur.fetchone()
        finally:
            conn.close()
        return ("mysql", *row)

    @override
    def home_schema(self) -> str | None:
        """The URL's database: target tables land there."""
        return self.params.database

    @override
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """Tables and views of the URL's database (or of all non-system databases)."""
        from replikit.endpoints.mysql._connect import connect
        from replikit.endpoints.mysql.reflect import reflect

        conn = connect(self.params, autocommit=True)
        try:
            return reflect(conn, self.params.database, selection)
        finally:
            conn.close()

    @override
    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> MysqlReader:
        """A streaming full-load reader for ``tables`` (names, ``TableId`` s, ``TableSchema`` s).

        ``connection=`` makes every read go through one caller-owned connection (see
        :class:`~replikit.endpoints.mysql.source.MysqlReader`).
        """
        from replikit.endpoints.mysql.source import MysqlReader

        return self._build(MysqlReader, "reader", self.params, self._tables(tables), **options)

    @override
    def writer(self, **options: Any) -> MysqlWriter:
        """A full-load writer into the URL's database."""
        from replikit.endpoints.mysql.target import MysqlWriter

        if not self.params.database:
            raise ConfigError(f"{self.url}: a MySQL target URL must name the database")
        return self._build(MysqlWriter, "writer", self.params, **options)

    # -- CDC: the binlog (replikit.endpoints.mysql.cdc) -----------------------------------
    def cdc_setup(self, tables: Sequence[TableSchema], *, task: str) -> None:
        """Preflight: binlog settings, privileges, keys of ``tables``."""
        from replikit.endpoints.mysql import cdc

        cdc.setup(self.params, tables, task=task)

    def cdc_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> AbstractContextManager[tuple[Reader, Position]]:
        """A reader in ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and its binlog position."""
        from replikit.endpoints.mysql import cdc

        return cdc.snapshot(self.params, tables, task=task)

    def cdc_start(self, tables: Sequence[TableSchema], *, task: str) -> Position:
        """The binlog position "now" for a CDC-only task."""
        from replikit.endpoints.mysql import cdc

        return cdc.start(self.params, tables, task=task)

    def cdc_reader(
        self, tables: Sequence[TableSchema], *, task: str, **options: Any
    ) -> MysqlChangeReader:
        """A binlog change reader for ``tables``."""
        from replikit.endpoints.mysql.cdc import MysqlChangeReader

        return MysqlChangeReader(self.params, tables, task=task, **options)

    def cdc_teardown(self, *, task: str) -> None:
        """Nothing is created on a MySQL source; kept for symmetry (idempotent)."""
        from replikit.endpoints.mysql import cdc

        cdc.teardown(self.params, task=task)

    def change_writer(self, **options: Any) -> MysqlChangeWriter:
        """A CDC apply writer into the URL's database (checkpoints in ``replikit_checkpoints``)."""
        from replikit.endpoints.mysql.apply import MysqlChangeWriter

        return self._build(MysqlChangeWriter, "change writer", self.params, **options)

    def checkpoint_store(self, **options: Any) -> MysqlChangeWriter:
        """Task checkpoints in this database's control table (read and written outside of
        an apply; apply commits its own with the data)."""
        from replikit.endpoints.mysql.apply import MysqlChangeWriter

        return self._build(MysqlChangeWriter, "checkpoint store", self.params, **options)
