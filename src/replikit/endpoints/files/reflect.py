"""Reflection of a folder of files: which tables it holds, their columns and their files.

A table is a folder holding data files (``*.parquet``, ``*.csv``, ``*.jsonl``), directly or in
partition folders (``name=value``), or a ``_schema.json``: ``<root>/<table>/`` (no schema) or
``<root>/<schema>/<table>/``. Its columns come from ``_schema.json`` when replikit wrote the
folder (exact portable types and keys), else from the files: Parquet's own schema (every file
must have the same), or inferred from the first block of a CSV or JSONL file, which the
catalog's problems (and so the plan) declare.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from replikit.endpoints.files import _ddl
from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._dialect import parse_arrow
from replikit.errors import SchemaError
from replikit.mapping import Selection
from replikit.schema.model import Catalog, Column, TableId, TableSchema

__all__ = ["TableFolder", "find_tables", "hidden_tables", "reflect_catalog", "table_folder"]

_FORMAT_OF = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True, slots=True)
class TableFolder:
    """One table's folder: its schema, format and files (paths relative to ``folder``)."""

    id: TableId
    folder: str
    fmt: str
    schema: TableSchema
    typed: bool  # the schema is replikit's _schema.json (else: the files' own / inferred)
    partition: str | None
    load_files: tuple[str, ...]
    change_files: tuple[tuple[int, str], ...]  # (apply sequence, path)
    other_files: tuple[str, ...]  # files replikit did not write (not data, not its own)
    problem: str | None = None


def _format_of(name: str) -> str | None:
    stem, ext = posixpath.splitext(name.lower())
    if ext in (".gz", ".zst", ".bz2"):
        ext = posixpath.splitext(stem)[1]
    return _FORMAT_OF.get(ext)


#: the names a reader never reads as a table (hidden, as Spark and pyarrow hide them)
_HIDDEN = ("_", ".")
#: replikit's own entries in a folder it wrote (the manifest, the apply exceptions)
_OWN = "_replikit_"


def _is_table(store: Store, folder: str) -> bool:
    for name, is_dir in store.entries(folder):
        if name == _ddl.SCHEMA_FILE or (not is_dir and _ddl.is_data_name(name)):
            return True
        if is_dir and "=" in name:
            return True
    return False


def _table_folders(store: Store) -> list[tuple[str, ...]]:
    """Every folder one or two levels under the root that holds a table's files, as its
    path's parts (a folder that does is not looked into further); hidden ones too
    (:func:`_hidden`), not replikit's own entries."""
    out: list[tuple[str, ...]] = []
    for name, is_dir in store.entries(store.root):
        if not is_dir or name.startswith(_OWN):
            continue
        if _is_table(store, store.path(name)):
            out.append((name,))
            continue
        out += [(name, child) for child, child_dir in store.entries(store.path(name))
                if child_dir and _is_table(store, store.path(name, child))]  # fmt: skip
    return out


def _hidden(parts: tuple[str, ...]) -> bool:
    """A folder never read as a table: a part of its path starts ``_`` or ``.``."""
    return any(p.startswith(_HIDDEN) for p in parts)


def _table_id(parts: tuple[str, ...]) -> TableId:
    return TableId(*parts) if len(parts) == 2 else TableId(None, parts[0])


def find_tables(store: Store) -> list[TableId]:
    """The table folders under the root (one or two levels deep), hidden ones left out."""
    return _visible(_table_folders(store))


def _visible(folders: Sequence[tuple[str, ...]]) -> list[TableId]:
    return sorted((_table_id(p) for p in folders if not _hidden(p)), key=str)


def hidden_tables(folders: Sequence[tuple[str, ...]]) -> list[str]:
    """Of ``folders`` (:func:`_table_folders`), those that hold a table's files but are never
    read, a name in their path starting ``_`` or ``.`` (hidden, as Spark and pyarrow hide
    them), for the plan to name."""
    return sorted("/".join(p) for p in folders if _hidden(p))


def _split(files: Sequence[str]) -> tuple[list[str], list[tuple[int, str]], list[str]]:
    loads, changes, other = [], [], []
    for rel in files:
        parts = rel.split("/")
        name = parts[-1]
        if any(p.startswith(("_", ".")) for p in parts[:-1]) or name.startswith("."):
            continue  # hidden: temporary files, tools' own folders
        if name == _ddl.SCHEMA_FILE and len(parts) == 1:
            continue
        m = _ddl.CHANGE_FILE.match(name)
        if m:
            changes.append((int(m.group(1)), rel))
        elif _ddl.is_data_name(name):
            loads.append(rel)
        else:
            other.append(rel)
    return loads, sorted(changes), other


def table_folder(store: Store, tid: TableId, committed: int | None) -> TableFolder | None:
    """The folder of ``tid`` (``None``: no such folder). ``committed``: the last change-file
    sequence the manifest lists as committed (later ones are leftovers of a crash, not read)."""
    folder = _ddl.table_folder(store.root, tid)
    if not store.isdir(folder):
        return None
    loads, changes, other = _split(store.files_under(folder))
    # without a manifest no change file was committed
    changes = [(s, p) for s, p in changes if committed is not None and s <= committed]
    schema_path = f"{folder}/{_ddl.SCHEMA_FILE}"
    if store.exists(schema_path):
        schema, fmt, partition = _ddl.schema_from_json(
            store.read_text(schema_path), tid, schema_path
        )
        return TableFolder(
            tid, folder, fmt, schema, True, partition, tuple(loads), tuple(changes), tuple(other)
        )
    return _untyped(store, tid, folder, loads, other)


def _untyped(
    store: Store, tid: TableId, folder: str, loads: list[str], other: list[str]
) -> TableFolder:
    """A folder replikit did not write: columns from the files themselves."""
    from replikit.endpoints.files._formats import read_schema

    formats = {f for f in (_format_of(p) for p in loads) if f is not None}
    if len(formats) > 1:
        raise SchemaError(
            f"{folder} mixes file formats ({', '.join(sorted(formats))}); a table folder "
            "holds one format"
        )
    if not loads:
        raise SchemaError(f"{folder} holds no data files")
    fmt = formats.pop()
    first = loads[0]
    arrow = read_schema(store, f"{folder}/{first}", fmt)
    if fmt == "parquet":
        for rel in loads[1:]:
            other_schema = read_schema(store, f"{folder}/{rel}", fmt)
            if not other_schema.equals(arrow):
                raise SchemaError(
                    f"the files of table {tid} have different schemas: {first} has "
                    f"{_fields(arrow)} but {rel} has {_fields(other_schema)}; read them as "
                    "separate tables (separate folders) or rewrite them with one schema"
                )
    columns = tuple(Column(f.name, parse_arrow(str(f.type)), f.nullable) for f in arrow)
    problem = None
    if fmt != "parquet":
        problem = (
            f"{tid}: column types inferred from the first block of {first} (no "
            f"{_ddl.SCHEMA_FILE}): " + ", ".join(f"{c.name} {c.type}" for c in columns)
        )
    schema = TableSchema(tid, columns)
    return TableFolder(
        tid, folder, fmt, schema, False, None, tuple(loads), (), tuple(other), problem
    )


def _fields(schema: object) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)  # type: ignore[attr-defined]


def reflect_catalog(
    store: Store, selection: Selection | None, committed: int | None
) -> tuple[Catalog, dict[TableId, TableFolder]]:
    """The tables under the root selected by ``selection``, and their folders."""
    tables: list[TableSchema] = []
    folders: dict[TableId, TableFolder] = {}
    problems: list[str] = []
    found_folders = _table_folders(store)
    for tid in _visible(found_folders):
        if selection is not None and not selection.matches(tid):
            continue
        found = table_folder(store, tid, committed)
        if found is None:
            continue
        folders[tid] = found
        tables.append(found.schema)
        if found.problem:
            problems.append(found.problem)
    problems += [
        f"{store.where}/{name}: not read: a folder whose name starts with '_' or '.' is hidden "
        "(as Spark and pyarrow hide it); rename it to read its files as a table"
        for name in hidden_tables(found_folders)
    ]
    return Catalog(tables=tuple(tables), problems=tuple(problems)), folders
