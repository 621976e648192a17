"""Connection parameters parsed from a URL (no driver import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from replikit.errors import ConfigError

__all__ = ["ConnParams"]


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
            u = make_url(url)
        except (ArgumentError, ValueError):
            raise ConfigError(f"invalid PostgreSQL URL {masked!r}") from None
        extra: dict[str, str] = {}
        for key, value in u.query.items():
            extra[key] = value if isinstance(value, str) else value[-1]
        try:
            port = u.port
        except ValueError:
            raise ConfigError(f"invalid port in PostgreSQL URL {masked!r}") from None
        return cls(u.host, port, u.username, u.database, u.password, extra)

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (``None`` values left out)."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "password": self.password,
            **self.extra,
            **overrides,
        }
        return {k: v for k, v in base.items() if v is not None}

    def where(self) -> str:
        """``host:port/db`` for messages."""
        return f"{self.host or 'localhost'}:{self.port or 5432}/{self.dbname or ''}"
