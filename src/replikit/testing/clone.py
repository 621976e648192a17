"""Clones of a database for tests: read once (cached), loaded once per session, copied per test.

A clone is made in two steps:

1. **Extract** (:meth:`Cloner.extract`): the selected tables of the source, or the rows of a
   referentially closed :class:`~replikit.testing.subset.Subset`, are read through the
   source's full-load reader and kept in a cache directory, under a key made of the source's
   schema (reflected; row counts left out) and the request (tables, subset, mask). A later
   session with the same key does not read the source's rows again; ``refresh=True``
   (``--replikit-refresh``) reads them anyway.
2. **Load** (:meth:`Cloner.template`): the cached rows go through a full-load
   :class:`~replikit.Pipeline` into a template database on the target (created with the
   target's DDL, keys, indexes, views), once per session.

Each test then gets a fresh copy of the template by the target's cheapest means
(:mod:`replikit.testing._copies`): ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, the SQLite
backup API, a schema copy on MySQL/MariaDB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import replikit
from replikit._hints import selects_nothing
from replikit.endpoints.base import Endpoint, endpoint, mask_url
from replikit.errors import ConfigError
from replikit.mapping import Mappings, MappingTransform, Selection, TableMapping
from replikit.mapping.masking import mask_secret
from replikit.pipeline.contracts import Batch, Unit
from replikit.pipeline.runner import Pipeline
from replikit.schema.convert import Dialect
from replikit.schema.model import Catalog, Identity, TableSchema, View
from replikit.testing._copies import CopyTarget
from replikit.testing.subset import Subset, closure, subset_batches

__all__ = ["Clone", "CloneRequest", "Cloner"]

_FORMAT = 4  # bump when the cache layout changes
_STALE_SECONDS = 3600
_UNUSED_DAYS = 14
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


@dataclass(frozen=True, slots=True)
class CloneRequest:
    """What to clone: the source URL, the tables (include patterns; empty: all), the subset
    (``None``: every row), the masks (a :class:`~replikit.Mappings` of ``mask`` rules) and
    the masking secret (``None``: ``REPLIKIT_MASK_SECRET``)."""

    source: str
    tables: tuple[str, ...] = ()
    subset: Subset | None = None
    mask: Mappings | None = None
    mask_secret: str | None = field(default=None, repr=False)

    def key(self) -> str:
        """Identifies the request within a session (dictionaries make it unhashable)."""
        return json.dumps([self.source, self.spec()], default=repr)

    def secret(self) -> bytes | None:
        """The masking key (``ConfigError`` when masks are asked for and none is set)."""
        return None if self.mask is None else mask_secret(self.mask_secret)

    def spec(self) -> dict[str, Any]:
        """The request as a JSON-friendly value (part of the cache key; the secret only as
        a digest, so that another secret is another entry)."""
        secret = self.secret()
        return {
            "tables": list(self.tables),
            "subset": None if self.subset is None else self.subset.spec(),
            "mask": None if self.mask is None else repr(self.mask),
            "secret": None if secret is None else hashlib.sha256(secret).hexdigest()[:16],
        }


@dataclass(slots=True)
class Clone:
    """A database holding a clone: its ``url`` (unmasked: it is a test database) and an open
    ``endpoint`` to it. ``rows`` counts the rows per cloned table."""

    url: str
    endpoint: Endpoint
    rows: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.url

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver replikit uses named, for ``sqlalchemy.create_engine``
        (``postgresql+psycopg``, ``mysql+pymysql``; SQLite as it is)."""
        scheme, sep, rest = self.url.partition("://")
        return f"{_DRIVERS.get(scheme, scheme)}{sep}{rest}"

    def __repr__(self) -> str:
        return f"Clone({mask_url(self.url)!r}, tables={len(self.rows)})"


@dataclass(frozen=True, slots=True)
class _Extract:
    """A cache entry: the tables (in load order), their views and row counts, and the
    source's endpoint family."""

    path: Path
    tables: tuple[TableSchema, ...]
    views: tuple[View, ...]
    rows: dict[str, int]
    family: str
    dialect: Dialect


class _CachedReader:
    """A full-load reader over a cache entry (one unit per table), in the source's dialect
    (so that views, generated columns and native types convert as from the source)."""

    def __init__(self, extract: _Extract) -> None:
        self._extract = extract
        self.dialect = extract.dialect

    @property
    def tables(self) -> Sequence[TableSchema]:
        return self._extract.tables

    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        return [Unit(table.id)]

    def read(self, unit: Unit) -> Iterator[Batch]:
        index = [t.id for t in self._extract.tables].index(unit.table)
        path = self._extract.path / f"{index}.pickle"
        if not path.exists():
            return
        with path.open("rb") as f:
            while True:
                try:
                    yield pickle.load(f)
                except EOFError:
                    return


class _Masks:
    """The masks of a request applied to extracted rows, so that the cache (on disk) only
    ever holds masked values. Masks are HMACs under the secret: equal values mask alike in
    every table, so masked keys still join."""

    def __init__(self, mask: Mappings | None, secret: bytes | None, tables: list[TableSchema]):
        self._bound: dict[Any, TableMapping] = {}
        self.shapes = list(tables)
        if mask is None:
            return
        other = [r.label() for r in mask.rules if r.action != "mask"]
        if other:
            raise ConfigError(f"mask= takes mask rules only (Mappings().mask(...)); got {other}")
        transform = MappingTransform(mask, secret)
        for i, table in enumerate(tables):
            bound = transform.table(table)
            if bound.changes_rows:
                self._bound[table.id] = bound
                self.shapes[i] = bound.shape
        unused = transform.unused()
        if unused:
            raise ConfigError(
                "mask rules that match no cloned column: " + "; ".join(r.label() for r in unused)
            )

    def batch(self, batch: Batch) -> Batch:
        """``batch`` with its masked columns replaced (a plain list of rows)."""
        bound = self._bound.get(batch.table)
        if bound is None:
            return Batch(batch.table, batch.columns, list(batch.rows))
        out = [bound.row(dict(zip(batch.columns, r, strict=True))) for r in batch.rows]
        columns = tuple(out[0]) if out else batch.columns
        return Batch(batch.table, columns, [tuple(r.values()) for r in out])


def _home_schema(extract: _Extract, dst: Endpoint) -> Mappings:
    """Tables of one source schema land in the clone's default schema when that schema is
    the source database's name (MySQL/MariaDB: a database is a schema), so that an
    application's unqualified names find them in a PostgreSQL clone too. (Into MySQL the
    tables land in the clone's database anyway.)"""
    schemas = {t.id.schema for t in extract.tables}
    home = dst.home_schema()
    if extract.family != "mysql" or dst.family == "mysql" or home is None or len(schemas) != 1:
        return Mappings()
    (schema,) = schemas
    if schema is None or schema == home:
        return Mappings()
    return Mappings().rename_schema(schema, home)


def _own_sequences(table: TableSchema) -> TableSchema:
    """A key drawn from a sequence the column does not own (``DEFAULT nextval('s')`` without
    ``OWNED BY``, as in Sakila) becomes an identity of the clone's own: the sequence itself is
    not cloned, and rows a test inserts still get keys."""
    columns = tuple(
        dataclasses.replace(c, default=None, identity=Identity("serial"))
        if c.identity is None and c.default is not None and "nextval(" in c.default.lower()
        else c
        for c in table.columns
    )
    return table if columns == table.columns else dataclasses.replace(table, columns=columns)


def _schema_key(catalog: Catalog) -> list[str]:
    """The reflected schema without the row estimates (they change with the data)."""
    return [
        repr(dataclasses.replace(t, estimated_rows=None, estimated_bytes=None))
        for t in catalog.tables
    ] + [repr(v) for v in catalog.views]


class Cloner:
    """Makes clones for one test session (one per xdist worker).

    ``cache_dir`` holds extracted rows between sessions; ``work_dir`` the session's SQLite
    files; ``refresh`` re-reads sources even when the cache has an entry.
    """

    def __init__(self, cache_dir: Path, work_dir: Path, *, refresh: bool = False) -> None:
        self.cache_dir = cache_dir
        self.work_dir = work_dir
        self.refresh = refresh
        self._extracts: dict[str, _Extract] = {}
        self._templates: dict[tuple[str, str], str] = {}
        self._by_name: dict[str, CopyTarget] = {}
        self._shared: dict[tuple[str, str], tuple[CopyTarget, Clone]] = {}
        self._spares: dict[tuple[str, str], Future[str]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.source_reads = 0  # extractions that read the source's rows (tests check caching)
        self._prune()

    def _prune(self) -> None:
        """Forget cache entries no session used for ``_UNUSED_DAYS`` days (a pointer's time
        is refreshed on each use), and partial entries of crashed sessions."""
        if not self.cache_dir.is_dir():
            return
        cutoff = time.time() - _UNUSED_DAYS * 86400
        for pointer in self.cache_dir.glob("*.entry"):
            with contextlib.suppress(OSError):
                if pointer.stat().st_mtime < cutoff:
                    key = pointer.name.removesuffix(".entry")
                    pointer.unlink()
                    for entry in self.cache_dir.glob(f"{key}-*"):
                        shutil.rmtree(entry, ignore_errors=True)
        for partial in self.cache_dir.glob(".partial-*"):
            with contextlib.suppress(OSError):
                if partial.stat().st_mtime < time.time() - _STALE_SECONDS:
                    shutil.rmtree(partial, ignore_errors=True)

    # -- 1. extract ------------------------------------------------------------------------
    def extract(self, request: CloneRequest) -> _Extract:
        """The cache entry of ``request`` (read from the source when missing or refreshed)."""
        found = self._extracts.get(request.key())
        if found is not None:
            return found
        with endpoint(request.source) as src:
            src.check()
            catalog = self._catalog(src, request)
            key = hashlib.sha256(
                json.dumps(
                    [_FORMAT, replikit.__version__, src.url, _schema_key(catalog), request.spec()],
                    default=repr,
                ).encode()
            ).hexdigest()[:24]
            path = self._entry(key)
            if self.refresh or path is None:
                path = self._write(src, catalog, request, key)
        extract = self._read_meta(path)
        self._extracts[request.key()] = extract
        return extract

    @staticmethod
    def _catalog(src: Endpoint, request: CloneRequest) -> Catalog:
        selection = Selection(request.tables)
        catalog = src.reflect(selection)
        ids = [t.id for t in catalog.tables]
        missing = selection.unmatched_includes(ids)
        if missing or not ids:
            what = ", ".join(repr(p) for p in missing) if missing else "the selection"
            raise selects_nothing(src, what)
        return catalog

    # An entry is a directory that never changes once written (``<key>-<random>``) and a
    # pointer file ``<key>.entry`` naming it, replaced atomically: a worker reading an entry
    # is never disturbed by another one writing or refreshing the same key.
    def _entry(self, key: str) -> Path | None:
        pointer = self.cache_dir / f"{key}.entry"
        try:
            path = self.cache_dir / pointer.read_text().strip()
            os.utime(pointer)  # used now: kept by _prune
        except OSError:
            return None
        return path if (path / "meta.pickle").exists() else None

    def _publish(self, key: str, tmp: Path) -> Path:
        path = self.cache_dir / f"{key}-{uuid.uuid4().hex[:8]}"
        os.replace(tmp, path)
        pointer = self.cache_dir / f".{path.name}.entry"
        pointer.write_text(path.name)
        os.replace(pointer, self.cache_dir / f"{key}.entry")
        cutoff = time.time() - _STALE_SECONDS  # superseded entries no session still reads
        for old in self.cache_dir.glob(f"{key}-*"):
            if old != path and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def _write(self, src: Endpoint, catalog: Catalog, request: CloneRequest, key: str) -> Path:
        self.source_reads += 1
        tables = list(catalog.tables)
        selected = None
        if request.subset is not None:
            selected = closure(src, tables, request.subset)
            if request.subset.unreached == "exclude":
                tables = selected.reached()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.cache_dir))
        masks = _Masks(request.mask, request.secret(), [_own_sequences(t) for t in tables])
        try:
            rows = self._dump(src, selected, tables, tmp, masks)
            meta = (tuple(masks.shapes), tuple(catalog.views), rows, src.family, src.dialect)
            with (tmp / "meta.pickle").open("wb") as f:
                pickle.dump(meta, f, protocol=pickle.HIGHEST_PROTOCOL)
            return self._publish(key, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _dump(
        src: Endpoint, selected: Any, tables: list[TableSchema], tmp: Path, masks: _Masks
    ) -> dict[str, int]:
        index = {t.id: i for i, t in enumerate(tables)}
        rows = {str(t.id): 0 for t in tables}
        files: dict[int, Any] = {}
        try:
            for batch in subset_batches(src, selected, tables):
                if not batch.rows:
                    continue
                i = index[batch.table]
                if i not in files:
                    files[i] = (tmp / f"{i}.pickle").open("wb")
                pickle.dump(masks.batch(batch), files[i], protocol=pickle.HIGHEST_PROTOCOL)
                rows[str(batch.table)] += len(batch.rows)
        finally:
            for f in files.values():
                f.close()
        return rows

    @staticmethod
    def _read_meta(path: Path) -> _Extract:
        with (path / "meta.pickle").open("rb") as f:
            tables, views, rows, family, dialect = pickle.load(f)
        return _Extract(path, tables, views, rows, family, dialect)

    # -- 2. load a template once per session ---------------------------------------------
    def template(self, request: CloneRequest, target: CopyTarget) -> tuple[str, dict[str, int]]:
        """The URL of the session's template clone of ``request`` on ``target``."""
        extract = self.extract(request)
        key = (request.key(), target.name)
        url = self._templates.get(key)
        if url is None:
            self._by_name.setdefault(target.name, target)
            url = target.create(f"rkc_{uuid.uuid4().hex[:10]}")
            try:
                self._load(extract, url)
            except BaseException:
                target.drop(url)
                raise
            self._templates[key] = url
        return url, dict(extract.rows)

    @staticmethod
    def _load(extract: _Extract, url: str) -> None:
        with endpoint(url) as dst:
            pipe = Pipeline(
                _CachedReader(extract),
                dst.writer(),
                mappings=_home_schema(extract, dst),
                prep_mode="drop-and-create",
                progress=False,
                views=extract.views,
            )
            pipe.refuse(pipe.plans())
            pipe.run()

    # -- 3. copies -------------------------------------------------------------------------
    def clone(
        self,
        request: CloneRequest,
        target: CopyTarget,
        scope: str,
        made: list[tuple[CopyTarget, Clone]],
    ) -> Clone:
        """A clone of ``request`` on ``target``: a fresh copy (``scope="test"``, appended to
        ``made`` for the caller to drop) or the session's shared copy."""
        refuse_scope(scope)
        url, rows = self.template(request, target)
        if scope == "session":
            key = (request.key(), target.name)
            shared = self._shared.get(key)
            if shared is None:
                copy = target.copy(url)
                shared = self._shared[key] = (target, Clone(copy, endpoint(copy), rows))
            return shared[1]
        copy = self._fresh((request.key(), target.name), target, url)
        clone = Clone(copy, endpoint(copy), rows)
        made.append((target, clone))
        return clone

    def _fresh(self, key: tuple[str, str], target: CopyTarget, template: str) -> str:
        """A fresh copy of ``template``: the spare made while the previous test ran, when
        there is one. On a server the next spare is then made in the background, so a test
        waits for a copy only when it took less time than making one."""
        spare = self._spares.pop(key, None)
        url = spare.result() if spare is not None else target.copy(template)
        if target.prefetch:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="replikit-clone")
            self._spares[key] = self._pool.submit(target.copy, template)
        return url

    def close(self, target: str | None = None) -> None:
        """Drop the spares, shared copies and templates on ``target`` (a target's name;
        ``None``: everywhere)."""
        for key, spare in list(self._spares.items()):
            if target is None or key[1] == target:
                del self._spares[key]
                with contextlib.suppress(Exception):  # a spare that failed holds nothing
                    self._by_name[key[1]].drop(spare.result())
        if target is None and self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for key, (where, clone) in list(self._shared.items()):
            if target is None or where.name == target:
                clone.endpoint.close()
                where.drop(clone.url)
                del self._shared[key]
        for key, url in list(self._templates.items()):
            if target is None or key[1] == target:
                self._by_name[key[1]].drop(url)
                del self._templates[key]


def refuse_scope(scope: str) -> None:
    """ConfigError unless ``scope`` is ``"session"`` or ``"test"``."""
    if scope not in ("session", "test"):
        raise ConfigError(f"scope must be 'session' or 'test', got {scope!r}")
