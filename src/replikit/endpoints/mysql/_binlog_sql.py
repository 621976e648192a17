"""What a binlog ``QUERY`` event's statement does to tables (sans-IO).

In row-based logging, the statements left in the binlog are transaction control (``BEGIN``,
``COMMIT``) and DDL. The event's default schema is only the session's current database, so the
tables are parsed from the SQL text: :func:`parse` recognises ``TRUNCATE``, ``ALTER TABLE``
(column specs), ``DROP TABLE``, ``RENAME TABLE`` and ``CREATE OR REPLACE TABLE``, and returns
``None`` for anything that changes no table's columns (``CREATE INDEX``, ``GRANT``...).
Executable comments (``/*!50100 ... */``, ``/*M!... */``) count as code, other comments do not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Alter", "Drop", "Rename", "Statement", "Truncate", "parse", "tokens"]

Name = tuple[str | None, str]  # (schema or None for the session default, table)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line>(?:--(?=\s|$)|\#)[^\n]*)
  | (?P<exec>/\*[!M]!?\d*)
  | (?P<comment>/\*.*?\*/)
  | (?P<end>\*/)
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<word>[^\s`'"(),.;=/*#-]+|[-/*#])
  | (?P<punct>[(),.;=])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str
    quoted: bool = False

    @property
    def upper(self) -> str:
        return "" if self.quoted else self.text.upper()


def tokens(sql: str) -> list[_Tok]:
    """Words, quoted identifiers (unquoted), strings and punctuation; comments dropped."""
    out: list[_Tok] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind in ("ws", "line", "comment", "exec", "end"):
            continue
        text = m.group()
        if kind == "quoted":
            out.append(_Tok(text[1:-1].replace("``", "`"), quoted=True))
        elif kind == "string":
            out.append(_Tok(text, quoted=True))
        else:
            out.append(_Tok(text))
    return out


@dataclass(frozen=True, slots=True)
class Truncate:
    """``TRUNCATE [TABLE] t``."""

    table: Name


@dataclass(frozen=True, slots=True)
class Alter:
    """``ALTER TABLE t ...``: the columns its specs add, drop or change.

    ``primary_key`` is true when the primary key is added or dropped; ``all_changed`` when
    every character column may change (``CONVERT TO CHARACTER SET``); ``renamed_to`` is the
    table's new name (``RENAME TO``).
    """

    table: Name
    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    primary_key: bool = False
    all_changed: bool = False
    renamed_to: Name | None = None
    #: columns renamed (old, new): ``RENAME COLUMN a TO b``, ``CHANGE a b ...``
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def touches_columns(self) -> bool:
        """Whether the statement changes columns, keys or the table's name."""
        return bool(
            self.renamed
            or self.added
            or self.dropped
            or self.changed
            or self.primary_key
            or self.all_changed
            or self.renamed_to
        )


@dataclass(frozen=True, slots=True)
class Drop:
    """``DROP TABLE t1, t2`` (or ``CREATE OR REPLACE TABLE t``, with ``replaced``)."""

    tables: tuple[Name, ...]
    replaced: bool = False


@dataclass(frozen=True, slots=True)
class Rename:
    """``RENAME TABLE a TO b, c TO d``."""

    pairs: tuple[tuple[Name, Name], ...] = field(default=())


Statement = Truncate | Alter | Drop | Rename

_NOT_COLUMN = frozenset(
    {
        "INDEX",
        "KEY",
        "FULLTEXT",
        "SPATIAL",
        "UNIQUE",
        "FOREIGN",
        "CHECK",
        "PARTITION",
        "PERIOD",
        "SYSTEM",
        "CONSTRAINT",
        "PRIMARY",
    }
)


class _Cursor:
    def __init__(self, toks: Sequence[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.toks[j].upper if j < len(self.toks) else ""

    def take(self, *words: str) -> bool:
        """Consume the words if they come next (all of them), else nothing."""
        if all(self.peek(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def ident(self) -> str | None:
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        if not tok.quoted and tok.text in "(),.;=":
            return None
        self.i += 1
        return tok.text

    def name(self) -> Name | None:
        first = self.ident()
        if first is None:
            return None
        if self.peek() == "." and self.toks[self.i].text == ".":
            self.i += 1
            second = self.ident()
            return (first, second) if second is not None else None
        return (None, first)

    def names(self) -> list[Name]:
        out = []
        while (name := self.name()) is not None:
            out.append(name)
            if not self.take(","):
                break
        return out


def parse(sql: str) -> Statement | None:
    """The table-level effect of ``sql``, or ``None`` when it changes no table's columns."""
    cur = _Cursor(tokens(sql))
    if cur.take("TRUNCATE"):
        cur.take("TABLE")
        name = cur.name()
        return Truncate(name) if name else None
    if cur.take("DROP"):
        cur.take("TEMPORARY")
        if not cur.take("TABLE") and not cur.take("TABLES"):
            return None
        cur.take("IF", "EXISTS")
        names = cur.names()
        return Drop(tuple(names)) if names else None
    if cur.take("RENAME"):
        if not cur.take("TABLE") and not cur.take("TABLES"):
            return None
        return _rename(cur)
    if cur.take("CREATE", "OR", "REPLACE"):
        cur.take("TEMPORARY")
        if not cur.take("TABLE"):
            return None
        name = cur.name()
        return Drop((name,), replaced=True) if name else None
    if cur.take("ALTER"):
        cur.take("ONLINE")
        cur.take("IGNORE")
        if not cur.take("TABLE"):
            return None
        cur.take("IF", "EXISTS")
        name = cur.name()
        return _alter(name, _specs(cur)) if name else None
    return None


def _rename(cur: _Cursor) -> Rename | None:
    pairs = []
    while True:
        cur.take("IF", "EXISTS")
        old = cur.name()
        cur.take("WAIT") or cur.take("NOWAIT")
        if old is None or not cur.take("TO"):
            break
        new = cur.name()
        if new is None:
            break
        pairs.append((old, new))
        if not cur.take(","):
            break
    return Rename(tuple(pairs)) if pairs else None


def _specs(cur: _Cursor) -> list[list[_Tok]]:
    """The ``ALTER TABLE`` specs: token lists split at top-level commas."""
    specs: list[list[_Tok]] = [[]]
    depth = 0
    for tok in cur.toks[cur.i :]:
        if not tok.quoted and tok.text == "(":
            depth += 1
        elif not tok.quoted and tok.text == ")":
            depth -= 1
        elif not tok.quoted and tok.text == "," and depth == 0:
            specs.append([])
            continue
        specs[-1].append(tok)
    return [s for s in specs if s]


def _alter(table: Name, specs: list[list[_Tok]]) -> Alter:
    added: list[str] = []
    dropped: list[str] = []
    changed: list[str] = []
    pk = converted = False
    renamed: Name | None = None
    columns_renamed: list[tuple[str, str]] = []
    for spec in specs:
        c = _Cursor(spec)
        if c.take("ADD"):
            if c.peek() in _NOT_COLUMN:
                pk = pk or "PRIMARY" in {t.upper for t in spec}
                continue
            c.take("COLUMN")
            c.take("IF", "NOT", "EXISTS")
            if c.take("("):  # ADD (a INT, b INT)
                added.extend(_column_list(spec[c.i :]))
            elif (col := c.ident()) is not None:
                added.append(col)
        elif c.take("DROP"):
            if c.peek() in _NOT_COLUMN:
                pk = pk or c.peek() == "PRIMARY"
                continue
            c.take("COLUMN")
            c.take("IF", "EXISTS")
            if (col := c.ident()) is not None:
                dropped.append(col)
        elif c.take("MODIFY"):
            c.take("COLUMN")
            c.take("IF", "EXISTS")
            if (col := c.ident()) is not None:
                changed.append(col)
        elif c.take("CHANGE"):
            c.take("COLUMN")
            c.take("IF", "EXISTS")
            old, new = c.ident(), c.ident()
            if old is not None and new is not None:
                if old.lower() != new.lower():
                    columns_renamed.append((old, new))
                changed.append(old)  # CHANGE gives the whole definition: maybe a new type
        elif c.take("RENAME"):
            if c.take("COLUMN"):
                c.take("IF", "EXISTS")
                old = c.ident()
                if old is not None and c.take("TO") and (new := c.ident()) is not None:
                    columns_renamed.append((old, new))
            elif c.peek() in ("INDEX", "KEY"):
                continue
            else:
                c.take("TO") or c.take("AS")
                renamed = c.name()
        elif c.take("CONVERT", "TO") or c.take("CHARACTER", "SET") or c.take("DEFAULT"):
            converted = converted or spec[0].upper == "CONVERT"
    return Alter(table, tuple(added), tuple(dropped), tuple(changed), pk, converted, renamed,
                 tuple(columns_renamed))  # fmt: skip


def _column_list(toks: Sequence[_Tok]) -> list[str]:
    """Column names of ``a INT, b INT)`` (the tokens after ``ADD (``)."""
    names: list[str] = []
    depth = 0
    expect = True
    for tok in toks:
        punct = None if tok.quoted else tok.text
        if punct == "(":
            depth += 1
        elif punct == ")":
            if depth == 0:
                break
            depth -= 1
        elif punct == "," and depth == 0:
            expect = True
        elif expect and depth == 0:
            if tok.upper not in _NOT_COLUMN:
                names.append(tok.text)
            expect = False
    return names
