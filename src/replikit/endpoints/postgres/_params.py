"""Connection parameters parsed from a URL (no driver import).

One setting bounds waiting on the server: ``?connect_timeout=N`` (seconds, default 10). It is
libpq's connect timeout, which covers the TCP connect, TLS and the login exchange, so a host
that accepts the connection and never answers is given up after ``N`` seconds; and every
established connection (replication streams included) probes a silent peer with TCP
keepalives after ``N`` idle seconds (every ``N`` seconds, 3 probes), so a dead host or
network is noticed within about ``4 * N`` seconds while a slow query on a live server is
never cut off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from replikit.endpoints._url import is_local_host, parse_url
from replikit.errors import ConfigError

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "ConnParams"]

DEFAULT_CONNECT_TIMEOUT = 10


@dataclass(frozen=True, slots=True)
class ConnParams:
    """libpq keywords for one database; the password is kept out of ``repr``."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    dbname: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_url(cls, url: str, masked: str) -> ConnParams:
        """Parse ``postgresql://user:pw@host:port/db?sslmode=...`` (``masked`` for errors)."""
        try:
            u = parse_url(url)
        except ValueError:
            raise ConfigError(f"invalid PostgreSQL URL {masked!r}") from None
        extra: dict[str, str] = {}
        for key, value in u.query.items():
            extra[key] = value if isinstance(value, str) else value[-1]
        if u.driver == "asyncpg" and "ssl" in extra:  # asyncpg's name for sslmode
            extra.setdefault("sslmode", extra.pop("ssl"))
        _timeout(extra, masked)
        return cls(u.host, u.port, u.username, u.database, u.password, extra)

    @property
    def connect_timeout(self) -> int:
        """Seconds to wait for the server (URL ``?connect_timeout=``; see the module doc)."""
        return int(self.extra.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))

    def _timeouts(self) -> dict[str, Any]:
        n = self.connect_timeout
        return {
            "connect_timeout": n,
            "keepalives": 1,
            "keepalives_idle": n,
            "keepalives_interval": n,
            "keepalives_count": 3,
        }

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (``None`` values left out).

        An ``application_name`` in the URL names every connection (``replikit`` otherwise;
        replication streams add ``_cdc`` to either), so a user sees their name in
        ``pg_stat_activity``."""
        own = self.extra.get("application_name")
        name = overrides.get("application_name")
        if own and isinstance(name, str):
            overrides = {**overrides, "application_name": own + name.removeprefix("replikit")}
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "password": self.password,
            **self._timeouts(),
            **self.extra,
            **overrides,
        }
        return {k: v for k, v in base.items() if v is not None}

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs on this machine: each host (``hostaddr`` first, as libpq
        takes it; ``PGHOST`` or the default Unix socket when none is given) a socket
        directory, ``localhost`` or a loopback address."""
        hosts = (
            self.extra.get("hostaddr")
            or self.extra.get("host")
            or self.host
            or os.environ.get("PGHOST", "")
        )
        return all(is_local_host(h) for h in hosts.split(","))

    def where(self) -> str:
        """``host:port/db`` for messages."""
        return f"{self.host or 'localhost'}:{self.port or 5432}/{self.dbname or ''}"


def _timeout(extra: dict[str, str], masked: str) -> None:
    raw = extra.get("connect_timeout")
    if raw is None:
        return
    try:
        ok = int(raw) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"connect_timeout must be a whole number of seconds > 0 in {masked!r}; got {raw!r}"
        )
