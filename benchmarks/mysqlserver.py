"""Throwaway MariaDB server for the benchmarks (the MySQL twin of ``pgserver.py``).

Either uses the server named by ``REPLIKIT_BENCH_MYSQL_URL`` (``mysql://user:pw@host:port/``
of an account that may create and drop databases and create users), or runs
``mariadb-install-db`` into a temporary directory and starts a private ``mariadbd`` on a free
127.0.0.1 port with its own unix socket. As root, mariadbd runs as the ``mysql`` OS user
(it refuses to run as root).

Server settings (everything else is the MariaDB default):

* ``bind-address = 127.0.0.1``, a free ``port``, the socket in the server directory
* ``skip-log-bin``                           (a full load reads; no binlog needed)
* ``innodb-buffer-pool-size = 2G``           (the 1.1M-row source stays in memory)
* ``innodb-log-file-size = 512M``, ``innodb-flush-log-at-trx-commit = 2``, ``sync-binlog=0``
  (fast data generation; no effect on reads)
* ``character-set-server = utf8mb4``, ``collation-server = utf8mb4_general_ci``
* ``max-allowed-packet = 256M``, ``performance-schema = OFF``, ``skip-name-resolve``

Every tool logs in as ``bench`` / ``bench`` (``mysql_native_password``, which every peer's
driver speaks) over TCP. The source database is ``bench_src``.

Standalone use::

    python benchmarks/mysqlserver.py start    # start (or reuse) a kept server, print its URL
    python benchmarks/mysqlserver.py status
    python benchmarks/mysqlserver.py stop     # stop it and delete its directory
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

ENV_URL = "REPLIKIT_BENCH_MYSQL_URL"
STATE_FILE = Path(__file__).resolve().parent / ".data" / "mysqlserver.json"
SRC_DB = "bench_src"
BENCH_USER = ("bench", "bench")
SERVER_SETTINGS: dict[str, str | None] = {
    "bind-address": "127.0.0.1",
    "skip-log-bin": None,
    "innodb-buffer-pool-size": "2G",
    "innodb-log-file-size": "512M",
    "innodb-flush-log-at-trx-commit": "2",
    "sync-binlog": "0",
    "character-set-server": "utf8mb4",
    "collation-server": "utf8mb4_general_ci",
    "max-allowed-packet": "256M",
    "max-connections": "200",
    "local-infile": "1",
    "performance-schema": "OFF",
    "skip-name-resolve": None,
}


@dataclass
class MysqlServer:
    """A running server: either external (``base_dir is None``) or owned by us."""

    host: str
    port: int
    admin_user: str = "root"
    admin_password: str = ""
    base_dir: str | None = None
    pid: int | None = None

    @property
    def external(self) -> bool:
        return self.base_dir is None

    @property
    def socket_path(self) -> str | None:
        return None if self.base_dir is None else str(Path(self.base_dir) / "mysqld.sock")

    def url(self, dbname: str = SRC_DB, *, scheme: str = "mysql", query: str = "") -> str:
        """URL of ``dbname`` as the benchmark user (what every tool gets)."""
        user, password = BENCH_USER
        tail = f"?{query}" if query else ""
        return f"{scheme}://{user}:{password}@{self.host}:{self.port}/{dbname}{tail}"

    @property
    def src_url(self) -> str:
        return self.url(SRC_DB)

    def connect(self, dbname: str | None = None, **kwargs: Any) -> pymysql.Connection[Any]:
        """An autocommit PyMySQL connection as the admin."""
        args: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.admin_user,
            "password": self.admin_password,
            "database": dbname,
            "autocommit": True,
            "charset": "utf8mb4",
            "connect_timeout": 5,
        }
        args.update(kwargs)
        return pymysql.connect(**args)

    def execute(self, *statements: str, dbname: str | None = None) -> None:
        with self.connect(dbname) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def version(self) -> str:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
        assert row is not None
        return str(row[0])

    def is_ready(self) -> bool:
        try:
            self.connect().close()
            return True
        except pymysql.Error:
            return False

    def stop(self) -> None:
        """Stop an owned server and delete its directory (no-op for external)."""
        if self.external:
            return
        if self.pid and _alive(self.pid):
            os.kill(self.pid, 15)
            deadline = time.monotonic() + 60
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(self.pid):
                os.kill(self.pid, 9)
        assert self.base_dir is not None
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if STATE_FILE.exists():
            with contextlib.suppress(ValueError):
                if json.loads(STATE_FILE.read_text()).get("base_dir") == self.base_dir:
                    STATE_FILE.unlink()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    raise FileNotFoundError(
        f"none of {names} found: apt-get install mariadb-server, or set {ENV_URL}"
    )


def _init_new() -> MysqlServer:
    base = Path(tempfile.mkdtemp(prefix="replikit-bench-my-"))
    as_mysql = os.geteuid() == 0
    user = ["--user=mysql"] if as_mysql else []
    if as_mysql:
        shutil.chown(base, "mysql", "mysql")
    os.chmod(base, 0o755)
    proc = subprocess.run(
        [
            _binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={base / 'data'}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *user,
        ],
        capture_output=True,
        text=True,
        cwd=base,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed: {proc.stdout}{proc.stderr}")
    server = MysqlServer(host="127.0.0.1", port=0, base_dir=str(base))
    _start(server, user)
    _bootstrap(server)
    return server


def _start(server: MysqlServer, user: list[str], attempts: int = 3) -> None:
    assert server.base_dir is not None
    base = Path(server.base_dir)
    log = base / "server.log"
    for _ in range(attempts):
        server.port = _free_port()
        options = dict(
            SERVER_SETTINGS,
            port=str(server.port),
            socket=server.socket_path,
            datadir=str(base / "data"),
            **{"pid-file": str(base / "mysqld.pid"), "log-error": str(log), "tmpdir": str(base)},
        )
        args = [f"--{k}" if v is None else f"--{k}={v}" for k, v in options.items()]
        proc = subprocess.Popen(
            [_binary("mariadbd", "mysqld"), "--no-defaults", *args, *user],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the benchmark process when --keep
        )
        server.pid = proc.pid
        if _wait_ready(server, proc, timeout=90):
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"mariadbd did not start:\n{tail}")


def _wait_ready(server: MysqlServer, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    sock = server.socket_path
    assert sock is not None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            pymysql.connect(unix_socket=sock, user="root", connect_timeout=2).close()
            return True
        except pymysql.Error:
            time.sleep(0.2)
    return False


def _bootstrap(server: MysqlServer) -> None:
    conn = pymysql.connect(unix_socket=server.socket_path, user="root", autocommit=True)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
        cur.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")


def ensure_bench_user(server: MysqlServer) -> None:
    """The ``bench`` account every tool uses, with the password plugin all drivers speak."""
    user, password = BENCH_USER
    server.execute(
        f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED VIA mysql_native_password "
        f"USING PASSWORD('{password}')",
        f"GRANT ALL ON *.* TO '{user}'@'%'",
        f"CREATE DATABASE IF NOT EXISTS `{SRC_DB}` CHARACTER SET utf8mb4",
    )


def _load_kept() -> MysqlServer | None:
    if not STATE_FILE.exists():
        return None
    try:
        server = MysqlServer(**json.loads(STATE_FILE.read_text()))
    except (ValueError, TypeError):
        return None
    if server.is_ready():
        return server
    if server.base_dir and Path(server.base_dir, "data").exists():
        try:
            _start(server, ["--user=mysql"] if os.geteuid() == 0 else [])
        except RuntimeError:
            return None
        STATE_FILE.write_text(json.dumps(asdict(server), indent=2))
        return server
    return None


def _from_env(url: str) -> MysqlServer:
    parts = urlsplit(url)
    return MysqlServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        admin_user=unquote(parts.username or "root"),
        admin_password=unquote(parts.password or ""),
    )


def start(keep: bool = False) -> MysqlServer:
    """A ready server with the ``bench`` user and the ``bench_src`` database.

    Uses ``REPLIKIT_BENCH_MYSQL_URL`` if set; else reuses a server left by ``--keep``; else
    starts a new one (recorded in ``benchmarks/.data/mysqlserver.json`` if ``keep``).
    """
    env_url = os.environ.get(ENV_URL)
    if env_url:
        server = _from_env(env_url)
    else:
        kept = _load_kept()
        if kept is not None:
            server = kept
        else:
            server = _init_new()
            if keep:
                STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
                STATE_FILE.write_text(json.dumps(asdict(server), indent=2))
    deadline = time.monotonic() + 30
    while not server.is_ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"MariaDB not ready at {server.host}:{server.port}")
        time.sleep(0.2)
    ensure_bench_user(server)
    return server


@contextlib.contextmanager
def running(keep: bool = False) -> Iterator[MysqlServer]:
    """``start`` as a context manager: stops an owned server at exit unless ``keep``."""
    server = start(keep=keep)
    try:
        yield server
    finally:
        if not keep:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("action", choices=["start", "status", "stop"])
    args = parser.parse_args(argv)
    if args.action == "start":
        server = start(keep=True)
        print(server.src_url)
        return 0
    kept = _load_kept() if not os.environ.get(ENV_URL) else None
    if args.action == "status":
        print(f"running: {kept.src_url} ({kept.base_dir})" if kept else "no kept server")
        return 0 if kept else 1
    if kept:
        kept.stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
