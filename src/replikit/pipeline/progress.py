"""A progress line on a terminal; silent when stderr is not a TTY."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from replikit.pipeline.stats import Statistics, TableState

__all__ = ["Progress"]


class Progress:
    """Redraws one status line every ``interval`` seconds while a load runs.

    ``enabled=None`` shows it only when ``stream`` is a terminal, so logs and CI output stay
    clean.
    """

    def __init__(
        self,
        statistics: Statistics,
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        interval: float = 0.5,
    ) -> None:
        self.stats = statistics
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def line(self) -> str:
        """The current status text."""
        tables = list(self.stats)
        done = sum(t.state is TableState.COMPLETED for t in tables)
        errors = sum(t.state is TableState.ERROR for t in tables)
        rows = sum(t.full_load_rows for t in tables)
        expected = sum(t.estimated_rows or 0 for t in tables)
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        pct = f" ({min(rows / expected, 1):.0%})" if expected else ""
        active = [t.table for t in tables if t.state is TableState.FULL_LOAD][:3]
        err = f", {errors} failed" if errors else ""
        return (
            f"tables {done}/{len(tables)}{err} | rows {rows:,}{pct} | "
            f"{rows / elapsed:,.0f} rows/s | {', '.join(active)}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.stream.write("\r\x1b[K" + self.line()[:200])
            self.stream.flush()

    def __enter__(self) -> Progress:
        self._t0 = time.perf_counter()
        if self.enabled:
            self._thread = threading.Thread(
                target=self._loop, name="replikit-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()
