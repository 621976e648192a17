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

import uuid
from collections.abc import Iterator

import pytest

# the server code lives in replikit.testing.servers (the pytest plugin's throwaway servers);
# these names stay importable from here for the tests that build a second server
from replikit.testing.servers import PASSWORD_USER as PASSWORD_USER
from replikit.testing.servers import PG_ENV_URL as ENV_URL
from replikit.testing.servers import PG_INSTALL_HINT as INSTALL_HINT
from replikit.testing.servers import PG_SETTINGS as _SETTINGS
from replikit.testing.servers import PgCluster as _LocalCluster
from replikit.testing.servers import PgServer as PgServer
from replikit.testing.servers import pg_bindir as _bindir

__all__ = ["ENV_URL", "INSTALL_HINT", "_SETTINGS", "PgServer", "_LocalCluster", "_bindir"]


@pytest.fixture(scope="session")
def pg_server(replikit_postgresql: PgServer) -> PgServer:
    """The PostgreSQL server of this test session (see the module docstring)."""
    return replikit_postgresql


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
