"""MySQL's and MariaDB's identifier rules (see :mod:`replikit.schema.names`), probed on
MariaDB 10.11: what a name may hold, how long it may be, how two names compare."""

from __future__ import annotations

from typing import Final

from replikit.schema.names import IdentifierRules, mysql_fold

__all__ = ["IDENTIFIERS", "MAX_IDENTIFIER"]

MAX_IDENTIFIER: Final = 64  # characters, for tables, columns, indexes and constraints
_SPACES = " \t\n\r\v\f"
_FILE_SAFE = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
_FILE_LETTER_RANGES = ((0xC0, 0x5FF), (0x1E00, 0x1FFF), (0x2160, 0x217F), (0x24B0, 0x24EF),
                       (0xFF20, 0xFF5F))  # fmt: skip
_MAX_FILE_NAME = 250  # 255 bytes for the file, less its extension (".frm", ".ibd")


def _file_name_length(name: str) -> int:
    """How long the server's file name for table ``name`` is (an estimate from above).

    Letters and digits of ASCII and ``_`` stay as they are; letters of a few Unicode blocks
    become ``@`` plus 2 characters; everything else ``@`` plus 4 hex digits.
    """
    total = 0
    for c in name:
        if c in _FILE_SAFE:
            total += 1
        elif c.isalpha() and any(lo <= ord(c) <= hi for lo, hi in _FILE_LETTER_RANGES):
            total += 3
        else:
            total += 5
    return total


def _mysql_problem(name: str, kind: str) -> str | None:
    if any(ord(c) > 0xFFFF for c in name):
        return (
            "MySQL names hold only characters of Unicode's Basic Multilingual Plane "
            "(no emoji or other characters above U+FFFF)"
        )
    if kind in ("schema", "table", "column") and name and name[-1] in _SPACES:
        return f"MySQL {kind} names cannot end with a space"
    if kind == "table" and name.startswith("#mysql50#"):
        return "MySQL reads table names that start with #mysql50# as old file names"
    if kind == "table" and _file_name_length(name) > _MAX_FILE_NAME:
        return (
            "the server stores a table as a file named after it, and this name's file name "
            f"(about {_file_name_length(name)} characters, non-ASCII letters take 3 to 5 each) "
            f"would be longer than the {_MAX_FILE_NAME} the file system allows"
        )
    return None


#: Names are at most 64 characters and longer ones are refused (not cut); no NUL, nothing
#: beyond the Basic Multilingual Plane; schema, table and column names cannot end with a
#: space. Names compare without case (column and index names always; table names only when
#: ``lower_case_table_names`` is 1 or 2, but replikit assumes so everywhere: a plan must not
#: depend on a server setting). Index names are per table; ``PRIMARY`` is the primary key's.
IDENTIFIERS: Final = IdentifierRules(
    "MySQL",
    max_length=MAX_IDENTIFIER,
    length_unit="characters",
    fold=mysql_fold,
    index_scope="table",
    reserved_index_names=frozenset({"primary"}),
    extra_problem=_mysql_problem,
)
