"""How PostgreSQL spells the mapping steps its SELECT computes (:mod:`replikit.mapping.pushed`).

HMAC-SHA256 uses ``sha256()`` (PostgreSQL 11+) over ``convert_to(text, 'UTF8')``, the bytes
Python hashes; the key pads are the session settings ``replikit.mask_ipad_<purpose>`` /
``replikit.mask_opad_<purpose>`` (hex), which the reader sets with ``set_config`` and bound
parameters inside the read's transaction (``is_local``), so the key is in no SQL text, log
line or ``pg_stat_activity`` query. No ``%`` is written (the SQL goes through psycopg's
placeholders): ``mod()`` instead. ``upper``/``lower`` are a ``translate`` of the 26 ASCII letters:
SQLite's functions change nothing else.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from replikit.endpoints.postgres._dialect import DIALECT

__all__ = ["FLAVOR", "PostgresFlavor"]

_TEXT_NATIVES = ("text", "character varying", "varchar")
_KEY = "decode(current_setting('{}'), 'hex')"
_WORD = re.compile(r"[A-Za-z][A-Za-z -]*")


class PostgresFlavor:
    """The PostgreSQL spelling of pushed mapping steps."""

    def quote(self, name: str) -> str:
        """A quoted column name (``%`` doubled: the SQL goes through psycopg's formatting)."""
        return DIALECT.quote(name).replace("%", "%%")

    def text_native(self, native: str) -> bool:
        """varchar and text (a char(n) is read blank-padded but cast to text trimmed)."""
        n = native.lower()
        return n.startswith(_TEXT_NATIVES) and "[]" not in n

    def cast(self, sql: str, type_sql: str) -> str:
        """``CAST(sql AS type_sql)``."""
        return f"CAST({sql} AS {type_sql})"

    def hmac(self, sql: str, purpose: str) -> str:
        """HMAC-SHA256 = H((K ^ opad) || H((K ^ ipad) || m)), as bytea."""
        inner = _KEY.format(f"replikit.mask_ipad_{purpose}")
        outer = _KEY.format(f"replikit.mask_opad_{purpose}")
        return f"sha256({outer} || sha256({inner} || convert_to({sql}, 'UTF8')))"

    def hex(self, sql: str, start: int = 0, length: int | None = None) -> str:
        """Lower-case hex of a byte range."""
        if start == 0 and length is None:
            return f"encode({sql}, 'hex')"
        assert length is not None
        return f"encode(substring({sql} from {start + 1} for {length}), 'hex')"

    def pick(self, digest: str, offset: int, items: Sequence[str]) -> str:
        """An item chosen by 4 big-endian bytes, as a literal array (items are checked)."""
        if not all(_WORD.fullmatch(i) for i in items):
            raise ValueError("pick() takes ASCII words only")
        words = ", ".join(f"'{i}'" for i in items)
        number = f"('x' || {self.hex(digest, offset, 4)})::bit(32)::bigint"
        return f"(ARRAY[{words}])[1 + mod({number}, {len(items)})]"

    def translate(self, sql: str, mark: str) -> str:
        """``translate(sql, from, to)`` with bound texts."""
        return f"translate({sql}, {mark}, {mark})"

    def concat(self, parts: Sequence[str]) -> str:
        """``a || b || ...`` (NULL when one is NULL)."""
        return "(" + " || ".join(parts) + ")"

    def sha256_hex(self, sql: str) -> str:
        """Unkeyed SHA-256 in hex (the ``dms-hash`` mask)."""
        return f"encode(sha256(convert_to({sql}, 'UTF8')), 'hex')"

    def ascii_case(self, sql: str, upper: bool) -> str:
        """ASCII letters only, as SQLite's ``upper``/``lower``."""
        low, up = string.ascii_lowercase, string.ascii_uppercase
        a, b = (low, up) if upper else (up, low)
        return f"translate({sql}, '{a}', '{b}')"


FLAVOR = PostgresFlavor()
