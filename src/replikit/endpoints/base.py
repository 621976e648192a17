"""Endpoint base class, capabilities and the URL scheme registry.

An endpoint family registers a *factory* (a light class in its package ``__init__``) for its
URL schemes; the driver is imported only when a connection is made, so naming an endpoint never
needs its driver. Third-party families register through the ``replikit.endpoints`` entry-point
group (``scheme = "package.module:EndpointClass"``).
"""

from __future__ import annotations

import abc
import functools
import importlib
import inspect
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from replikit import display
from replikit.endpoints._url import mask_url
from replikit.errors import (
    CapabilityError,
    ConfigError,
    ConnectError,
    MissingDependencyError,
    TableNotFoundError,
)

if TYPE_CHECKING:
    from replikit.mapping import Selection
    from replikit.pipeline.contracts import (
        ChangeReader,
        ChangeWriter,
        CheckpointStore,
        Reader,
        Writer,
    )
    from replikit.positions import Position
    from replikit.schema.convert import Dialect
    from replikit.schema.model import Catalog, TableSchema

__all__ = [
    "Capabilities",
    "CdcSource",
    "Endpoint",
    "SupportsApply",
    "SupportsCdc",
    "SupportsCdcStart",
    "SupportsCdcTakeover",
    "SupportsCurrentPosition",
    "SupportsReloadSnapshot",
    "apply_target",
    "cdc_source",
    "check_creatable",
    "endpoint",
    "hide_secret",
    "mask_url",
    "register",
]

_T = TypeVar("_T")
log = logging.getLogger("replikit.endpoints")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an endpoint can do, as data (tests and the planner ask these, not names)."""

    source: bool = True
    target: bool = True
    cdc: bool = False
    schemas: bool = True
    transactions: bool = True
    concurrent_writes: bool = True
    raw_copy: str | None = None


class Endpoint(abc.ABC):
    """One database (or file set), addressed by URL.

    Subclasses set ``schemes``, ``capabilities`` and ``dialect`` and implement the abstract
    methods. ``repr`` and ``str`` mask the password.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()
    family: ClassVar[str] = ""
    #: options the constructor takes: the endpoint's own, and defaults it passes on to the
    #: readers and writers it makes (each of those checks its own options: :meth:`_build`)
    endpoint_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, url: str, **options: Any) -> None:
        self._url = url
        refuse_unknown(options, self.endpoint_options, f"{type(self).__name__} option")
        self.options = options

    def _build(self, factory: Callable[..., _T], what: str, *args: Any, **given: Any) -> _T:
        """``factory(*args, **options)`` for a reader or writer: ``given`` options, over the
        endpoint's options that ``factory`` takes. An option ``factory`` does not take is a
        :class:`~replikit.ConfigError` naming the ones it does (the same for every family)."""
        accepted = keyword_options(factory)
        refuse_unknown(given, accepted, f"{type(self).__name__} {what} option")
        merged = {k: v for k, v in self.options.items() if k in accepted}
        return factory(*args, **{**merged, **given})

    @property
    def url(self) -> str:
        """The URL with the password masked."""
        return mask_url(self._url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _repr_html_(self) -> str:
        return display.html_endpoint(self)

    @property
    @abc.abstractmethod
    def dialect(self) -> Dialect:
        """Type rules, quoting and defaults of this endpoint's SQL dialect."""

    @abc.abstractmethod
    def check(self) -> None:
        """Connect once; raise :class:`~replikit.ConnectError` with the cause if that fails."""

    @abc.abstractmethod
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """Tables (and views) selected by ``selection`` (None: all user tables)."""

    @abc.abstractmethod
    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> Reader:
        """A full-load reader for ``tables`` (names, ``TableId`` s or ``TableSchema`` s)."""

    @abc.abstractmethod
    def writer(self, **options: Any) -> Writer:
        """A full-load writer into this endpoint."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections (endpoints without pools do nothing)."""

    def identity(self) -> tuple[object, ...] | None:
        """What makes two endpoints the same database, however their URLs are spelt.

        Equal identities mean equal table names are the same tables (a task refuses to copy
        a table onto itself). ``None``: unknown, never equal to anything.
        """
        return None

    def home_schema(self) -> str | None:
        """The schema a target table id without one lands in (None: the endpoint has none)."""
        return None

    def _tables(self, tables: Sequence[Any] | None) -> list[TableSchema]:
        """``tables`` (names, ``TableId`` s or ``TableSchema`` s; ``None``: every table) as
        reflected schemas. A name without a schema is looked up in :meth:`home_schema`; a
        missing table is a :class:`~replikit.TableNotFoundError` naming this endpoint."""
        from replikit.schema.model import TableId, TableSchema

        if tables is not None and all(isinstance(t, TableSchema) for t in tables):
            return list(tables)
        catalog = self.reflect()
        if tables is None:
            return list(catalog.tables)
        out = []
        for t in tables:
            if isinstance(t, TableSchema):
                out.append(t)
                continue
            tid = t if isinstance(t, TableId) else TableId.parse(str(t))
            if tid.schema is None:
                tid = TableId(self.home_schema(), tid.name)
            try:
                out.append(catalog.table(tid))
            except TableNotFoundError:
                raise TableNotFoundError(f"no table {tid} in {self.url}", table=str(tid)) from None
        return out

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- abilities beyond reading and writing: protocols an endpoint implements or not ----------
# ``task`` names the replication task; source objects (slot, publication, triggers) and control
# rows are named after it, so two tasks on one source never collide. ``capabilities.cdc`` says
# the same as ``isinstance(endpoint, SupportsCdc)``, as data (the conformance suite checks it).


@runtime_checkable
class SupportsCdc(Protocol):
    """A source whose change log replikit reads (change data capture)."""

    def cdc_setup(self, tables: Sequence[TableSchema], *, task: str) -> None:
        """Check the source can feed CDC for ``tables`` and create what it needs (idempotent).

        Raises :class:`~replikit.ConfigError` naming the setting, privilege or table (e.g. a
        table without a primary key or replica identity) before anything is created.
        """
        ...

    def cdc_reader(
        self, tables: Sequence[TableSchema], *, task: str, **options: Any
    ) -> ChangeReader:
        """A change reader for ``tables``; ``transactions(start)`` picks the position."""
        ...

    def cdc_teardown(self, *, task: str) -> None:
        """Remove what :meth:`cdc_setup` and the start positions created (idempotent)."""
        ...


@runtime_checkable
class SupportsCurrentPosition(Protocol):
    """A CDC source that can say where its change log is now, in the form of the positions
    its change reader hands out (so a task's applied checkpoint compares with it)."""

    def current_position(self) -> Position:
        """The position just after every change committed so far (reads the source, writes
        nothing): once a task's applied position is at or past it, the target holds every
        change committed before this call."""
        ...


@runtime_checkable
class SupportsCdcTakeover(Protocol):
    """A CDC source whose stream one reader holds at a time (a PostgreSQL slot): a replicator
    that takes a task over from another frees it first (docs/high-availability.md)."""

    def cdc_takeover(self, *, task: str) -> None:
        """End whatever still reads ``task``'s stream (the replicator taken over from)."""
        ...


class SupportsCdcStart(Protocol):
    """Where a CDC source's stream starts: now, or consistent with a full-load snapshot."""

    def cdc_start(self, tables: Sequence[TableSchema], *, task: str) -> Position:
        """The position "now" for a CDC-only task (creating the source's stream if needed)."""
        ...

    def cdc_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> AbstractContextManager[tuple[Reader, Position]]:
        """A full-load reader consistent with a CDC start position: ``with ... as (reader, pos)``.

        Every change committed after the snapshot the reader sees is delivered by a change
        reader started at ``pos``; none before it is. The reader stays valid inside the block.
        """
        ...


@runtime_checkable
class SupportsReloadSnapshot(Protocol):
    """A CDC source that reads tables again at an exact position of its change log, leaving
    the task's stream where it is (a full load resumed after a stop, or a table reloaded
    while the stream runs: the stream skips those tables' changes the new snapshot holds)."""

    def cdc_reload_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> AbstractContextManager[tuple[Reader, Position | None]]:
        """``with ... as (reader, pos)``: a full-load reader of ``tables`` that sees exactly
        the changes committed at or before ``pos`` (a position as the change reader hands
        them out; compared with a table's changes as :meth:`Position.for_table` gives it).
        ``pos`` is ``None`` where the source cannot read at an exact position this time (a
        MongoDB server without snapshot reads): the reader reads the tables as they are, and
        the stream applies every change it replays again. Nothing of ``task``'s stream
        (slot, start position) changes; whatever the snapshot needs on the source is gone
        when the block ends."""
        ...


@runtime_checkable
class CdcSource(SupportsCdc, SupportsCdcStart, Protocol):
    """Both CDC abilities: what ``full-load-and-cdc`` and ``cdc`` tasks need of a source."""


@runtime_checkable
class SupportsApply(Protocol):
    """A target that applies changes (CDC) and keeps task checkpoints in control tables."""

    def change_writer(self, **options: Any) -> ChangeWriter:
        """A CDC apply writer into this endpoint."""
        ...

    def checkpoint_store(self, **options: Any) -> CheckpointStore:
        """Where task checkpoints are read and written outside of an apply."""
        ...


def cdc_source(ep: Endpoint) -> CdcSource:
    """``ep`` as a CDC source, or :class:`~replikit.CapabilityError` saying it is not one."""
    if isinstance(ep, CdcSource):
        return ep
    raise CapabilityError(
        f"{type(ep).__name__} ({ep.url}) does not support change data capture in this "
        "version; use migration_type='full-load'"
    )


def apply_target(ep: Endpoint) -> SupportsApply:
    """``ep`` as a CDC target, or :class:`~replikit.CapabilityError` saying it is not one."""
    if isinstance(ep, SupportsApply):
        return ep
    raise CapabilityError(f"{type(ep).__name__} ({ep.url}) cannot apply changes as a CDC target")


_REGISTRY: dict[str, str] = {
    "postgresql": "replikit.endpoints.postgres:PostgresEndpoint",
    "postgres": "replikit.endpoints.postgres:PostgresEndpoint",
    "postgresql+psycopg": "replikit.endpoints.postgres:PostgresEndpoint",
    "sqlite": "replikit.endpoints.sqlite:SqliteEndpoint",
    "duckdb": "replikit.endpoints.duckdb:DuckdbEndpoint",
    **dict.fromkeys(
        ("file", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"),
        "replikit.endpoints.files:FilesEndpoint",
    ),
    "mongodb": "replikit.endpoints.mongodb:MongoEndpoint",
    "mongodb+srv": "replikit.endpoints.mongodb:MongoEndpoint",
    "mysql": "replikit.endpoints.mysql:MysqlEndpoint",
    "mariadb": "replikit.endpoints.mysql:MysqlEndpoint",
    "mysql+pymysql": "replikit.endpoints.mysql:MysqlEndpoint",
    "mysql+mysqldb": "replikit.endpoints.mysql:MysqlEndpoint",
    "mariadb+pymysql": "replikit.endpoints.mysql:MysqlEndpoint",
    "mariadb+mysqldb": "replikit.endpoints.mysql:MysqlEndpoint",
}
_LOADED: dict[str, type[Endpoint]] = {}


def register(scheme: str, target: str | type[Endpoint]) -> None:
    """Register an endpoint class (or ``"module:Class"`` path) for a URL scheme."""
    if isinstance(target, str):
        _REGISTRY[scheme] = target
        _LOADED.pop(scheme, None)
    else:
        _LOADED[scheme] = target


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep and url.endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite"
    if not sep:
        raise ConfigError(
            f"{mask_url(url)!r} is not an endpoint URL; expected scheme://..., "
            "e.g. postgresql://user@host/db or sqlite:///path/to/file.db"
        )
    return scheme.lower()


def _resolve(scheme: str) -> type[Endpoint]:
    if scheme in _LOADED:
        return _LOADED[scheme]
    target = _REGISTRY.get(scheme)
    if target is None:
        # imported here: importlib.metadata (with email and zipfile) is 6 MB resident, and
        # only a scheme replikit does not know needs it
        from importlib.metadata import entry_points

        for ep in entry_points(group="replikit.endpoints"):
            if ep.name == scheme:
                target = ep.value
                break
    if target is None:
        dialect = scheme.partition("+")[0]
        if "+" in scheme and dialect in _REGISTRY:
            _driver_note(scheme)  # a SQLAlchemy driver name: replikit's own driver connects
            return _resolve(dialect)
        known = ", ".join(sorted(set(_REGISTRY)))
        raise ConfigError(
            f"unknown URL scheme {scheme!r}; known schemes: {known} (with SQLAlchemy's "
            "driver names too, e.g. postgresql+psycopg2, mysql+mysqlconnector)"
        )
    module, _, attr = target.partition(":")
    cls: type[Endpoint] = getattr(importlib.import_module(module), attr)
    _LOADED[scheme] = cls
    return cls


def _driver_note(scheme: str) -> None:
    from replikit.endpoints._sqlalchemy import driver_note

    instead = driver_note(scheme)
    if instead is not None:
        driver = scheme.partition("+")[2]
        log.info("the URL names the %s driver; replikit connects with %s", driver, instead)


def endpoint(url: str | Any, **options: Any) -> Endpoint:
    """Make the endpoint for ``url``: a URL string, a SQLAlchemy ``URL`` or ``Engine``.

    SQLAlchemy driver names (``postgresql+psycopg2://``, ``mysql+mysqlconnector://``,
    ``sqlite+pysqlite://``...) are accepted; replikit connects with its own driver and logs
    a note (INFO) when it is not the one named. An ``Engine`` gives its URL and the
    ``connect_args`` it was created with; its pool is never used.

    >>> endpoint("sqlite:///:memory:")
    SqliteEndpoint('sqlite:///:memory:')
    """
    if not isinstance(url, str):
        from replikit.endpoints._sqlalchemy import is_sqlalchemy, url_text

        if not is_sqlalchemy(url):
            raise ConfigError(
                "endpoint URL must be a string or a SQLAlchemy URL or Engine, "
                f"got {type(url).__name__}"
            )
        url = url_text(url)
    return _resolve(_scheme(url))(url, **options)


def check_creatable(path: str, scheme: str) -> None:
    """A database file ``path`` (of a ``scheme:///path`` URL) that is missing must have a
    folder to be created in: else :class:`ConnectError`, with the four-slash hint when the
    path was written relative but an absolute one exists (``duckdb:///tmp/x.db``)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder):
        return
    hint = ""
    if not os.path.isabs(path) and os.path.isdir(os.path.dirname("/" + path)):
        hint = f"; for the absolute path /{path}, write four slashes: {scheme}:////{path}"
    raise ConnectError(
        f"no such database file {path!r} (and no folder {folder!r} to create it in){hint}"
    )


#: the keys :func:`say_once` has logged in this process
_SAID: set[str] = set()


def say_once(logger: logging.Logger, key: str, message: str) -> None:
    """Log ``message`` at INFO the first time ``key`` is said in this process (a hint such
    as an optional package that would read faster, which every unit would otherwise repeat)."""
    if key not in _SAID:
        _SAID.add(key)
        logger.info("%s", message)


def hide_secret(text: str, secret: str | None) -> str:
    """``text`` with each delimited occurrence of ``secret`` (or its URL escape) as ``***``.

    Only whole occurrences count (not inside a longer word), so a short password such as
    ``e`` leaves ``connection failed`` readable. Drivers are given the password as a keyword
    and do not echo it; this is the second line of defence.
    """
    if not secret:
        return text
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for form in sorted(forms, key=len, reverse=True):
        pattern = r"(?<!\w)" + re.escape(form) + r"(?!\w)"
        text = re.sub(pattern, "***", text)
    return text


def keyword_options(factory: Callable[..., Any]) -> frozenset[str]:
    """The keyword-only parameters of ``factory`` (a class or function): its options."""
    return _keyword_options(factory)


@functools.cache
def _keyword_options(factory: Callable[..., Any]) -> frozenset[str]:
    params = inspect.signature(factory).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def refuse_unknown(given: Mapping[str, Any], known: Iterable[str], what: str) -> None:
    """:class:`~replikit.ConfigError` when ``given`` holds a name not in ``known``."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hint = f"; known: {', '.join(known)}" if known else "; it takes none"
    plural = "s" if len(unknown) > 1 else ""
    raise ConfigError(f"unknown {what}{plural} {', '.join(map(repr, unknown))}{hint}")


def require(module: str, *, package: str, extra: str, purpose: str) -> Any:
    """Import an optional driver or raise :class:`MissingDependencyError` with the pip hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, extra, purpose) from exc


Factory = Callable[..., Endpoint]
