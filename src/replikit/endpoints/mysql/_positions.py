"""Binlog positions of MySQL and MariaDB sources (sans-IO).

A :class:`BinlogPosition` is the ``(file, pos)`` of the end of the last delivered transaction's
commit event (``XID`` or ``COMMIT``, or a standalone DDL statement): resuming there delivers
the next transaction. It also carries the server's GTID state at that point when known
(MariaDB ``domain-server-seq`` list, MySQL ``uuid:interval`` set), for reading after a failover
to another server, where file names differ, and the identity of the server whose binlog it is
(MySQL ``@@server_uuid``, MariaDB ``@@server_id``; ``""``: unknown, e.g. a position typed by
hand). Positions of one server are ordered by file sequence number, then offset; the GTID
part takes no part in ordering, and positions of two known, different servers have no order
at all: comparing them raises :class:`~replikit.errors.PositionLostError` (a file and offset
mean nothing on another server).

``str(BinlogPosition("binlog.000003", 1234, "0-101-7", "101"))`` is
``"mysql:binlog.000003:1234@0-101-7#101"`` and round-trips through
:meth:`replikit.positions.Position.parse`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from replikit.errors import ConfigError, PositionLostError
from replikit.positions import Position

__all__ = [
    "BinlogPosition",
    "describe_server",
    "mariadb_gtid_add",
    "mariadb_gtid_domains",
    "positions_in",
]

_FILE = re.compile(r"^(?P<stem>[^:@/\\]*?)(?P<seq>\d+)$")
_MARIADB_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True, slots=True, eq=True)
class BinlogPosition(Position):
    """The end of a transaction in a MySQL/MariaDB binary log.

    Attributes:
        file: binlog file name as the server lists it (``SHOW BINARY LOGS``), e.g.
            ``"binlog.000003"``.
        pos: byte offset in ``file`` just after the transaction's commit event.
        gtid: the GTID state at ``pos`` (``""``: unknown): MariaDB ``"0-101-7,1-102-3"``
            (last GTID per domain) or a MySQL GTID set ``"3E11FA47-...:1-5"``.
        server: the server whose binlog ``file`` is (see :func:`describe_server`; ``""``:
            unknown). Not part of equality.
    """

    file: str
    pos: int
    gtid: str = ""
    server: str = field(default="", compare=False)
    _order: tuple[str, int, int] = field(init=False, repr=False, compare=False, hash=False)
    prefix: ClassVar[str] = "mysql"

    def __post_init__(self) -> None:
        match = _FILE.match(self.file)
        if match is None or self.pos < 0:
            raise ConfigError(
                f"not a binlog position: file {self.file!r}, offset {self.pos} "
                "(expected e.g. 'binlog.000003' and an offset >= 4)"
            )
        object.__setattr__(self, "_order", (match["stem"], int(match["seq"]), self.pos))

    @property
    def sequence(self) -> int:
        """The file's sequence number (``binlog.000042`` -> 42)."""
        return self._order[1]

    def _key(self) -> tuple[str, int, int]:
        return self._order

    def __lt__(self, other: object) -> bool:
        if type(other) is not BinlogPosition:
            return NotImplemented
        if self.server and other.server and self.server != other.server:
            raise PositionLostError(
                f"binlog positions of two servers compared: {self} ({describe_server(self.server)}"
                f") and {other} ({describe_server(other.server)}); a binlog file and offset "
                "mean nothing on another server. A task whose checkpoint holds positions of "
                "another server (the source failed over during a resumed full load) cannot "
                "tell which changes its loaded rows hold: start it again with a fresh full load "
                "(replikit drop SRC DST --task-id TASK, then replicate again), or point it back "
                "at the server its checkpoint came from"
            )
        return self._order < other._order

    def _text(self) -> str:
        return (
            f"{self.file}:{self.pos}"
            + (f"@{self.gtid}" if self.gtid else "")
            + (f"#{self.server}" if self.server else "")
        )

    @classmethod
    def _from_text(cls, text: str) -> BinlogPosition:
        head, sep, server = text.rpartition("#")
        if not sep or ":" in server:  # no server part ('#' of a file name)
            head, server = text, ""
        head, _, gtid = head.partition("@")
        file, sep, pos = head.rpartition(":")
        if not sep or not pos.isdigit():
            raise ConfigError(
                f"not a binlog position: {text!r} (expected 'file:offset[@gtid][#server]')"
            )
        return cls(file, int(pos), gtid, server)

    def with_gtid(self, gtid: str) -> BinlogPosition:
        """The same file, offset and server with another GTID state."""
        return BinlogPosition(self.file, self.pos, gtid, self.server)


def describe_server(server: str) -> str:
    """A server identity of a position, for messages: ``server_id 1`` (MariaDB, which has no
    ``server_uuid``) or ``server_uuid 3e11fa47-...`` (MySQL); ``unknown server``."""
    if not server:
        return "unknown server"
    return f"server_id {server}" if server.isdigit() else f"server_uuid {server}"


def positions_in(file: str, server: str = "") -> Callable[[int, str], BinlogPosition]:
    """A maker of positions in ``file`` of ``server`` that parses the name once (a reader's
    hot path).

    ``make(pos, gtid)`` equals ``BinlogPosition(file, pos, gtid, server)``.
    """
    stem, seq, _ = BinlogPosition(file, 4)._order  # checks the name
    new = object.__new__
    slots: dict[str, Any] = dict(vars(BinlogPosition))  # the slots' member descriptors
    set_file, set_pos, set_gtid, set_server, set_order = (
        slots[name].__set__ for name in ("file", "pos", "gtid", "server", "_order")
    )

    def make(pos: int, gtid: str) -> BinlogPosition:
        if pos < 0:
            return BinlogPosition(file, pos, gtid, server)  # refused there
        position: BinlogPosition = new(BinlogPosition)
        set_file(position, file)
        set_pos(position, pos)
        set_gtid(position, gtid)
        set_server(position, server)
        set_order(position, (stem, seq, pos))
        return position

    return make


def mariadb_gtid_domains(state: str) -> dict[int, tuple[int, int]]:
    """Parse a MariaDB GTID position (``"0-101-7,1-102-3"``) into ``{domain: (server, seq)}``."""
    out: dict[int, tuple[int, int]] = {}
    for part in filter(None, (p.strip() for p in state.split(","))):
        match = _MARIADB_GTID.match(part)
        if match is None:
            raise ConfigError(f"not a MariaDB GTID: {part!r} in {state!r}")
        out[int(match[1])] = (int(match[2]), int(match[3]))
    return out


def mariadb_gtid_add(state: str, gtid: str) -> str:
    """``state`` with ``gtid`` (``"domain-server-seq"``) as its domain's last transaction."""
    domains = mariadb_gtid_domains(state)
    domains.update(mariadb_gtid_domains(gtid))
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(domains.items()))
