"""The files endpoint family: Parquet, CSV or JSONL files in folders (``pip install
"replikit[files]"``: pyarrow and fsspec).

URLs: ``file:///abs/folder`` (``file://rel/folder``: relative to the working folder),
``memory://folder`` and every protocol fsspec knows when its package is installed
(``s3://bucket/prefix`` with s3fs, ``gs://`` with gcsfs, ``az://`` with adlfs); options as URL
parameters or keywords: ``format`` (``parquet``, ``csv`` or ``jsonl``), ``partition_by``
(``col``, ``col:year``, ``col:month``, ``col:day``), ``file_size`` (bytes before a new file is
started, e.g. ``64MB``; default 128 MB), ``compression`` (Parquet's, default ``snappy``),
``batch_size`` (rows per batch read); keywords only: ``storage_options`` (for fsspec, e.g.
credentials) or ``filesystem`` (an fsspec file system to use as it is).

A files endpoint is a full-load source and target and a CDC *target* (change files in the DMS
layout, committed by a manifest, which also records suspended tables); see :mod:`.apply`,
:mod:`._control` and docs/duckdb-and-files.md.

>>> import replikit as rk
>>> rk.endpoint("memory://rk-doc?format=csv").options["format"]
'csv'
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from replikit.endpoints.base import Capabilities, Endpoint
from replikit.endpoints.files._connect import PROTOCOLS, Store, parse_url
from replikit.endpoints.files._dialect import DIALECT, FORMATS, FilesDialect
from replikit.endpoints.files._partition import parse_partition
from replikit.errors import ConfigError, ConnectError, TableNotFoundError
from replikit.mapping import Selection
from replikit.schema.model import Catalog, TableId, TableSchema

if TYPE_CHECKING:
    from replikit.endpoints.files._control import FilesControlStore
    from replikit.endpoints.files.apply import FilesChangeWriter
    from replikit.endpoints.files.reflect import TableFolder
    from replikit.endpoints.files.source import FilesReader
    from replikit.endpoints.files.target import FilesWriter

__all__ = ["FilesDialect", "FilesEndpoint"]

_URL_OPTIONS = ("format", "partition_by", "file_size", "compression", "batch_size")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(value: Any) -> int:
    """``134217728``, ``"128MB"``, ``"1.5GiB"`` -> bytes."""
    if isinstance(value, int) and value > 0:
        return value
    m = _SIZE.match(str(value))
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(f"bad file_size {value!r}; e.g. 134217728, '64MB' or '1GB'")
    unit = (m.group(2) or "").upper()[:1]
    return int(float(m.group(1)) * _UNITS[unit])


class FilesEndpoint(Endpoint):
    """A folder of Parquet, CSV or JSONL files, one folder per table (see the module docs)."""

    schemes = PROTOCOLS
    family = "files"
    capabilities = Capabilities(cdc=False, transactions=False)
    endpoint_options = frozenset({*_URL_OPTIONS, "storage_options", "filesystem"})

    def __init__(self, url: str, **options: Any) -> None:
        location = parse_url(url)
        unknown = sorted(set(location.query) - set(_URL_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown files URL parameter {unknown[0]!r}; known: {', '.join(_URL_OPTIONS)}"
            )
        super().__init__(url, **{**location.query, **options})
        fmt = str(self.options.setdefault("format", "parquet")).lower()
        if fmt not in FORMATS:
            raise ConfigError(f"unknown files format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.options["format"] = fmt
        if "file_size" in self.options:
            self.options["file_size"] = parse_size(self.options["file_size"])
        if "batch_size" in self.options:
            try:
                self.options["batch_size"] = int(self.options["batch_size"])
            except ValueError:
                raise ConfigError(f"bad batch_size {self.options['batch_size']!r}") from None
        parse_partition(self.options.get("partition_by"))  # refused here when malformed
        self._store = Store(
            location,
            filesystem=self.options.pop("filesystem", None),
            storage_options=self.options.pop("storage_options", None),
        )

    @property
    @override
    def dialect(self) -> FilesDialect:
        """The Parquet type rules and folder naming."""
        return DIALECT

    @property
    def root(self) -> str:
        """The root folder (a path in the file system)."""
        return self._store.root

    @property
    def store(self) -> Store:
        """The file system and root folder (listing, atomic writes)."""
        return self._store

    @override
    def check(self) -> None:
        """Look at the root folder once (a missing one is created when written to)."""
        if self._store.exists(self._store.root) and not self._store.isdir(self._store.root):
            raise ConnectError(f"{self._store.where} is a file, not a folder")

    def _committed(self) -> int | None:
        from replikit.endpoints.files._manifest import ManifestFile

        manifest = ManifestFile(self._store)
        return manifest.read().change_seq if manifest.exists() else None

    def _reflect(self, selection: Selection | None) -> tuple[Catalog, dict[TableId, TableFolder]]:
        from replikit.endpoints.files.reflect import reflect_catalog

        if not self._store.isdir(self._store.root):
            raise ConnectError(f"no folder {self._store.where}")
        return reflect_catalog(self._store, selection, self._committed())

    @override
    def reflect(self, selection: Selection | None = None) -> Catalog:
        """The tables under the root folder (see :mod:`.reflect`)."""
        return self._reflect(selection)[0]

    @override
    def reader(self, tables: Sequence[Any] | None = None, **options: Any) -> FilesReader:
        """A :class:`~replikit.endpoints.files.source.FilesReader` (option: ``batch_size``)."""
        from replikit.endpoints.files.source import FilesReader

        catalog, folders = self._reflect(None) if tables != [] else (Catalog(), {})
        schemas = self._pick(catalog, tables)
        return self._build(FilesReader, "reader", self._store, folders, schemas, **options)

    def _pick(self, catalog: Catalog, tables: Sequence[Any] | None) -> list[TableSchema]:
        if tables is None:
            return list(catalog.tables)
        out = []
        for t in tables:
            tid = (
                t.id
                if isinstance(t, TableSchema)
                else (t if isinstance(t, TableId) else TableId.parse(str(t)))
            )
            try:
                out.append(catalog.table(tid))
            except TableNotFoundError:
                raise TableNotFoundError(f"no table {tid} in {self.url}", table=str(tid)) from None
        return out

    @override
    def writer(self, **options: Any) -> FilesWriter:
        """A :class:`~replikit.endpoints.files.target.FilesWriter`."""
        from replikit.endpoints.files.target import FilesWriter

        return self._build(FilesWriter, "writer", self._store, **options)

    def change_writer(self, **options: Any) -> FilesChangeWriter:
        """A CDC writer of change files (checkpoints in the manifest)."""
        from replikit.endpoints.files.apply import FilesChangeWriter

        return self._build(FilesChangeWriter, "change writer", self._store, **options)

    def control_store(self) -> FilesControlStore:
        """Suspended tables (in the manifest) and apply exceptions of the tasks writing here
        (:mod:`replikit.pipeline.control`)."""
        from replikit.endpoints.files._control import FilesControlStore

        return FilesControlStore(self._store)

    def checkpoint_store(self, **options: Any) -> FilesChangeWriter:
        """Task checkpoints in the folder's manifest."""
        from replikit.endpoints.files.apply import FilesChangeWriter

        return self._build(FilesChangeWriter, "checkpoint store", self._store, **options)

    @override
    def identity(self) -> tuple[object, ...] | None:
        """The file system and the root folder."""
        root = self._store.root
        if self._store.location.protocol == "file":
            root = os.path.realpath(root)
        return ("files", self._store.location.protocol, root)
