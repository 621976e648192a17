"""Database URLs read as SQLAlchemy's ``make_url`` reads them, without importing SQLAlchemy.

``import sqlalchemy`` costs 0.2-0.5 s of CPU at every start of ``replikit copy``, and the
endpoints only need the URL's parts. :func:`parse_url` uses SQLAlchemy 2's own pattern and
unquoting, so a URL means the same here as in a user's ``create_engine`` (a test compares the
two on generated URLs).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

__all__ = ["UrlParts", "is_local_host", "mask_url", "parse_url"]

# sqlalchemy.engine.url._parse_url's pattern, as it is in SQLAlchemy 2.0
_PATTERN = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
        """,
    re.X,
)


@dataclass(frozen=True, slots=True)
class UrlParts:
    """What ``make_url`` gives: ``query`` values are a ``str``, or a tuple when repeated."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: dict[str, str | tuple[str, ...]] = field(default_factory=dict)

    @property
    def driver(self) -> str:
        """The explicit driver after ``+`` (``""`` for none; SQLAlchemy would import the
        dialect to name its default)."""
        return self.drivername.partition("+")[2]


def parse_url(url: str) -> UrlParts:
    """The parts of ``url``; :class:`ValueError` when it is no URL or its port no integer."""
    m = _PATTERN.match(url)
    if m is None:
        raise ValueError("Could not parse SQLAlchemy URL from given URL string")
    parts = m.groupdict()
    query: dict[str, str | tuple[str, ...]] = {}
    if parts["query"] is not None:
        for key, value in parse_qsl(parts["query"]):
            old = query.get(key)
            if old is None:
                query[key] = value
            else:
                query[key] = (*((old,) if isinstance(old, str) else old), value)
    text = {k: unquote(parts[k]) if parts[k] is not None else None for k in _QUOTED}
    port = parts["port"]
    return UrlParts(
        drivername=parts["name"],
        username=text["username"],
        password=text["password"],
        host=parts["ipv4host"] or parts["ipv6host"],
        port=None if port is None else int(port),
        database=text["database"],
        query=query,
    )


_QUOTED = ("username", "password", "database")


def is_local_host(host: str | None) -> bool:
    """Whether a server address names this machine: none (the client's default, a Unix
    socket), a socket path, ``localhost`` or a loopback address."""
    host = (host or "").strip()
    if not host or host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@?]*):")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&]*")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, however the password is spelt.

    The password is what SQLAlchemy's ``make_url`` reads (``user:<password>@``, up to an
    ``@``), extended to the last ``@`` of the URL, so a password holding ``/``, ``:``, ``?``,
    ``%``-escapes or even a bare ``@`` never shows (a raw ``?`` in a password cannot be told
    from the start of a query, so the query is no bound: an ``@`` in the query makes the mask
    cover the host too, which hides more than needed, never less); a ``password=`` query
    parameter is masked too. The rest of the URL is kept as written (task ids are derived
    from it).
    """
    m = _USERINFO.match(url)
    if m is not None:
        start = m.end()
        at = url.rfind("@")
        if at >= start:
            url = f"{url[:start]}***{url[at:]}"
    return _QUERY_PASSWORD.sub(r"\1***", url)
