"""SQLAlchemy interop: a ``URL`` or ``Engine`` as an endpoint, and SQLAlchemy's driver names.

replikit connects with its own drivers (psycopg 3; mysqlclient or PyMySQL; the standard
``sqlite3``) and never uses an engine's pool: replication and bulk-load connections need
their own sessions. From an ``Engine`` it takes the URL and the ``connect_args`` given to
``create_engine`` (TLS files, timeouts, libpq keywords), turned into URL parameters the
endpoint family reads; an argument replikit cannot honour is refused, never dropped.

>>> from sqlalchemy import URL
>>> url_text(URL.create("postgresql+psycopg2", "app", "s3cret", "db", 5432, "shop"))
'postgresql+psycopg2://app:s3cret@db:5432/shop'
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from replikit.errors import ConfigError

__all__ = ["DRIVERS", "driver_note", "is_sqlalchemy", "url_text"]

log = logging.getLogger("replikit.endpoints")

#: URL dialect -> SQLAlchemy driver names replikit accepts -> the driver it uses (None: the
#: one named is the one used).
DRIVERS: Mapping[str, Mapping[str, str | None]] = {
    "postgresql": {
        "psycopg": None,
        "psycopg2": "psycopg 3",
        "psycopg2cffi": "psycopg 3",
        "psycopg_async": "psycopg 3",
        "asyncpg": "psycopg 3",
        "pg8000": "psycopg 3",
    },
    "mysql": {
        "pymysql": None,
        "mysqldb": None,
        "mysqlconnector": "mysqlclient (PyMySQL when it is not installed)",
        "mariadbconnector": "mysqlclient (PyMySQL when it is not installed)",
        "asyncmy": "mysqlclient (PyMySQL when it is not installed)",
        "aiomysql": "mysqlclient (PyMySQL when it is not installed)",
        "cymysql": "mysqlclient (PyMySQL when it is not installed)",
    },
    "sqlite": {"pysqlite": None, "aiosqlite": "the standard sqlite3 module"},
}
DRIVERS = {**DRIVERS, "postgres": DRIVERS["postgresql"], "mariadb": DRIVERS["mysql"]}

# connect_args of asyncpg / pg8000 engines that have a libpq keyword
_PG_RENAMES = {"ssl": "sslmode", "timeout": "connect_timeout"}
_SQLITE_IGNORED = {"check_same_thread"}  # replikit manages its connections' threads itself


def driver_note(scheme: str) -> str | None:
    """For ``dialect+driver``: the driver replikit uses instead, or ``None`` (same one).

    Raises :class:`ConfigError` for a driver name this dialect does not know.
    """
    dialect, _, driver = scheme.partition("+")
    known = DRIVERS.get(dialect, {})
    if driver not in known:
        names = ", ".join(f"{dialect}+{d}" for d in known) or "none"
        raise ConfigError(f"unknown driver {driver!r} in URL scheme {scheme!r}; known: {names}")
    return known[driver]


def is_sqlalchemy(value: object) -> bool:
    """True for a SQLAlchemy ``URL``, ``Engine`` or ``AsyncEngine``."""
    return type(value).__module__.startswith("sqlalchemy.")


def url_text(value: Any) -> str:
    """The URL string (password included) for a SQLAlchemy ``URL`` or ``Engine``."""
    from sqlalchemy.engine import URL, Engine

    engine = getattr(value, "sync_engine", value)  # an AsyncEngine wraps a sync one
    if isinstance(value, URL):
        return str(value.render_as_string(hide_password=False))
    if isinstance(engine, Engine):
        url = _with_connect_args(engine.url, _connect_args(engine))
        return str(url.render_as_string(hide_password=False))
    raise ConfigError(
        "an endpoint is a URL string, a SQLAlchemy URL or Engine, or an Endpoint; "
        f"got {type(value).__name__}"
    )


def _connect_args(engine: Any) -> dict[str, Any]:
    """What ``create_engine(..., connect_args=...)`` added to the URL's own arguments.

    SQLAlchemy keeps them only in the pool's connect function (``cparams``); an engine made
    with ``creator=`` has none to read, and its URL alone is used (logged).
    """
    creator = getattr(engine.pool, "_creator", None)
    cparams = None
    if inspect.isfunction(creator):
        cparams = inspect.getclosurevars(creator).nonlocals.get("cparams")
    if not isinstance(cparams, Mapping):
        log.info("engine %s: its connect arguments are not visible; using its URL", engine.url)
        return {}
    _, from_url = engine.dialect.create_connect_args(engine.url)
    return {k: v for k, v in cparams.items() if k not in from_url or from_url[k] != v}


def _with_connect_args(url: Any, args: dict[str, Any]) -> Any:
    """``url`` with ``args`` as query parameters the endpoint family reads."""
    dialect = url.get_backend_name()
    password = args.pop("password", None) or args.pop("passwd", None)
    if password is not None:
        url = url.set(password=str(password))
    if dialect == "postgresql":
        args = _pg_args(url.get_driver_name(), args)
    elif dialect in ("mysql", "mariadb"):
        args = _mysql_args(args)
    elif dialect == "sqlite":
        args = {k: v for k, v in args.items() if k not in _SQLITE_IGNORED}
    for key, value in args.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(
                f"the engine's connect argument {key!r} ({type(value).__name__}) has no URL "
                f"form replikit can pass to its own driver; give it as a URL parameter, or "
                "pass engine.url to leave the engine's connect arguments out"
            )
    return url.update_query_dict({k: str(v) for k, v in args.items()}) if args else url


def _pg_args(driver: str, args: dict[str, Any]) -> dict[str, Any]:
    if driver in ("asyncpg", "pg8000"):
        return {_PG_RENAMES.get(k, k): v for k, v in args.items()}
    return args


def _mysql_args(args: dict[str, Any]) -> dict[str, Any]:
    out = dict(args)
    ssl = out.pop("ssl", None)
    if isinstance(ssl, Mapping):  # PyMySQL / mysqlclient: {"ca": ..., "cert": ..., "key": ...}
        out.update({f"ssl_{k}": v for k, v in ssl.items() if k in ("ca", "cert", "key")})
        unknown = set(ssl) - {"ca", "cert", "key"}
        if unknown:
            out["ssl"] = ssl  # refused below, naming the argument
    elif ssl is not None:
        out["ssl"] = ssl
    return out
