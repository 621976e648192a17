"""Positions of MongoDB sources: one resume point per watched collection (sans-IO).

replikit watches each selected collection with its own change stream, so a position holds,
per namespace (``database.collection``), the resume token of the last change delivered from
it, or for a collection with no change delivered yet the stream's start: a resume token
taken when the stream opened, or a cluster time. ``str(position)`` is ``mongo:`` followed by
the canonical Extended JSON of that map and round-trips through
:meth:`replikit.positions.Position.parse`.

Positions are ordered by their entries (namespace, then the token's ``_data``, digits
compared as numbers); MongoDB's own tokens of one collection sort in stream order that way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from replikit.errors import ConfigError
from replikit.positions import Position

__all__ = ["MongoPosition", "Resume"]

_DIGITS = re.compile(r"(\d+)")


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
        if self.token is None:
            assert self.at is not None
            return (0, *self.at)
        doc = self.token_doc or {}
        data = str(doc.get("_data", self.token))
        return (1, *(int(p) if p.isdigit() else p for p in _DIGITS.split(data)))

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

    def _key(self) -> tuple[Any, ...]:
        return self._order

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
