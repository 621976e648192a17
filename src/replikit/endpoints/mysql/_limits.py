"""MySQL/MariaDB (InnoDB) table limits and the storage model they are judged with.

Numbers probed on MariaDB 10.11 (16 KiB pages, ``ROW_FORMAT=DYNAMIC``, utf8mb4) and held to
the server by tests/test_limits.py (CREATE TABLE at the limit succeeds, one step over fails):

* 1,017 columns per InnoDB table;
* the server's row, checked at CREATE TABLE: at most 65,535 bytes. ``varchar(n)`` counts
  ``n`` times the character set's width plus 1 or 2 length bytes, ``char(n)`` its width
  times ``n``, TEXT/BLOB/JSON only their pointer (9..12 bytes), fixed types their size, plus
  one bit per nullable column;
* InnoDB's record on a 16 KiB page: less than 8,126 bytes. Fixed-size columns count their
  size, variable ones their largest size plus a length byte, except TEXT/BLOB and columns
  longer than 255 bytes, which may live off the page and count 21 bytes; plus a 5-byte
  header, the null bitmap, 13 bytes of transaction fields and 6 for the row id of a table
  without a primary key;
* a key entry of at most 3,072 bytes and 32 columns (MySQL 8: 16). A longer primary key is
  refused; a longer unique key becomes a hash key on MariaDB (refused by MySQL 8); a longer
  one-column plain index is shortened to a prefix, a longer multi-column one is refused.
* values: a LOAD DATA full load streams them; INSERTs (CDC, ``method="insert"``) carry each
  row in one packet of at most ``max_allowed_packet`` bytes (read from the server).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from replikit.schema.convert import ColumnPlan, TablePlan
from replikit.schema.limits import Limits, RowSize

__all__ = ["LIMITS", "PAGE_RECORD", "InnodbSizes", "live_limits"]

_TYPE = re.compile(
    r"^\s*([a-z][a-z0-9_ ]*?)\s*(?:\((.*)\))?(\s+unsigned|\s+signed|\s+zerofill)*\s*$", re.I | re.S
)
_FIXED = {
    "tinyint": 1,
    "bool": 1,
    "boolean": 1,
    "smallint": 2,
    "mediumint": 3,
    "int": 4,
    "integer": 4,
    "bigint": 8,
    "float": 4,
    "double": 8,
    "double precision": 8,
    "real": 8,
    "date": 3,
    "year": 1,
    "uuid": 16,
    "inet4": 4,
    "inet6": 16,
}
_POINTER = {"tiny": 9, "": 10, "medium": 11, "long": 12}  # TEXT/BLOB pointer in the row
_GEOMETRY = ("geometry", "point", "linestring", "polygon", "multi", "geomcollection")
_DIGITS = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_WIDTH = {"latin1": 1, "ascii": 1, "binary": 1, "utf8": 3, "utf8mb3": 3, "ucs2": 2, "utf16": 4}
#: the longest InnoDB record on a 16 KiB page (the server refuses 8,126 and more)
PAGE_RECORD: Final = {16384: 8125}
_OFF_PAGE = 21  # a column that may be stored off the page: 20-byte pointer + length byte
# as the DDL declares them (_ddl): longtext/longblob in a unique key become varchar(768) /
# varbinary(3072); a plain index takes a 255-character prefix of them
_KEYED = {"longtext": 3072, "longblob": 3072}
_PREFIXED = {"longtext": 255 * 4, "longblob": 255}


def _decimal(p: int, s: int) -> int:
    i = p - s
    return (i // 9) * 4 + _DIGITS[i % 9] + (s // 9) * 4 + _DIGITS[s % 9]


def _ints(args: str | None) -> list[int]:
    return [int(a) for a in (args or "").split(",") if a.strip().isdigit()]


def _width(col: ColumnPlan) -> int:
    charset = (col.source.collation or "utf8mb4").split("_")[0].lower()
    return _WIDTH.get(charset, 4)


def _parse(col: ColumnPlan, sql: str | None = None) -> tuple[str, list[int], str | None]:
    text = sql or col.target.sql
    m = _TYPE.match(text)
    if m is None:
        return text.lower(), [], None
    return " ".join(m.group(1).lower().split()), _ints(m.group(2)), m.group(2)


def _fixed(base: str, nums: list[int], args: str | None) -> int | None:
    """The size of a fixed-size type, or ``None`` for a variable or unknown one."""
    if base in _FIXED:
        if base == "float" and nums and nums[0] > 24:
            return 8
        return _FIXED[base]
    precision = nums[0] if nums else 0
    if base in ("decimal", "numeric", "dec", "fixed"):
        return _decimal(nums[0] if nums else 10, nums[1] if len(nums) > 1 else 0)
    sizes = {"time": 3, "datetime": 5, "timestamp": 4}
    if base in sizes:
        return sizes[base] + (precision + 1) // 2
    if base == "bit":
        return ((nums[0] if nums else 1) + 7) // 8
    if base == "enum":
        return 1 if (args or "").count("'") // 2 <= 255 else 2
    if base == "set":
        n = max((args or "").count("'") // 2, 1)
        return min((n + 7) // 8, 4) if n <= 32 else 8
    return None


def _lob(base: str) -> bool:
    return base.endswith(("text", "blob")) or base == "json" or base.startswith(_GEOMETRY)


def _row_bytes(col: ColumnPlan) -> int | None:
    base, nums, args = _parse(col)
    fixed = _fixed(base, nums, args)
    if fixed is not None:
        return fixed
    if _lob(base):
        return _POINTER.get(base.removesuffix("text").removesuffix("blob"), 12)
    n = nums[0] if nums else 1
    if base in ("char", "binary"):
        return n * (_width(col) if base == "char" else 1)
    if base in ("varchar", "varbinary"):
        most = n * (_width(col) if base == "varchar" else 1)
        return most + (1 if most < 256 else 2)
    return None


def _record_bytes(col: ColumnPlan) -> int | None:
    base, nums, args = _parse(col)
    fixed = _fixed(base, nums, args)
    if fixed is not None:
        return fixed
    if _lob(base):
        return _OFF_PAGE
    n = nums[0] if nums else 1
    if base == "binary" or (base == "char" and _width(col) == 1):
        return n  # fixed length in the record
    if base in ("char", "varchar", "varbinary"):
        most = n * (1 if base == "varbinary" else _width(col))
        return _OFF_PAGE if most > 255 else most + 1
    return None


def _key_bytes(col: ColumnPlan, unique: bool) -> int | None:
    base, nums, args = _parse(col)
    if col.target.sql in _KEYED:
        return (_KEYED if unique else _PREFIXED)[col.target.sql]
    fixed = _fixed(base, nums, args)
    if fixed is not None:
        return fixed
    n = nums[0] if nums else 1
    if base in ("char", "varchar"):
        return n * _width(col)
    if base in ("binary", "varbinary"):
        return n
    return None


class InnodbSizes:
    """The InnoDB storage model of a planned table (see the module docstring)."""

    def row(self, plan: TablePlan) -> RowSize | None:
        """The server's row size (65,535 bytes at most)."""
        sizes = [(c.name, _row_bytes(c)) for c in plan.columns]
        known = [(n, s) for n, s in sizes if s is not None]
        nulls = (sum(1 for c in plan.columns if c.nullable) + 7) // 8
        return RowSize(sum(s for _, s in known) + nulls, tuple(known))

    def record(self, plan: TablePlan) -> RowSize | None:
        """The largest InnoDB record of the table's clustered index."""
        sizes = [(c.name, _record_bytes(c)) for c in plan.columns]
        known = [(n, s) for n, s in sizes if s is not None]
        nulls = (sum(1 for c in plan.columns if c.nullable) + 7) // 8
        system = 13 + (0 if plan.target_schema.primary_key else 6)
        return RowSize(5 + nulls + system + sum(s for _, s in known), tuple(known))

    def key(self, plan: TablePlan, columns: Sequence[str], *, unique: bool) -> int | None:
        """Bytes of one key entry of an index on ``columns`` (``None``: unknown type)."""
        by_name = {c.name: c for c in plan.columns}
        total = 0
        for name in columns:
            col = by_name.get(name)
            size = None if col is None else _key_bytes(col, unique)
            if size is None:
                return None
            total += size
        return total


#: what a MySQL or MariaDB target takes when the server was not asked (MySQL 8's rules where
#: they are stricter: 16 columns per index, no hash unique keys)
LIMITS: Final = Limits(
    "MySQL/InnoDB",
    max_columns=1017,
    min_columns=1,
    max_row_bytes=65_535,
    max_record_bytes=PAGE_RECORD[16384],
    max_index_key_bytes=3072,
    max_index_columns=16,
    max_value_bytes=1 << 30,
    value_limit="max_allowed_packet (at most 1 GiB)",
    long_index_prefix=True,
    sizes=InnodbSizes(),
)


def live_limits(*, flavor: str, page_size: int, packet: int | None) -> Limits:
    """:data:`LIMITS` for one server: its flavor, InnoDB page size and, when writes carry each
    row in a packet (INSERTs), its ``max_allowed_packet``."""
    mariadb = flavor == "mariadb"
    return replace(
        LIMITS,
        dialect="MariaDB/InnoDB" if mariadb else "MySQL/InnoDB",
        max_index_columns=32 if mariadb else 16,
        long_unique=mariadb,
        max_record_bytes=PAGE_RECORD.get(page_size),
        max_value_bytes=packet if packet is not None else LIMITS.max_value_bytes,
        value_limit="max_allowed_packet" if packet is not None else LIMITS.value_limit,
        value_fix="raise max_allowed_packet on the target server "
        "(SET GLOBAL max_allowed_packet = 1073741824, up to 1 GiB)",
    )
