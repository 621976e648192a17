"""SQL expressions across dialects, with sqlglot: the one place that parses and prints them.

CHECK constraints, defaults, generated columns and view queries are native SQL of the source
dialect. :func:`translate` parses one expression, applies column renames and prints it in the
target dialect, with a :class:`~replikit.schema.report.Verdict`:

- ``exact``: only constructs whose meaning is the same on both sides (columns, literals,
  comparisons, boolean logic, arithmetic, CASE, COALESCE, casts, common aggregates);
- ``review``: it translates, but uses a function whose behaviour may differ (``LENGTH`` counts
  bytes in MySQL and characters in PostgreSQL, string aggregation order, ...), or a function
  the translator does not know (passed through by name, e.g. a user-defined one);
- ``not converted``: it does not parse, or the target has no equivalent; the reason names the
  construct.

The target verifies every translation when the writer creates the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, UnsupportedError

from replikit.schema.report import Verdict

__all__ = [
    "Translation",
    "column_references",
    "create_table_checks",
    "create_table_generated",
    "parse",
    "rename_columns",
    "render",
    "review_notes",
    "sqlglot_dialect",
    "substitute_value",
    "translate",
    "translate_default",
]

_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite", "duckdb": "duckdb"}

#: node types whose meaning does not depend on the dialect
_EXACT_FUNCS: tuple[type[exp.Expression], ...] = (
    exp.Cast,
    exp.TryCast,
    exp.Case,
    exp.If,
    exp.Coalesce,
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
    exp.Abs,
    exp.Upper,
    exp.Lower,
    exp.Concat,
    exp.Substring,
    exp.CurrentTimestamp,
    exp.CurrentDate,
)

#: operators (sqlglot models some as functions): their meaning is the same everywhere
_NEUTRAL = (*_EXACT_FUNCS, exp.Binary, exp.Unary, exp.Predicate)

_NOTES: dict[type[exp.Expr], str] = {
    exp.Length: "LENGTH counts bytes in MySQL and characters elsewhere",
    exp.GroupConcat: "string aggregation without ORDER BY may list items in another order",
    exp.ArrayAgg: "array aggregation without ORDER BY may list items in another order",
    exp.RegexpLike: "regular expression syntax differs between engines",
}


@dataclass(frozen=True, slots=True)
class Translation:
    """An expression in the target dialect (``sql`` is ``None`` when not converted)."""

    sql: str | None
    verdict: Verdict
    reason: str | None = None


def sqlglot_dialect(name: str) -> str | None:
    """sqlglot's name for a replikit dialect name, or ``None`` when it has none."""
    return _DIALECTS.get(name)


def parse(sql: str, dialect: str) -> exp.Expression:
    """Parse ``sql`` of replikit dialect ``dialect``; :class:`ValueError` when it does not."""
    read = sqlglot_dialect(dialect)
    if read is None:
        raise ValueError(f"no SQL translation from {dialect}")
    try:
        tree = sqlglot.parse_one(sql, read=read)
    except (ParseError, SqlglotError) as exc:
        raise ValueError(f"{dialect} SQL does not parse: {_first_line(exc)}") from exc
    if not isinstance(tree, exp.Expression):
        raise ValueError(f"{dialect} SQL is empty")
    return tree


def render(tree: exp.Expression, dialect: str) -> str:
    """Print ``tree`` in replikit dialect ``dialect``, every identifier quoted.

    :class:`ValueError` names the construct the target has no form for.
    """
    write = sqlglot_dialect(dialect)
    if write is None:
        raise ValueError(f"no SQL translation to {dialect}")
    tree = portable(tree)
    try:
        return tree.sql(dialect=write, identify=True, unsupported_level=ErrorLevel.RAISE)
    except (UnsupportedError, SqlglotError) as exc:
        raise ValueError(f"{dialect} has no form for it: {_first_line(exc)}") from exc


_TEXT_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR)


def portable(tree: exp.Expression) -> exp.Expression:
    """``tree`` without spellings other engines lack, meaning kept: ``'x'::text`` is ``'x'``,
    ``OPERATOR(pg_catalog.||)`` is ``||``, SQLite's ``DATETIME('...')`` / ``DATE('...')`` of a
    literal are casts,
    ``a = ANY (ARRAY[...])`` is ``a IN (...)`` (as ``pg_get_constraintdef`` prints an IN
    list), MySQL's ``CAST(x AS CHAR CHARSET utf8mb4)`` is a cast to text."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        moment = _moment_literal(node)
        if moment is not None:
            return moment
        if isinstance(node, exp.Operator) and str(node.args.get("operator")).endswith("||"):
            # PostgreSQL's OPERATOR(pg_catalog.||): concatenation spelled schema-qualified
            return exp.DPipe(this=node.this.copy(), expression=node.expression.copy())
        if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.CHARACTER_SET:
            # MySQL's CAST(x AS CHAR CHARSET cs): text in a character set; targets hold Unicode
            return exp.Cast(this=node.this.copy(), to=exp.DataType.build("text"))
        if (
            isinstance(node, exp.Cast)
            and node.this.is_string
            and node.to.this in _TEXT_TYPES
            and not node.to.expressions
        ):
            literal: exp.Expression = node.this.copy()
            return literal
        if isinstance(node, (exp.EQ, exp.NEQ)):
            quantified = node.expression
            wanted = exp.Any if isinstance(node, exp.EQ) else exp.All
            if isinstance(quantified, wanted):
                items = _array_items(quantified.this)
                if items is not None:
                    within = exp.In(this=node.this.copy(), expressions=items)
                    return within if isinstance(node, exp.EQ) else exp.Not(this=within)
        return node

    # twice: a rewritten node's children are not visited again in the same pass
    return tree.transform(rewrite, copy=True).transform(rewrite, copy=False)


def _moment_literal(node: exp.Expression) -> exp.Expression | None:
    """``DATETIME('2007-01-01 00:00:00')`` / ``DATE('2007-01-01')`` (how SQLite spells a
    timestamp or date literal) as a cast of the literal, which every engine reads alike."""
    if isinstance(node, exp.Anonymous) and node.name.upper() == "DATETIME":
        args, to = node.expressions, "timestamp"
    elif isinstance(node, exp.Date) and not any(
        v for k, v in node.args.items() if k != "this"
    ):
        args, to = [node.this], "date"
    else:
        return None
    if len(args) != 1 or not isinstance(args[0], exp.Literal) or not args[0].is_string:
        return None
    return exp.Cast(this=args[0].copy(), to=exp.DataType.build(to))


def _array_items(node: exp.Expr) -> list[exp.Expression] | None:
    while isinstance(node, (exp.Paren, exp.Cast)):
        node = node.this
    if isinstance(node, exp.Array):
        return [e.copy() for e in node.expressions]
    return None


def substitute_value(check: str, column: str) -> str | None:
    """A PostgreSQL domain CHECK (on ``VALUE``) as a CHECK on ``column`` (PostgreSQL SQL), or
    ``None`` when it does not parse."""
    try:
        tree = parse(check, "postgresql")
    except ValueError:
        return None

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.upper() == "VALUE":
            return exp.column(column, quoted=True)
        return node

    return tree.transform(swap, copy=True).sql(dialect="postgres")


def create_table_checks(sql: str, dialect: str) -> list[tuple[str | None, str]]:
    """The CHECK constraints of a ``CREATE TABLE`` statement: (name or ``None``, expression
    in ``dialect``), column and table constraints alike; none when it does not parse."""
    try:
        tree = parse(sql, dialect)
    except ValueError:
        return []
    write = sqlglot_dialect(dialect)
    out: list[tuple[str | None, str]] = []
    for check in tree.find_all(exp.CheckColumnConstraint, bfs=False):
        named = check.parent if isinstance(check.parent, exp.Constraint) else None
        name = named.name if named is not None else None
        out.append((name or None, check.this.sql(dialect=write)))
    return out


def create_table_generated(sql: str, dialect: str) -> dict[str, str]:
    """The generated columns of a ``CREATE TABLE`` statement: lower-cased column name ->
    generation expression in ``dialect``; none when it does not parse."""
    try:
        tree = parse(sql, dialect)
    except ValueError:
        return {}
    write = sqlglot_dialect(dialect)
    out: dict[str, str] = {}
    for column in tree.find_all(exp.ColumnDef):
        for constraint in column.constraints:
            kind = constraint.args.get("kind")
            if isinstance(kind, exp.ComputedColumnConstraint):
                out[column.name.lower()] = kind.this.unnest().sql(dialect=write)
    return out


def column_references(sql: str, dialect: str) -> set[str]:
    """The unqualified column names an expression refers to (none when it does not parse)."""
    try:
        tree = parse(sql, dialect)
    except ValueError:
        return set()
    return {c.name for c in tree.find_all(exp.Column) if not c.table}


def rename_columns(tree: exp.Expression, columns: Mapping[str, str]) -> exp.Expression:
    """``tree`` with unqualified column references renamed (source name -> target name)."""
    if not columns:
        return tree

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in columns:
            node.set("this", exp.to_identifier(columns[node.name], quoted=True))
        return node

    return tree.transform(swap, copy=True)


def review_notes(tree: exp.Expression) -> list[str]:
    """What a person should check in a translated ``tree`` (empty: it translates exactly)."""
    notes: list[str] = []
    unknown: list[str] = []
    other: list[str] = []
    for node in tree.walk():
        if isinstance(node, exp.Anonymous):
            unknown.append(str(node.name).lower())
        elif type(node) in _NOTES:
            notes.append(_NOTES[type(node)])
        elif isinstance(node, exp.Func) and not isinstance(node, _NEUTRAL):
            other.append(node.key.lower())
    if unknown:
        notes.append(f"passed through untranslated: {', '.join(sorted(set(unknown)))}()")
    if other:
        notes.append(f"check the target's semantics of: {', '.join(sorted(set(other)))}")
    return list(dict.fromkeys(notes))


def translate(
    sql: str, *, source: str, target: str, columns: Mapping[str, str] | None = None
) -> Translation:
    """``sql`` (an expression of dialect ``source``) in dialect ``target``, with a verdict.

    ``columns`` renames column references (source name -> target name).
    """
    try:
        tree = portable(rename_columns(parse(sql, source), columns or {}))
        _refuse_misreadings(tree, source)
        out = render(tree, target)
    except ValueError as exc:
        return Translation(None, Verdict.NOT_CONVERTED, str(exc))
    notes = review_notes(tree)
    return Translation(out, Verdict.REVIEW if notes else Verdict.EXACT, "; ".join(notes) or None)


def _refuse_misreadings(tree: exp.Expression, dialect: str) -> None:
    """:class:`ValueError` for predicates sqlglot reads as something else: PostgreSQL's
    ``x IS DOCUMENT`` / ``IS NORMALIZED`` come out as ``x IS "DOCUMENT"`` (a column)."""
    for node in tree.find_all(exp.Is):
        if isinstance(node.expression, exp.Column):
            raise ValueError(
                f"{dialect} predicate IS {node.expression.name.upper()} is not understood"
            )


#: defaults that generate a new UUID, per target dialect (SQLite has no UUID function)
_UUID = {"postgresql": "gen_random_uuid()", "mysql": "(uuid())"}


def translate_default(sql: str, *, source: str, target: str) -> Translation:
    """A column default expression in ``target``'s dialect.

    Literal and current-time defaults are the dialects' own business
    (:meth:`~replikit.schema.convert.Dialect.convert_default`); this handles the rest: UUID
    generators (``uuid()`` <-> ``gen_random_uuid()``) and other expressions sqlglot can print.
    Sequences (``nextval``) are not converted here: identity columns carry them.
    """
    try:
        tree = parse(sql, source)
    except ValueError as exc:
        return Translation(None, Verdict.NOT_CONVERTED, str(exc))
    inner = tree.unnest()
    if isinstance(inner, exp.Uuid) or (
        isinstance(inner, exp.Anonymous) and inner.name.lower() == "uuid_generate_v4"
    ):
        uuid = _UUID.get(target)
        if uuid is None:
            return Translation(None, Verdict.NOT_CONVERTED, f"{target} has no UUID function")
        return Translation(uuid, Verdict.EXACT)
    if any(isinstance(n, exp.Anonymous) and n.name.lower() == "nextval" for n in tree.walk()):
        return Translation(
            None,
            Verdict.NOT_CONVERTED,
            "a sequence default (nextval) of a sequence the column does not own: values are "
            "copied, new rows get no key from the target",
        )
    now = _now_literal(inner)
    if now is not None:
        tree = now
    elif any(not isinstance(n, _DEFAULT_NODES) for n in tree.walk()):
        return Translation(
            None,
            Verdict.NOT_CONVERTED,
            "an expression default beyond literals, arithmetic and the current time",
        )
    try:
        out = render(tree, target)
    except ValueError as exc:
        return Translation(None, Verdict.NOT_CONVERTED, str(exc))
    text = f"({out})" if target == "mysql" else out  # MySQL: expression defaults in parentheses
    return Translation(text, Verdict.REVIEW, f"expression default translated as {text}")


#: what a translated default may consist of (anything else could make the target refuse the
#: table, since defaults are part of CREATE TABLE)
_DEFAULT_NODES = (
    exp.Literal,
    exp.Paren,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Boolean,
    exp.Null,
    exp.CurrentDate,
    exp.CurrentTimestamp,
    exp.CurrentTime,
)


def _now_literal(node: exp.Expr) -> exp.Expression | None:
    """PostgreSQL's ``'now'::date`` / ``('now'::text)::timestamp``: the current date or time."""
    outer: exp.Expr = node
    inner: exp.Expr = node
    while isinstance(inner, exp.Cast):
        inner = inner.this.unnest()
    if outer is inner or not (inner.is_string and inner.name.lower() in ("now", "today")):
        return None
    assert isinstance(outer, exp.Cast)
    if outer.to.is_type(exp.DataType.Type.DATE):
        return exp.CurrentDate()
    return exp.CurrentTimestamp()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
