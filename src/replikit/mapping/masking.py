"""Data masking, deterministic under a task secret.

Every mask that derives its output from the value does so with HMAC-SHA256 keyed by the task
secret (``TaskSettings(mask_secret=...)`` or ``REPLIKIT_MASK_SECRET``), over the value's text
alone: the same value masks to the same output in every table, column and run, so foreign
keys and joins between masked columns still hold, and nobody without the secret can reverse a
mask by hashing guesses (an unkeyed hash of an e-mail address or a phone number can be).

Masks (``MASKS``): ``digits-mask`` (every digit becomes one character), ``digits-randomize``
(every digit becomes a digit drawn from the HMAC), ``hash`` (the HMAC's 64 hex digits;
``dms-hash`` is DMS's unkeyed upper-case SHA-256, for compatibility only), ``redact`` (a fixed
text), ``null``, and ``fake-first-name``, ``fake-last-name``, ``fake-name``, ``fake-email``,
``fake-phone``, ``fake-address`` (drawn from built-in lists by the HMAC).

>>> m = Mask("hash")
>>> f = m.function(b"k")
>>> f("ada@example.com") == f("ada@example.com"), len(f("ada@example.com"))
(True, 64)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from replikit.errors import ConfigError
from replikit.schema.types import Kind, Type

__all__ = ["FIRST_NAMES", "LAST_NAMES", "MASKS", "SECRET_ENV", "Mask", "mask_secret"]

SECRET_ENV = "REPLIKIT_MASK_SECRET"
MASKS = (
    "digits-mask",
    "digits-randomize",
    "hash",
    "dms-hash",
    "redact",
    "null",
    "fake-first-name",
    "fake-last-name",
    "fake-name",
    "fake-email",
    "fake-phone",
    "fake-address",
)
_TEXTS = frozenset({Kind.STRING, Kind.TEXT})
_FIRST = [
    "Ada",
    "Alan",
    "Alice",
    "Amara",
    "Anna",
    "Arjun",
    "Ben",
    "Bruno",
    "Carla",
    "Chen",
    "Clara",
    "Dara",
    "David",
    "Dmitri",
    "Elena",
    "Emil",
    "Eva",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jamal",
    "Jana",
    "Jonas",
    "Karin",
    "Kofi",
    "Lara",
    "Leo",
    "Lina",
    "Luca",
    "Maya",
    "Mateo",
    "Mira",
    "Nadia",
    "Nico",
    "Nora",
    "Omar",
    "Paula",
    "Petra",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sami",
    "Sara",
    "Tariq",
    "Tess",
    "Ula",
    "Victor",
    "Vera",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
    "Zara",
]
_LAST = [
    "Abbott",
    "Alvarez",
    "Becker",
    "Bianchi",
    "Brooks",
    "Castro",
    "Chen",
    "Dias",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Hansen",
    "Ito",
    "Jensen",
    "Kaur",
    "Khan",
    "Kowalski",
    "Larsen",
    "Lopez",
    "Meyer",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Olsen",
    "Park",
    "Patel",
    "Pereira",
    "Quispe",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Torres",
    "Ueda",
    "Vargas",
    "Weber",
    "Wong",
    "Yamada",
    "Young",
    "Zimmer",
    "Zhou",
]
_STREETS = [
    "Oak",
    "Maple",
    "Cedar",
    "Elm",
    "Pine",
    "Birch",
    "Willow",
    "Ash",
    "Lake",
    "Hill",
    "River",
    "Park",
    "Mill",
    "Church",
    "Station",
    "Garden",
    "Meadow",
    "Forest",
    "Spring",
    "Bridge",
]
_SUFFIXES = ("Street", "Road", "Avenue", "Lane", "Way", "Drive")
_CITIES = [
    "Springfield",
    "Riverton",
    "Lakeside",
    "Fairview",
    "Greenville",
    "Bristol",
    "Clinton",
    "Madison",
    "Georgetown",
    "Salem",
    "Franklin",
    "Ashland",
    "Oxford",
    "Milton",
    "Newport",
]
FIRST_NAMES: tuple[str, ...] = tuple(_FIRST)
LAST_NAMES: tuple[str, ...] = tuple(_LAST)
#: the longest text each fake can give (a masked column is widened to hold it)
FAKE_WIDTH = {
    "fake-first-name": 12,
    "fake-last-name": 12,
    "fake-name": 25,
    "fake-email": 48,
    "fake-phone": 12,
    "fake-address": 60,
}


def mask_secret(given: str | bytes | None, environ: dict[str, str] | None = None) -> bytes:
    """The task's masking key: ``given``, else ``REPLIKIT_MASK_SECRET``; ``ConfigError``
    when neither is set (a built-in default would make masks reversible by dictionary)."""
    if given is None:
        given = (os.environ if environ is None else environ).get(SECRET_ENV) or None
    if not given:
        raise ConfigError(
            "masking needs a task secret: set TaskSettings(mask_secret=...) or the "
            f"{SECRET_ENV} environment variable (any long random text; keep it to get the "
            "same masked values in later runs)",
            setting="mask_secret",
        )
    return given.encode() if isinstance(given, str) else given


def _digest(key: bytes, purpose: str, value: Any) -> bytes:
    text = value if isinstance(value, str) else _canonical(value)
    return hmac.digest(key, f"{purpose}\x00{text}".encode(), "sha256")


def _canonical(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value.normalize()) if value == value.to_integral_value() else str(value)
    return str(value)


def _digits(key: bytes, value: Any) -> Iterator[str]:
    """Digits drawn from HMAC blocks of ``value`` (unbiased: bytes >= 250 are skipped)."""
    n = 0
    while True:
        for byte in _digest(key, f"digits{n}", value):
            if byte < 250:
                yield str(byte % 10)
        n += 1


@dataclass(frozen=True, slots=True)
class Mask:
    """One masking rule's action: ``kind`` (one of ``MASKS``) and its ``value`` (the
    character of ``digits-mask``, the text of ``redact``)."""

    kind: str
    value: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MASKS:
            raise ConfigError(f"unknown mask {self.kind!r}; use one of {', '.join(MASKS)}")
        if self.kind == "digits-mask":
            v = self.value if self.value is not None else "*"
            if len(v) != 1 or not v.isprintable() or v.isspace() or not v.isascii():
                raise ConfigError(
                    f"digits-mask takes one printable, non-space ASCII character, got {v!r}"
                )

    @property
    def keyed(self) -> bool:
        """Whether the mask needs the task secret."""
        return self.kind not in ("digits-mask", "dms-hash", "redact", "null")

    def describe(self) -> str:
        """How the plan names the mask."""
        if self.kind == "digits-mask":
            return f"digits-mask ({self.value or '*'!r})"
        if self.kind == "hash":
            return "hash (HMAC-SHA256 under the task secret)"
        if self.kind == "dms-hash":
            return "dms-hash (unkeyed SHA-256, as DMS)"
        if self.kind == "redact":
            return f"redact ({self.replacement!r})"
        return self.kind

    @property
    def replacement(self) -> str:
        """The text of ``redact``."""
        return self.value if self.value is not None else "[redacted]"

    def check(self, t: Type, where: str) -> Type:
        """The column type the masked values need (``t`` widened for a hash, a fake or a
        redaction); ``ConfigError`` when the mask cannot apply to ``t``."""
        k = self.kind
        if k == "null":
            return t
        if k == "digits-randomize":
            if t.kind in _TEXTS or t.kind in (Kind.INT, Kind.DECIMAL):
                return t
        elif t.kind in _TEXTS:
            width = {"hash": 64, "dms-hash": 64, "redact": len(self.replacement)}.get(
                k, FAKE_WIDTH.get(k, 0)
            )
            if t.kind is Kind.STRING and t.length is not None and t.length < width:
                return Type.string(width, native="")
            return t
        raise ConfigError(
            f"{where}: mask {k} does not apply to a {t.describe()} column; change the "
            "column's type to a string first (change_type)"
        )

    def function(self, key: bytes | None) -> Callable[[Any], Any]:
        """The masking function (``key``: the task secret for keyed masks)."""
        k = self.kind
        if self.keyed and not key:
            raise ConfigError(f"mask {k} needs the task secret")
        secret = key or b""
        if k == "null":
            return lambda v: None
        if k == "redact":
            text = self.replacement
            return lambda v: None if v is None else text
        if k == "digits-mask":
            char = self.value or "*"
            return lambda v: None if v is None else "".join(char if c.isdigit() else c for c in v)
        if k == "dms-hash":
            return lambda v: (
                None if v is None else hashlib.sha256(_canonical(v).encode()).hexdigest().upper()
            )
        if k == "hash":
            return lambda v: None if v is None else _digest(secret, "hash", v).hex()
        if k == "digits-randomize":
            return lambda v: _randomize(secret, v)
        return _faker(k, secret)


def _randomize(key: bytes, value: Any) -> Any:
    if value is None:
        return None
    nxt = _digits(key, value).__next__
    if isinstance(value, str):
        return "".join(nxt() if c.isdigit() else c for c in value)
    text = str(value)
    digits = []
    for i, c in enumerate(text):
        if c.isdigit():
            d = nxt()
            leading = i == 0 or (not text[i - 1].isdigit() and text[i - 1] != ".")
            if leading and d == "0" and len(text) > i + 1 and text[i + 1].isdigit():
                d = str(1 + int(nxt()) % 9)  # keep the number of digits
            digits.append(d)
        else:
            digits.append(c)
    out = "".join(digits)
    return int(out) if isinstance(value, int) else Decimal(out)


def _pick(digest: bytes, offset: int, items: list[str] | tuple[str, ...]) -> str:
    return items[int.from_bytes(digest[offset : offset + 4], "big") % len(items)]


def _faker(kind: str, key: bytes) -> Callable[[Any], Any]:
    def fake(value: Any) -> Any:
        if value is None:
            return None
        d = _digest(key, "fake", value)
        first, last = _pick(d, 0, _FIRST), _pick(d, 4, _LAST)
        if kind == "fake-first-name":
            return first
        if kind == "fake-last-name":
            return last
        if kind == "fake-name":
            return f"{first} {last}"
        if kind == "fake-email":
            return f"{first.lower()}.{last.lower()}.{d[8:13].hex()}@example.com"
        if kind == "fake-phone":
            n = int.from_bytes(d[8:16], "big")
            return f"555-{n % 1000:03d}-{(n // 1000) % 10000:04d}"
        number = 1 + int.from_bytes(d[8:10], "big") % 999
        street = f"{_pick(d, 10, _STREETS)} {_pick(d, 14, _SUFFIXES)}"
        return f"{number} {street}, {_pick(d, 18, _CITIES)}"

    return fake
