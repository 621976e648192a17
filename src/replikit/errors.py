"""The replikit exception tree.

Every error replikit raises on purpose derives from :class:`Error`::

    Error
    ├── ConfigError              bad settings, URL, pattern or mapping (fix the input)
    │   └── MissingDependencyError   an optional driver is not installed (pip install hint)
    ├── CapabilityError          the endpoint cannot do what was asked (e.g. CDC from files)
    ├── ConnectError             host unreachable, connection lost, server restarting [retryable]
    │   ├── AccessError          login refused, database missing, privilege revoked (permanent)
    │   └── UnknownOutcomeError  lost during COMMIT: the work may or may not be there (permanent)
    ├── TransientError           deadlock, lock timeout, serialization failure       [retryable]
    ├── SchemaError              source/target schemas do not fit (e.g. do-nothing on a wrong shape)
    │   ├── TableNotFoundError   a named table does not exist
    │   └── TableDdlError        the target refused some tables' DDL; the others were done
    ├── ConversionError          a value or type cannot be converted without loss
    ├── DataError                a row could not be written (names table, column, key)
    ├── PositionLostError        a CDC position is gone (slot dropped, binlog purged)
    ├── DecodeError              a change stream message could not be decoded
    ├── ValidationError          source and target differ
    └── TaskError                a task failed; table_errors says which tables and why
        └── StoppedError         Task.stop() or Ctrl-C ended a full load before it finished

Each class has a ``retryable`` attribute that error policies read. Messages say what failed,
where (table, column, row key) and what to do; they never contain passwords. Errors are
picklable so they cross process-pool boundaries intact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AccessError",
    "CapabilityError",
    "ConfigError",
    "ConnectError",
    "ConversionError",
    "DataError",
    "DecodeError",
    "Error",
    "MissingDependencyError",
    "PositionLostError",
    "SchemaError",
    "StoppedError",
    "TableDdlError",
    "TableNotFoundError",
    "TaskError",
    "TransientError",
    "UnknownOutcomeError",
    "ValidationError",
]


class Error(Exception):
    """Base class of every error replikit raises on purpose."""

    retryable: ClassVar[bool] = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[Error], args: tuple[Any, ...], state: dict[str, Any]) -> Error:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConfigError(Error):
    """A setting, URL, pattern or mapping is invalid; fix the input and retry.

    ``setting`` names the :class:`~replikit.TaskSettings` field at fault, when there is one
    (the command line uses it to name its flag instead).
    """

    def __init__(self, *args: object, setting: str | None = None) -> None:
        super().__init__(*args)
        self.setting = setting


class MissingDependencyError(ConfigError):
    """An optional driver is not installed; the message gives the ``pip install`` to run."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the {package!r} package, which is not installed. "
            f'Install it with: pip install "replikit[{extra}]"'
        )


class CapabilityError(Error):
    """The endpoint cannot do what was asked (its capabilities say so)."""


class ConnectError(Error):
    """Could not connect: host unreachable, login refused or database missing."""

    retryable = True


class AccessError(ConnectError):
    """The server answered and refused: login refused, database missing, or a privilege the
    task needs is missing (e.g. revoked replication). Retrying does not help: fix the account
    or the URL, as the message says."""

    retryable = False


class UnknownOutcomeError(ConnectError):
    """The connection was lost while a transaction was committing: its work may or may not be
    in the database. Not retried by itself where doing the work twice could write it twice (a
    full-load unit); the message says what to do."""

    retryable = False


class TransientError(Error):
    """The target or source gave up on a transaction that may succeed when run again: a
    deadlock, a lock timeout, a serialization failure. A task retries it with backoff."""

    retryable = True


class SchemaError(Error):
    """Source and target schemas do not fit together, or a table/column is missing."""


class TableNotFoundError(SchemaError):
    """A named table does not exist (``table`` names it as asked). Code that must tell a
    missing table from other failures catches this class, never a driver's message text."""

    def __init__(self, message: str, *, table: str) -> None:
        self.table = table
        super().__init__(message)


class TableDdlError(SchemaError):
    """The target refused the DDL of some tables (create, truncate, indexes, keys); a writer
    did the other tables. ``table_errors`` maps each failed target table name to its cause."""

    def __init__(self, message: str, table_errors: Mapping[str, BaseException] | None = None):
        self.table_errors = dict(table_errors or {})
        super().__init__(message)


class ConversionError(Error):
    """A type or value cannot be converted without losing data."""


class DataError(Error):
    """A row could not be read or written; the message names table, column and key."""

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        key: Mapping[str, Any] | None = None,
    ) -> None:
        self.table = table
        self.column = column
        self.key = dict(key) if key is not None else None
        where = []
        if table:
            where.append(f"table {table}")
        if column:
            where.append(f"column {column}")
        if key:
            where.append("key " + ", ".join(f"{k}={v!r}" for k, v in key.items()))
        super().__init__(f"{message} ({'; '.join(where)})" if where else message)

    @classmethod
    def unwritable(
        cls,
        value: Any,
        cause: BaseException,
        *,
        table: str | None,
        column: str | None,
        key: Mapping[str, Any] | None,
    ) -> DataError:
        """A value the target column's adapter refused: the value (shortened), why, and
        where it is."""
        text = repr(value)
        shown = text if len(text) <= 60 else text[:57] + "..."
        return cls(f"value {shown} cannot be written: {cause}", table=table, column=column, key=key)


class PositionLostError(Error):
    """A CDC start or resume position no longer exists at the source."""


class DecodeError(Error):
    """A change message from the source could not be decoded."""


class ValidationError(Error):
    """Source and target contents differ."""


class TaskError(Error):
    """A task failed. ``table_errors`` maps table names to the error that stopped each."""

    def __init__(self, message: str, table_errors: Mapping[str, BaseException] | None = None):
        self.table_errors = dict(table_errors or {})
        super().__init__(message)


class StoppedError(TaskError):
    """The task was stopped (``Task.stop()``, Ctrl-C) before its full load finished.

    Tables not loaded yet are ``Table cancelled`` in the statistics; running the task again
    with ``drop-and-create`` or ``truncate`` (or resuming a CDC task) loads them.
    """
