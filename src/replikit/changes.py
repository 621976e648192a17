"""``Change``: one row change, the common currency of CDC readers, transforms and writers."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from replikit.positions import Position
from replikit.schema.model import Column, TableId

__all__ = [
    "Change",
    "ImageLayout",
    "Op",
    "SchemaChange",
    "TableId",
    "TextImage",
    "Transaction",
    "slots_constructor",
]


class Op(enum.StrEnum):
    """What happened to the row."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    TRUNCATE = "truncate"


class ImageLayout:
    """The columns of :class:`TextImage` objects of one source relation, shared by them.

    ``names`` in the relation's order; ``loaders[i]`` types column ``i``'s text (a canonical
    value, :mod:`replikit.schema.types`); ``text_format`` says whose text form the values are
    in (``"postgresql"``: PostgreSQL's output functions under replikit's session settings), so
    a writer of that family may pass them to the target as they are, except the columns in
    ``opaque`` (indexes), whose text depends on more than the type (e.g. ``money`` on the
    server's ``lc_monetary``).
    """

    __slots__ = ("index", "keys", "loaders", "names", "opaque", "text_format")

    def __init__(
        self,
        names: Sequence[str],
        loaders: Sequence[Callable[[str], Any]],
        text_format: str,
        opaque: frozenset[int] = frozenset(),
    ) -> None:
        self.names = tuple(names)
        self.loaders = tuple(loaders)
        self.text_format = text_format
        self.opaque = opaque
        self.index = {name: i for i, name in enumerate(self.names)}
        self.keys: KeysView[str] = self.index.keys()


_UNTYPED: Final = object()


class TextImage(Mapping[str, Any]):
    """A row image that holds its values as the source's text and types each on first access.

    It reads like a ``dict`` of canonical values (``image["price"]`` is a ``Decimal``), so
    transforms and writers need not know it; a writer of the same family can instead take
    :attr:`texts` (``None`` for SQL NULL) for columns whose target type is the source's own, and
    skip typing and rendering values that go out unchanged. Immutable; it pickles as a plain
    ``dict`` of canonical values (spill files, caches).

    ``typed``: the values a reader has already typed, one per column in layout order, and
    :data:`UNTYPED` for the others (the list becomes the image's own).
    """

    __slots__ = ("_values", "layout", "texts")

    #: the ``typed`` entry of a column not typed yet
    UNTYPED: Final = _UNTYPED

    def __init__(
        self, layout: ImageLayout, texts: tuple[str | None, ...], typed: list[Any] | None = None
    ) -> None:
        self.layout = layout
        self.texts = texts
        self._values = typed

    def __getitem__(self, name: str) -> Any:
        return self._at(self.layout.index[name])

    def get(self, name: str, default: Any = None) -> Any:
        """``image[name]``, or ``default`` for a column the image does not have (two calls
        where ``Mapping.get`` makes three)."""
        i = self.layout.index.get(name)
        return default if i is None else self._at(i)

    def _at(self, i: int) -> Any:
        """The typed value of column ``i``, typed from its text the first time it is asked for."""
        values = self._values
        if values is None:
            values = self._values = [_UNTYPED] * len(self.texts)
        value = values[i]
        if value is _UNTYPED:
            text = self.texts[i]
            value = values[i] = None if text is None else self.layout.loaders[i](text)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.layout.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.names)

    def __len__(self) -> int:
        return len(self.texts)

    def keys(self) -> KeysView[str]:  # the shared view: set operations without a copy
        return self.layout.keys

    def text_bytes(self) -> int:
        """The length of the held text (for memory estimates, without typing anything)."""
        return sum(map(len, filter(None, self.texts)))

    def __repr__(self) -> str:
        return f"TextImage({dict(self)!r})"

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


@dataclass(frozen=True, slots=True)
class Change:
    """One row change.

    ``key`` holds the key columns' values (before the change, for updates that move the key).
    ``before`` and ``after`` are the row images the source provides; a column absent from
    ``after`` is unchanged (e.g. PostgreSQL unchanged TOAST values) and must not be written.
    ``position`` points *after* this change; ``commit_ts`` and ``txid`` identify its source
    transaction. Full loads feed transforms with ``Op.INSERT`` changes that have no position.
    """

    op: Op
    table: TableId
    key: Mapping[str, Any] = field(default_factory=dict)
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    position: Position | None = None
    commit_ts: datetime | None = None
    txid: int | str | None = None


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A source table's columns changed (seen in the log before the first row of the new shape).

    ``added`` are new columns (portable types); ``dropped`` names removed columns; ``changed``
    names columns whose type, nullability or key membership changed. Readers report what the
    log shows; the task decides: a new nullable column is added to the target, anything else
    stops the table with this change's :attr:`description`.
    """

    table: TableId
    added: tuple[Column, ...] = ()
    dropped: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    description: str = ""
    #: columns renamed (old name, new name); not also in ``added`` / ``dropped``
    renamed: tuple[tuple[str, str], ...] = ()
    #: the new definitions of ``changed`` columns, when the reader knows them
    retyped: tuple[Column, ...] = ()

    @property
    def additive(self) -> bool:
        """Only nullable columns were added: the target can follow without losing anything."""
        return (
            bool(self.added)
            and not self.dropped
            and not self.changed
            and not self.renamed
            and all(c.nullable for c in self.added)
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    """The changes of one source transaction, in commit order.

    ``position`` points after the transaction's commit: resuming from it delivers the next
    transaction. CDC readers yield transactions; a checkpoint is only ever taken between them.
    ``schema_changes`` are column changes the log showed before this transaction's rows; they
    apply before its changes. A transaction may carry no changes (e.g. only a schema change).

    ``changes`` is a tuple, or for a transaction too large for memory a collection that reads
    them back from a spill file (:class:`replikit.pipeline.spill.SpilledChanges`): consumers
    iterate it (as often as they need) and take its ``len``, but do not index it.
    """

    changes: Collection[Change]
    position: Position
    commit_ts: datetime | None = None
    txid: int | str | None = None
    schema_changes: tuple[SchemaChange, ...] = ()
    #: the reader's estimate of the memory the transaction holds (``None``: not estimated;
    #: :func:`replikit.pipeline.spill.transaction_bytes` then estimates it)
    size_hint: int | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.changes)


_T = TypeVar("_T")


def slots_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor of the frozen slots dataclass ``cls`` (:class:`Change`,
    :class:`Transaction`) at about half the cost of its ``__init__``, which sets each field
    through ``object.__setattr__``: it sets the slots directly (the same object: same
    fields, equal, hashable, frozen). Every field must be given, in order; no defaults."""
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if tuple(getattr(cls, "__slots__", ())) != names:  # pragma: no cover - not slots
        return cls
    scope: dict[str, Any] = {f"_set{i}": getattr(cls, n).__set__ for i, n in enumerate(names)}
    scope.update(_new=object.__new__, _cls=cls)
    lines = [f"def make({', '.join(names)}):", "    obj = _new(_cls)"]
    lines += [f"    _set{i}(obj, {n})" for i, n in enumerate(names)]
    lines.append("    return obj")
    exec("\n".join(lines), scope)  # generated from the class's own field names
    return scope["make"]  # type: ignore[no-any-return]
