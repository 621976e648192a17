"""Mapping rules computed by the source's own SELECT, where the result is provably the same.

A full load through mappings normally decodes every row into Python to filter, mask and add
columns. When the source can compute every one of a table's row steps *with the same result*,
its SELECT does the work instead and rows can stay in the database's bulk wire format
(PostgreSQL -> PostgreSQL binary COPY). :func:`project` decides, per table, and gives the
SELECT list as SQL over the source columns (:class:`Projection`); ``None`` means some step
must run in Python, and the table takes the decoded path. Nothing is pushed on a guess:

- **Row filter**: every condition compares an integer or boolean column (or tests NULL), where
  SQL and Python agree whatever the collation or special values (text, decimals with NaN,
  infinite dates stay in Python).
- **Masks**: ``hash`` on a ``varchar``/``text`` column, as HMAC-SHA256 spelled with the
  source's SHA-256 (``H((K ^ opad) || H((K ^ ipad) || m))``, byte for byte the Python HMAC);
  the key pads are session settings the reader sets with bound parameters, never SQL text.
  On such columns too: ``fake-first-name``, ``fake-last-name``, ``fake-name`` and
  ``fake-email`` (the same HMAC, words picked from the same lists by the same bytes),
  ``digits-mask`` (a ``translate`` of every character Python's ``str.isdigit`` accepts) and
  ``dms-hash`` (unkeyed SHA-256); ``null`` and ``redact`` are constants. ``digits-randomize``,
  ``fake-phone`` and ``fake-address`` stay in Python.
- **Added columns**: the SQLite expression is parsed with sqlglot and pushed only when made of
  parts whose meaning is the same in SQLite and in the source: integer and text columns and
  literals, ``||``, ``coalesce``, ``upper``/``lower`` (ASCII only in SQLite, so spelled as a
  ``translate`` of ASCII letters), ``+ - *`` on integers (exact in both, or an error in the
  source), and ``*`` of integers and decimals into a ``decimal(p, s)`` whose scale holds the
  product's and whose precision keeps SQLite's binary floating point within half a unit of
  the last place (``p <= 14`` for two factors: then rounding SQLite's result to ``s`` places
  gives the exact product the source computes). Change metadata, ``operation_indicator``,
  type changes and anything else stay in Python.

Where the source would fail (an integer overflow, a value too long for the target), the unit
is loaded again through Python, which then gives the row-level error the error policy handles,
or the value SQLite computes: so the pushed path never decides a value Python would decide
differently.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from replikit.mapping.bound import AddedColumn, TableMapping
from replikit.mapping.filters import AllOf, AnyOf, Predicate
from replikit.mapping.masking import Mask
from replikit.schema.types import Kind, Type

__all__ = ["Flavor", "Projected", "Projection", "exact_filter", "hmac_pads", "project"]

_EXACT_FILTER = frozenset({Kind.INT, Kind.BOOL})
_U = 2.0**-52  # a generous bound on one binary64 rounding (the unit roundoff is 2**-53)


class Flavor(Protocol):
    """How one source dialect spells what :func:`project` pushes."""

    def quote(self, name: str) -> str:
        """A quoted column name."""
        ...

    def text_native(self, native: str) -> bool:
        """Whether a column of this native type reads as the same text in SQL and Python
        (varchar, text; not a blank-padded char(n))."""
        ...

    def cast(self, sql: str, type_sql: str) -> str:
        """``sql`` cast to a native type."""
        ...

    def hmac(self, sql: str, purpose: str) -> str:
        """The HMAC-SHA256 digest (bytes) of ``purpose``, NUL and the UTF-8 bytes of text
        ``sql``, keyed by the pads of :func:`hmac_pads` (which the reader sets in its session
        as the settings of :func:`pad_settings`)."""
        ...

    def hex(self, sql: str, start: int = 0, length: int | None = None) -> str:
        """Lower-case hex of the bytes ``sql[start:start + length]`` (all: ``None``)."""
        ...

    def pick(self, digest: str, offset: int, items: Sequence[str]) -> str:
        """``items[int.from_bytes(digest[offset:offset + 4], "big") % len(items)]``; the
        items are ASCII letters, spaces and hyphens (literal SQL)."""
        ...

    def translate(self, sql: str, mark: str) -> str:
        """``sql`` with each character of the first bound text replaced by the character at
        its position in the second."""
        ...

    def concat(self, parts: Sequence[str]) -> str:
        """Text parts joined (NULL when one is NULL)."""
        ...

    def sha256_hex(self, sql: str) -> str:
        """The lower-case hex SHA-256 of the UTF-8 bytes of text ``sql``."""
        ...

    def ascii_case(self, sql: str, upper: bool) -> str:
        """``sql`` with ASCII letters only changed to upper (or lower) case."""
        ...


@dataclass(frozen=True, slots=True)
class Projected:
    """One output column: SQL over the source columns (``mark`` placeholders) and its
    bound values; ``sql is None``: the source column as it is."""

    name: str
    sql: str | None = None
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Projection:
    """The SELECT list of a mapped table (shape columns in order) and the session settings
    the reader sets (with bound parameters) before reading: the HMAC key pads."""

    columns: tuple[Projected, ...]
    settings: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def column(self, name: str) -> Projected:
        """The output column ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def hmac_pads(key: bytes, purpose: str) -> tuple[bytes, bytes]:
    """``(K ^ ipad || purpose || NUL, K ^ opad)`` of HMAC-SHA256 for the masking key ``key``
    (hashed first when longer than SHA-256's 64-byte block): SHA-256 of the first followed
    by the value's bytes, then of the second followed by that digest, is the mask's HMAC."""
    k = hashlib.sha256(key).digest() if len(key) > 64 else key
    k = k.ljust(64, b"\0")
    inner = bytes(b ^ 0x36 for b in k) + purpose.encode() + b"\0"
    outer = bytes(b ^ 0x5C for b in k)
    return inner, outer


def pad_settings(key: bytes, purpose: str) -> dict[str, str]:
    """The session settings (name -> hex) holding the HMAC pads of ``purpose``."""
    inner, outer = hmac_pads(key, purpose)
    return {
        f"replikit.mask_ipad_{purpose}": inner.hex(),
        f"replikit.mask_opad_{purpose}": outer.hex(),
    }


def exact_filter(p: Predicate | None) -> bool:
    """Whether SQL tests ``p`` exactly as Python does (see the module docs)."""
    if p is None:
        return True
    if isinstance(p, AnyOf) and not p.parts:
        return False  # keeps nothing; pushdown() would push nothing
    if isinstance(p, AllOf | AnyOf):
        return all(exact_filter(q) for q in p.parts)
    return p.op in ("is null", "is not null") or p.kind in _EXACT_FILTER


def project(
    bound: TableMapping,
    flavor: Flavor,
    mark: str,
    target_sql: Mapping[str, str],
) -> Projection | None:
    """The SELECT list computing ``bound``'s rows in the source, or ``None`` when some step
    must run in Python (see the module docs). ``target_sql`` gives the native target type
    of each shape column (values are cast to it, so they arrive in its wire form)."""
    if bound.casts or not exact_filter(bound.predicate) or bound.flags_deletes:
        return None
    types = {c.name: c.type for c in bound.source.columns}
    values: dict[str, _Value] = {}
    settings: dict[str, str] = {}
    for name, mask in bound.mask_rules:
        v = _mask(mask, name, types[name], flavor, mark)
        if v is None:
            return None
        values[name] = v
        if mask.keyed:
            if bound.secret is None:
                return None
            settings.update(pad_settings(bound.secret, _PURPOSE.get(mask.kind, "fake")))
    out: list[Projected] = []
    for col in bound.shape.columns:
        added = next((a for a in bound.added if a.name == col.name), None)
        native = target_sql.get(col.name)
        if added is not None:
            v = _added(added, types, values, flavor, mark)
            if v is None or native is None:
                return None
            if v.kind == _Class.TEXT:  # not cast: a cast to varchar(n) would cut, silently
                if not flavor.text_native(native):
                    return None
                sql = v.sql
            else:
                sql = flavor.cast(v.sql, native)
            out.append(Projected(col.name, sql, v.params))
        elif col.name in values:
            v = values[col.name]
            if native is None:
                return None
            if v.kind == _Class.NULL:
                out.append(Projected(col.name, flavor.cast("NULL", native)))
                continue
            if not flavor.text_native(native):
                return None
            out.append(Projected(col.name, v.sql, v.params))
        else:
            out.append(Projected(col.name))
    return Projection(tuple(out), tuple(settings.items()))


# -- values ----------------------------------------------------------------------------------
class _Class:
    INT = "int"
    DEC = "dec"
    TEXT = "text"
    NULL = "null"  # the null mask: NULL of the column's target type


@dataclass(frozen=True, slots=True)
class _Value:
    """A pushed value: SQL, its bound values, and what SQLite would hold for it: an exact
    integer (``bound``: largest magnitude), a decimal (``scale``, ``bound``, ``roundings``:
    how many binary64 roundings SQLite may make) or text."""

    sql: str
    params: tuple[Any, ...]
    kind: str
    bound: Decimal = Decimal(0)
    scale: int = 0
    roundings: int = 0


def _column(name: str, t: Type, flavor: Flavor) -> _Value | None:
    q = flavor.quote(name)
    if t.kind is Kind.INT and not t.unsigned and (t.bits or 64) <= 64:
        return _Value(q, (), _Class.INT, Decimal(2) ** ((t.bits or 64) - 1))
    if t.kind in (Kind.STRING, Kind.TEXT) and flavor.text_native(t.native):
        return _Value(q, (), _Class.TEXT)
    if t.kind is Kind.DECIMAL and t.precision is not None and t.scale is not None:
        bound = Decimal(10) ** (t.precision - t.scale)
        # SQLite gets a double (NaN: NULL, as sqlite3 binds it; the source's NaN = NaN)
        return _Value(f"NULLIF({q}, 'NaN')", (), _Class.DEC, bound, t.scale, 1)
    return None


_PURPOSE = {"hash": "hash"}  # the HMAC purpose of each keyed mask (the fakes: "fake")


@functools.cache
def _digits() -> str:
    """Every character Python's ``str.isdigit`` accepts (what ``digits-mask`` replaces)."""
    return "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000 and chr(i).isdigit())


def _mask(mask: Mask, name: str, t: Type, flavor: Flavor, mark: str) -> _Value | None:
    q = flavor.quote(name)
    k = mask.kind
    if k == "null":
        return _Value("NULL", (), _Class.NULL)
    if k == "redact":
        return _Value(f"CASE WHEN {q} IS NULL THEN NULL ELSE {mark} END", (mask.replacement,),
                      _Class.TEXT)  # fmt: skip
    if t.kind not in (Kind.STRING, Kind.TEXT) or not flavor.text_native(t.native):
        return None
    if k == "hash":
        return _Value(flavor.hex(flavor.hmac(q, "hash")), (), _Class.TEXT)
    if k == "dms-hash":
        return _Value(flavor.ascii_case(flavor.sha256_hex(q), True), (), _Class.TEXT)
    if k == "digits-mask":
        char = mask.value or "*"
        digits = _digits()
        return _Value(flavor.translate(q, mark), (digits, char * len(digits)), _Class.TEXT)
    if k in ("fake-first-name", "fake-last-name", "fake-name", "fake-email"):
        return _Value(_fake(k, flavor.hmac(q, "fake"), flavor), (), _Class.TEXT)
    return None


def _fake(kind: str, d: str, flavor: Flavor) -> str:
    """The SQL of :func:`replikit.mapping.masking._faker` for names and e-mail addresses
    (phones and addresses, with 64-bit arithmetic, stay in Python)."""
    from replikit.mapping.masking import FIRST_NAMES, LAST_NAMES

    first, last = flavor.pick(d, 0, FIRST_NAMES), flavor.pick(d, 4, LAST_NAMES)
    if kind == "fake-first-name":
        return first
    if kind == "fake-last-name":
        return last
    if kind == "fake-name":
        return flavor.concat([first, "' '", last])
    low_first, low_last = flavor.ascii_case(first, False), flavor.ascii_case(last, False)
    return flavor.concat([low_first, "'.'", low_last, "'.'", flavor.hex(d, 8, 5), "'@example.com'"])


def _added(
    a: AddedColumn,
    types: Mapping[str, Type],
    masked: Mapping[str, _Value],
    flavor: Flavor,
    mark: str,
) -> _Value | None:
    expr = a.expression
    if expr is None or expr.headers or expr.flags_deletes:
        return None
    import sqlglot  # only when a table has added columns
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(expr.batch, read="sqlite")
    except sqlglot.errors.ParseError:
        return None

    def leaf(ident: str) -> _Value | None:
        if not (ident.startswith("c") and ident[1:].isdigit()):
            return None
        i = int(ident[1:])
        if i >= len(expr.columns):
            return None
        name = expr.columns[i]
        if name in masked:
            return masked[name] if masked[name].kind == _Class.TEXT else None
        return _column(name, types[name], flavor)

    v = _walk(tree, exp, leaf, flavor, mark)
    return None if v is None else _fits(v, a.type, flavor)


def _fits(v: _Value, target: Type, flavor: Flavor) -> _Value | None:
    """``v`` if SQLite's value, cast to ``target`` by Python, is what the source's cast to
    ``target`` gives (see the module docs)."""
    k = target.kind
    if k is Kind.INT:
        return v if v.kind == _Class.INT else None
    if k in (Kind.STRING, Kind.TEXT):
        if v.kind == _Class.TEXT:
            return v
        if v.kind == _Class.INT:
            return _Value(flavor.cast(v.sql, "text"), v.params, _Class.TEXT)
        return None
    if k is Kind.DECIMAL and target.precision is not None:
        s = target.scale or 0
        if v.kind == _Class.INT:
            return v
        if v.kind != _Class.DEC or v.scale > s:
            return None
        limit = Decimal(10) ** (target.precision - s)
        error = limit * (v.roundings + 1) * Decimal(_U)  # + 1: repr() of the double
        return v if error < Decimal("0.5") * Decimal(10) ** -s else None
    return None


def _walk(
    node: Any,
    exp: Any,
    leaf: Callable[[str], _Value | None],
    flavor: Flavor,
    mark: str,
) -> _Value | None:
    def walk(n: Any) -> _Value | None:
        return _walk(n, exp, leaf, flavor, mark)

    if isinstance(node, exp.Paren):
        inner = walk(node.this)
        return None if inner is None else _paren(inner)
    if isinstance(node, exp.Column):
        if node.table or not isinstance(node.this, exp.Identifier):
            return None
        return leaf(node.this.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return _Value(flavor.cast(mark, "text"), (node.this,), _Class.TEXT)
        text = str(node.this)
        if not text.isdigit() or int(text) >= 2**63:
            return None
        return _Value(text, (), _Class.INT, Decimal(int(text)))
    if isinstance(node, exp.Neg):
        inner = walk(node.this)
        if inner is None or inner.kind == _Class.TEXT:
            return None
        return _Value(f"(-{inner.sql})", inner.params, inner.kind, inner.bound, inner.scale,
                      inner.roundings)  # fmt: skip
    if isinstance(node, exp.Add | exp.Sub | exp.Mul):
        return _arith(node, walk(node.this), walk(node.expression), exp)
    if isinstance(node, exp.DPipe):
        return _concat([walk(node.this), walk(node.expression)], flavor)
    if isinstance(node, exp.Coalesce):
        parts = [walk(node.this), *(walk(e) for e in node.expressions)]
        return _coalesce(parts)
    if isinstance(node, exp.Upper | exp.Lower):
        inner = walk(node.this)
        if inner is None or inner.kind != _Class.TEXT:
            return None
        return _Value(flavor.ascii_case(inner.sql, isinstance(node, exp.Upper)), inner.params,
                      _Class.TEXT)  # fmt: skip
    return None


def _paren(v: _Value) -> _Value:
    return _Value(f"({v.sql})", v.params, v.kind, v.bound, v.scale, v.roundings)


def _arith(node: Any, a: _Value | None, b: _Value | None, exp: Any) -> _Value | None:
    if a is None or b is None or _Class.TEXT in (a.kind, b.kind):
        return None
    op = "*" if isinstance(node, exp.Mul) else "+" if isinstance(node, exp.Add) else "-"
    sql, params = f"({a.sql} {op} {b.sql})", a.params + b.params
    if a.kind == _Class.INT and b.kind == _Class.INT:
        bound = a.bound * b.bound if op == "*" else a.bound + b.bound
        return _Value(sql, params, _Class.INT, bound)
    if op != "*":
        return None  # a sum of doubles can cancel: its error is not bounded by its result
    roundings = a.roundings + b.roundings + 1
    return _Value(sql, params, _Class.DEC, a.bound * b.bound, a.scale + b.scale, roundings)


def _concat(parts: Sequence[_Value | None], flavor: Flavor) -> _Value | None:
    texts = []
    params: tuple[Any, ...] = ()
    for p in parts:
        if p is None or p.kind == _Class.DEC:
            return None
        texts.append(p.sql if p.kind == _Class.TEXT else flavor.cast(p.sql, "text"))
        params += p.params
    return _Value("(" + " || ".join(texts) + ")", params, _Class.TEXT)


def _coalesce(parts: Sequence[_Value | None]) -> _Value | None:
    if any(p is None for p in parts):
        return None
    values = [p for p in parts if p is not None]
    kinds = {p.kind for p in values}
    if kinds not in ({_Class.TEXT}, {_Class.INT}):
        return None
    params: tuple[Any, ...] = ()
    for p in values:
        params += p.params
    bound = max(p.bound for p in values)
    return _Value(f"coalesce({', '.join(p.sql for p in values)})", params, values[0].kind, bound)
