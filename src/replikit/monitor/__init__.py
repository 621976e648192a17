"""Watching a running task: Prometheus metrics and a status page on one HTTP port.

``Task.serve_metrics(port)`` (or ``replikit replicate --metrics-port N``) starts a
:class:`~replikit.monitor.server.MonitorServer` in a background thread: ``/metrics`` is the
Prometheus text exposition (:mod:`replikit.monitor.metrics`, the ``metrics`` extra), ``/`` the
status page (:mod:`replikit.monitor.page`), ``/status.json`` the same facts as JSON.
"""

from __future__ import annotations

from typing import Protocol

from replikit.pipeline.stats import Statistics

__all__ = ["PHASES", "Watched"]

#: every phase a task reports (``Task.phase``)
PHASES = ("idle", "full-load", "cdc", "done", "stopped")


class Watched(Protocol):
    """What the metrics and the status page read of a task (:class:`replikit.Task` is one)."""

    @property
    def task_id(self) -> str:
        """The task's name."""
        ...

    @property
    def phase(self) -> str:
        """One of :data:`PHASES`."""
        ...

    @property
    def migration_type(self) -> str:
        """``full-load``, ``cdc`` or ``full-load-and-cdc``."""
        ...

    def statistics(self) -> Statistics:
        """The live statistics."""
        ...
