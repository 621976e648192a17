# ruff: noqa: S608 -- every identifier goes through DIALECT.quote; values are always bound
"""Per-table apply statements and value conversion, shared by the two apply modes.

Changes name columns by their planned *source* names; :class:`TableApply` maps them to target
columns, adapts values with ``ColumnPlan.target.adapt`` (as the full-load writer does) and
builds the statements. Parameters are bound as **text of unknown type**, produced by the same
psycopg text dumpers that the full-load writer's text ``COPY`` uses: the server then parses
each value with the target column's own input function, exactly as ``COPY`` does. (Binding
typed values would not land identically: a ``float`` bound to a ``numeric`` column goes through
the server's float8 -> numeric cast, which keeps 15 digits.)

Identifiers are quoted by the dialect; statements executed with parameters additionally double
``%`` (psycopg's placeholder marker) inside them.

Pass-through: a :class:`~replikit.changes.TextImage` from a PostgreSQL source holds each value
as the source server's output text (replikit's session settings: UTC, ISO dates, ISO 8601
intervals, exact floats). For a column whose target type is the source's own type, unadapted
(:func:`passes`), that text is exactly what the full-load path would send, so
:meth:`Shape.row` hands it on without typing it into a Python value and rendering it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from replikit.endpoints.base import require

require("psycopg", package="psycopg", extra="postgres", purpose="The PostgreSQL endpoint")

from psycopg.adapt import PyFormat, Transformer  # noqa: E402

from replikit.changes import ImageLayout, TextImage  # noqa: E402
from replikit.endpoints.postgres import _ddl  # noqa: E402
from replikit.endpoints.postgres._connect import Connection  # noqa: E402
from replikit.endpoints.postgres._dialect import DIALECT  # noqa: E402
from replikit.errors import ConfigError, SchemaError  # noqa: E402
from replikit.pipeline.apply_support import Image, Key, ShapeBase, TableColumns  # noqa: E402
from replikit.pipeline.apply_support import percent_safe as _p  # noqa: E402
from replikit.schema.convert import ColumnPlan, TablePlan  # noqa: E402

__all__ = ["TEXT_FORMAT", "Key", "Shape", "TableApply", "TextParams", "check_key", "passes"]

q = DIALECT.quote
#: the text form of :class:`TextImage` values this writer passes on (see the module docs)
TEXT_FORMAT: Final = "postgresql"
_LAYOUTS_KEPT = 64  # text layouts remembered per shape (a new one per Relation message)


def passes(plan: ColumnPlan) -> bool:
    """Whether a PostgreSQL source's text of this column goes to the target unchanged: the
    target type is the source's own (same spelling) and no adapter applies."""
    native = plan.source.type.native
    return (
        plan.target.adapt is None
        and bool(native)
        and plan.target.sql == native
        and plan.generated is None
    )


class TextParams:
    """Canonical values -> the text ``COPY`` would send, as parameters of unknown type."""

    def __init__(self, conn: Connection) -> None:
        self._tx = Transformer(conn)
        self._encoding = conn.info.encoding
        self._formats: dict[int, list[PyFormat]] = {}

    def __call__(self, values: Sequence[Any]) -> list[str | None]:
        n = len(values)
        formats = self._formats.get(n)
        if formats is None:
            formats = self._formats[n] = [PyFormat.TEXT] * n
        enc = self._encoding
        return [None if b is None else str(b, enc) for b in self._tx.dump_sequence(values, formats)]


class Shape(ShapeBase):
    """One column set of a table (source names, in table order) and its statements."""

    __slots__ = ("_layouts", "passes")

    def __init__(self, source: tuple[str, ...], plans: Sequence[ColumnPlan]) -> None:
        super().__init__(source, plans)
        #: per column: a PostgreSQL source's text passes on (when the plan's source is one)
        self.passes = tuple(passes(p) for p in plans)
        self._layouts: dict[ImageLayout, tuple[tuple[int, ...], bool] | None] = {}

    def _text_plan(self, layout: ImageLayout) -> tuple[tuple[int, ...], bool] | None:
        """Per shape column, its index in ``layout`` when its text passes, else -1; and
        whether all do. ``None``: nothing passes (another text form)."""
        found = self._layouts.get(layout, False)
        if found is not False:
            return found  # type: ignore[return-value]
        plan: tuple[tuple[int, ...], bool] | None = None
        if layout.text_format == TEXT_FORMAT:
            where = layout.index
            at = tuple(
                where[c] if ok and c in where and where[c] not in layout.opaque else -1
                for c, ok in zip(self.source, self.passes, strict=True)
            )
            plan = (at, -1 not in at) if any(i >= 0 for i in at) else None
        if len(self._layouts) >= _LAYOUTS_KEPT:
            self._layouts.clear()
        self._layouts[layout] = plan
        return plan

    def row(self, image: Image) -> list[Any]:
        """The image's values in shape order, adapted for the target (text that passes
        through as it is, see the module docs)."""
        if image.__class__ is TextImage:
            text_plan = self._text_plan(image.layout)
            if text_plan is not None:
                at, every = text_plan
                texts = image.texts
                if every:
                    return [texts[i] for i in at]
                values = [
                    texts[i] if i >= 0 else image[c] for i, c in zip(at, self.source, strict=True)
                ]
                for i, adapt in self.adapters:
                    if values[i] is not None:
                        values[i] = adapt(values[i])
                return values
        values = [image[c] for c in self.source]
        for i, adapt in self.adapters:
            if values[i] is not None:
                values[i] = adapt(values[i])
        return values

    def rows(self, images: Iterable[Image]) -> Iterator[Sequence[Any]]:
        """:meth:`row` of each image; the text of an image that passes whole, column for
        column in the shape's order (the common case), comes out as it is, without a copy."""
        layout: Any = None
        whole = False
        for image in images:
            if image.__class__ is TextImage:
                if image.layout is not layout:
                    layout = image.layout
                    plan = self._text_plan(layout)
                    whole = plan is not None and plan[0] == tuple(range(len(layout.names)))
                if whole:
                    yield image.texts
                    continue
            yield self.row(image)

    def values(self, values: Sequence[Any]) -> list[Any]:
        """Values already in shape order, adapted for the target."""
        out = list(values)
        for i, adapt in self.adapters:
            if out[i] is not None:
                out[i] = adapt(out[i])
        return out


class TableApply(TableColumns[Shape]):
    """What applying changes to one planned table needs: key, shapes and statements."""

    shape_class = Shape

    def __init__(self, plan: TablePlan) -> None:
        super().__init__(plan)
        self.name = _ddl.table_name(plan.target_id)
        self.table_sql = _p(self.name)

    def quote(self, name: str) -> str:
        """A PostgreSQL identifier."""
        return q(name)

    # -- statements executed with parameters ----------------------------------------------
    def upsert_sql(self, shape: Shape) -> str:
        """``INSERT ... ON CONFLICT (key) DO UPDATE`` of the shape's columns."""
        text = shape.sql.get("upsert")
        if text is None:
            cols = ", ".join(_p(q(n)) for n in shape.names)
            marks = ", ".join(["%s"] * len(shape.names))
            text = shape.sql["upsert"] = (
                f"INSERT INTO {_p(self.name)} ({cols}) OVERRIDING SYSTEM VALUE "
                f"VALUES ({marks}) {self._conflict(shape, _p)}"
            )
        return text

    def _conflict(self, shape: Shape, esc: Any = lambda s: s) -> str:
        keys = ", ".join(esc(q(k)) for k in self.target_key)
        rest = [n for n in shape.names if n not in self.target_key]
        if not rest:
            return f"ON CONFLICT ({keys}) DO NOTHING"
        sets = ", ".join(f"{esc(q(n))} = EXCLUDED.{esc(q(n))}" for n in rest)
        return f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"

    def delete_sql(self) -> str:
        """``DELETE ... WHERE key = %s``."""
        text = self.key_shape.sql.get("delete")
        if text is None:
            text = self.key_shape.sql["delete"] = (
                f"DELETE FROM {_p(self.name)} WHERE {self.key_match()}"
            )
        return text

    def evict_sql(self) -> str:
        """Delete the row at a new key while the old key still exists (key-moving update).

        Parameters: the new key, then the old key. A source key is unique, so a row already
        at the new key is one a replay re-created ahead of time; the move replaces it, as the
        source sequence did.
        """
        text = self.key_shape.sql.get("evict")
        if text is None:
            text = self.key_shape.sql["evict"] = (
                f"DELETE FROM {_p(self.name)} WHERE {self.key_match()} AND EXISTS "
                f"(SELECT 1 FROM {_p(self.name)} rk_old WHERE {self.key_match('rk_old.')})"
            )
        return text

    # -- bulk merge statements (no parameters) ---------------------------------------------
    def merge_upsert(self, shape: Shape, stage: str) -> str:
        """Upsert every staged row."""
        cols = ", ".join(q(n) for n in shape.names)
        return (
            f"INSERT INTO {self.name} ({cols}) OVERRIDING SYSTEM VALUE "
            f"SELECT {cols} FROM {stage} {self._conflict(shape)}"
        )

    def merge_delete(self, stage: str) -> str:
        """Delete every row whose key is staged."""
        on = " AND ".join(f"rk_t.{q(k)} = rk_s.{q(k)}" for k in self.target_key)
        return f"DELETE FROM {self.name} AS rk_t USING {stage} AS rk_s WHERE {on}"

    def merge_update(self, shape: Shape, stage: str) -> str:
        """Set the staged non-key columns on the rows whose key is staged."""
        on = " AND ".join(f"rk_t.{q(k)} = rk_s.{q(k)}" for k in self.target_key)
        sets = ", ".join(f"{q(n)} = rk_s.{q(n)}" for n in shape.names if n not in self.target_key)
        return f"UPDATE {self.name} AS rk_t SET {sets} FROM {stage} AS rk_s WHERE {on}"


_UNIQUE_KEYS = """
SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY u(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n
             WHERE u.o <= i.indnkeyatts)
FROM pg_index i
WHERE i.indrelid = %s AND i.indisunique AND i.indimmediate AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL
"""


def check_key(conn: Connection, table: TableApply) -> None:
    """The target table exists and has a unique index on exactly the apply key."""
    row = conn.execute("SELECT to_regclass(%s)::oid", (table.name,)).fetchone()
    if row is None or row[0] is None:
        raise SchemaError(
            f"target table {table.id} does not exist; run the full load (or prepare) first"
        )
    wanted = set(table.target_key)
    if any(set(r[0]) == wanted for r in conn.execute(_UNIQUE_KEYS, (row[0],))):
        return
    raise ConfigError(
        f"target table {table.id} has no primary key or unique index on "
        f"({', '.join(table.target_key)}); CDC apply upserts by that key. Create the key "
        "(the full-load writer adds the primary key and unique keys in finish, after the load)"
    )
