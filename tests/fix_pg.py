"""A hermetic, throwaway PostgreSQL server for tests.

``REPLIKIT_TEST_PG_URL`` (a URL to an admin-capable database) selects an existing server;
otherwise each pytest session (each xdist worker) ``initdb``s a private cluster in a temp dir,
listening on 127.0.0.1 at a free port with ``wal_level=logical`` and durability switched off,
and stops it at session end. initdb and postgres refuse to run as root, so as root they run as
the ``postgres`` OS user. Fixtures:

* ``pg_server`` (session): a :class:`PgServer` with ``url(db)``, ``admin_url``,
  ``create_database(name)`` and ``drop_database(name)``;
* ``pg_url`` (function): the URL of a fresh empty database, dropped after the test;
* ``pg_password_user`` (session): ``(user, password)`` of the role ``replikit_pw``, which must
  log in with its password (the private cluster's pg_hba.conf says ``scram-sha-256`` for it), so
  tests can see a wrong password refused.

``PgServer.restart()`` (or ``stop()`` then ``start()``) restarts a private cluster on the same
port and data directory: every open connection breaks, new ones succeed after ``start()``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

ENV_URL = "REPLIKIT_TEST_PG_URL"
PASSWORD_USER = ("replikit_pw", "secret-pw")
INSTALL_HINT = (
    "PostgreSQL tests need a server: install the server binaries "
    "(apt-get install postgresql) or set REPLIKIT_TEST_PG_URL to an admin-capable URL, "
    "e.g. postgresql://postgres@127.0.0.1:5432/postgres"
)
_SETTINGS = {
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
_HBA = """\
host    all          replikit_pw   127.0.0.1/32  scram-sha-256
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
"""


class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_url: str, cluster: _LocalCluster | None = None) -> None:
        self._admin = make_url(admin_url)
        self._cluster = cluster

    @property
    def private(self) -> bool:
        """True for the session's own cluster, False for ``REPLIKIT_TEST_PG_URL``'s server."""
        return self._cluster is not None

    def _own_cluster(self) -> _LocalCluster:
        if self._cluster is None:
            pytest.skip(f"{ENV_URL} names an external server: the tests do not restart it")
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
        pytest.skip(f"{ENV_URL}'s server trusts {user}: a wrong password is not refused there")

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


def _bindir() -> Path | None:
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


class _LocalCluster:
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
        (self.data / "pg_hba.conf").write_text(_HBA)

    def start(self, attempts: int = 3) -> None:
        for _ in range(attempts):
            self.port = _free_port()
            conf = dict(_SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.root}'")
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


@pytest.fixture(scope="session")
def pg_server(worker_id: str) -> Iterator[PgServer]:
    """The PostgreSQL server of this test session (see the module docstring)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield PgServer(url)
        return
    bindir = _bindir()
    if bindir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    cluster = _LocalCluster(bindir, worker_id)
    try:
        cluster.init()
        cluster.start()
        yield PgServer(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", cluster)
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database for one test; dropped afterwards."""
    name = f"rk_test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def pg_password_user(pg_server: PgServer) -> tuple[str, str]:
    """``(user, password)`` of a role that must log in with its password."""
    return pg_server.password_user()
