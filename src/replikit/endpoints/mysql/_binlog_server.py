"""What the binlog reader asks the source server: settings, privileges, binlog files, GTIDs.

Every call opens a short-lived PyMySQL connection (the stream has its own), so a reader can
be closed from any thread without racing a control query.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql

from replikit.endpoints.mysql._positions import (
    BinlogPosition,
    describe_server,
    mariadb_gtid_domains,
)
from replikit.errors import ConfigError, ConnectError, Error, PositionLostError, SchemaError
from replikit.schema.model import TableId, TableSchema

__all__ = ["Resume", "Server", "quote"]

log = logging.getLogger(__name__)

_ACCESS_DENIED = frozenset({1044, 1045, 1142, 1143, 1227, 1370})
_ER_NO_SUCH_TABLE = 1146


def quote(name: str) -> str:
    """A MySQL identifier in backticks."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True, slots=True)
class Resume:
    """How a stream resumes at a position (:meth:`Server.prepare`).

    Attributes:
        gtid: the GTID state at the position.
        server: this server's identity (``@@server_uuid``, MariaDB ``@@server_id``).
        by_gtid: stream from ``gtid`` instead of the position's file and offset.
        moved: the position is of another server (a failover): resumed by its GTID state.
    """

    gtid: str
    server: str
    by_gtid: bool
    moved: bool = False


class Server:
    """Control queries against the source server of ``params``."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self._mariadb: bool | None = None

    # -- connections ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """PyMySQL keyword arguments for the source (database left unset)."""
        from replikit.endpoints.mysql._binlog_bridge import pymysql_kwargs

        return pymysql_kwargs(self.params)

    def stream_settings(self) -> dict[str, Any]:
        """Settings for the binlog stream connection."""
        settings = self.settings()
        settings.pop("database", None)
        settings.pop("db", None)
        return settings

    @property
    def where(self) -> str:
        """The server, password masked, for messages."""
        from replikit.endpoints.mysql._binlog_bridge import masked

        return masked(self.params)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A short-lived autocommit connection (errors translated)."""
        try:
            limit = self.params.connect_timeout  # short queries only: a silent server fails
            conn = pymysql.connect(
                **self.settings(), autocommit=True, read_timeout=limit, write_timeout=limit
            )
        except pymysql.err.MySQLError as exc:
            raise self.translate(exc, "connect to") from exc
        try:
            yield conn
        except pymysql.err.MySQLError as exc:
            raise self.translate(exc, "query") from exc
        finally:
            conn.close()

    def translate(self, exc: BaseException, what: str) -> Error:
        """A PyMySQL error as a replikit error (no password in the message)."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        detail = exc.args[1] if len(exc.args) > 1 else str(exc)
        if code in _ACCESS_DENIED:
            return ConfigError(f"cannot {what} {self.where}: {detail} (error {code})")
        if isinstance(exc, pymysql.err.OperationalError):
            return ConnectError(f"cannot {what} {self.where}: {detail} (error {code})")
        return SchemaError(f"cannot {what} {self.where}: {detail} (error {code})")

    @staticmethod
    def rows(conn: Any, query: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of ``query``."""
        with conn.cursor() as cur:
            cur.execute(query, args)
            return list(cur.fetchall())

    def is_mariadb(self, conn: Any) -> bool:
        """Whether the server is MariaDB (cached)."""
        if self._mariadb is None:
            self._mariadb = "mariadb" in conn.get_server_info().lower()
        return self._mariadb

    @property
    def mariadb(self) -> bool:
        """Whether the server is MariaDB (asks it the first time)."""
        if self._mariadb is None:
            with self.connect() as conn:
                self.is_mariadb(conn)
        assert self._mariadb is not None
        return self._mariadb

    # -- settings and privileges ---------------------------------------------------------
    def check_settings(self, conn: Any) -> None:
        """ConfigError unless the binlog is on, ROW based, FULL row image and FULL metadata."""
        names = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata")
        found = {
            str(k).lower(): str(v)
            for k, v in self.rows(
                conn,
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s, %s, %s, %s)",
                names,
            )
        }
        if found.get("log_bin", "OFF").upper() not in ("ON", "1"):
            raise ConfigError(
                f"log_bin is OFF on {self.where}: CDC reads the binary log. Start the server "
                "with log_bin (e.g. log-bin=binlog), a server_id and binlog_format=ROW"
            )
        wanted = {"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
        why = {
            "binlog_format": "row changes are only in the binlog in ROW format",
            "binlog_row_image": "updates and deletes must carry whole rows",
            "binlog_row_metadata": "rows need column names, keys and ENUM/SET labels",
        }
        for name, value in wanted.items():
            actual = found.get(name)
            if actual is None:
                raise ConfigError(
                    f"{self.where} has no {name} setting: CDC needs MariaDB 10.5+ or MySQL 8.0.14+"
                )
            if actual.upper() != value:
                raise ConfigError(
                    f"{name} is {actual} on {self.where}, CDC needs {value} ({why[name]}). "
                    f"Run SET GLOBAL {name} = '{value}' and put {name} = {value} in the "
                    "server configuration; sessions already open keep their old value"
                )

    def check_privileges(self, conn: Any, tables: Sequence[TableSchema]) -> None:
        """ConfigError naming the missing replication and SELECT privileges."""
        missing: list[str] = []
        grants = [str(r[0]).upper() for r in self.rows(conn, "SHOW GRANTS")]
        global_grants = [g for g in grants if re.search(r" ON \*\.\* TO ", g)]
        if not any(
            "ALL PRIVILEGES" in g or "REPLICATION SLAVE" in g or "REPLICATION REPLICA" in g
            for g in global_grants
        ):
            missing.append("REPLICATION SLAVE ON *.*")
        try:
            self.rows(conn, "SHOW BINARY LOGS")
        except pymysql.err.MySQLError as exc:
            if exc.args[0] not in _ACCESS_DENIED:
                raise
            missing.append("BINLOG MONITOR ON *.* (MariaDB 10.5+; REPLICATION CLIENT on MySQL)")
        for table in tables:
            try:
                self.rows(conn, f"SELECT 1 FROM {_qualified(table.id)} LIMIT 0")  # noqa: S608
            except pymysql.err.MySQLError as exc:
                if exc.args[0] == _ER_NO_SUCH_TABLE:
                    raise SchemaError(f"table {table.id} does not exist on {self.where}") from exc
                if exc.args[0] not in _ACCESS_DENIED:
                    raise
                missing.append(f"SELECT ON {_qualified(table.id)}")
        if missing:
            raise ConfigError(
                f"the CDC user of {self.where} lacks privileges: {'; '.join(missing)}. "
                f"Grant them, e.g. GRANT {', '.join(m.split(' ON ')[0] for m in missing[:2])} "
                "ON *.* TO the user"
            )

    # -- positions -----------------------------------------------------------------------
    def binary_logs(self, conn: Any) -> list[tuple[str, int]]:
        """``SHOW BINARY LOGS``: (file, size) of every binlog the server still has."""
        return [(str(r[0]), int(r[1])) for r in self.rows(conn, "SHOW BINARY LOGS")]

    def current(self, conn: Any) -> BinlogPosition:
        """The end of the binlog now, with the GTID state there."""
        row = self.rows(conn, "SHOW MASTER STATUS")
        if not row:
            raise ConfigError(f"log_bin is OFF on {self.where}: CDC reads the binary log")
        file, pos = str(row[0][0]), int(row[0][1])
        server = self.identity(conn)
        if self.is_mariadb(conn):
            return BinlogPosition(file, pos, self.gtid_pos(conn, file, pos), server)
        gtid = str(row[0][4]).replace("\n", "") if len(row[0]) > 4 and row[0][4] else ""
        return BinlogPosition(file, pos, gtid, server)

    def gtid_pos(self, conn: Any, file: str, pos: int) -> str:
        """MariaDB's GTID state at ``file``:``pos`` of this server's binlog (``""``: none)."""
        found = self.rows(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        return str(found[0][0] or "") if found else ""

    def identity(self, conn: Any) -> str:
        """Which server this is, as positions record it: ``@@server_uuid`` (MySQL), or
        ``@@server_id`` (MariaDB has no ``server_uuid``; a replication topology needs a
        distinct ``server_id`` per server)."""
        variable = "@@server_id" if self.is_mariadb(conn) else "@@server_uuid"
        return str(self.rows(conn, f"SELECT {variable}")[0][0]).lower()

    def prepare(self, position: BinlogPosition, *, gtid_mode: bool) -> Resume:
        """Check the server can stream from ``position``; how it resumes there.

        Re-checks the binlog settings (``binlog_row_metadata`` is dynamic and global), then
        that ``position`` is this server's (:meth:`moved_from`; a position of another server
        resumes by its GTID state when this server has every transaction of it, else
        :class:`PositionLostError`), then :meth:`check_position`. The GTID state is the
        position's own, else asked (MariaDB).
        """
        with self.connect() as conn:
            self.check_settings(conn)
            logs = self.binary_logs(conn)
            server = self.identity(conn)
            moved = self.moved_from(conn, position, server, logs)
            if moved is not None:
                self._check_failover(conn, position, server, moved)
                log.warning(
                    "binlog position %s is of %s, %s is %s (a failover?): resuming from its "
                    "GTID state %s, which this server has",
                    position, describe_server(position.server), self.where,
                    describe_server(server), position.gtid,
                )  # fmt: skip
                return Resume(position.gtid, server, by_gtid=True, moved=True)
            if not gtid_mode:
                self.check_position(position, logs)
            if position.gtid or not self.is_mariadb(conn):
                return Resume(position.gtid, server, by_gtid=gtid_mode)
            gtid = self.gtid_pos(conn, position.file, position.pos)
            return Resume(gtid, server, by_gtid=gtid_mode)

    def moved_from(
        self, conn: Any, position: BinlogPosition, server: str, logs: list[tuple[str, int]]
    ) -> str | None:
        """Why ``position`` is not of this server (``server``), else ``None``: it names
        another server, or (MariaDB, whose ``server_id`` two unrelated servers may share)
        this server's binlog has another GTID state at its file and offset."""
        if position.server and position.server != server:
            return f"this server is {describe_server(server)}"
        sizes = dict(logs)
        if (
            not position.gtid
            or not self.is_mariadb(conn)
            or sizes.get(position.file, -1) < position.pos
        ):
            return None  # nothing to compare (a missing file: check_position says why)
        there = self.gtid_pos(conn, position.file, position.pos)
        wanted = mariadb_gtid_domains(position.gtid)
        found = mariadb_gtid_domains(there) if there else {}
        if all(found.get(domain) == gtid for domain, gtid in wanted.items()):
            return None
        return (
            f"this server is {describe_server(server)}, but its binlog has GTID state "
            f"{there or 'none'} at {position.file}:{position.pos}, not {position.gtid}"
        )

    def _check_failover(self, conn: Any, position: BinlogPosition, server: str, moved: str) -> None:
        """PositionLostError unless a stream can resume from ``position``'s GTID state on
        this server: the position names its server, another one than this, and this
        server's binlog has every transaction of that state."""
        where = (
            f"binlog position {position} is of {describe_server(position.server)} and cannot "
            f"be resumed on {self.where}: {moved}; a binlog file and offset mean nothing on "
            "another server"
        )
        why: str | None
        if not position.gtid:
            why = "the position has no GTID state to resume from instead"
        elif not position.server:
            why = (
                "the position does not say which server it came from, so its GTIDs are not "
                "trusted either"
            )
        elif position.server == server:
            why = (
                "two servers with one server_id write GTIDs that look alike, so it is not "
                "resumed by GTID either"
            )
        else:
            why = self._missing_gtids(conn, position.gtid)
        if why is None:
            return
        raise PositionLostError(
            f"{where}, and {why}. Nothing was read from this server. Point the task at the "
            "server its checkpoint came from, or start it again with a fresh full load: "
            "replikit drop SRC DST --task-id TASK, then replicate again (full-load-and-cdc)"
        )

    def _missing_gtids(self, conn: Any, gtid: str) -> str | None:
        """Why this server's binlog lacks a transaction of GTID state ``gtid``, else ``None``."""
        if self.is_mariadb(conn):
            state = str(self.rows(conn, "SELECT @@GLOBAL.gtid_binlog_state")[0][0] or "")
            have = {
                (int(d), int(s)): int(n)
                for d, s, n in (p.split("-") for p in state.split(",") if p.strip())
            }
            for domain, (origin, seq) in mariadb_gtid_domains(gtid).items():
                if have.get((domain, origin), -1) < seq:
                    return (
                        f"this server's binlog does not have GTID {domain}-{origin}-{seq} "
                        f"(its GTID state: {state or 'none'})"
                    )
            return None
        row = self.rows(
            conn,
            "SELECT GTID_SUBSET(%s, @@GLOBAL.gtid_executed), "
            "GTID_SUBSET(@@GLOBAL.gtid_purged, %s), @@GLOBAL.gtid_executed",
            (gtid, gtid),
        )[0]
        if not row[0]:
            return f"this server has not executed every GTID of {gtid} (it has {row[2]})"
        if not row[1]:
            return f"this server purged binlogs with transactions after {gtid}"
        return None

    def check_position(self, position: BinlogPosition, logs: list[tuple[str, int]]) -> None:
        """PositionLostError unless the server still has ``position`` and has reached it."""
        sizes = dict(logs)
        if not logs:
            raise ConfigError(f"log_bin is OFF on {self.where}: CDC reads the binary log")
        first, last = BinlogPosition(logs[0][0], 4), BinlogPosition(logs[-1][0], sizes[logs[-1][0]])
        if position.file not in sizes:
            if position.sequence < first.sequence:
                raise PositionLostError(
                    f"binlog position {position} is gone from {self.where}: {position.file} "
                    f"was purged (the oldest binlog is {first.file}); the changes since then "
                    "are lost to CDC: run a new full load (migration_type='full-load-and-cdc') "
                    "and keep binlogs longer (binlog_expire_logs_seconds) than the longest "
                    "CDC downtime"
                )
            raise PositionLostError(
                f"binlog position {position} is not on {self.where} (binlogs {first.file} to "
                f"{last.file}): is this the same server, or was RESET MASTER run? Run a new "
                "full load"
            )
        if position.pos > sizes[position.file]:
            raise PositionLostError(
                f"binlog position {position} is ahead of {self.where} ({position.file} has "
                f"{sizes[position.file]} bytes): is this the same server? Run a new full load"
            )

    # -- schema --------------------------------------------------------------------------
    def reflect(self, table: TableId) -> TableSchema | None:
        """The table's current definition (``None``: it no longer exists)."""
        from replikit.endpoints.mysql._binlog_bridge import reflect_table

        with self.connect() as conn:
            return reflect_table(conn, self.params, table)


def _qualified(table: TableId) -> str:
    return (quote(table.schema) + "." if table.schema else "") + quote(table.name)
