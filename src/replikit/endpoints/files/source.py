"""Full-load reading of a folder of files: each table folder's files, batch by batch.

A table replikit wrote reads with the types of its ``_schema.json``; when the folder also
holds committed change files (CDC), they are replayed in order over the full-load files
(:mod:`._replay`), so the reader gives the table as of the last change. Other folders read
with the files' own types (Parquet) or the inferred ones (CSV, JSONL).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from typing_extensions import override

from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._dialect import DIALECT
from replikit.endpoints.files._formats import read_rows
from replikit.endpoints.files._replay import Replay
from replikit.endpoints.files.reflect import TableFolder
from replikit.errors import SchemaError
from replikit.pipeline.contracts import Batch, Reader, Unit
from replikit.schema.model import TableId, TableSchema
from replikit.schema.types import Type

__all__ = ["FilesReader"]


class FilesReader(Reader):
    """Reads the tables of a files endpoint; ``dialect`` is the type rules they were read
    with."""

    dialect = DIALECT

    def __init__(
        self,
        store: Store,
        folders: dict[TableId, TableFolder],
        tables: Sequence[TableSchema],
        *,
        batch_size: int = 10_000,
    ) -> None:
        self._store = store
        self._folders = folders
        self._tables = tuple(tables)
        self._by_id = {t.id: t for t in self._tables}
        self.batch_size = batch_size

    @property
    @override
    def tables(self) -> Sequence[TableSchema]:
        """The tables this reader was made for."""
        return self._tables

    @override
    def units(self, table: TableSchema, *, split_rows: int | None = None) -> list[Unit]:
        """One unit per full-load file, so a table's files load in parallel; one unit for a
        table with change files (they are replayed over all its files at once)."""
        folder = self._folder(table.id)
        count = len(folder.load_files)
        if folder.change_files or count <= 1:
            return [Unit(table.id)]
        return [Unit(table.id, index=i, count=count) for i in range(count)]

    def _folder(self, tid: TableId) -> TableFolder:
        folder = self._folders.get(tid)
        if tid not in self._by_id or folder is None:
            raise SchemaError(f"this reader was not made for table {tid}")
        return folder

    @override
    def read(self, unit: Unit) -> Iterator[Batch]:
        """The rows of the unit's file, or of the table's files (with its change files
        replayed, if any)."""
        folder = self._folder(unit.table)
        table = self._by_id[unit.table]
        types = {c.name: c.type for c in folder.schema.columns}
        if unit.count > 1:
            if unit.count != len(folder.load_files) or folder.change_files:
                raise SchemaError(
                    f"the files of table {table.id} in {folder.folder} are not the "
                    f"{unit.count} the load was split into: read them again (reflect)"
                )
            for names, rows in self._file(folder, folder.load_files[unit.index], types):
                yield Batch(table.id, names, rows)
            return
        if not folder.change_files:
            for names, rows in self._load(folder, types):
                yield Batch(table.id, names, rows)
            return
        replay = Replay(str(table.id), folder.schema.column_names, folder.schema.key)
        for _, group in itertools.groupby(folder.change_files, key=lambda sp: sp[0]):
            changes: list[tuple[tuple[str, ...], list[list[object]]]] = []
            for _, rel in group:
                changes += self._file(folder, rel, _change_types(types))
            replay.add(*_in_order(changes))
        for rows in replay.rows(self._load(folder, types), self.batch_size):
            yield Batch(table.id, folder.schema.column_names, rows)

    def _load(
        self, folder: TableFolder, types: dict[str, Type]
    ) -> Iterator[tuple[tuple[str, ...], list[list[object]]]]:
        for rel in folder.load_files:
            yield from self._file(folder, rel, types)

    def _file(
        self, folder: TableFolder, rel: str, types: dict[str, Type]
    ) -> (
        list[tuple[tuple[str, ...], list[list[object]]]]
        | Iterator[tuple[tuple[str, ...], list[list[object]]]]
    ):
        return read_rows(
            self._store,
            f"{folder.folder}/{rel}",
            folder.fmt,
            types,
            typed=folder.typed,
            batch_size=self.batch_size,
        )


def _change_types(types: dict[str, Type]) -> dict[str, Type]:
    """The columns of a change file: the metadata, then the table's."""
    meta = {
        "Op": Type.text(),
        "_commit_ts": Type.timestamp(6, tz=True, native="timestamp[us, tz=UTC]"),
        "_position": Type.text(),
        "_change": Type.int_(64, native="int64"),
        "_unchanged": Type.array(Type.text("string"), 1, native="list<item: string>"),
    }
    return {**meta, **types}


def _in_order(
    batches: Sequence[tuple[tuple[str, ...], list[list[object]]]],
) -> tuple[tuple[str, ...], list[list[object]]]:
    """The change rows of one apply (possibly several files), in ``_change`` order."""
    if not batches:
        return (), []
    names = batches[0][0]
    at = names.index("_change")
    rows = [r for _, rs in batches for r in rs]
    rows.sort(key=lambda r: r[at])  # type: ignore[arg-type, return-value]
    return names, rows
