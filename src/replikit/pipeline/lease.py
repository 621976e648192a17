"""The lease that lets one replicator of a task write while the others stand by (fencing).

Any number of processes may run the same task against the same target. One holds the task's
**lease**, a row of ``replikit_leases`` in the target (next to ``replikit_checkpoints``):
``holder``, ``epoch`` and ``expires_at``. The holder renews it every third of its duration; the
others (standbys) poll it and take it when it has expired, with a higher epoch.

Taking over is safe however long the old holder paused (a GC stall, a frozen VM, a partition):
every transaction the holder commits to the target (each CDC batch with its checkpoint) first
reads the lease row **with a share lock** and checks that its epoch is still current
(:meth:`Lease.fence`). A takeover changes the row, so it waits for every transaction that
holds that lock to end, and every transaction that starts after it finds a newer epoch and
rolls back (:class:`LeaseLostError`). The old holder therefore commits nothing after a
takeover; it notices at its next transaction and steps down. Clocks only decide *when* a standby
may take over (a skewed clock makes a takeover early or late), never whether two write at once.

A holder frozen *inside* a transaction keeps its locks. The server's idle-transaction limit
(:meth:`Lease.session_statements`) ends it when it waits for the client idle in transaction; a
process frozen while still sending a transaction's statements is not idle to PostgreSQL, so
each PostgreSQL session of a holder also takes a shared advisory lock named by the task and its
epoch, and a takeover ends the sessions still tagged with an earlier epoch
(:meth:`Lease._end_previous`): their transactions could not commit anyway.

``replikit_lease_members`` keeps a heartbeat per process (holder or standby) and
``replikit_takeovers`` one row per epoch: who took the lease, from whom, when and why, for
``replikit status``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from replikit.errors import CapabilityError, Error, StoppedError
from replikit.pipeline.control import (
    FLAVORS,
    Flavor,
    SupportsControl,
    control_cursor,
    table_exists,
)

__all__ = [
    "LEASES",
    "MEMBERS",
    "TAKEOVERS",
    "Lease",
    "LeaseLostError",
    "LeaseState",
    "Member",
    "Takeover",
    "drop_lease",
    "lease_report",
    "read_lease",
    "read_members",
]

log = logging.getLogger("replikit.lease")

LEASES = "replikit_leases"
MEMBERS = "replikit_lease_members"
TAKEOVERS = "replikit_takeovers"

# the clause that takes a share lock on the rows a SELECT reads (SQLite locks the whole
# database for the writing transaction, so it needs none)
_SHARE = {"postgres": " FOR SHARE", "mysql": " LOCK IN SHARE MODE", "sqlite": ""}


class LeaseLostError(StoppedError):
    """This replicator's lease was taken over: it committed nothing after that and stops."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    """The lease of a task as the target records it."""

    task: str
    holder: str
    epoch: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    """A replicator process of a task, by its last heartbeat."""

    task: str
    member: str
    role: str  # "holder" or "standby"
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class Takeover:
    """One epoch of a task's lease: who took it, from whom, when and why."""

    task: str
    epoch: int
    holder: str
    previous: str | None
    reason: str
    at: datetime


_ATTEMPTS = 5


def _contended(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost race the server rolled back (deadlock, serialization,
    a locked SQLite database): run the transaction again."""
    text = f"{exc} {exc.__cause__}".lower()
    return any(s in text for s in ("deadlock", "could not serialize", "database is locked", "1213"))


def member_name() -> str:
    """This process's name among the replicators: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _flavor(endpoint: object) -> Flavor:
    family = getattr(endpoint, "family", "")
    if not isinstance(endpoint, SupportsControl) or family not in _SHARE:
        raise CapabilityError(
            f"{endpoint!r} cannot hold a replication lease: standby replicators need a "
            "PostgreSQL, MySQL/MariaDB or SQLite target (a DuckDB file or a folder of files "
            "takes one writing process)"
        )
    return FLAVORS[family]


def _creates(f: Flavor) -> list[str]:
    out = f.preamble()  # the creation lock first
    out += [
        f"CREATE TABLE IF NOT EXISTS {f.table(LEASES)} (task {f.text} NOT NULL PRIMARY KEY, "
        f"holder {f.text} NOT NULL, epoch BIGINT NOT NULL, expires_at {f.time} NOT NULL, "
        f"fences BIGINT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {f.table(MEMBERS)} (task {f.text} NOT NULL, "
        f"member {f.text} NOT NULL, role {f.text} NOT NULL, seen_at {f.time} NOT NULL, "
        "PRIMARY KEY (task, member))",
        f"CREATE TABLE IF NOT EXISTS {f.table(TAKEOVERS)} (task {f.text} NOT NULL, "
        f"epoch BIGINT NOT NULL, holder {f.text} NOT NULL, previous {f.text}, "
        f"reason {f.long_text} NOT NULL, taken_at {f.time} NOT NULL, PRIMARY KEY (task, epoch))",
    ]
    return out


def _utc(value: Any) -> datetime:
    if isinstance(value, bytes | bytearray):
        value = value.decode()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


class Lease:
    """One process's view of a task's lease in ``endpoint`` (the target).

    Args:
        endpoint: the target endpoint (PostgreSQL, MySQL/MariaDB or SQLite).
        task: the task id.
        duration: seconds a lease lasts without renewal (the takeover time).
        member: this process's name (default: host, pid and a random suffix).
        clock: the current UTC time (tests replace it).
    """

    def __init__(
        self,
        endpoint: object,
        task: str,
        *,
        duration: float = 10.0,
        member: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if duration <= 0:
            raise ValueError(f"a lease lasts a positive number of seconds, not {duration}")
        self._flavor = _flavor(endpoint)
        self._endpoint: SupportsControl = endpoint  # type: ignore[assignment]
        self.task = task
        self.duration = duration
        self.member = member or member_name()
        self._clock = clock
        self._created = False
        self._mariadb: bool | None = None
        self.epoch: int | None = None  # the epoch held, None while standing by
        self.takeovers = 0

    def __repr__(self) -> str:
        held = f"epoch {self.epoch}" if self.epoch is not None else "standby"
        return f"Lease(task={self.task!r}, member={self.member!r}, {held})"

    # -- sessions -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, doing: str) -> Iterator[Any]:
        with control_cursor(self._endpoint, f"{doing} (task {self.task!r})") as cur:
            for statement in self.session_statements(self._session_flavor(cur), tagged=False):
                cur.execute(statement)
            if not self._created:  # replicators starting together create the tables once
                for statement in _creates(self._flavor):
                    cur.execute(statement)
            yield cur
        self._created = True

    def _session_flavor(self, cur: Any) -> str:
        family = getattr(self._endpoint, "family", "")
        if family != "mysql":
            return str(family)
        if self._mariadb is None:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
            self._mariadb = bool(row) and "mariadb" in str(_text(row[0])).lower()
        return "mariadb" if self._mariadb else "mysql"

    def _sql(self, text: str) -> str:
        return text.format(
            leases=self._flavor.table(LEASES),
            members=self._flavor.table(MEMBERS),
            takeovers=self._flavor.table(TAKEOVERS),
        ).replace("%s", self._flavor.param)

    def _when(self, ts: datetime) -> Any:
        return self._flavor.when(ts)

    # -- holding ------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the lease if nobody holds it or it expired; ``True`` when this process holds
        it now (its :attr:`epoch` is then the new epoch). A standby records its heartbeat.

        Replicators starting together may deadlock on the lease rows (MySQL's gap locks); the
        loser's transaction is rolled back by the server and taken again here.
        """
        for attempt in range(_ATTEMPTS):
            try:
                return self._acquire()
            except Error as exc:
                if attempt == _ATTEMPTS - 1 or not _contended(exc):
                    raise
                time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _acquire(self) -> bool:
        now = self._clock()
        expires = now + timedelta(seconds=self.duration)
        with self._session("taking the replication lease") as cur:
            cur.execute(
                self._sql("SELECT holder, epoch, expires_at FROM {leases} WHERE task = %s"),
                (self.task,),
            )
            row = cur.fetchone()
            won = False
            previous: str | None = None
            reason = "first holder"
            if row is None:
                cur.execute(
                    self._sql(
                        self._flavor.ignore_insert.format(
                            table="{leases}",
                            columns="task, holder, epoch, expires_at, fences",
                            values="%s, %s, 1, %s, 0",
                        )
                    ),
                    (self.task, self.member, self._when(expires)),
                )
                won, epoch = cur.rowcount == 1, 1
            else:
                holder, epoch, until = _text(row[0]), int(row[1]), _utc(row[2])
                if holder == self.member and epoch == self.epoch:
                    won = self._renew(cur, expires)
                elif until <= now:
                    cur.execute(
                        self._sql(
                            "UPDATE {leases} SET holder = %s, epoch = %s, expires_at = %s "
                            "WHERE task = %s AND epoch = %s AND expires_at <= %s"
                        ),  # re-checked after a wait on the row: a renewal meanwhile wins
                        (
                            self.member,
                            epoch + 1,
                            self._when(expires),
                            self.task,
                            epoch,
                            self._when(now),
                        ),
                    )
                    won, previous, epoch = cur.rowcount == 1, holder, epoch + 1
                    reason = (
                        f"the lease of {holder} (epoch {epoch - 1}) expired at {until:%H:%M:%S}"
                    )
            if won and epoch != self.epoch:
                cur.execute(
                    self._sql(
                        "INSERT INTO {takeovers} (task, epoch, holder, previous, reason, taken_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s)"
                    ),
                    (self.task, epoch, self.member, previous, reason, self._when(now)),
                )
            self._heartbeat(cur, "holder" if won else "standby", now)
        if won and epoch != self.epoch:
            self.epoch = epoch
            self.takeovers += previous is not None
            log.info("task %s: %s holds the lease, epoch %d (%s)", self.task, self.member,
                     epoch, reason)  # fmt: skip
            if previous is not None and getattr(self._endpoint, "family", "") == "postgres":
                self._end_previous(epoch, previous)
        elif not won:
            self.epoch = None
        return won

    def renew(self) -> bool:
        """Extend the lease; ``False`` (and :attr:`epoch` ``None``) when it was taken over."""
        if self.epoch is None:
            return False
        now = self._clock()
        with self._session("renewing the replication lease") as cur:
            held = self._renew(cur, now + timedelta(seconds=self.duration))
            self._heartbeat(cur, "holder" if held else "standby", now)
        if not held:
            log.warning("task %s: %s lost the lease (epoch %d)", self.task, self.member,
                        self.epoch)  # fmt: skip
            self.epoch = None
        return held

    def _renew(self, cur: Any, expires: datetime) -> bool:
        cur.execute(
            self._sql(
                "UPDATE {leases} SET expires_at = %s WHERE task = %s AND epoch = %s AND holder = %s"
            ),
            (self._when(expires), self.task, self.epoch, self.member),
        )
        return bool(cur.rowcount == 1)

    def release(self) -> None:
        """Give the lease up now (a clean stop), so a standby takes over without waiting."""
        if self.epoch is None:
            return
        with self._session("releasing the replication lease") as cur:
            cur.execute(
                self._sql(
                    "UPDATE {leases} SET expires_at = %s WHERE task = %s AND epoch = %s "
                    "AND holder = %s"
                ),
                (self._when(self._clock() - timedelta(seconds=1)), self.task, self.epoch,
                 self.member),
            )  # fmt: skip
            cur.execute(
                self._sql("DELETE FROM {members} WHERE task = %s AND member = %s"),
                (self.task, self.member),
            )
        self.epoch = None

    def _heartbeat(self, cur: Any, role: str, now: datetime) -> None:
        cur.execute(
            self._sql("DELETE FROM {members} WHERE task = %s AND member = %s"),
            (self.task, self.member),
        )
        cur.execute(
            self._sql(
                "INSERT INTO {members} (task, member, role, seen_at) VALUES (%s, %s, %s, %s)"
            ),
            (self.task, self.member, role, self._when(now)),
        )

    # -- fencing ------------------------------------------------------------------------------
    def session_statements(self, flavor: str, *, tagged: bool = True) -> tuple[str, ...]:
        """A server-side limit on idle transactions of about the lease's duration, for each
        connection that writes under this lease: a writer frozen inside a transaction (its
        renewal or an apply) loses that transaction, and its locks, when its lease expires,
        so the takeover is not held up. PostgreSQL and MariaDB have one; MySQL and SQLite do
        not (there a frozen writer holds the takeover until it wakes up, and is fenced).

        On PostgreSQL a ``tagged`` session (a writer's, not the lease's own) also takes a
        shared advisory lock on (the task's tag, the epoch), which names it to the process
        that takes the lease over next (:meth:`_end_previous`)."""
        seconds = max(1, round(self.duration))
        if flavor == "postgres":
            limit = f"SET idle_in_transaction_session_timeout = {seconds * 1000}"
            if not tagged or self.epoch is None:
                return (limit,)
            return (limit, f"SELECT pg_advisory_lock_shared({self._tag}, {int(self.epoch)})")
        if flavor == "mariadb":
            return (f"SET SESSION idle_transaction_timeout = {seconds}",)
        return ()

    @property
    def _tag(self) -> int:
        """The first key of this task's advisory locks (a positive 32-bit hash of its id)."""
        return zlib.crc32(f"replikit lease {self.task}".encode()) & 0x7FFFFFFF

    def _end_previous(self, epoch: int, previous: str) -> None:
        """End the PostgreSQL sessions earlier holders tagged (:meth:`session_statements`).

        Their transactions cannot commit any more (the fence), but a holder frozen while it
        sends one, mid-pipeline or mid-``COPY``, is not idle to the server, so its row locks
        would hold up this holder's first transactions (which apply the same changes again)
        until it wakes up. Failing here (no right to signal those sessions) only logs: the
        locks then go when the old holder wakes up, is fenced and rolls back."""
        try:
            with self._session("ending the previous holder's sessions") as cur:
                cur.execute(
                    "SELECT pid, pg_terminate_backend(pid, 1000) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND classid = %s::oid AND objid < %s::oid "
                    "AND objsubid = 2 AND granted AND pid <> pg_backend_pid()",
                    (self._tag, epoch),
                )
                ended = [int(pid) for pid, _ in cur.fetchall()]
        except Error as exc:
            log.warning("task %s: could not end the target sessions of %s, which lost the "
                        "lease: %s; any row locks they hold go when it wakes up and is fenced",
                        self.task, previous, exc)  # fmt: skip
            return
        if ended:
            log.warning("task %s: ended %d target session(s) of %s, which lost the lease "
                        "(backend pids %s)", self.task, len(ended), previous,
                        ", ".join(map(str, sorted(ended))))  # fmt: skip

    def fence(self, execute: Callable[[str, tuple[Any, ...]], list[Any]]) -> None:
        """Check, inside the caller's target transaction, that this process still holds the
        lease, and keep it from being taken over until that transaction ends (a share lock
        on the lease row). ``execute(sql, params)`` runs a query on the transaction's
        connection and returns its rows.

        Raises:
            LeaseLostError: another process took the lease; roll the transaction back.
        """
        epoch = self.epoch
        if epoch is not None:
            rows = execute(
                self._sql(
                    "SELECT epoch FROM {leases} WHERE task = %s AND epoch = %s AND holder = %s"
                )
                + _SHARE[getattr(self._endpoint, "family", "")],
                (self.task, epoch, self.member),
            )
            if rows:
                return
        raise LeaseLostError(
            f"task {self.task!r}: {self.member} no longer holds the replication lease "
            f"(epoch {epoch}); another replicator took over, so this one committed nothing "
            "and steps down"
        )

    def wait(self, stop: threading.Event, *, poll: float | None = None) -> bool:
        """Stand by until this process holds the lease (``True``) or ``stop`` is set."""
        interval = self.duration / 3 if poll is None else poll
        announced = False
        while not stop.is_set():
            if self.acquire():
                return True
            if not announced:
                state = read_lease(self._endpoint, self.task)
                log.info("task %s: %s stands by (lease held by %s, epoch %s)", self.task,
                         self.member, state.holder if state else "?",
                         state.epoch if state else "?")  # fmt: skip
                announced = True
            stop.wait(interval)
        return False


def read_lease(endpoint: object, task: str) -> LeaseState | None:
    """The lease of ``task`` in ``endpoint``; ``None`` when no replicator ever held it."""
    f = _flavor(endpoint)
    ep: SupportsControl = endpoint  # type: ignore[assignment]
    with control_cursor(ep, f"reading the lease of task {task!r}") as cur:
        if not table_exists(cur, f, LEASES):
            return None
        cur.execute(
            f"SELECT holder, epoch, expires_at FROM {f.table(LEASES)} WHERE task = {f.param}",  # noqa: S608
            (task,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return LeaseState(task, _text(row[0]), int(row[1]), _utc(row[2]))


def read_members(endpoint: object, task: str) -> tuple[list[Member], list[Takeover]]:
    """The replicators of ``task`` by heartbeat, and its takeovers (latest first)."""
    f = _flavor(endpoint)
    ep: SupportsControl = endpoint  # type: ignore[assignment]
    with control_cursor(ep, f"reading the replicators of task {task!r}") as cur:
        if not table_exists(cur, f, LEASES):
            return [], []
        cur.execute(
            f"SELECT member, role, seen_at FROM {f.table(MEMBERS)} WHERE task = {f.param} "  # noqa: S608
            "ORDER BY role, member",
            (task,),
        )
        members = [Member(task, _text(m), _text(r), _utc(s)) for m, r, s in cur.fetchall()]
        cur.execute(
            f"SELECT epoch, holder, previous, reason, taken_at FROM {f.table(TAKEOVERS)} "  # noqa: S608
            f"WHERE task = {f.param} ORDER BY epoch DESC",
            (task,),
        )
        takeovers = [
            Takeover(task, int(e), _text(h), _text(p), _text(r), _utc(t))
            for e, h, p, r, t in cur.fetchall()
        ]
    return members, takeovers


def drop_lease(endpoint: object, task: str) -> None:
    """Forget ``task``'s lease, replicators and takeovers; drop the tables when no task is
    left in them (``Task.drop``). Nothing to do for a target that holds no leases."""
    family = getattr(endpoint, "family", "")
    if not isinstance(endpoint, SupportsControl) or family not in _SHARE:
        return
    f = FLAVORS[family]
    with control_cursor(endpoint, f"dropping the lease of task {task!r}") as cur:
        if not table_exists(cur, f, LEASES):
            return
        for name in (LEASES, MEMBERS, TAKEOVERS):
            cur.execute(f"DELETE FROM {f.table(name)} WHERE task = {f.param}", (task,))  # noqa: S608
        cur.execute(f"SELECT 1 FROM {f.table(LEASES)} LIMIT 1")  # noqa: S608
        if not cur.fetchall():
            for name in (TAKEOVERS, MEMBERS, LEASES):
                cur.execute(f"DROP TABLE {f.table(name)}")


def lease_report(endpoint: object, task: str) -> dict[str, Any] | None:
    """The holder, epoch, replicators and takeovers of ``task`` as a JSON-friendly dict, for
    ``replikit status`` and the status page; ``None`` when the task never ran with
    ``standby`` here (or the target holds no leases)."""
    try:
        state = read_lease(endpoint, task)
        if state is None:
            return None
        members, takeovers = read_members(endpoint, task)
    except Error:
        return None
    return {
        "holder": state.holder,
        "epoch": state.epoch,
        "expires_at": state.expires_at.isoformat(),
        "replicators": [
            {"member": m.member, "role": m.role, "seen_at": m.seen_at.isoformat()}
            for m in members
        ],
        "takeovers": [
            {"epoch": t.epoch, "holder": t.holder, "previous": t.previous, "reason": t.reason,
             "at": t.at.isoformat()}
            for t in takeovers
        ],
    }  # fmt: skip
