"""The portable schema model: what reflection returns and what DDL generation consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

from replikit.errors import TableNotFoundError
from replikit.schema.types import Type

__all__ = [
    "Catalog",
    "CheckConstraint",
    "Column",
    "ForeignKey",
    "Generation",
    "Identity",
    "Index",
    "Routine",
    "TableDraft",
    "TableId",
    "TableSchema",
    "View",
]


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    """A table's name and schema (``schema`` is ``None`` where the database has none)."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @classmethod
    def parse(cls, text: str) -> TableId:
        """``"schema.table"`` or ``"table"`` (split at the first dot)."""
        schema, dot, name = text.partition(".")
        return cls(schema, name) if dot else cls(None, schema)


@dataclass(frozen=True, slots=True)
class Identity:
    """How a column gets generated key values, and where the generator stands.

    ``kind`` is ``"always"`` / ``"by-default"`` (SQL identity), ``"serial"`` (a sequence
    default) or ``"autoincrement"`` (SQLite/MySQL). ``next_value`` is the value the generator
    would hand out next, when known.
    """

    kind: str
    sequence: str | None = None
    next_value: int | None = None
    increment: int = 1


@dataclass(frozen=True, slots=True)
class Generation:
    """A generated column's expression (native SQL of its dialect) and whether the database
    stores its values (``STORED``) or computes them when read (``VIRTUAL``)."""

    expression: str
    stored: bool = True

    @classmethod
    def parse(cls, text: str) -> Generation:
        """``"expr STORED"`` / ``"expr VIRTUAL"`` (as :attr:`Column.generated` holds it);
        an expression without the word is stored."""
        words = text.rstrip().rsplit(None, 1)
        if len(words) == 2 and words[1].upper() in ("STORED", "VIRTUAL", "PERSISTENT"):
            return cls(words[0], words[1].upper() != "VIRTUAL")
        return cls(text.strip(), True)

    def __str__(self) -> str:
        return f"{self.expression} {'STORED' if self.stored else 'VIRTUAL'}"


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``default`` is a native SQL expression of the source dialect;
    ``generated`` the generation clause of a generated column, ``"expr STORED"`` or
    ``"expr VIRTUAL"`` (:meth:`Generation.parse` reads it)."""

    name: str
    type: Type
    nullable: bool = True
    default: str | None = None
    identity: Identity | None = None
    generated: str | None = None
    collation: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Index:
    """An index. ``expressions`` holds native SQL for expression or partial indexes."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None
    expressions: tuple[str, ...] = ()
    method: str | None = None


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A foreign key from ``columns`` to ``ref_columns`` of ``ref_table``."""

    name: str | None
    columns: tuple[str, ...]
    ref_table: TableId
    ref_columns: tuple[str, ...]
    on_delete: str | None = None
    on_update: str | None = None


@dataclass(frozen=True, slots=True)
class CheckConstraint:
    """A CHECK constraint (native SQL of the source dialect)."""

    name: str | None
    expression: str


@dataclass(frozen=True, slots=True)
class TableSchema:
    """One table as reflected from a source (or planned for a target)."""

    id: TableId
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    checks: tuple[CheckConstraint, ...] = ()
    estimated_rows: int | None = None
    estimated_bytes: int | None = None
    comment: str | None = None

    def column(self, name: str) -> Column:
        """The column called ``name``; ``KeyError`` when there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.id} has no column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        """The column names in table order."""
        return tuple(c.name for c in self.columns)

    @property
    def key(self) -> tuple[str, ...]:
        """The primary key, or else the first unique key whose columns are all NOT NULL."""
        if self.primary_key:
            return self.primary_key
        for uniq in self.unique:
            if all(not self.column(c).nullable for c in uniq):
                return uniq
        return ()


@dataclass(kw_only=True)
class TableDraft:
    """A table being reflected: parts collected catalog query by catalog query, then
    :meth:`build` into a :class:`TableSchema`. Families subclass it for their own keys."""

    id: TableId
    rows: int | None = None
    size: int | None = None
    comment: str | None = None
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    unique: list[tuple[str, ...]] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    checks: list[CheckConstraint] = field(default_factory=list)

    def build(self) -> TableSchema:
        """The finished, immutable schema."""
        return TableSchema(
            id=self.id,
            columns=tuple(self.columns),
            primary_key=self.primary_key,
            unique=tuple(self.unique),
            indexes=tuple(self.indexes),
            foreign_keys=tuple(self.foreign_keys),
            checks=tuple(self.checks),
            estimated_rows=self.rows,
            estimated_bytes=self.size,
            comment=self.comment,
        )


@dataclass(frozen=True, slots=True)
class View:
    """A view (or materialized view) and its query in the source dialect."""

    id: TableId
    definition: str | None = None
    materialized: bool = False


@dataclass(frozen=True, slots=True)
class Routine:
    """A function, procedure or trigger: reflected so the plan can report it.

    ``kind`` is ``"function"``, ``"procedure"`` or ``"trigger"``; ``language`` the language
    its body is written in (``sql``, ``plpgsql``, ...); ``table`` the table a trigger fires on.
    """

    id: TableId
    kind: str
    language: str
    definition: str | None = None
    table: TableId | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything reflection found in the selected part of a database."""

    tables: tuple[TableSchema, ...] = ()
    views: tuple[View, ...] = ()
    routines: tuple[Routine, ...] = ()
    problems: tuple[str, ...] = field(default=())

    def table(self, table: TableId | str) -> TableSchema:
        """The table with this id (or ``"schema.name"``)."""
        tid = TableId.parse(table) if isinstance(table, str) else table
        for t in self.tables:
            if t.id == tid:
                return t
        raise TableNotFoundError(f"no table {tid} in the catalog", table=str(tid))
