"""Positions of MongoDB sources: one resume point per watched collection (sans-IO).

replikit watches each selected collection with its own change stream, so a position holds,
per namespace (``database.collection``), the resume token of the last change delivered from
it, or for a collection with no change delivered yet the stream's start: a resume token
taken when the stream opened, or a cluster time. ``str(position)`` is ``mongo:`` followed by
the canonical Extended JSON of that map and round-trips through
:meth:`replikit.positions.Position.parse`.

A resume point is ordered by cluster time, a Timestamp ``(seconds, increment)`` compared as
that pair: a start time ``at`` is just before the changes of that time, a MongoDB resume
token just after the change it names, whose cluster time its ``_data`` begins with (a
KeyString: the byte 130, then the Timestamp as 8 big-endian bytes; tokens of one time then
sort by the rest of their bytes). A token without a cluster time (nx-27017's ``nx:N``, a
test stand-in) sorts after every timed point, by its text with digits compared as numbers.

Positions naming the same collections are ordered by their entries, namespace after
namespace (a linear order of a stream's successive positions). A position naming fewer
collections (a reload snapshot names its table's only: :meth:`MongoPosition.only`) compares
on the collections both name: ``p <= q`` when every one of them is at or before in ``p``,
and ``p < q`` when any is before (``not q <= p``), so that "the change at ``p`` is in the
snapshot ``q``" and "the stream at ``p`` is not past the snapshot ``q``" both read as the
pipeline writes them. A reload snapshot at cluster time ``S`` holds every change of time
``S`` or before, so its point is the start time just after ``S``
(:meth:`Resume.after_time`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from replikit.errors import ConfigError
from replikit.positions import Position

if TYPE_CHECKING:
    from replikit.schema.model import TableId

__all__ = ["MongoPosition", "Resume", "cluster_time_of"]

_DIGITS = re.compile(r"(\d+)")
_TIMESTAMP_TYPE = 130  # KeyString's type byte of a BSON Timestamp
_UINT32 = 2**32


def cluster_time_of(token: Mapping[str, Any]) -> tuple[int, int] | None:
    """The cluster time ``(seconds, increment)`` a MongoDB resume token (or post-batch
    token) begins with: ``_data`` as hex text (4.2+) or bytes (3.6, 4.0); ``None`` for a
    token of another form."""
    data = token.get("_data")
    raw: bytes
    if isinstance(data, str):
        try:
            raw = bytes.fromhex(data[:18])
        except ValueError:
            return None
    elif isinstance(data, bytes | bytearray):
        raw = bytes(data[:9])
    else:
        return None
    if len(raw) < 9 or raw[0] != _TIMESTAMP_TYPE:
        return None
    value = int.from_bytes(raw[1:9], "big")
    return value >> 32, value & (_UINT32 - 1)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where one collection's stream resumes: after ``token`` (the resume token document as
    canonical Extended JSON text), or at cluster time ``at`` (``(seconds, increment)``)
    when no token is known."""

    token: str | None = None
    at: tuple[int, int] | None = None

    @classmethod
    def after(cls, token: Mapping[str, Any]) -> Resume:
        """The resume point after resume token ``token``."""
        from bson import json_util

        text = json_util.dumps(dict(token), json_options=json_util.CANONICAL_JSON_OPTIONS)
        return cls(token=str(text))

    @classmethod
    def after_time(cls, time: tuple[int, int]) -> Resume:
        """The point after every change of cluster time ``time`` or before: the start time
        one increment later (a snapshot read at ``time`` holds exactly those changes)."""
        seconds, increment = time
        if increment + 1 < _UINT32:
            return cls(at=(seconds, increment + 1))
        return cls(at=(seconds + 1, 0))

    @property
    def cluster_time(self) -> tuple[int, int] | None:
        """The point's cluster time: its start time, or its token's (``None``: a token
        without one)."""
        if self.at is not None:
            return self.at
        return cluster_time_of(self.token_doc or {})

    @property
    def token_doc(self) -> dict[str, Any] | None:
        """The resume token document (``None``: a cluster time)."""
        if self.token is None:
            return None
        from bson import json_util

        return dict(json_util.loads(self.token))

    def __post_init__(self) -> None:
        if (self.token is None) == (self.at is None):
            raise ConfigError("a MongoDB resume point is a token or a cluster time, not both")

    def _key(self) -> tuple[Any, ...]:
        if self.at is not None:
            return (0, *self.at, 0, "")
        doc = self.token_doc or {}
        data = doc.get("_data", self.token)
        time = cluster_time_of(doc)
        if time is not None:
            rest = data.hex() if isinstance(data, bytes | bytearray) else str(data).lower()
            return (0, *time, 1, rest)
        return (1, *(int(p) if p.isdigit() else p for p in _DIGITS.split(str(data))))

    def to_doc(self) -> dict[str, Any]:
        """The stored form: ``{"token": ...}`` or ``{"at": Timestamp}``."""
        if self.token is not None:
            return {"token": self.token_doc}
        from bson.timestamp import Timestamp

        assert self.at is not None
        return {"at": Timestamp(*self.at)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Resume:
        """The resume point of :meth:`to_doc`."""
        if "token" in doc:
            return cls.after(doc["token"])
        ts = doc.get("at")
        if ts is None or not hasattr(ts, "time"):
            raise ConfigError(f"not a MongoDB resume point: {doc!r}")
        return cls(at=(int(ts.time), int(ts.inc)))


@dataclass(frozen=True, slots=True, eq=True)
class MongoPosition(Position):
    """Per watched collection (``"db.coll"``), where its change stream resumes."""

    entries: tuple[tuple[str, Resume], ...] = ()
    _order: tuple[Any, ...] = field(init=False, repr=False, compare=False, hash=False)
    prefix: ClassVar[str] = "mongo"

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.entries, key=lambda e: e[0]))
        object.__setattr__(self, "entries", ordered)
        object.__setattr__(self, "_order", tuple((ns, r._key()) for ns, r in ordered))

    @classmethod
    def of(cls, points: Mapping[str, Resume]) -> MongoPosition:
        """The position of ``points`` (namespace -> resume point)."""
        return cls(tuple(points.items()))

    @property
    def points(self) -> dict[str, Resume]:
        """Namespace -> resume point."""
        return dict(self.entries)

    def moved(self, namespace: str, token: Mapping[str, Any]) -> MongoPosition:
        """This position with ``namespace`` resuming after ``token``."""
        points = self.points
        points[namespace] = Resume.after(token)
        return MongoPosition.of(points)

    def only(self, namespaces: Iterable[str]) -> MongoPosition:
        """This position for ``namespaces`` only (what a reload snapshot of those collections
        is compared on)."""
        keep = set(namespaces)
        return MongoPosition(tuple(e for e in self.entries if e[0] in keep))

    @override
    def for_table(self, table: TableId) -> MongoPosition:
        """The point of ``table``'s collection only."""
        return self.only([str(table)])

    def _key(self) -> tuple[Any, ...]:
        return self._order

    def _before(self, other: MongoPosition, *, strict: bool) -> bool:
        """``self < other`` (``strict``) or ``self <= other``, as the module docs say."""
        mine, theirs = self._order, other._order
        if [e[0] for e in mine] == [e[0] for e in theirs]:  # the same collections
            return bool(mine < theirs) if strict else bool(mine <= theirs)
        ours, others = dict(mine), dict(theirs)
        pairs = [(ours[n], others[n]) for n in sorted(ours.keys() & others.keys())]
        if strict:  # any collection before: not past the other position
            return any(a < b for a, b in pairs)
        return all(a <= b for a, b in pairs)

    def __le__(self, other: object) -> bool:
        if type(other) is not MongoPosition:
            return NotImplemented
        return self._before(other, strict=False)

    def __lt__(self, other: object) -> bool:
        if type(other) is not MongoPosition:
            return NotImplemented
        return self._before(other, strict=True)

    def __ge__(self, other: object) -> bool:
        if type(other) is not MongoPosition:
            return NotImplemented
        return other <= self

    def __gt__(self, other: object) -> bool:
        if type(other) is not MongoPosition:
            return NotImplemented
        return other < self

    def _text(self) -> str:
        from bson import json_util

        doc = {ns: r.to_doc() for ns, r in self.entries}
        return str(json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS))

    @classmethod
    def _from_text(cls, text: str) -> MongoPosition:
        from bson import json_util

        try:
            doc = json_util.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ConfigError(
                f"not a MongoDB position: {text!r} (expected Extended JSON "
                '{"db.coll": {"token": {...}}})'
            )
        return cls.of({str(ns): Resume.from_doc(r) for ns, r in doc.items()})
