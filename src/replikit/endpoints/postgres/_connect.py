"""Opening psycopg connections with replikit's session settings."""

from __future__ import annotations

import logging
from typing import Any

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

import psycopg  # noqa: E402

from replikit.endpoints.postgres._errors import connect_error  # noqa: E402
from replikit.endpoints.postgres._params import ConnParams  # noqa: E402

__all__ = ["Connection", "connect"]

log = logging.getLogger("replikit.postgres")

Connection = psycopg.Connection[tuple[Any, ...]]

# canonical values: UTC instants, ISO 8601 intervals, ISO dates, floats that round-trip
_SESSION = (
    "SET TIME ZONE 'UTC'; SET IntervalStyle = iso_8601; SET DateStyle = ISO; "
    "SET extra_float_digits = 3"
)


def connect(params: ConnParams, *, autocommit: bool = False) -> Connection:
    """A connection to ``params`` with UTC, ISO styles; ``ConnectError`` when that fails."""
    log.debug("connecting to %s as %s", params.where(), params.user or "the default user")
    try:
        conn: Connection = psycopg.connect(
            autocommit=True, **params.kwargs(application_name="replikit")
        )
    except psycopg.Error as exc:
        err = connect_error(exc, params)
        hidden = params.password is not None and params.password in str(exc)
        raise err from (None if hidden else exc)
    conn.execute(_SESSION)
    conn.autocommit = autocommit
    return conn
