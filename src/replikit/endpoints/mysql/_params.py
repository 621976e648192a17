"""Connection parameters parsed from a MySQL/MariaDB URL (no driver import).

``mysql://user:password@host:port/db?ssl_mode=VERIFY_IDENTITY&ssl_ca=/ca.pem`` (also
``mariadb://``). ``mysql+pymysql://`` and ``mysql+mysqldb://`` pick the driver; otherwise
``?driver=pymysql|mysqlclient`` does, and by default mysqlclient is used when it is installed
(measured faster) and PyMySQL otherwise. Recognised query keys: ``ssl_mode``
(``DISABLED``/``PREFERRED``/``REQUIRED``/``VERIFY_CA``/``VERIFY_IDENTITY``), ``ssl_ca``,
``ssl_cert``, ``ssl_key``, ``unix_socket``, ``connect_timeout``, ``driver``, and ``charset``
(SQLAlchemy URLs carry it; replikit always talks utf8mb4), and ``arrow`` (``auto``,
``connectorx`` or ``csv``: how a full load into DuckDB reads the rows, :data:`ARROW_READERS`).
Anything else is a
:class:`~replikit.ConfigError`, so a misspelt TLS option never silently connects in clear.

``A URL without a password takes it where the mysql client does: the ``password`` of the
``[client]`` section of ``~/.my.cnf`` (its ``user`` too when the URL has none), else the
``MYSQL_PWD`` environment variable. replikit reads them itself, so both drivers and the binlog
stream use the same login, and a driver error can be scrubbed of the password.

``connect_timeout`` (seconds, default 10) is the one timeout setting: it bounds the TCP
connect, the server greeting, the login and the session setup of every connection (the
binlog stream's included), and established connections find a dead peer by TCP keepalive
probes after that many idle seconds (see :func:`replikit.endpoints.mysql._connect.connect`).
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from replikit.endpoints._url import is_local_host, parse_url
from replikit.errors import ConfigError

__all__ = ["ARROW_READERS", "DRIVERS", "SSL_MODES", "ConnParams"]

log = logging.getLogger("replikit.mysql")

DRIVERS = ("auto", "mysqlclient", "pymysql")
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
_QUERY_KEYS = {
    "ssl_mode", "ssl_ca", "ssl_cert", "ssl_key", "unix_socket", "connect_timeout", "arrow"
}  # fmt: skip
#: how a full load into a target that reads Arrow streams (DuckDB) reads the rows: ``auto``
#: (connectorx where it is installed, else the server's CSV lines), ``connectorx`` (required),
#: ``csv`` (the CSV lines: less memory, no connectorx); :mod:`._cxstream`
ARROW_READERS = ("auto", "connectorx", "csv")
_SCHEME_DRIVERS = {"pymysql": "pymysql", "mysqldb": "mysqlclient", "mysqlclient": "mysqlclient"}


@dataclass(frozen=True, slots=True)
class ConnParams:
    """Where and how to connect; the password is kept out of ``repr``.

    ``database`` is the URL's database: the one a reader reflects and a writer writes into.
    ``ssl`` holds the TLS keys given in the URL (``ssl_mode``, ``ssl_ca``, ...); they reach
    every connection replikit opens, the binlog stream's included (:meth:`pymysql_kwargs`).
    """

    host: str | None = None
    port: int | None = None
    user: str | None = None
    database: str | None = None
    password: str | None = field(default=None, repr=False)
    unix_socket: str | None = None
    connect_timeout: int = 10
    driver: str = "auto"
    ssl: Mapping[str, str] = field(default_factory=dict)
    arrow: str = "auto"

    @classmethod
    def from_url(cls, url: str, masked: str) -> ConnParams:
        """Parse a ``mysql://`` / ``mariadb://`` URL (``masked`` is used in errors)."""
        try:
            u = parse_url(url)
            port = u.port
        except ValueError:
            raise ConfigError(f"invalid MySQL URL {masked!r}") from None
        query = {k: v if isinstance(v, str) else v[-1] for k, v in u.query.items()}
        # only an explicit "+driver" picks one
        explicit = u.driver
        driver = query.pop("driver", None) or _SCHEME_DRIVERS.get(explicit, "auto")
        if driver not in DRIVERS:
            raise ConfigError(
                f"unknown MySQL driver {driver!r} in {masked!r}; use one of {DRIVERS}"
            )
        _charset(query.pop("charset", None))
        unknown = sorted(set(query) - _QUERY_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown MySQL URL option(s) {', '.join(unknown)} in {masked!r}; "
                f"known: driver, {', '.join(sorted(_QUERY_KEYS))}"
            )
        ssl = {k: v for k, v in query.items() if k.startswith("ssl_")}
        mode = ssl.get("ssl_mode", "").upper()
        if mode and mode not in SSL_MODES:
            raise ConfigError(f"ssl_mode must be one of {', '.join(SSL_MODES)}; got {mode!r}")
        if mode:
            ssl["ssl_mode"] = mode
        try:
            timeout = int(query.get("connect_timeout", 10))
        except ValueError:
            timeout = 0
        if timeout <= 0:
            raise ConfigError(
                f"connect_timeout must be a whole number of seconds > 0 in {masked!r}"
            )
        arrow = query.get("arrow", "auto")
        if arrow not in ARROW_READERS:
            raise ConfigError(
                f"arrow must be one of {', '.join(ARROW_READERS)} in {masked!r}; got {arrow!r}"
            )
        user, password = _login(u.username, u.password)
        return cls(
            host=u.host,
            port=port,
            user=user,
            database=u.database or None,
            password=password,
            unix_socket=query.get("unix_socket"),
            connect_timeout=timeout,
            driver=driver,
            ssl=ssl,
            arrow=arrow,
        )

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs on this machine: a Unix socket, ``localhost`` (the
        default) or a loopback address."""
        return self.unix_socket is not None or is_local_host(self.host)

    def where(self) -> str:
        """``host:port/db`` (or the socket) for messages."""
        place = self.unix_socket or f"{self.host or 'localhost'}:{self.port or 3306}"
        return f"{place}/{self.database or ''}"

    def _ssl_pymysql(self) -> dict[str, Any]:
        mode = self.ssl.get("ssl_mode")
        out: dict[str, Any] = {}
        for key in ("ssl_ca", "ssl_cert", "ssl_key"):
            if key in self.ssl:
                out[key] = self.ssl[key]
        if mode == "DISABLED":
            return {"ssl_disabled": True}
        if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
            out["ssl_verify_cert"] = True
            out["ssl_verify_identity"] = mode == "VERIFY_IDENTITY"
        elif mode == "REQUIRED" and not out:
            out["ssl"] = {"check_hostname": False, "verify_mode": 0}  # encrypt, no verification
        elif mode == "REQUIRED":
            out["ssl_verify_cert"] = False
        return out

    def _common_kwargs(self) -> dict[str, Any]:
        """The connection settings both drivers take under the same names."""
        return {
            "host": self.host or "localhost",
            "port": self.port or 3306,
            "user": self.user or "",
            "password": self.password or "",
            "database": self.database,
            "unix_socket": self.unix_socket,
            "connect_timeout": self.connect_timeout,
            "charset": "utf8mb4",
        }

    def pymysql_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` (also the binlog stream's settings)."""
        base = {**self._common_kwargs(), **self._ssl_pymysql(), **overrides}
        return {k: v for k, v in base.items() if v is not None}

    def mysqlclient_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``MySQLdb.connect``."""
        base = {**self._common_kwargs(), **overrides}
        if self.ssl.get("ssl_mode"):
            base["ssl_mode"] = self.ssl["ssl_mode"]
        files = {k[4:]: v for k, v in self.ssl.items() if k in ("ssl_ca", "ssl_cert", "ssl_key")}
        if files:
            base["ssl"] = files
        return {k: v for k, v in base.items() if v is not None}


def _charset(value: str | None) -> None:
    """A URL's ``charset``: replikit's sessions are utf8mb4 whatever it says (noted)."""
    if value is not None and value.lower() != "utf8mb4":
        log.info("the URL asks for charset %s; replikit's sessions always use utf8mb4", value)


def _login(user: str | None, password: str | None) -> tuple[str | None, str | None]:
    """The URL's user and password, completed from ``~/.my.cnf`` [client] and ``MYSQL_PWD``."""
    if password is not None:
        return user, password
    client = _option_file_client(os.path.expanduser("~/.my.cnf"))
    if client.get("password") is not None and (user is None or client.get("user") in (None, user)):
        log.debug("password for %s from ~/.my.cnf [client]", user or client.get("user"))
        return user or client.get("user"), client["password"]
    if os.environ.get("MYSQL_PWD") is not None:
        log.debug("password for %s from MYSQL_PWD", user)
        return user or client.get("user"), os.environ["MYSQL_PWD"]
    return user or client.get("user"), None


def _option_file_client(path: str) -> dict[str, str]:
    """The ``[client]`` section of a MySQL option file (empty when there is none)."""
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False)
    try:
        with open(path, encoding="utf-8") as f:
            text = "".join(line for line in f if not line.lstrip().startswith("!"))
        parser.read_string(text, source=path)
    except (OSError, configparser.Error):
        return {}
    if not parser.has_section("client"):
        return {}
    out = {}
    for key, value in parser.items("client"):
        if value is not None:
            out[key.replace("-", "_")] = _unquote(value.strip())
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
