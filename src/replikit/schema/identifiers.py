"""Target names of every planned object, and what the plan cannot name faithfully.

The planner gives every table and column the name the target will store
(:func:`~replikit.schema.convert.plan_table` applies the dialect's ``target_name``). Here:

* :func:`name_findings`: names the target cannot create at all, and two source objects that
  land on one target name (schemas, tables of one schema, columns of one table, a PostgreSQL
  enum type and a table) are ``unsupported`` findings naming both objects, with the mapping
  that fixes them (``Mappings().rename_table(...)``, ``rename_column``, ``rename_schema``).
  Their rows would otherwise be merged into one table, or every table's DDL would fail.
* :func:`object_names`: the names of the objects writers name themselves (indexes, primary
  and unique keys, identity sequences, foreign keys and checks), unique in the target's
  namespaces by construction. Writers create exactly these names and ``plan()`` shows them, so
  a taken index name is renamed (and listed in the plan's problems), never a failure.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from replikit.schema.convert import Dialect, TablePlan
from replikit.schema.findings import Finding
from replikit.schema.model import TableId
from replikit.schema.names import NameKind
from replikit.schema.types import Kind, Type

__all__ = ["ObjectNames", "name_findings", "object_names", "suggest_name"]


# -- findings -------------------------------------------------------------------------------
def name_findings(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    """Unsupported findings for names ``dialect`` cannot create and for source objects that
    would land on one target name."""
    out = _impossible(plans, dialect)
    out += _schema_collisions(plans, dialect)
    out += _table_collisions(plans, dialect)
    out += _column_collisions(plans, dialect)
    out += _type_collisions(plans, dialect)
    return out


def _schema_key(dialect: Dialect, schema: str | None) -> str | None:
    return None if schema is None else dialect.name_key(schema, "schema")


def _table_key(dialect: Dialect, tid: TableId) -> tuple[str | None, str]:
    return _schema_key(dialect, tid.schema), dialect.name_key(tid.name, "table")


def _impossible(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    """Names the target refuses to create (empty, too long where it does not cut, ...)."""
    out: list[Finding] = []
    taken = _taken_tables(plans, dialect)
    schemas: set[str] = set()
    for p in plans:
        src, tid = str(p.source.id), p.target_id
        if tid.schema is not None and tid.schema not in schemas:
            schemas.add(tid.schema)
            if why := dialect.name_problem(tid.schema, "schema"):
                new = suggest_name(tid.schema, dialect, "schema", ())
                fix = _fix_schema(p.source.id.schema or tid.schema, new)
                out.append(_finding(src, f"target schema {tid.schema!r}: {why}", fix))
        if why := dialect.name_problem(tid.name, "table"):
            new = suggest_name(tid.name, dialect, "table", taken[_schema_key(dialect, tid.schema)])
            out.append(_finding(src, f"target table name {tid.name!r}: {why}", _fix_table(p, new)))
        out += _impossible_columns(p, dialect)
    return out


def _impossible_columns(p: TablePlan, dialect: Dialect) -> list[Finding]:
    out: list[Finding] = []
    columns = {dialect.name_key(c.name, "column") for c in p.columns}
    for c in p.columns:
        if why := dialect.name_problem(c.name, "column"):
            new = suggest_name(c.name, dialect, "column", columns)
            columns.add(dialect.name_key(new, "column"))
            out.append(
                _finding(
                    str(p.source.id),
                    f"column {c.source.name!r}: target column name {c.name!r}: {why}",
                    _fix_column(p, c.source.name, new),
                    column=c.source.name,
                )
            )
    return out


def _schema_collisions(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    """Distinct schema names (as mapped) that the target's rules turn into one schema."""
    groups: dict[str, dict[str, TablePlan]] = defaultdict(dict)
    for p in plans:
        if p.target_id.schema is None:
            continue
        requested = (p.requested_id or p.target_id).schema or ""
        key = dialect.name_key(p.target_id.schema, "schema")
        groups[key].setdefault(requested, p)
    out: list[Finding] = []
    for members in groups.values():
        first, *others = members.values()
        for p in others:
            a, b = first.source.id.schema or "", p.source.id.schema or ""
            new = suggest_name(p.target_id.schema or "", dialect, "schema", set(groups))
            out.append(
                _finding(
                    str(p.source.id),
                    f"source schemas {a!r} and {b!r} land on one target schema "
                    f"{first.target_id.schema!r} ({_why(dialect, 'schema')}); their tables "
                    "would mix in it",
                    _fix_schema(b, new),
                )
            )
    return out


def _table_collisions(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    """Two plans whose target tables are one table: their rows would merge."""
    seen: dict[tuple[str | None, str], TablePlan] = {}
    taken = _taken_tables(plans, dialect)
    out: list[Finding] = []
    for p in plans:
        key = _table_key(dialect, p.target_id)
        first = seen.setdefault(key, p)
        if first is p:
            continue
        new = suggest_name(p.target_id.name, dialect, "table", taken[key[0]])
        taken[key[0]].add(dialect.name_key(new, "table"))
        out.append(
            _finding(
                str(p.source.id),
                f"source tables {str(first.source.id)!r} and {str(p.source.id)!r} both land on "
                f"target table {str(p.target_id)!r} ({_why_pair(dialect, first, p)}); their "
                "rows would be merged into one table",
                _fix_table(p, new),
            )
        )
    return out


def _column_collisions(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    out: list[Finding] = []
    for p in plans:
        seen: dict[str, str] = {}
        taken = {dialect.name_key(c.name, "column") for c in p.columns}
        for c in p.columns:
            key = dialect.name_key(c.name, "column")
            first = seen.setdefault(key, c.source.name)
            if first == c.source.name:
                continue
            new = suggest_name(c.name, dialect, "column", taken)
            taken.add(dialect.name_key(new, "column"))
            out.append(
                _finding(
                    str(p.source.id),
                    f"columns {first!r} and {c.source.name!r} both land on target column "
                    f"{c.name!r} of {str(p.target_id)!r} ({_why(dialect, 'column')}); the "
                    "table could not be created",
                    _fix_column(p, c.source.name, new),
                    column=c.source.name,
                )
            )
    return out


def _type_collisions(plans: Sequence[TablePlan], dialect: Dialect) -> list[Finding]:
    """PostgreSQL gives each table a row type of its name: an enum type the plan creates
    must not share its schema and name with a planned table."""
    if dialect.name != "postgresql":
        return []
    types: dict[tuple[str | None, str], str] = {}
    for p in plans:
        if p.source_dialect != dialect.name:
            continue  # enums from other dialects become text with a CHECK
        for c in p.columns:
            spelled = _enum_spelling(c.target.type, c.target.sql)
            if spelled is not None:
                schema, name = split_type_name(spelled)
                types.setdefault(_table_key(dialect, TableId(schema or "public", name)), spelled)
    out: list[Finding] = []
    taken = _taken_tables(plans, dialect)
    for p in plans:
        key = _table_key(dialect, p.target_id)
        if key in types:
            new = suggest_name(p.target_id.name, dialect, "table", taken[key[0]])
            out.append(
                _finding(
                    str(p.source.id),
                    f"target table {str(p.target_id)!r} and the enum type {types[key]} the plan "
                    "creates share a name, and PostgreSQL gives every table a type of its name",
                    _fix_table(p, new),
                )
            )
    return out


def _enum_spelling(t: Type | None, sql: str) -> str | None:
    while t is not None and t.kind is Kind.ARRAY:
        t = t.item
    return sql.rstrip("[]") if t is not None and t.kind is Kind.ENUM else None


def split_type_name(spelled: str) -> tuple[str | None, str]:
    """``(schema, name)`` of a PostgreSQL type spelling (``mood``, ``shop."My Mood"``)."""
    parts: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(spelled):
        ch = spelled[i]
        if quoted and ch == '"' and spelled[i + 1 : i + 2] == '"':
            current, i = current + '"', i + 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return (parts[-2] if len(parts) > 1 else None), parts[-1]


def _why(dialect: Dialect, kind: NameKind) -> str:
    rules = dialect.identifiers
    if rules.fold("Aa") != "Aa":
        return f"{rules.dialect} compares {kind} names without case"
    if rules.truncates:
        return f"{rules.dialect} keeps only the first {rules.max_length} {rules.length_unit}"
    return "both are mapped to that name"


def _why_pair(dialect: Dialect, a: TablePlan, b: TablePlan) -> str:
    if (a.requested_id or a.target_id) == (b.requested_id or b.target_id):
        return "both are mapped to that name"
    if (a.requested_id or a.target_id).name != (b.requested_id or b.target_id).name:
        return _why(dialect, "table")
    return "their schemas are one schema in the target"


def _taken_tables(plans: Sequence[TablePlan], dialect: Dialect) -> dict[str | None, set[str]]:
    taken: dict[str | None, set[str]] = defaultdict(set)
    for p in plans:
        schema, name = _table_key(dialect, p.target_id)
        taken[schema].add(name)
    return taken


def suggest_name(name: str, dialect: Dialect, kind: NameKind, taken: Iterable[str]) -> str:
    """A name close to ``name`` that ``dialect`` can create and whose key is not in ``taken``
    (keys, as ``dialect.name_key`` makes them); used in the fixes findings suggest."""
    keys = set(taken)

    def ok(candidate: str) -> bool:
        return dialect.name_key(candidate, kind) not in keys and not dialect.name_problem(
            candidate, kind
        )

    base = _sanitized(name, dialect, kind)
    if ok(base):
        return base
    limit = dialect.identifiers.max_length
    for n in range(2, 10_000):
        suffix = f"_{n}"
        cut = dialect.identifiers.cut(base, None if limit is None else limit - len(suffix))
        if ok(cut + suffix):
            return cut + suffix
    raise AssertionError(f"no free name near {name!r}")  # 10,000 taken names: not reached


def _sanitized(name: str, dialect: Dialect, kind: NameKind) -> str:
    """``name`` with what ``dialect`` refuses taken out: characters it cannot hold become
    ``_``, trailing spaces go, a reserved prefix gets ``t_`` in front, a name too long is cut."""
    base = "".join(c if dialect.name_problem(f"x{c}x", kind) is None else "_" for c in name)
    base = dialect.identifiers.cut(base.rstrip() or "unnamed")
    if dialect.name_problem(base, kind) and not dialect.name_problem("t_" + base, kind):
        base = "t_" + base
    while dialect.name_problem(base, kind) and len(base) > 1:
        base = base[:-1]
    return base


def _finding(table: str, reason: str, fix: str, *, column: str = "") -> Finding:
    return Finding.about(table, reason, kind="name", fix=fix, column=column)


def _cli(flag: str, arg: str) -> str:
    return f" (command line: {flag} {shlex.quote(arg)})"


def _fix_table(plan: TablePlan, new: str) -> str:
    src = str(plan.source.id)
    cli = "" if "=" in src else _cli("--rename-table", f"{src}={new}")
    return f"rename the table: Mappings().rename_table({src!r}, {new!r}){cli}"


def _fix_column(plan: TablePlan, column: str, new: str) -> str:
    src = str(plan.source.id)
    ok = "=" not in src + column and "." not in column
    cli = _cli("--rename-column", f"{src}.{column}={new}") if ok else ""
    return f"rename the column: Mappings().rename_column({src!r}, {column!r}, {new!r}){cli}"


def _fix_schema(schema: str, new: str) -> str:
    cli = "" if "=" in schema else _cli("--rename-schema", f"{schema}={new}")
    return f"rename the schema: Mappings().rename_schema({schema!r}, {new!r}){cli}"


# -- names the writers choose -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObjectNames:
    """The names writers give the objects they name themselves, per target table.

    ``indexes`` / ``unique`` / ``foreign_keys`` / ``checks`` follow the order of the plan's
    ``target_schema`` lists (``None``: let the server choose, for unnamed foreign keys and
    checks); ``primary_key`` and ``sequences`` (per identity column) use the target's usual
    spelling (``<table>_pkey``, ``<table>_<column>_seq``). ``renamed`` says which source names
    could not be kept, for the plan's problems.
    """

    indexes: dict[TableId, tuple[str, ...]] = field(default_factory=dict)
    unique: dict[TableId, tuple[str, ...]] = field(default_factory=dict)
    primary_key: dict[TableId, str] = field(default_factory=dict)
    sequences: dict[tuple[TableId, str], str] = field(default_factory=dict)
    foreign_keys: dict[TableId, tuple[str | None, ...]] = field(default_factory=dict)
    checks: dict[TableId, tuple[str | None, ...]] = field(default_factory=dict)
    renamed: tuple[str, ...] = ()


class _Namespace:
    """Names taken in one target namespace, by key."""

    def __init__(self, dialect: Dialect, kind: NameKind, taken: Iterable[str] = ()) -> None:
        self.dialect, self.kind = dialect, kind
        self.keys = {dialect.name_key(n, kind) for n in taken}
        self.keys |= dialect.identifiers.reserved_index_names if kind == "index" else set()

    def free(self, name: str) -> bool:
        d = self.dialect
        return d.name_key(name, self.kind) not in self.keys and not d.name_problem(name, self.kind)

    def claim(self, wanted: str, fallback: str, suffix: str = "") -> str:
        """``wanted + suffix``, else ``fallback + suffix``, else ``fallback + suffix + _2``,
        ``_3``... (bases cut so that the name fits the target's limit with its suffix)."""
        rules = self.dialect.identifiers
        limit = rules.max_length

        def fit(base: str, tail: str) -> str:
            return rules.cut(base, None if limit is None else limit - rules.length(tail)) + tail

        for candidate in (fit(wanted, suffix), fit(fallback, suffix)):
            if self.free(candidate):
                return self._take(candidate)
        base = _sanitized(fallback, self.dialect, self.kind)
        for n in range(2, 100_000):
            candidate = fit(base, f"{suffix}_{n}")
            if self.free(candidate):
                return self._take(candidate)
        raise AssertionError(f"no free name near {wanted!r}")  # not reached

    def _take(self, name: str) -> str:
        self.keys.add(self.dialect.name_key(name, self.kind))
        return name


def object_names(plans: Sequence[TablePlan], dialect: Dialect) -> ObjectNames:
    """Names for the indexes, keys, sequences and constraints of ``plans`` in ``dialect``:
    source names where the target's namespaces allow, otherwise the table's name in front,
    then a ``_2``, ``_3``... suffix. User-chosen (index) names are placed before generated
    ones, so a generated name never displaces a source name."""
    scoped = dialect.identifiers.index_scope == "schema"
    by_schema: dict[str | None, _Namespace] = {}
    for p in plans:
        schema = _schema_key(dialect, p.target_id.schema)
        if schema not in by_schema:
            tables = [q.target_id.name for q in plans if q.target_id.schema == p.target_id.schema]
            by_schema[schema] = _Namespace(dialect, "index", tables if scoped else ())
    spaces: dict[TableId, _Namespace] = {
        p.target_id: by_schema[_schema_key(dialect, p.target_id.schema)]
        if scoped
        else _Namespace(dialect, "index")
        for p in plans
    }
    names = ObjectNames()
    renamed: list[str] = []
    for p in plans:
        space, table = spaces[p.target_id], p.target_id.name
        chosen = []
        for index in p.target_schema.indexes:
            name = space.claim(index.name, f"{table}_{index.name}")
            if name != dialect.target_name(index.name, "index"):
                renamed.append(
                    f"{p.source.id}: index {index.name!r} is created as {name!r} (the name is "
                    f"taken or not allowed in {dialect.identifiers.dialect})"
                )
            chosen.append(name)
        names.indexes[p.target_id] = tuple(chosen)
    for p in plans:
        _generated(p, spaces[p.target_id], names, dialect)
    return replace(names, renamed=tuple(renamed))


def _generated(p: TablePlan, space: _Namespace, names: ObjectNames, dialect: Dialect) -> None:
    """Key, sequence and constraint names of one table (after every source index name)."""
    table, tid = p.target_id.name, p.target_id
    names.primary_key[tid] = space.claim(table, table, "_pkey")
    unique = [f"{table}_{'_'.join(u)}" for u in p.target_schema.unique]
    names.unique[tid] = tuple(space.claim(u, u, "_key") for u in unique)
    for c in p.columns:
        if c.source.identity is not None and c.target.type.kind is Kind.INT:
            base = f"{table}_{c.name}"
            names.sequences[(tid, c.name)] = space.claim(base, base, "_seq")
    # foreign keys and checks: one namespace per table, with its key constraints
    own = _Namespace(dialect, "constraint", [names.primary_key[tid], *names.unique[tid]])
    names.foreign_keys[tid] = tuple(
        None if fk.name is None else own.claim(fk.name, f"{table}_{fk.name}")
        for fk in p.target_schema.foreign_keys
    )
    names.checks[tid] = tuple(
        None if ck.name is None else own.claim(ck.name, f"{table}_{ck.name}")
        for ck in p.target_schema.checks
    )
