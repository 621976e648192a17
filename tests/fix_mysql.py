"""A hermetic, throwaway MariaDB server for tests.

``REPLIKIT_TEST_MYSQL_URL`` (a URL to an admin-capable account, e.g.
``mysql://root@127.0.0.1:3306/mysql``) selects an existing server; otherwise each pytest
session (each xdist worker) runs ``mariadb-install-db`` into a temp dir and starts a private
``mariadbd`` on 127.0.0.1 at a free port and its own unix socket, with the binlog settings CDC
needs (``log_bin``, ``server_id=1``, ``binlog_format=ROW``, ``binlog_row_image=FULL``,
``binlog_row_metadata=FULL``), durability switched off and a small buffer pool; it is stopped
and removed at session end. mariadbd refuses to run as root, so as root it runs as the
``mysql`` OS user. ``root`` logs in without a password (TCP or socket); ``replikit_pw`` (password
``secret-pw``) exists so tests can see a wrong password refused. Fixtures:

* ``mysql_server`` (session): a :class:`MysqlServer` with ``url(db)``, ``admin_url``,
  ``create_database(name)``, ``drop_database(name)``, ``connect(db)``, ``port``, ``socket``
  and ``binlog_dir`` (``socket``/``binlog_dir`` are ``None`` for an external server);
* ``mysql_url`` (function): the URL of a fresh empty database, dropped after the test.

``MysqlServer.restart()`` (or ``stop()`` then ``start()``) restarts a private server on the same
port, socket and data directory: every open connection breaks, new ones succeed after
``start()``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

ENV_URL = "REPLIKIT_TEST_MYSQL_URL"
PASSWORD_USER = ("replikit_pw", "secret-pw")
INSTALL_HINT = (
    "MySQL/MariaDB tests need a server: install the server binaries "
    "(apt-get install mariadb-server) or set REPLIKIT_TEST_MYSQL_URL to an admin-capable URL, "
    "e.g. mysql://root@127.0.0.1:3306/mysql"
)
_SETTINGS = {
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
        local: _LocalServer | None = None,
    ) -> None:
        self._admin = make_url(admin_url)
        self.socket = socket
        self.binlog_dir = binlog_dir
        self._local = local

    @property
    def private(self) -> bool:
        """True for the session's own server, False for ``REPLIKIT_TEST_MYSQL_URL``'s."""
        return self._local is not None

    def _own_server(self) -> _LocalServer:
        if self._local is None:
            pytest.skip(f"{ENV_URL} names an external server: the tests do not restart it")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _LocalServer:
    """A private server: install the system tables, start, stop, remove."""

    def __init__(self, worker: str) -> None:
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
            _SETTINGS,
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
    pytest.fail(INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="session")
def mysql_server(worker_id: str) -> Iterator[MysqlServer]:
    """The MySQL/MariaDB server of this test session (see the module docstring)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield MysqlServer(url)
        return
    if shutil.which("mariadb-install-db") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = _LocalServer(worker_id)
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


@pytest.fixture
def mysql_url(mysql_server: MysqlServer) -> Iterator[str]:
    """URL of a fresh, empty database for one test; dropped afterwards."""
    name = f"rk_test_{uuid.uuid4().hex[:12]}"
    url = mysql_server.create_database(name)
    try:
        yield url
    finally:
        mysql_server.drop_database(name)
