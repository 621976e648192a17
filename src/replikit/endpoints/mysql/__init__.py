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
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from replikit.endpoints._server import ServerEndpoint
from replikit.endpoints.base import Capabilities
from replikit.endpoints.mysql._dialect import DIALECT, MysqlDialect
from replikit.endpoints.mysql._params import ConnParams
from replikit.errors import ConfigError
from replikit.mapping import Selection
from replikit.schema.model import Catalog

if TYPE_CHECKING:
    from replikit.endpoints.mysql.source import MysqlReader
    from replikit.endpoints.mysql.target import MysqlWriter

__all__ = ["MysqlDialect", "MysqlEndpoint"]

_READER_OPTIONS = {"batch_rows", "zero_dates", "tinyint1_as_bool"}
_WRITER_OPTIONS = {"method", "chunk_rows"}


class MysqlEndpoint(ServerEndpoint):
    """A MySQL (8.0+) or MariaDB (10.5+) database: full-load source and target, binlog CDC.

    Options (keywords, also accepted by :meth:`reader` / :meth:`writer`): ``batch_rows`` (rows
    per batch read, default 1,000), ``zero_dates`` (``"null"``: zero dates read as NULL in
    nullable columns, refused in NOT NULL ones; ``"error"``: always refused),
    ``tinyint1_as_bool`` (default True), ``method`` (writer: ``"load-data"`` or ``"insert"``),
    ``chunk_rows`` (writer: rows per LOAD DATA / INSERT round).

    Change data capture reads the binlog (ROW format, full row images; ``cdc_setup`` checks
    the settings, privileges and keys); nothing is created on the source, so ``cdc_teardown``
    has nothing to remove. Changes are applied with checkpoints in ``replikit_checkpoints``.
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
    _package = "replikit.endpoints.mysql"
    _change_reader = "MysqlChangeReader"
    _change_writer = "MysqlChangeWriter"
    params: ConnParams
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
