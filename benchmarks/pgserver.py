"""Throwaway PostgreSQL server for the benchmarks.

Either uses the server named by ``REPLIKIT_BENCH_PG_URL`` (a URL to a maintenance
database on a server where the user may create and drop databases), or initdb's a
fresh cluster into a temporary directory and starts it on a free 127.0.0.1 port with
trust auth.  As root, initdb/pg_ctl run as the ``postgres`` OS user via ``runuser``.

Server settings (everything else is the PostgreSQL default, fsync and
full_page_writes stay on):

* ``listen_addresses = '127.0.0.1'``, a free ``port``, sockets in the data dir
* ``synchronous_commit = off``  (no durability loss on OS crash, only on server crash)
* ``shared_buffers = 512MB``     (default 128MB is small for a 1M-row table)
* ``max_wal_size = 4GB``         (fewer forced checkpoints during bulk loads)

Standalone use::

    python benchmarks/pgserver.py start    # start (or reuse) a kept server, print URL
    python benchmarks/pgserver.py status
    python benchmarks/pgserver.py stop     # stop it and delete its directory
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ENV_URL = "REPLIKIT_BENCH_PG_URL"
DEFAULT_BINDIR = Path(os.environ.get("REPLIKIT_BENCH_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
STATE_FILE = Path(__file__).resolve().parent / ".data" / "pgserver.json"
SRC_DB = "bench_src"
DST_DB = "bench_dst"
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "synchronous_commit": "off",
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
}


def with_dbname(url: str, dbname: str) -> str:
    """Return ``url`` pointing at database ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@dataclass
class PgServer:
    """A running server: either external (``base_dir is None``) or owned by us."""

    admin_url: str
    base_dir: str | None = None
    port: int | None = None
    bindir: str = str(DEFAULT_BINDIR)

    @property
    def external(self) -> bool:
        return self.base_dir is None

    @property
    def datadir(self) -> Path:
        assert self.base_dir is not None
        return Path(self.base_dir) / "data"

    def url(self, dbname: str) -> str:
        return with_dbname(self.admin_url, dbname)

    @property
    def src_url(self) -> str:
        return self.url(SRC_DB)

    @property
    def dst_url(self) -> str:
        return self.url(DST_DB)

    def bin(self, name: str) -> str:
        """Path of a client binary (pg_dump, psql) matching the server major version."""
        candidate = Path(self.bindir) / name
        if candidate.exists():
            return str(candidate)
        found = shutil.which(name)
        if not found:
            raise FileNotFoundError(name)
        return found

    def version(self) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute("select version()").fetchone()
        assert row is not None
        return str(row[0])

    # -- databases -------------------------------------------------------------------

    def recreate_db(self, dbname: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{dbname}" with (force)')
            conn.execute(f'create database "{dbname}"')

    def ensure_db(self, dbname: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (dbname,)
            ).fetchone()
            if not exists:
                conn.execute(f'create database "{dbname}"')

    def checkpoint(self) -> None:
        """Flush dirty buffers so every timed run starts from the same state."""
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute("checkpoint")
        except psycopg.Error:
            pass  # not superuser on an external server: fine

    # -- lifecycle -------------------------------------------------------------------

    def is_ready(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=3) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Stop an owned server and delete its directory (no-op for external)."""
        if self.external:
            return
        if self.datadir.exists():
            _run_as_postgres(
                [
                    str(Path(self.bindir) / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                check=False,
            )
        assert self.base_dir is not None
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if STATE_FILE.exists():
            try:
                state = json.loads(STATE_FILE.read_text())
            except ValueError:
                state = {}
            if state.get("base_dir") == self.base_dir:
                STATE_FILE.unlink()


def _as_postgres_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")  # raises KeyError with a clear name if missing
    return ["runuser", "-u", "postgres", "--"]


def _run_as_postgres(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_postgres_prefix() + cmd, check=check, capture_output=True, text=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_ctl_start(server: PgServer) -> None:
    log = Path(server.base_dir or ".") / "server.log"
    proc = _run_as_postgres(
        [
            str(Path(server.bindir) / "pg_ctl"),
            "-D",
            str(server.datadir),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=False,
    )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {proc.stdout}{proc.stderr}\n{tail}")


def _init_new(bindir: Path) -> PgServer:
    base = Path(tempfile.mkdtemp(prefix="replikit-bench-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o755)
    datadir = base / "data"
    proc = _run_as_postgres(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {proc.stdout}{proc.stderr}")
    port = _free_port()
    settings = dict(SERVER_SETTINGS, port=str(port), unix_socket_directories=f"'{datadir}'")
    with (datadir / "postgresql.conf").open("a") as fh:
        fh.write("\n# replikit benchmark settings\n")
        for key, value in settings.items():
            fh.write(f"{key} = {value}\n")
    server = PgServer(
        admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        base_dir=str(base),
        port=port,
        bindir=str(bindir),
    )
    _pg_ctl_start(server)
    return server


def _load_kept() -> PgServer | None:
    if not STATE_FILE.exists():
        return None
    try:
        server = PgServer(**json.loads(STATE_FILE.read_text()))
    except (ValueError, TypeError):
        return None
    if server.is_ready():
        return server
    if server.base_dir and server.datadir.exists():
        try:
            _pg_ctl_start(server)
        except RuntimeError:
            return None
        if server.is_ready():
            return server
    return None


def start(keep: bool = False, bindir: Path = DEFAULT_BINDIR) -> PgServer:
    """Return a ready server with ``bench_src`` and ``bench_dst`` databases.

    Uses ``REPLIKIT_BENCH_PG_URL`` if set; else reuses a server left by ``--keep``;
    else starts a new one (recorded in ``benchmarks/.data/pgserver.json`` if ``keep``).
    """
    env_url = os.environ.get(ENV_URL)
    if env_url:
        server = PgServer(admin_url=env_url)
    else:
        kept = _load_kept()
        if kept is not None:
            server = kept
        else:
            server = _init_new(bindir)
            if keep:
                STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
                STATE_FILE.write_text(json.dumps(asdict(server), indent=2))
    deadline = time.monotonic() + 30
    while not server.is_ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready: {server.admin_url}")
        time.sleep(0.2)
    server.ensure_db(SRC_DB)
    server.ensure_db(DST_DB)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "status", "stop"])
    args = parser.parse_args(argv)
    if args.action == "start":
        server = start(keep=True)
        print(server.admin_url)
        return 0
    kept = _load_kept() if not os.environ.get(ENV_URL) else None
    if args.action == "status":
        print(f"running: {kept.admin_url} ({kept.base_dir})" if kept else "no kept server")
        return 0 if kept else 1
    if kept:
        kept.stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
