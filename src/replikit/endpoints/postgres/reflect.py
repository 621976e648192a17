"""Reflect a PostgreSQL database into the portable :class:`~replikit.schema.model.Catalog`.

Everything is read from the system catalogs in one read-only REPEATABLE READ transaction, with
bound parameters. Types resolve through ``pg_type``: enums keep their labels, domains resolve to
their base type (their constraints are reported in ``Catalog.problems``, not carried), arrays
keep their item type, and ranges, composites and other types without a portable meaning become
``other``. Index keys that are expressions are kept as native SQL: when an index has any, its
``expressions`` hold every key part in order and ``columns`` the plain columns among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from replikit.endpoints._reserved import CONTROL_TABLES
from replikit.endpoints.postgres._connect import Connection
from replikit.endpoints.postgres._dialect import DIALECT
from replikit.mapping import Selection
from replikit.schema.model import (
    Catalog,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Routine,
    TableDraft,
    TableId,
    View,
)
from replikit.schema.types import Type

__all__ = ["reflect"]

_RELATIONS = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint,
       pg_table_size(c.oid), obj_description(c.oid, 'pg_class'),
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT (n.nspname = 'replikit' AND c.relname = ANY(%s))
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
ORDER BY n.nspname, c.relname
"""
_ROUTINES = """
SELECT n.nspname, p.proname, p.prokind, l.lanname,
       CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_TRIGGERS = """
SELECT c.oid, t.tgname, l.lanname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_language l ON l.oid = p.prolang
WHERE NOT t.tgisinternal AND t.tgrelid = ANY(%s)
ORDER BY 1, 2
"""
_KINDS = {"f": "function", "p": "procedure", "a": "function", "w": "function"}
_COLUMNS = """
SELECT a.attrelid, a.attname, a.attnum, a.atttypid, a.atttypmod, a.attndims, a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, co.collname,
       col_description(a.attrelid, a.attnum),
       CASE WHEN a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%'
            THEN coalesce(
                pg_get_serial_sequence(a.attrelid::regclass::text, a.attname),
                -- a sequence the column does not own (DEFAULT nextval('s') written by hand,
                -- as in Sakila): the one its default draws from
                (SELECT quote_ident(sn.nspname) || '.' || quote_ident(sc.relname)
                 FROM pg_depend dep
                 JOIN pg_class sc ON sc.oid = dep.refobjid AND sc.relkind = 'S'
                 JOIN pg_namespace sn ON sn.oid = sc.relnamespace
                 WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                   AND dep.refclassid = 'pg_class'::regclass LIMIT 1)) END
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
_TYPE = """
SELECT t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typtypmod, format_type(t.oid, %s),
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder),
       ARRAY(SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k WHERE k.contypid = t.oid)
FROM pg_type t WHERE t.oid = %s
"""
_SEQUENCE = """
SELECT s.last_value, s.start_value, s.increment_by FROM pg_sequences s
WHERE s.schemaname = %s AND s.sequencename = %s
"""
_CONSTRAINTS = """
SELECT k.conrelid, k.conname, k.contype,
       ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       rn.nspname, r.relname,
       ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i),
       k.confdeltype, k.confupdtype, pg_get_constraintdef(k.oid, true)
FROM pg_constraint k
LEFT JOIN pg_class r ON r.oid = k.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE k.conrelid = ANY(%s) AND k.contype IN ('p', 'u', 'f', 'c')
ORDER BY k.conrelid, k.contype, k.conname
"""
_INDEXES = """
SELECT i.indrelid, ic.relname, i.indisunique, am.amname, pg_get_expr(i.indpred, i.indrelid),
       ARRAY(SELECT i.indkey[k - 1] FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) k ORDER BY k)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = ANY(%s) AND NOT i.indisprimary AND NOT EXISTS (
    SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
ORDER BY i.indrelid, ic.relname
"""
_ACTIONS = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


#: a column type: portable type, notes on what is not carried, (domain, CHECK) pairs
_Resolved = tuple[Type, tuple[str, ...], tuple[tuple[str, str], ...]]


@dataclass
class _Table(TableDraft):
    """A table being assembled from several catalog queries."""

    oid: int
    attnames: dict[int, str] = field(default_factory=dict)


class _Types:
    """Resolves type oids (with typmods) to portable types, caching per reflection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cache: dict[tuple[int, int, int], _Resolved] = {}

    def resolve(self, oid: int, typmod: int, dims: int) -> _Resolved:
        """(portable type, what is not carried, domain CHECKs) for one column type."""
        key = (oid, typmod, dims)
        if key not in self.cache:
            self.cache[key] = self._load(oid, typmod, dims)
        return self.cache[key]

    def _load(self, oid: int, typmod: int, dims: int) -> _Resolved:
        row = self.conn.execute(_TYPE, (typmod if typmod >= 0 else None, oid)).fetchone()
        assert row is not None, f"type oid {oid} vanished during reflection"
        typtype, category, elem, base, base_mod, spelled, labels, domain_checks = row
        if typtype == "d":
            inner, dropped, checks = self.resolve(base, base_mod, dims)
            # the domain's CHECKs go onto its columns (scalar ones); its name is not carried
            mine = tuple((spelled, c) for c in domain_checks)
            if dims:
                gone = (f"domain {spelled} {c} is not carried" for _, c in mine)
                return inner, (*dropped, *gone), checks
            kept = "its base type and CHECKs" if mine else "its base type"
            note = f"domain {spelled} is not carried: the column gets {kept}"
            return inner, (*dropped, note), (*checks, *mine)
        if typtype == "e":
            return Type.enum(tuple(labels), native=spelled), (), ()
        if category == "A" and elem:
            item, dropped, checks = self.resolve(elem, typmod, 0)
            n = max(dims, 1)
            notes = (*dropped, *(f"domain {d} {c} is not carried" for d, c in checks))
            return Type.array(item, n, native=item.native + "[]" * n), notes, ()
        if typtype in ("r", "m", "c", "p"):
            return Type.other(spelled), (), ()
        return DIALECT.parse_type(spelled), (), ()


_FOREIGN = """
SELECT n.nspname, c.relname, s.srvname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_foreign_table f ON f.ftrelid = c.oid JOIN pg_foreign_server s ON s.oid = f.ftserver
WHERE c.relkind = 'f' ORDER BY 1, 2
"""


def _foreign_tables(conn: Connection, selection: Selection) -> list[str]:
    """The plan's problems for the selected foreign tables, which a copy does not read."""
    return [
        f"{TableId(schema, name)}: a foreign table (server {server}) is not copied: its rows "
        "live in another database; copy from that one, or make a table of its rows here"
        for schema, name, server in conn.execute(_FOREIGN)
        if selection.matches(TableId(schema, name))
    ]


def reflect(conn: Connection, selection: Selection | None = None) -> Catalog:
    """Reflect the user tables and views of ``conn``'s database selected by ``selection``."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tables, views = _relations(conn, selection or Selection())
        problems = _foreign_tables(conn, selection or Selection())
        oids = list(tables)
        _columns(conn, tables, oids, problems)
        _constraints(conn, tables, oids)
        _indexes(conn, tables, oids)
        routines = _routines(conn, tables, views)
    return Catalog(
        tables=tuple(t.build() for t in tables.values()),
        views=tuple(views),
        routines=tuple(routines),
        problems=tuple(problems),
    )


def _relations(conn: Connection, selection: Selection) -> tuple[dict[int, _Table], list[View]]:
    tables: dict[int, _Table] = {}
    views: list[View] = []
    control = sorted(CONTROL_TABLES)  # replikit's own, in its schema; not a user's there
    for oid, schema, name, kind, rows, size, comment, viewdef in conn.execute(
        _RELATIONS, (control,)
    ):
        tid = TableId(schema, name)
        if not selection.matches(tid):
            continue
        if kind in ("v", "m"):
            views.append(View(tid, viewdef, materialized=kind == "m"))
        else:
            est = rows if rows is not None and rows >= 0 else None
            tables[oid] = _Table(oid, id=tid, rows=est, size=size, comment=comment)
    return tables, views


def _routines(conn: Connection, tables: dict[int, _Table], views: list[View]) -> list[Routine]:
    """Functions and procedures of the selected tables' schemas (not those of extensions),
    and the triggers on the selected tables."""
    schemas = sorted(
        {t.id.schema for t in tables.values() if t.id.schema}
        | {v.id.schema for v in views if v.id.schema}
    )
    out = [
        Routine(TableId(schema, name), _KINDS.get(kind, "function"), lang, body)
        for schema, name, kind, lang, body in conn.execute(_ROUTINES, (schemas,))
    ]
    for oid, name, lang, body in conn.execute(_TRIGGERS, (list(tables),)):
        table = tables[oid].id
        out.append(Routine(TableId(table.schema, name), "trigger", lang, body, table))
    return out


def _columns(
    conn: Connection, tables: dict[int, _Table], oids: list[int], problems: list[str]
) -> None:
    types = _Types(conn)
    for row in conn.execute(_COLUMNS, (oids,)):
        rel, name, attnum, typoid, typmod, dims, notnull, default = row[:8]
        ident, gen, coll, comment, seq = row[8:]
        table = tables[rel]
        type_, dropped, checks = types.resolve(typoid, typmod, dims)
        table.checks += _domain_checks(name, checks)
        problems += [f"{table.id}.{name}: {d}" for d in dropped]
        column = Column(
            name=name,
            type=type_,
            nullable=not notnull,
            default=None if gen else default,
            identity=_identity(conn, ident, seq) if seq else None,
            generated=f"{default} STORED" if gen else None,
            collation=coll,
            comment=comment,
        )
        table.columns.append(column)
        table.attnames[attnum] = name


def _domain_checks(column: str, checks: Sequence[tuple[str, str]]) -> list[CheckConstraint]:
    """(domain, CHECK) pairs as CHECKs on one column of that domain (``VALUE`` replaced)."""
    out = []
    for domain, definition in checks:
        from replikit.schema import expressions  # sqlglot: a CHECK is met

        expression = expressions.substitute_value(_check_expression(definition), column)
        if expression is not None:
            base = domain.rsplit(".", 1)[-1].strip('"')
            out.append(CheckConstraint(f"{column}_{base}_check", expression))
    return out


def _identity(conn: Connection, attidentity: str, sequence: str) -> Identity:
    kind = {"a": "always", "d": "by-default"}.get(attidentity, "serial")
    schema, _, name = _split_qualified(sequence)
    row = conn.execute(_SEQUENCE, (schema, name)).fetchone()
    if row is None:
        return Identity(kind, sequence)
    last, start, increment = row
    nxt = start if last is None else last + increment
    return Identity(kind, sequence, int(nxt), int(increment))


def _split_qualified(text: str) -> tuple[str, str, str]:
    """Split ``schema.name`` as printed by PostgreSQL (either part may be double-quoted)."""
    parts: list[str] = []
    buf, quoted, i = "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and text[i + 1 : i + 2] == '"':
                buf += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    parts.append(buf)
    return (parts[0], ".", parts[1]) if len(parts) == 2 else ("", "", parts[-1])


def _constraints(conn: Connection, tables: dict[int, _Table], oids: list[int]) -> None:
    for row in conn.execute(_CONSTRAINTS, (oids,)):
        rel, name, kind, cols, ref_schema, ref_name, ref_cols, on_del, on_upd, definition = row
        table = tables[rel]
        if kind == "p":
            table.primary_key = tuple(cols)
        elif kind == "u":
            table.unique.append(tuple(cols))
        elif kind == "f":
            fk = ForeignKey(
                name,
                tuple(cols),
                TableId(ref_schema, ref_name),
                tuple(ref_cols),
                _ACTIONS.get(on_del),
                _ACTIONS.get(on_upd),
            )
            table.foreign_keys.append(fk)
        else:
            table.checks.append(CheckConstraint(name, _check_expression(definition)))


def _check_expression(definition: str) -> str:
    text = definition.strip()
    if text.upper().startswith("CHECK "):
        text = text[6:].strip()
    return text.removesuffix(" NOT VALID")


def _indexes(conn: Connection, tables: dict[int, _Table], oids: list[int]) -> None:
    for rel, name, unique, method, where, attnums, keys in conn.execute(_INDEXES, (oids,)):
        table = tables[rel]
        table.indexes.append(_index(table, name, unique, method, where, attnums, keys))


def _index(
    table: _Table,
    name: str,
    unique: bool,
    method: str,
    where: str | None,
    attnums: Iterable[int],
    keys: Iterable[str],
) -> Index:
    nums, parts = list(attnums), list(keys)
    columns = tuple(table.attnames[n] for n in nums if n)
    expressions: tuple[str, ...] = ()
    if any(n == 0 for n in nums):
        expressions = tuple(
            DIALECT.quote(table.attnames[n]) if n else part
            for n, part in zip(nums, parts, strict=True)
        )
    return Index(name, columns, unique, where, expressions, None if method == "btree" else method)
