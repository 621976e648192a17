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

import uuid
from collections.abc import Iterator

import pytest

# the server code lives in replikit.testing.servers (the pytest plugin's throwaway servers)
from replikit.testing.servers import MYSQL_ENV_URL as ENV_URL
from replikit.testing.servers import MYSQL_INSTALL_HINT as INSTALL_HINT
from replikit.testing.servers import PASSWORD_USER as PASSWORD_USER
from replikit.testing.servers import MysqlServer as MysqlServer

__all__ = ["ENV_URL", "INSTALL_HINT", "PASSWORD_USER", "MysqlServer"]


@pytest.fixture(scope="session")
def mysql_server(replikit_mysql: MysqlServer) -> MysqlServer:
    """The MySQL/MariaDB server of this test session (see the module docstring)."""
    return replikit_mysql


@pytest.fixture
def mysql_url(mysql_server: MysqlServer) -> Iterator[str]:
    """URL of a fresh, empty database for one test; dropped afterwards."""
    name = f"rk_test_{uuid.uuid4().hex[:12]}"
    url = mysql_server.create_database(name)
    try:
        yield url
    finally:
        mysql_server.drop_database(name)
