"""A plain DB-API session on an endpoint, for the few statements validation runs itself
(segment checksums, the failures table). Drivers are imported by the families' own
connection modules, only when a session is opened."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from replikit.endpoints.base import Endpoint
from replikit.errors import CapabilityError

__all__ = ["Session", "session"]


@dataclass(frozen=True, slots=True)
class Session:
    """An open connection, its family and the driver's parameter marker."""

    conn: Any
    family: str
    marker: str  # "%s" or "?"

    def quote(self, name: str) -> str:
        """Quote one identifier the family's way."""
        if self.family == "mysql":
            return "`" + name.replace("`", "``") + "`"
        return '"' + name.replace('"', '""') + '"'

    def sql(self, text: str) -> str:
        """``text`` with ``%s`` markers in this driver's style."""
        return text if self.marker == "%s" else text.replace("%s", "?")


@contextlib.contextmanager
def session(ep: Endpoint) -> Iterator[Session]:
    """A connection to ``ep`` (committed by the caller; closed or released at the end)."""
    family = ep.family
    if family == "postgres":
        from replikit.endpoints.postgres._connect import connect

        with connect(ep.params) as conn:  # type: ignore[attr-defined]
            yield Session(conn, family, "%s")
        return
    if family == "mysql":
        from replikit.endpoints.mysql._connect import connect as mysql_connect

        conn = mysql_connect(ep.params)  # type: ignore[attr-defined]
        try:
            yield Session(conn, family, "%s")
        finally:
            conn.close()
        return
    if family == "sqlite":
        conns = ep._conns  # type: ignore[attr-defined]
        with conns.lock:
            yield Session(conns.shared(), family, "?")
        return
    if family == "duckdb":
        with ep._db.connected() as conn:  # type: ignore[attr-defined]
            yield Session(conn, family, "?")
        return
    raise CapabilityError(f"{type(ep).__name__} ({ep.url}) runs no SQL for validation")
