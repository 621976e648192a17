"""How PostgreSQL spells the mapping steps its SELECT computes (:mod:`replikit.mapping.pushed`).

HMAC-SHA256 uses ``sha256()`` (PostgreSQL 11+) over ``convert_to(text, 'UTF8')``, the bytes
Python hashes; the key pads are the session settings ``replikit.mask_ipad`` /
``replikit.mask_opad`` (hex), which the reader sets with ``set_config`` and bound parameters
inside the read's transaction (``is_local``), so the key is in no SQL text, log line or
``pg_stat_activity`` query. ``upper``/``lower`` are a ``translate`` of the 26 ASCII letters:
SQLite's functions change nothing else.
"""

from __future__ import annotations

import string

from replikit.endpoints.postgres._dialect import DIALECT

__all__ = ["FLAVOR", "PostgresFlavor"]

_TEXT_NATIVES = ("text", "character varying", "varchar")
_KEY = "decode(current_setting('{}'), 'hex')"


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

    def hmac_hex(self, sql: str) -> str:
        """HMAC-SHA256 = H((K ^ opad) || H((K ^ ipad) || m)), in hex."""
        inner = _KEY.format("replikit.mask_ipad")
        outer = _KEY.format("replikit.mask_opad")
        return f"encode(sha256({outer} || sha256({inner} || convert_to({sql}, 'UTF8'))), 'hex')"

    def sha256_hex(self, sql: str) -> str:
        """Unkeyed SHA-256 in hex (the ``dms-hash`` mask)."""
        return f"encode(sha256(convert_to({sql}, 'UTF8')), 'hex')"

    def ascii_case(self, sql: str, upper: bool) -> str:
        """ASCII letters only, as SQLite's ``upper``/``lower``."""
        low, up = string.ascii_lowercase, string.ascii_uppercase
        a, b = (low, up) if upper else (up, low)
        return f"translate({sql}, '{a}', '{b}')"


FLAVOR = PostgresFlavor()
