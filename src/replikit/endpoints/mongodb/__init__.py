"""The MongoDB endpoint family (``pip install "replikit[mongodb]"``: pymongo).

URLs: ``mongodb://[user:pw@]host[:port][,host2...]/[database][?options]`` and
``mongodb+srv://``; the URL reaches pymongo as written (replica sets, TLS, auth options), less
replikit's own options (:data:`~._connect.OWN_OPTIONS`). Databases are schemas and
collections tables; the URL's database is where tables without a database land, and the only
one reflected when given.

As a source, a collection reads in ``mode="table"`` (default: columns inferred from a sample,
nested fields flattened to ``a.b``, what fits no column kept in ``_overflow``) or
``mode="document"`` (``_id`` and the whole document, as canonical Extended JSON). Collections
replikit wrote read back as the tables they were. As a target, rows become documents keyed
by the primary key. Change data capture reads change streams (a replica set or sharded
cluster is needed); apply writes by ``_id``. See docs/mongodb.md.

>>> import replikit as rk
>>> rk.endpoint("mongodb://app:secret@db1,db2:27018/shop?replicaSet=rs0")
MongoEndpoint('mongodb://app:***@db1,db2:27018/shop?replicaSet=rs0')
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from replikit.endpoints.base import Capabilities, Endpoint
from replikit.endpoints.mongodb._connect import Client, parse_url, translated
from replikit.endpoints.mongodb._dialect import DIALECT, MongoDialect
from replikit.errors import ConfigError
from replikit.mapping import Selection
from replikit.schema.model import Catalog, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.mongodb._control import MongoControlStore
    from replikit.endpoints.mongodb._positions import MongoPosition
    from replikit.endpoints.mongodb.apply import MongoChangeWriter
    from replikit.endpoints.mongodb.cdc import MongoChangeReader
    from replikit.endpoints.mongodb.reflect import Reflected
    from replikit.endpoints.mongodb.source import MongoReader
    from replikit.endpoints.mongodb.target import MongoWriter

__all__ = ["MongoDialect", "MongoEndpoint"]

log = logging.getLogger("replikit.mongodb")

_MODES = ("table", "document")
_INTS = ("sample_size", "flatten_depth", "batch_size", "write_batch", "timeout_ms")
_BOOLS = ("overflow", "transactions")


def _options(given: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name in _INTS:
            try:
                out[name] = int(value)
            except ValueError:
                raise ConfigError(f"bad value {value!r} for MongoDB URL option {name!r}") from None
        elif name in _BOOLS:
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"{name} must be true or false, not {value!r}")
            out[name] = value.lower() == "true"
        else:
            out[name] = value
    return out


class MongoEndpoint(Endpoint):
    """A MongoDB deployment (standalone, replica set or sharded cluster), addressed by URL.

    Options: ``mode`` (``"table"`` or ``"document"``: how collections read), ``sample_size``
    (documents sampled per collection in table mode, default 1000), ``flatten_depth`` (levels
    of nested documents opened into ``a.b`` columns, default 2), ``overflow`` (an
    ``_overflow`` column for what fits no other column: default for sampled collections;
    ``False`` refuses such a document instead), ``batch_size`` (documents per read batch),
    ``write_batch`` (documents per bulk write, default 1000), ``transactions`` (apply each
    batch and its checkpoint in one multi-document transaction; default: when the
    deployment supports them), ``timeout_ms`` (server selection timeout).
    """

    schemes = ("mongodb", "mongodb+srv")
    family = "mongodb"
    capabilities = Capabilities(cdc=True)
    endpoint_options = frozenset(
        {"mode", "sample_size", "flatten_depth", "overflow", "batch_size", "write_batch",
         "transactions", "timeout_ms", "heartbeat", "poll_interval", "stop_when_idle"}
    )  # fmt: skip

    def __init__(self, url: str, **options: Any) -> None:
        parsed = parse_url(url)
        super().__init__(url, **{**_options(parsed.options), **options})
        mode = self.options.get("mode", "table")
        if mode not in _MODES:
            raise ConfigError(f"MongoDB mode must be 'table' or 'document', not {mode!r}")
        self.mode: str = mode
        self.database: str | None = parsed.database
        self._client = Client(parsed, timeout_ms=int(self.options.get("timeout_ms", 10_000)))
        self._reflected: Reflected | None = None

    @property
    @override
    def dialect(self) -> MongoDialect:
        """BSON type rules and MongoDB's names."""
        return DIALECT

    @override
    def check(self) -> None:
        """Ping the deployment; :class:`~replikit.ConnectError` with the cause if that fails."""
        with translated(self._client, "connect to"):
            self._client.get().admin.command("ping")

    @override
    def home_schema(self) -> str | None:
        """The URL's database."""
        return self.database

    @override
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """The selected collections as tables (of the URL's database, or of every user
        database when the URL names none)."""
        from replikit.endpoints.mongodb.reflect import reflect_catalog

        catalog, reflected = reflect_catalog(
            self._client,
            [self.database] if self.database else None,
            selection,
            mode=self.mode,
            sample_size=int(self.options.get("sample_size", 1000)),
            depth=int(self.options.get("flatten_depth", 2)),
            overflow=self.options.get("overflow"),
        )
        self._reflected = reflected
        return catalog

    def _shapes(self, tables: Sequence[TableSchema]) -> Reflected:
        if self._reflected is None or any(t.id not in self._reflected.shapes for t in tables):
            self.reflect(Selection(include=tuple(f"{t.id.schema}.{t.id.name}" for t in tables)))
        assert self._reflected is not None
        return self._reflected

    @override
    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> MongoReader:
        """A :class:`~replikit.endpoints.mongodb.source.MongoReader` (option:
        ``batch_size``)."""
        from replikit.endpoints.mongodb.source import MongoReader

        schemas = self._tables(tables)
        reflected = self._shapes(schemas)
        return self._build(MongoReader, "reader", self._client, schemas, reflected, **options)

    @override
    def writer(self, **options: Any) -> MongoWriter:
        """A :class:`~replikit.endpoints.mongodb.target.MongoWriter` (option:
        ``write_batch``)."""
        from replikit.endpoints.mongodb.target import MongoWriter

        return self._build(MongoWriter, "writer", self._client, self.database, **options)

    # -- change data capture ----------------------------------------------------------------
    def cdc_setup(self, tables: Sequence[TableSchema], *, task: str) -> None:
        """Check that every table's collection can be watched (change streams need a replica
        set or a sharded cluster); nothing is created."""
        from replikit.endpoints.mongodb import cdc

        cdc.check_streams(self._client, tables)

    def cdc_start(self, tables: Sequence[TableSchema], *, task: str) -> MongoPosition:
        """Where every table's change stream is now (resume tokens or cluster time)."""
        from replikit.endpoints.mongodb import cdc

        return cdc.start(self._client, tables)

    @contextlib.contextmanager
    def cdc_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> Iterator[tuple[MongoReader, MongoPosition]]:
        """A full-load reader and the stream position taken *before* it reads: changes made
        during the load are delivered again and applied idempotently (MongoDB has no
        snapshot across collections to hand off at)."""
        position = self.cdc_start(tables, task=task)
        yield self.reader(list(tables)), position

    @contextlib.contextmanager
    def cdc_reload_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> Iterator[tuple[MongoReader, MongoPosition | None]]:
        """A reader of ``tables`` at one cluster time and the position just after it (every
        change of that time or before is in what it reads), for a table reloaded while the
        stream runs or a full load resumed: the stream leaves those changes out. Nothing is
        created on the source and no stream moves.

        A server without snapshot reads (standalone, before MongoDB 5.0) gives a plain
        reader and no position, with a warning naming the tables: the changes held or
        replayed meanwhile are applied again, which a database target absorbs (idempotent)
        and a change-file target writes twice."""
        from replikit.endpoints.mongodb import cdc
        from replikit.endpoints.mongodb._positions import MongoPosition, Resume
        from replikit.endpoints.mongodb.source import MongoReader

        schemas = list(tables)
        at, why = cdc.snapshot_time(self._client, schemas)
        options = {"snapshot_at": at} if at is not None else {}
        reader = self._build(MongoReader, "reader", self._client, schemas,
                             self._shapes(schemas), **options)  # fmt: skip
        if at is None:
            names = ", ".join(str(t.id) for t in schemas)
            log.warning(
                "MongoDB at %s: %s reloaded without a snapshot (%s): the changes committed "
                "while it loads are applied again after it. A database target converges "
                "(the apply is idempotent); change files (a files target) may hold those "
                "changes twice. Snapshot reads need MongoDB 5.0+ on a replica set or "
                "sharded cluster",
                self._client.where, names, why,
            )  # fmt: skip
            yield reader, None
            return
        point = Resume.after_time(at)
        yield reader, MongoPosition.of({cdc.namespace(t.id): point for t in schemas})

    def cdc_reader(
        self, tables: Sequence[TableSchema], *, task: str, **options: Any
    ) -> MongoChangeReader:
        """A change-stream reader for ``tables`` (options: ``heartbeat``, ``poll_interval``,
        ``stop_when_idle``)."""
        from replikit.endpoints.mongodb.cdc import MongoChangeReader

        reflected = self._shapes(tables)
        return self._build(MongoChangeReader, "change reader", self._client, tables, reflected,
                           **options)  # fmt: skip

    def cdc_teardown(self, *, task: str) -> None:
        """Nothing to remove: change streams leave nothing on the source."""

    def change_writer(self, **options: Any) -> MongoChangeWriter:
        """A CDC apply writer (checkpoints in ``replikit_checkpoints`` of the URL's
        database)."""
        from replikit.endpoints.mongodb.apply import MongoChangeWriter

        return self._build(MongoChangeWriter, "change writer", self._client, self.database,
                           **options)  # fmt: skip

    def control_store(self) -> MongoControlStore | None:
        """Suspended tables and apply exceptions in collections of the URL's database
        (:mod:`replikit.pipeline.control`); ``None`` when the URL names no database."""
        from replikit.endpoints.mongodb._control import MongoControlStore

        return None if self.database is None else MongoControlStore(self._client, self.database)

    def checkpoint_store(self, **options: Any) -> MongoChangeWriter:
        """Task checkpoints, read and written outside of an apply."""
        from replikit.endpoints.mongodb.apply import MongoChangeWriter

        return self._build(MongoChangeWriter, "checkpoint store", self._client, self.database,
                           **options)  # fmt: skip

    @override
    def identity(self) -> tuple[object, ...] | None:
        """The seed hosts: one deployment, whatever the database or options."""
        return ("mongodb", tuple(sorted(self._client.url.hosts)))

    @override
    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()
