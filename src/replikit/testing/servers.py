"""Throwaway PostgreSQL and MariaDB servers for test sessions.

What ``to="postgresql"`` / ``to="mysql"`` of the ``replikit_clone`` fixture runs on, and what
replikit's own tests use (``tests/fix_pg.py``, ``tests/fix_mysql.py`` are thin wrappers):

* :func:`postgresql_server` ``initdb``s a private cluster into a temp dir, listening on
  127.0.0.1 at a free port with ``wal_level=logical`` and durability switched off;
  ``REPLIKIT_TEST_PG_URL`` (a URL to an admin-capable database) selects an existing server
  instead. initdb and postgres refuse to run as root, so as root they run as the
  ``postgres`` OS user. The role ``replikit_pw`` must log in with its password
  (``scram-sha-256`` in the private cluster's pg_hba.conf).
* :func:`mysql_server` runs ``mariadb-install-db`` into a temp dir and starts a private
  ``mariadbd`` on 127.0.0.1 at a free port and its own unix socket, with the binlog settings
  CDC needs (``log_bin``, ``binlog_format=ROW``, ``binlog_row_image=FULL``,
  ``binlog_row_metadata=FULL``); ``REPLIKIT_TEST_MYSQL_URL`` selects an existing server.
  ``root`` logs in without a password; ``replikit_pw`` (password ``secret-pw``) exists so
  tests can see a wrong password refused.

Both yield a server object (:class:`PgServer`, :class:`MysqlServer`) with ``url(db)``,
``admin_url``, ``create_database(name)``, ``drop_database(name)``, ``connect(db)`` and
``restart()`` / ``stop()`` / ``start()`` (same port and data directory: open connections
break, new ones succeed after ``start()``), and remove the private server at the end.
A server that cannot be started fails the test with the cause (``pytest.fail``): a missing
server is never a silent skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

__all__ = [
    "MYSQL_ENV_URL",
    "PASSWORD_USER",
    "PG_ENV_URL",
    "MysqlProcess",
    "MysqlServer",
    "PgCluster",
    "PgServer",
    "mysql_server",
    "pg_bindir",
    "postgresql_server",
]

PG_ENV_URL = "REPLIKIT_TEST_PG_URL"
PASSWORD_USER = ("replikit_pw", "secret-pw")
PG_INSTALL_HINT = (
    "PostgreSQL tests need a server: install the server binaries "
    "(apt-get install postgresql) or set REPLIKIT_TEST_PG_URL to an admin-capable URL, "
    "e.g. postgresql://postgres@127.0.0.1:5432/postgres"
)
PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}
# replikit_pw must log in with a password, so tests can see a wrong one refused
_PG_HBA = """\
host    all          replikit_pw   127.0.0.1/32  scram-sha-256
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
"""


class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_url: str, cluster: PgCluster | None = None) -> None:
        self._admin = make_url(admin_url)
        self._cluster = cluster

    @property
    def private(self) -> bool:
        """True for the session's own cluster, False for ``REPLIKIT_TEST_PG_URL``'s server."""
        return self._cluster is not None

    def _own_cluster(self) -> PgCluster:
        if self._cluster is None:
            pytest.skip(f"{PG_ENV_URL} names an external server: the tests do not restart it")
        return self._cluster

    def stop(self) -> None:
        """Stop the private cluster (fast shutdown: open sessions are disconnected)."""
        self._own_cluster().stop_server()

    def start(self) -> None:
        """Start the private cluster again, on the same port, and wait until it accepts logins."""
        self._own_cluster().start_server()

    def restart(self) -> None:
        """Stop and start the private cluster: every open connection breaks."""
        self.stop()
        self.start()

    @property
    def admin_url(self) -> str:
        """URL of the admin database (``postgres`` for a private cluster)."""
        return self._admin.render_as_string(hide_password=False)

    def url(self, dbname: str) -> str:
        """URL of database ``dbname`` on this server."""
        return self._admin.set(database=dbname).render_as_string(hide_password=False)

    def _conninfo(self, dbname: str | None = None) -> str:
        u = self._admin.set(database=dbname or self._admin.database)
        return u.set(drivername="postgresql").render_as_string(hide_password=False)

    def connect(self, dbname: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to ``dbname`` (default: the admin database)."""
        return psycopg.connect(self._conninfo(dbname), autocommit=True)

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def password_user(self) -> tuple[str, str]:
        """Create ``replikit_pw`` with its password; check a wrong one is refused."""
        user, password = PASSWORD_USER
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = sql.SQL("ALTER" if exists else "CREATE")
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    verb, sql.Identifier(user), sql.Literal(password)
                )
            )
        login = self._admin.set(drivername="postgresql", username=user)
        psycopg.connect(login.set(password=password).render_as_string(False)).close()
        try:
            psycopg.connect(login.set(password="not-" + password).render_as_string(False)).close()
        except psycopg.OperationalError:
            return user, password
        if self.private:  # our pg_hba.conf asks replikit_pw for its password
            pytest.fail(f"the test cluster accepted a wrong password for {user}", pytrace=False)
        pytest.skip(f"{PG_ENV_URL}'s server trusts {user}: a wrong password is not refused there")

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions first."""
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            # a database with a logical replication slot cannot be dropped
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s AND NOT active",
                (name,),
            )
            force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force)
            )


def pg_bindir() -> Path | None:
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    candidates += [Path(p) for p in versions]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """A private cluster: initdb, start, stop, remove."""

    def __init__(self, bindir: Path, worker: str) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix=f"replikit-pg-{worker}-"))
        self.data = self.root / "data"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, check=False)

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"{what} failed:\n{proc.stdout}\n{proc.stderr}\n{tail}", pytrace=False)

    def init(self) -> None:
        proc = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self._check(proc, "initdb")
        (self.data / "pg_hba.conf").write_text(_PG_HBA)

    def start(self, attempts: int = 3) -> None:
        for _ in range(attempts):
            self.port = _free_port()
            conf = dict(PG_SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.root}'")
            lines = "".join(f"{k} = {v}\n" for k, v in conf.items())
            (self.data / "postgresql.auto.conf").write_text(lines)
            proc = self._pg_ctl_start()
            if proc.returncode == 0:
                return
        self._check(proc, "pg_ctl start")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl", "start", "-w", "-t", "30", "-D", str(self.data),
            "-l", str(self.root / "server.log"),
        )  # fmt: skip

    def start_server(self) -> None:
        """Start again on the same port (``-w``: returns once it accepts connections)."""
        self._check(self._pg_ctl_start(), "pg_ctl start (restart)")

    def stop_server(self) -> None:
        """Stop, disconnecting every session; the data directory stays."""
        self._check(
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data)), "pg_ctl stop"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))
        shutil.rmtree(self.root, ignore_errors=True)


# -- MySQL / MariaDB ---------------------------------------------------------------------------
MYSQL_ENV_URL = "REPLIKIT_TEST_MYSQL_URL"
MYSQL_INSTALL_HINT = (
    "MySQL/MariaDB tests need a server: install the server binaries "
    "(apt-get install mariadb-server) or set REPLIKIT_TEST_MYSQL_URL to an admin-capable URL, "
    "e.g. mysql://root@127.0.0.1:3306/mysql"
)
MYSQL_SETTINGS = {
    "bind-address": "127.0.0.1",
    "server-id": "1",
    "binlog-format": "ROW",
    "binlog-row-image": "FULL",
    "binlog-row-metadata": "FULL",
    "sync-binlog": "0",
    "innodb-buffer-pool-size": "64M",
    "innodb-log-file-size": "32M",
    "innodb-flush-log-at-trx-commit": "0",
    "innodb-doublewrite": "0",
    "character-set-server": "utf8mb4",
    "collation-server": "utf8mb4_general_ci",
    "max-connections": "200",
    "local-infile": "1",
    "performance-schema": "OFF",
    "skip-name-resolve": None,
}


def _pymysql() -> Any:
    try:
        import pymysql
    except ImportError:  # pragma: no cover - the test group installs it
        pytest.fail('MySQL tests need PyMySQL: pip install "replikit[mysql]"', pytrace=False)
    return pymysql


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MysqlServer:
    """A MySQL/MariaDB server the tests may create and drop databases on."""

    def __init__(
        self,
        admin_url: str,
        *,
        socket: str | None = None,
        binlog_dir: str | None = None,
        local: MysqlProcess | None = None,
    ) -> None:
        self._admin = make_url(admin_url)
        self.socket = socket
        self.binlog_dir = binlog_dir
        self._local = local

    @property
    def private(self) -> bool:
        """True for the session's own server, False for ``REPLIKIT_TEST_MYSQL_URL``'s."""
        return self._local is not None

    def _own_server(self) -> MysqlProcess:
        if self._local is None:
            pytest.skip(f"{MYSQL_ENV_URL} names an external server: the tests do not restart it")
        return self._local

    def stop(self) -> None:
        """Stop the private server (open connections break)."""
        self._own_server().stop_process()

    def start(self) -> None:
        """Start the private server again on the same port; wait until it accepts logins."""
        self._own_server().start_process()

    def restart(self) -> None:
        """Stop and start the private server: every open connection breaks."""
        self.stop()
        self.start()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._admin.port or 3306

    @property
    def host(self) -> str:
        """The host name of the server."""
        return self._admin.host or "127.0.0.1"

    @property
    def admin_url(self) -> str:
        """URL of the admin account (database ``mysql`` for a private server)."""
        return self._admin.render_as_string(hide_password=False)

    def url(self, dbname: str, *, scheme: str = "mysql") -> str:
        """URL of database ``dbname`` on this server (``scheme``: ``mysql`` or ``mariadb``)."""
        return self._admin.set(database=dbname, drivername=scheme).render_as_string(
            hide_password=False
        )

    def connect(self, dbname: str | None = None, **kwargs: Any) -> Any:
        """An autocommit PyMySQL connection as the admin (default database: ``dbname``)."""
        pymysql = _pymysql()
        u = self._admin
        args: dict[str, Any] = {
            "host": u.host or "127.0.0.1",
            "port": self.port,
            "user": u.username or "root",
            "password": u.password or "",
            "database": dbname if dbname is not None else u.database,
            "autocommit": True,
            "charset": "utf8mb4",
            **kwargs,
        }
        return pymysql.connect(**args)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (utf8mb4); return its URL."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {_quote(name)} CHARACTER SET utf8mb4")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, killing sessions that use it first."""
        pymysql = _pymysql()
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = %s AND id <> CONNECTION_ID()",
                (name,),
            )
            for (pid,) in cur.fetchall():
                with contextlib.suppress(pymysql.Error):  # the session may have ended
                    cur.execute(f"KILL {int(pid)}")
            cur.execute(f"DROP DATABASE IF EXISTS {_quote(name)}")


class MysqlProcess:
    """A private server: install the system tables, start, stop, remove. ``settings``
    override or add to :data:`MYSQL_SETTINGS` (e.g. another ``server-id``)."""

    def __init__(self, worker: str, settings: Mapping[str, str | None] | None = None) -> None:
        self.settings = dict(settings or {})
        self.root = Path(tempfile.mkdtemp(prefix=f"replikit-my-{worker}-"))
        self.data = self.root / "data"
        self.binlogs = self.root / "binlog"
        self.socket = str(self.root / "mysqld.sock")
        self.log = self.root / "server.log"
        self.as_mysql = os.geteuid() == 0
        self.binlogs.mkdir()
        if self.as_mysql:
            for path in (self.root, self.binlogs):
                shutil.chown(path, "mysql", "mysql")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _user(self) -> list[str]:
        return ["--user=mysql"] if self.as_mysql else []

    def _fail(self, what: str, detail: str = "") -> None:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        pytest.fail(f"{what} failed:\n{detail}\n{tail}", pytrace=False)

    def init(self) -> None:
        proc = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *self._user(),
            ],
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
        )
        if proc.returncode != 0:
            self._fail("mariadb-install-db", proc.stdout + proc.stderr)

    def _command(self) -> list[str]:
        options = dict(
            MYSQL_SETTINGS,
            **self.settings,
            port=str(self.port),
            socket=self.socket,
            datadir=str(self.data),
            **{
                "log-bin": str(self.binlogs / "binlog"),
                "pid-file": str(self.root / "mysqld.pid"),
                "log-error": str(self.log),
                "tmpdir": str(self.root),
            },
        )
        args = [f"--{k}" if v is None else f"--{k}={v}" for k, v in options.items()]
        return [_mariadbd(), "--no-defaults", *args, *self._user()]

    def start(self, attempts: int = 3) -> None:
        for _ in range(attempts):
            self.port = _free_port()
            self.proc = subprocess.Popen(
                self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready(timeout=60):
                self._bootstrap()
                return
            self.stop_process()
        self._fail("mariadbd start")

    def start_process(self) -> None:
        """Start again with the same port, socket and data (a restart: no bootstrap)."""
        self.proc = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not self._wait_ready(timeout=60):
            self.stop_process()
            self._fail("mariadbd restart")

    def _wait_ready(self, timeout: float) -> bool:
        pymysql = _pymysql()
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if not _accepts(self.socket):  # probe first: PyMySQL leaks a refused socket
                time.sleep(0.1)
                continue
            try:
                pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=2).close()
                return True
            except pymysql.Error:
                time.sleep(0.1)
        return False

    def _bootstrap(self) -> None:
        pymysql = _pymysql()
        user, password = PASSWORD_USER
        conn = pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)
        with conn, conn.cursor() as cur:
            # root over TCP from 127.0.0.1, without a password (install-db made root@localhost)
            cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
            cur.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON *.* TO '{user}'@'%'")

    def stop_process(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.root, ignore_errors=True)


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def _mariadbd() -> str:
    for name in ("mariadbd", "mysqld"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    pytest.fail(MYSQL_INSTALL_HINT, pytrace=False)


# -- one server per test session (per xdist worker) --------------------------------------------
@contextlib.contextmanager
def postgresql_server(worker: str = "main") -> Iterator[PgServer]:
    """The PostgreSQL server of a test session: ``REPLIKIT_TEST_PG_URL``'s, or a private
    cluster (named after ``worker``) removed when the block ends."""
    url = os.environ.get(PG_ENV_URL)
    if url:
        yield PgServer(url)
        return
    bindir = pg_bindir()
    if bindir is None:
        pytest.fail(PG_INSTALL_HINT, pytrace=False)
    cluster = PgCluster(bindir, worker)
    try:
        cluster.init()
        cluster.start()
        yield PgServer(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", cluster)
    finally:
        cluster.stop()


@contextlib.contextmanager
def mysql_server(
    worker: str = "main",
    *,
    private: bool = False,
    settings: Mapping[str, str | None] | None = None,
) -> Iterator[MysqlServer]:
    """The MySQL/MariaDB server of a test session: ``REPLIKIT_TEST_MYSQL_URL``'s, or a
    private ``mariadbd`` (named after ``worker``, with ``settings`` added to
    :data:`MYSQL_SETTINGS`) removed when the block ends. ``private``: always a private
    server (a test of several servers)."""
    url = None if private else os.environ.get(MYSQL_ENV_URL)
    if url:
        yield MysqlServer(url)
        return
    if shutil.which("mariadb-install-db") is None:
        pytest.fail(MYSQL_INSTALL_HINT, pytrace=False)
    server = MysqlProcess(worker, settings)
    try:
        server.init()
        server.start()
        yield MysqlServer(
            f"mysql://root@127.0.0.1:{server.port}/mysql",
            socket=server.socket,
            binlog_dir=str(server.binlogs),
            local=server,
        )
    finally:
        server.stop()
