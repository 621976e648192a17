"""MongoDB servers for tests: nx-27017 (a wire-protocol server on PyPI) and, when
``REPLIKIT_TEST_MONGO_URL`` is set, a real MongoDB.

No MongoDB server can be installed on the machines these tests were written on (see
docs/mongodb.md, "What was verified"). Every MongoDB test that needs a server takes the
``mongo`` fixture, which is parametrised over both:

* ``nx27017``: ``nx-27017 --data-dir <tmp>`` started once per session on a free port (real
  pymongo over real sockets; a dev dependency). It is not MongoDB: its known deviations are
  :data:`NX_DEVIATIONS`, and tests that meet one say so with :meth:`MongoServer.deviates`;
* ``real``: the server at ``REPLIKIT_TEST_MONGO_URL`` (a replica set, for change streams,
  e.g. ``mongodb://127.0.0.1:27017/?replicaSet=rs0``); skipped with that reason when unset.

``mongo_url`` gives the URL of a fresh database (dropped after the test).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ENV_URL = "REPLIKIT_TEST_MONGO_URL"
NX = Path(sys.executable).parent / "nx-27017"

#: what nx-27017 0.8.1 does differently from MongoDB (probed; tests name the one they meet)
NX_DEVIATIONS = {
    "decimal128": "nx-27017 cannot store Decimal128 values (its JSON storage refuses them)",
    "binary-subtypes": "nx-27017 returns every binary as subtype 0 (a UUID, subtype 4, comes "
    "back as 16 plain bytes)",
    "replace-as-update": "nx-27017 reports a replace as an 'update' event",
    "string-document-key": "nx-27017 gives documentKey._id as a string ('10' for 10)",
    "no-update-description": "nx-27017 sends no updateDescription",
    "delete-full-document": "nx-27017 delete events carry the deleted fullDocument",
    "no-drop-events": "nx-27017 emits no drop/rename/invalidate events",
    "no-db-watch": "nx-27017 delivers events only to collection-level watch()",
    "origin-token": "a new nx-27017 stream's resume token is the collection's first event "
    "(nx:0): a stream started 'now' replays the collection's history",
    "no-history-lost": "nx-27017 accepts an unknown resume token silently "
    "(MongoDB raises ChangeStreamHistoryLost)",
    "no-transactions-in-hello": "nx-27017's hello has no setName, so replikit applies "
    "without multi-document transactions unless forced",
    "index-names": "nx-27017 renames indexes (idx_<collection>_<field>)",
    "no-snapshot-reads": "nx-27017 accepts read concern 'snapshot' and atClusterTime but "
    "ignores them and reports no atClusterTime, so replikit reloads a collection without a "
    "snapshot (and warns)",
    "untimed-events": "nx-27017 gives an event's clusterTime as a date, not a Timestamp, and "
    "its resume tokens (nx:N) hold no cluster time",
}


@dataclass
class MongoServer:
    """A server for tests: ``kind`` is ``"nx27017"`` or ``"real"``."""

    kind: str
    base_url: str
    deviations: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str, **options: str) -> str:
        """The URL of ``database`` with the server's options and ``options``."""
        head, _, query = self.base_url.partition("?")
        head = head.rstrip("/")
        head = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
        parts = [p for p in query.split("&") if p] + [f"{k}={v}" for k, v in options.items()]
        return f"{head}/{database}" + ("?" + "&".join(parts) if parts else "")

    def client(self) -> Any:
        import pymongo

        return pymongo.MongoClient(self.base_url, serverSelectionTimeoutMS=5000, tz_aware=True,
                                   uuidRepresentation="standard")  # fmt: skip

    def create_database(self, name: str) -> str:
        """The URL of database ``name`` (MongoDB creates it on the first write)."""
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``."""
        client = self.client()
        try:
            client.drop_database(name)
        finally:
            client.close()

    def deviates(self, name: str) -> bool:
        """Whether this server has the named deviation (:data:`NX_DEVIATIONS`)."""
        return name in self.deviations


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_nx(tmp: Path) -> MongoServer:
    if not NX.exists():
        pytest.skip("nx-27017 is not installed (a dev dependency: pip install nx-27017)")
    port = _free_port()
    proc = subprocess.Popen(
        [str(NX), "--data-dir", str(tmp / "data"), "--host", "127.0.0.1", "-p", str(port),
         "--log-file", str(tmp / "nx.log"), "--pid-file", str(tmp / "nx.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"nx-27017 exited with {proc.returncode}; see {tmp / 'nx.log'}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("nx-27017 did not listen within 20 s")
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    return MongoServer("nx27017", url, dict(NX_DEVIATIONS), proc)


@pytest.fixture(scope="session")
def nx_server() -> Iterator[MongoServer]:
    tmp = Path(tempfile.mkdtemp(prefix="replikit-nx-"))
    server = _start_nx(tmp)
    try:
        yield server
    finally:
        assert server.process is not None
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def real_mongo() -> MongoServer:
    url = os.environ.get(ENV_URL)
    if not url:
        pytest.skip(f"no real MongoDB: set {ENV_URL} (a replica set URL) to run this test on one")
    return MongoServer("real", url)


@pytest.fixture(params=["nx27017", "real"])
def mongo(request: pytest.FixtureRequest) -> MongoServer:
    """A server: nx-27017, and a real MongoDB when ``REPLIKIT_TEST_MONGO_URL`` is set."""
    name = "nx_server" if request.param == "nx27017" else "real_mongo"
    server: MongoServer = request.getfixturevalue(name)
    return server


@pytest.fixture
def mongo_db(mongo: MongoServer) -> Iterator[str]:
    """A fresh database name on ``mongo`` (dropped after the test)."""
    name = f"rk_{uuid.uuid4().hex[:10]}"
    yield name
    client = mongo.client()
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def mongo_url(mongo: MongoServer, mongo_db: str) -> str:
    """The URL of a fresh database on ``mongo``."""
    return mongo.url(mongo_db)
