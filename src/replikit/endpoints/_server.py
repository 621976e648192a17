"""What the server families (PostgreSQL, MySQL/MariaDB) share as endpoints.

Their change data capture and change apply live in the family's ``cdc`` and ``apply``
modules, which take the endpoint's connection parameters: the ``cdc`` module has the
functions ``setup``, ``snapshot``, ``reload_snapshot``, ``start`` and ``teardown`` and a
change reader class, the ``apply`` module a change writer class. :class:`ServerEndpoint`
delegates to them once, for both families; the modules are imported only when used, so
naming an endpoint never needs its driver.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any, ClassVar, cast

from replikit.endpoints.base import Endpoint
from replikit.pipeline.contracts import ChangeReader, ChangeWriter, CheckpointStore, Reader
from replikit.positions import Position
from replikit.schema.model import TableSchema

__all__ = ["ServerEndpoint"]


class ServerEndpoint(Endpoint):
    """An endpoint whose CDC and apply modules take its connection parameters."""

    params: object  # the family's connection parameters
    #: the family's package, and the class names of its change reader and writer
    _package: ClassVar[str]
    _change_reader: ClassVar[str]
    _change_writer: ClassVar[str]

    def _module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self._package}.{name}")

    # -- SupportsCdc / SupportsCdcStart -----------------------------------------------------
    def cdc_setup(self, tables: Sequence[TableSchema], *, task: str) -> None:
        """Check the source can feed CDC for ``tables`` and create what it needs (idempotent);
        :class:`~replikit.ConfigError` names the setting, privilege or table at fault."""
        self._module("cdc").setup(self.params, tables, task=task)

    def cdc_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> AbstractContextManager[tuple[Reader, Position]]:
        """A full-load reader consistent with a CDC start position: ``with ... as (reader,
        pos)``; changes committed after the snapshot are those a reader from ``pos`` gets."""
        snapshot = self._module("cdc").snapshot(self.params, tables, task=task)
        return cast(AbstractContextManager[tuple[Reader, Position]], snapshot)

    def cdc_reload_snapshot(
        self, tables: Sequence[TableSchema], *, task: str
    ) -> AbstractContextManager[tuple[Reader, Position]]:
        """A full-load reader of ``tables`` at an exact position, ``with ... as (reader, pos)``,
        leaving ``task``'s stream where it is (a full load resumed after a stop)."""
        snapshot = self._module("cdc").reload_snapshot(self.params, tables, task=task)
        return cast(AbstractContextManager[tuple[Reader, Position]], snapshot)

    def cdc_start(self, tables: Sequence[TableSchema], *, task: str) -> Position:
        """The position "now" for a CDC-only task (creating the source's stream if needed)."""
        return cast(Position, self._module("cdc").start(self.params, tables, task=task))

    def current_position(self) -> Position:
        """Where the server's change log is now (PostgreSQL: the WAL insert location;
        MySQL/MariaDB: the end of the binary log, with its GTID state)."""
        return cast(Position, self._module("cdc").current(self.params))

    def cdc_reader(
        self, tables: Sequence[TableSchema], *, task: str, **options: Any
    ) -> ChangeReader:
        """A change reader for ``tables``; ``transactions(start)`` picks the position."""
        cls = getattr(self._module("cdc"), self._change_reader)
        return cast(ChangeReader, cls(self.params, tables, task=task, **options))

    def cdc_takeover(self, *, task: str) -> None:
        """End a reader that still holds ``task``'s stream (a replicator taken over from);
        nothing to do for a family whose stream any number of readers may open."""
        takeover = getattr(self._module("cdc"), "takeover", None)
        if takeover is not None:
            takeover(self.params, task=task)

    def cdc_teardown(self, *, task: str) -> None:
        """Remove what :meth:`cdc_setup` and the start positions created (idempotent)."""
        self._module("cdc").teardown(self.params, task=task)

    def control_session(self) -> AbstractContextManager[Any]:
        """A connection in one transaction for the control tables
        (:mod:`replikit.pipeline.control`)."""
        return cast(AbstractContextManager[Any], self._module("_control").session(self.params))

    # -- SupportsApply ----------------------------------------------------------------------
    def change_writer(self, **options: Any) -> ChangeWriter:
        """A CDC apply writer into this database (checkpoints in its control table)."""
        cls = getattr(self._module("apply"), self._change_writer)
        return cast(ChangeWriter, self._build(cls, "change writer", self.params, **options))

    def checkpoint_store(self, **options: Any) -> CheckpointStore:
        """Task checkpoints in this database's control table (read and written outside of
        an apply; apply commits its own with the data)."""
        cls = getattr(self._module("apply"), self._change_writer)
        return cast(CheckpointStore, self._build(cls, "checkpoint store", self.params, **options))
