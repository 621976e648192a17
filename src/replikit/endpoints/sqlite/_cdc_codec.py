"""The change rows of SQLite CDC: the trigger SQL that writes them, and their decoding.

Pure: table schemas in, SQL text out; change-row text in, canonical values out.

Row images are JSON objects whose values are tagged so every stored value comes back with its
exact storage class and bits: integers are JSON numbers, NULL is ``null``, text is
``"t<text>"``, blobs ``"b<hex>"`` and reals ``"r<m>p<k>"`` meaning ``m * 2**-k`` (SQLite prints
doubles with too few correct digits, so reals are split into an exact integer mantissa and a
power of two in SQL; this needs SQLite's math functions). The decoded values then go through
the full-load reader's converters, so a change carries the same canonical Python values as a
full load of the same row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replikit.changes import Op, SchemaChange
from replikit.endpoints.sqlite._dialect import DIALECT, affinity
from replikit.endpoints.sqlite._values import (
    BadValue,
    Converter,
    converter_for,
    not_valid,
    preview,
)
from replikit.endpoints.sqlite._values import storage_classes as _classes
from replikit.errors import DataError, SchemaError
from replikit.schema.model import Column, TableSchema

__all__ = [
    "CHANGES_TABLE",
    "OPS",
    "STATE_TABLE",
    "TABLES_TABLE",
    "TASKS_TABLE",
    "ColumnInfo",
    "Decoder",
    "key_names",
    "renames",
    "schema_change",
    "trigger_names",
    "trigger_sql",
]

CHANGES_TABLE = "_replikit_changes"
TABLES_TABLE = "_replikit_cdc_tables"
STATE_TABLE = "_replikit_cdc_state"
TASKS_TABLE = "_replikit_cdc_tasks"
OPS = {"I": Op.INSERT, "U": Op.UPDATE, "D": Op.DELETE}
_ROWID_NAMES = ("rowid", "_rowid_", "oid")
_MAX_ARGS = 126  # SQLite's default SQLITE_MAX_FUNCTION_ARG is 127
_STORAGE = {int: "integer", float: "real", str: "text", bytes: "blob"}

# One column as ``pragma_table_xinfo`` shows it: name, declared type, notnull, pk, hidden.
ColumnInfo = tuple[str, str, int, int, int]


def key_names(table: TableSchema) -> tuple[tuple[str, ...], bool]:
    """The key columns the change rows carry, and whether it is the rowid (keyless table)."""
    if table.key:
        return table.key, False
    lowered = {n.lower() for n in table.column_names}
    free = [r for r in _ROWID_NAMES if r not in lowered]
    if not free:
        raise SchemaError(
            f"table {table.id.name!r} has no key and its columns hide the rowid; "
            "CDC cannot name its rows"
        )
    return (free[0],), True


# -- trigger SQL ---------------------------------------------------------------------------


def _encode(ref: str) -> str:
    """SQL that turns the value ``ref`` into its tagged JSON form (see the module doc)."""
    k = f"(53 - CAST(floor(log2(abs({ref}))) AS INTEGER))"
    real = (
        f"CASE WHEN {ref} = 0 THEN 'r0' "
        f"WHEN {ref} * 2 = {ref} THEN CASE WHEN {ref} > 0 THEN 'rinf' ELSE 'r-inf' END "
        f"ELSE 'r' || CAST({ref} * power(2, {k} / 2) * power(2, {k} - {k} / 2) AS INTEGER)"
        f" || 'p' || {k} END"
    )
    return (
        f"CASE typeof({ref}) WHEN 'integer' THEN {ref} WHEN 'null' THEN NULL "
        f"WHEN 'text' THEN 't' || {ref} WHEN 'blob' THEN 'b' || hex({ref}) ELSE {real} END"
    )


def _image(row: str, names: Sequence[str]) -> str:
    """``json_object`` of every column; wide tables as a ``json_array`` of such objects."""
    per = _MAX_ARGS // 2
    parts = []
    for start in range(0, len(names), per):
        args = ", ".join(
            f"{DIALECT.literal(n)}, {_encode(f'{row}.{DIALECT.quote(n)}')}"
            for n in names[start : start + per]
        )
        parts.append(f"json_object({args})")
    if len(parts) == 1:
        return parts[0]
    if len(parts) > _MAX_ARGS:
        raise SchemaError(f"too many columns for CDC triggers ({len(names)})")
    return f"json_array({', '.join(parts)})"


def _key_sql(row: str, keys: Sequence[str], rowid: bool) -> str:
    refs = [f"{row}.{keys[0]}"] if rowid else [f"{row}.{DIALECT.quote(k)}" for k in keys]
    return f"json_array({', '.join(_encode(r) for r in refs)})"


def trigger_names(table: str) -> tuple[str, str, str]:
    """The insert, update and delete trigger names of ``table`` (unquoted)."""
    return (f"_replikit_{table}_ins", f"_replikit_{table}_upd", f"_replikit_{table}_del")


def trigger_sql(table: TableSchema) -> list[str]:
    """``CREATE TRIGGER`` statements that record every row change of ``table``."""
    name = table.id.name
    quoted, lit = DIALECT.quote(name), DIALECT.literal(name)
    keys, rowid = key_names(table)
    cols = table.column_names
    ins, upd, dele = (DIALECT.quote(t) for t in trigger_names(name))
    into = f"INSERT INTO {CHANGES_TABLE} (tbl, op, pk, new_row, old_row) VALUES ({lit}, "  # noqa: S608
    return [
        f"CREATE TRIGGER {ins} AFTER INSERT ON {quoted} BEGIN "
        f"{into}'I', {_key_sql('NEW', keys, rowid)}, {_image('NEW', cols)}, NULL); END",
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {quoted} BEGIN "
        f"{into}'U', {_key_sql('OLD', keys, rowid)}, {_image('NEW', cols)}, "
        f"{_image('OLD', cols)}); END",
        f"CREATE TRIGGER {dele} AFTER DELETE ON {quoted} BEGIN "
        f"{into}'D', {_key_sql('OLD', keys, rowid)}, NULL, {_image('OLD', cols)}); END",
    ]


# -- schema changes ------------------------------------------------------------------------


def renames(old: Sequence[ColumnInfo], new: Sequence[ColumnInfo]) -> list[tuple[str, str]] | None:
    """The columns renamed from ``old`` to ``new`` (old, new name), when nothing else changed
    but columns added at the end; ``None`` when the lists differ otherwise.

    Exact, not a guess: SQLite keeps a renamed column at its place with its declaration,
    appends added columns, and refuses to drop a column the change triggers use (every
    column), so a new name at the same place with the same declaration is a rename. The
    triggers record rows as positional arrays, so rows recorded before or after the rename
    decode alike under the new names.
    """
    if len(new) < len(old):
        return None
    out = []
    for a, b in zip(old, new, strict=False):
        if tuple(a[1:]) != tuple(b[1:]):
            return None
        if a[0] != b[0]:
            out.append((a[0], b[0]))
    return out


def schema_change(
    table: TableSchema, old: Sequence[ColumnInfo], new: Sequence[ColumnInfo]
) -> SchemaChange:
    """What changed between two column lists of ``table`` (its current schema)."""
    renamed = renames(old, new) or []
    gone, came = {o for o, _ in renamed}, {n for _, n in renamed}
    before = {c[0]: c for c in old}
    after = {c[0]: c for c in new}
    added = tuple(
        c for c in table.columns if c.name in after and c.name not in before and c.name not in came
    )
    dropped = tuple(n for n in before if n not in after and n not in gone)
    changed = tuple(n for n in before if n in after and before[n][1:] != after[n][1:])
    parts = [", ".join(f"renamed {o} to {n}" for o, n in renamed)]
    parts += [f"added {', '.join(f'{c.name} ({c.type.native or c.type})' for c in added)}"]
    parts += [f"dropped {', '.join(dropped)}", f"changed {', '.join(changed)}"]
    text = "; ".join(
        p for p, n in zip(parts, (renamed, added, dropped, changed), strict=True) if n
    )
    return SchemaChange(
        table=table.id,
        added=added,
        dropped=dropped,
        changed=changed,
        description=f"SQLite table {table.id.name}: {text or 'columns changed'}",
        renamed=tuple(renamed),
    )


# -- decoding ------------------------------------------------------------------------------


def _raw(value: Any) -> Any:
    """A tagged JSON value back to the value SQLite stored."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, str) and value:
        tag, body = value[0], value[1:]
        if tag == "t":
            return body
        if tag == "b":
            return bytes.fromhex(body)
        if tag == "r":
            if body in ("0", "inf", "-inf"):
                return float(body)
            mantissa, _, power = body.partition("p")
            return math.ldexp(int(mantissa), -int(power))
    raise DataError(f"undecodable change value {preview(value)}")


def _parse(text: str | None) -> dict[str, Any] | None:
    """A row image's JSON (a wide table's image comes as a list of parts)."""
    if text is None:
        return None
    data = json.loads(text)
    if isinstance(data, list):
        merged: dict[str, Any] = {}
        for part in data:
            merged.update(part)
        return merged
    return dict(data)


def _fast(conv: Converter | None, classes: tuple[str, ...] | None) -> Converter:
    """One column's decoder without error reporting (BadValue/DataError: take the slow path)."""
    if conv is None and classes == ("integer",):

        def integer(value: Any) -> Any:
            if value is None or type(value) is int:
                return value
            raise BadValue("not an integer")

        return integer
    if conv is None and classes == ("text",):

        def text(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is str and value[:1] == "t":
                return value[1:]
            raise BadValue("not text")

        return text
    if conv is None and classes is None:
        return _raw

    def general(value: Any) -> Any:
        raw = _raw(value)
        if raw is None:
            return None
        if conv is not None:
            return conv(raw)
        if classes is not None and _STORAGE.get(type(raw)) not in classes:
            raise BadValue("wrong storage class")
        return raw

    return general


_FAST_ERRORS = (BadValue, DataError, ValueError, TypeError, ArithmeticError, KeyError)


@dataclass(frozen=True, slots=True)
class Decoder:
    """How to turn one table's change rows into canonical values (``hash``: its shape).

    ``aliases`` maps column names that rows recorded by older triggers carry to today's names
    (renamed columns: the triggers write each row as a JSON object keyed by the names they
    were made with)."""

    table: TableSchema
    hash: str
    keys: tuple[str, ...]
    columns: Mapping[str, tuple[Converter | None, tuple[str, ...] | None, Column]]
    fast: Mapping[str, Converter]
    aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, table: TableSchema, digest: str) -> Decoder:
        """The decoder for ``table``, whose columns hash to ``digest``."""
        keys, _ = key_names(table)
        columns = {
            c.name: (converter_for(c.type, affinity(c.type.native)), _classes(c.type), c)
            for c in table.columns
        }
        fast = {name: _fast(conv, classes) for name, (conv, classes, _) in columns.items()}
        return cls(table, digest, keys, columns, fast)

    def row(
        self, pk: str, new_row: str | None, old_row: str | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        """``(key, before, after)`` of one change row, as canonical values.

        The key comes from the old image (updates, deletes) or the new one (inserts), as the
        trigger took it; a value that does not fit its column raises :class:`DataError`.
        """
        try:
            before, after = self._image(old_row), self._image(new_row)
            image = before if before is not None else after
            if image is not None and all(k in image for k in self.keys):
                return {k: image[k] for k in self.keys}, before, after
            return self.key(pk), before, after  # a keyless table's rowid is only in pk
        except _FAST_ERRORS:
            pass  # decode again, slowly, to name the row and column
        key = self.key(pk)
        return key, self.image(old_row, key), self.image(new_row, key)

    def _parse(self, text: str | None) -> dict[str, Any] | None:
        data = _parse(text)
        if data is None or not self.aliases:
            return data
        return {self.aliases.get(k, k): v for k, v in data.items()}

    def _image(self, text: str | None) -> dict[str, Any] | None:
        data = self._parse(text)
        if data is None:
            return None
        fast = self.fast
        return {n: fast[n](v) if n in fast else _raw(v) for n, v in data.items()}

    def value(self, name: str, value: Any, key: Mapping[str, Any] | None) -> Any:
        """The canonical value of column ``name`` (``key`` names the row in errors)."""
        raw = _raw(value)
        if raw is None or name not in self.columns:
            return raw
        conv, classes, col = self.columns[name]
        if conv is not None:
            try:
                return conv(raw)
            except (BadValue, ValueError, TypeError, ArithmeticError) as exc:
                raise not_valid(
                    "changed value", raw, col, str(self.table.id), key, str(exc)
                ) from None
        if classes is not None and _STORAGE.get(type(raw)) not in classes:
            kind = _STORAGE.get(type(raw), "?")
            raise not_valid(f"changed {kind} value", raw, col, str(self.table.id), key)
        return raw

    def key(self, text: str) -> dict[str, Any]:
        """The key values of a change row's ``pk`` column."""
        values = json.loads(text)
        raw = dict(zip(self.keys, values, strict=True))
        return {n: self.value(n, v, raw) for n, v in raw.items()}

    def image(self, text: str | None, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """A row image (``new_row``/``old_row``) as canonical values."""
        data = self._parse(text)
        if data is None:
            return None
        return {n: self.value(n, v, key) for n, v in data.items()}
