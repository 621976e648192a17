"""The live progress table drawn with ``rich`` (imported only when rich is installed).

One row per table -- state, a bar, rows of the estimate, rows per second and ETA -- the active
tables first, and a totals line: the full load's, or during CDC the changes per second, the
latency and the position.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from replikit.pipeline.progress import (
    RateMeter,
    cdc_line,
    duration,
    load_line,
    loaded,
    replicating,
    table_eta,
)
from replikit.pipeline.stats import Statistics, TableState, TableStats

__all__ = ["LiveTable"]

MAX_ROWS = 20  # tables beyond this are summed up in one line
_ORDER = {  # which tables come first: the ones moving, then failures, then the rest
    "active": 0,
    TableState.ERROR: 1,
    TableState.REPLICATING: 2,
    TableState.BEFORE_LOAD: 3,
    TableState.FULL_LOAD: 4,
    TableState.COMPLETED: 4,
    TableState.CANCELLED: 5,
}
_STATE_STYLE = {TableState.ERROR: "red", TableState.CANCELLED: "yellow"}


def _rank(t: TableStats) -> int:
    if t.state is TableState.FULL_LOAD and not loaded(t):
        return _ORDER["active"]
    return _ORDER[t.state]


def _state(t: TableStats) -> Text:
    label = "Loaded" if t.state is TableState.FULL_LOAD and loaded(t) else t.state.value
    return Text(label, style=_STATE_STYLE.get(t.state, ""))


def _bar(t: TableStats) -> ProgressBar:
    if loaded(t):
        return ProgressBar(total=1, completed=1, width=20)
    est = t.estimated_rows
    total = float(max(est, t.full_load_rows)) if est else None  # None: unknown, pulses
    return ProgressBar(total=total, completed=t.full_load_rows, width=20)


def _row(t: TableStats, cdc: bool) -> list[RenderableType]:
    est = f"/{t.estimated_rows:,}" if t.estimated_rows and not loaded(t) else ""
    cells: list[RenderableType] = [
        Text(t.table, overflow="ellipsis", no_wrap=True),
        _state(t),
        _bar(t),
        f"{t.full_load_rows:,}{est}",
        f"{t.rows_per_second:,.0f}" if t.full_load_rows else "",
        duration(table_eta(t)) if t.state is TableState.FULL_LOAD and not loaded(t) else "",
    ]
    if cdc:
        cells.append(f"{t.inserts:,}/{t.updates:,}/{t.deletes:,}")
    return cells


def _others(rest: list[TableStats]) -> str:
    counts: dict[str, int] = {}
    for t in rest:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    return f"… {len(rest)} more: " + ", ".join(f"{n} {s}" for s, n in counts.items())


class LiveTable:
    """A rich ``Live`` display of ``stats`` on ``stream`` (a terminal, or a notebook)."""

    def __init__(self, stats: Statistics, stream: TextIO, refresh: float) -> None:
        self.stats = stats
        self._stream = stream
        self._handlers: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        self._t0 = time.monotonic()
        self._cdc = RateMeter()
        console = Console(file=stream)
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=1 / refresh,
            # in a terminal the final statistics are printed after; a notebook keeps the view
            transient=not console.is_jupyter,
            redirect_stdout=False,  # stdout carries results (--json): never mix them in
            redirect_stderr=True,  # messages on stderr print above the display
        )

    def render(self) -> RenderableType:
        """The current view: the table of tables and the totals line."""
        tables = sorted(self.stats, key=_rank)
        cdc = replicating(self.stats)
        grid = Table(box=None, pad_edge=False, show_edge=False)
        for name in ("table", "state", ""):
            grid.add_column(name)
        for name in ("rows", "rows/s", "ETA"):
            grid.add_column(name, justify="right")
        if cdc:
            grid.add_column("ins/upd/del", justify="right")
        for t in tables[:MAX_ROWS]:
            grid.add_row(*_row(t, cdc))
        if len(tables) > MAX_ROWS:
            grid.add_row(Text(_others(tables[MAX_ROWS:]), style="dim"))
        now = time.monotonic()
        rate = self._cdc.rate(self.stats.cdc.changes, now)
        total = cdc_line(self.stats, rate) if cdc else load_line(self.stats, now - self._t0)
        return Group(grid, Text(total, style="bold"))

    def start(self) -> None:
        """Begin drawing (a background thread refreshes the view)."""
        self._live.start(refresh=True)
        if sys.stderr is not self._stream:  # rich redirected stderr: log lines go above it
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream:
                    self._handlers.append((handler, handler.setStream(sys.stderr) or self._stream))

    def close(self) -> None:
        """Stop drawing; in a terminal the view is erased."""
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()
        self._live.stop()
