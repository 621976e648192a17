"""Live progress of a load or a replication, chosen by where the output goes.

- a terminal, with ``rich`` (the ``progress`` extra): a live table, one row per table with its
  rows, a bar, rate and ETA from the row estimates, and a line with the totals or, during CDC,
  changes per second and latency (:mod:`replikit.pipeline.progress_live`);
- a terminal without ``rich``: one status line, redrawn in place;
- a Jupyter notebook: rich's notebook display (with ``ipywidgets``), else the statistics table
  updated in place;
- anything else (a file, a pipe, CI), when asked with ``enabled=True``: plain lines without
  escape codes -- one per table event (started, finished, failed, cancelled, replicating) and a
  summary every ``interval`` seconds.

``enabled=None`` shows the live display in a terminal or notebook and nothing otherwise, so
library code run under a service or a test stays quiet; the CLI passes ``True``.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from replikit import display
from replikit.pipeline.stats import Statistics, TableState, TableStats

__all__ = ["Progress", "RateMeter", "cdc_line", "duration", "in_notebook", "load_line"]

_POLL = 0.2  # how often the plain reporter looks for table events


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream
        return False


def duration(seconds: float | None) -> str:
    """``"0:07"``, ``"12:30"``, ``"2:05:00"``; ``"?"`` when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds or seconds > 360_000:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def table_eta(t: TableStats) -> float | None:
    """Seconds until ``t`` is loaded, from its row estimate and rate (None: unknown)."""
    rate, est = t.rows_per_second, t.estimated_rows
    if t.state is not TableState.FULL_LOAD or not est or rate <= 0:
        return None
    return max(est - t.full_load_rows, 0) / rate


def loaded(t: TableStats) -> bool:
    """Every unit of ``t`` is written (indexes and keys may still be pending)."""
    return t.state in (TableState.COMPLETED, TableState.REPLICATING) or (
        t.state is TableState.FULL_LOAD and t.units_total > 0 and t.units_done >= t.units_total
    )


class RateMeter:
    """The recent rate of a growing counter (changes per second over the last ``window`` s)."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def rate(self, value: int, now: float | None = None) -> float:
        """Record ``value`` and return the rate over the window."""
        now = time.monotonic() if now is None else now
        self._samples.append((now, value))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.pop(0)
        t0, v0 = self._samples[0]
        return (value - v0) / (now - t0) if now > t0 else 0.0


def load_line(stats: Statistics, elapsed: float) -> str:
    """The full load's totals: tables done, rows of the estimate, rate, ETA, active tables."""
    tables = list(stats)
    done = sum(loaded(t) for t in tables)
    failed = sum(t.state is TableState.ERROR for t in tables)
    rows = sum(t.full_load_rows for t in tables)
    expected = sum(t.estimated_rows or 0 for t in tables)
    rate = rows / elapsed if elapsed > 0 else 0.0
    parts = [f"{done}/{len(tables)} tables loaded" + (f", {failed} failed" if failed else "")]
    parts.append(f"{rows:,} of ~{expected:,} rows" if expected else f"{rows:,} rows")
    if expected:
        parts[-1] += f" ({min(rows / expected, 1):.0%})"
    parts.append(f"{rate:,.0f} rows/s")
    if expected and rate > 0 and rows < expected:
        parts.append(f"ETA {duration((expected - rows) / rate)}")
    active = [t.table for t in tables if t.state is TableState.FULL_LOAD and not loaded(t)]
    if active:
        more = f" +{len(active) - 3}" if len(active) > 3 else ""
        parts.append("loading " + ", ".join(active[:3]) + more)
    return " | ".join(parts)


def cdc_line(stats: Statistics, rate: float) -> str:
    """CDC: changes and transactions applied, changes per second, latency, position."""
    cdc = stats.cdc
    p50, p99 = cdc.latency_p50, cdc.latency_p99
    parts = [
        f"CDC: {cdc.changes:,} changes in {cdc.transactions:,} transactions",
        f"{rate:,.0f} changes/s",
    ]
    if p50 is not None and p99 is not None:
        parts.append(f"latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    if cdc.cached_changes:
        parts.append(f"{cdc.cached_changes:,} cached during the load")
    parts.append(f"position {cdc.position or '-'}")
    return " | ".join(parts)


def replicating(stats: Statistics) -> bool:
    """CDC is running (or has applied something)."""
    return stats.cdc.batches > 0 or any(t.state is TableState.REPLICATING for t in stats)


def _event(t: TableStats) -> str | None:
    if t.state is TableState.BEFORE_LOAD:
        return None
    if t.state in (TableState.ERROR, TableState.CANCELLED, TableState.REPLICATING):
        return t.state.name.lower()
    return "finished" if loaded(t) else "started"


def _event_text(t: TableStats, event: str) -> str:
    if event == "started":
        est = f" (~{t.estimated_rows:,} rows)" if t.estimated_rows else ""
        return f"{t.table}: started{est}"
    if event == "finished":
        return (
            f"{t.table}: finished, {display.plural(t.full_load_rows, 'row')} in {t.seconds:.1f} s "
            f"({t.rows_per_second:,.0f} rows/s)"
        )
    if event == "error":
        return f"{t.table}: failed: {t.error or 'table error'}"
    if event == "cancelled":
        return f"{t.table}: cancelled after {display.plural(t.full_load_rows, 'row')}"
    return f"{t.table}: replicating"


class _PlainLines:
    """Log-style lines: one per table event, a summary every ``interval`` seconds."""

    def __init__(self, stats: Statistics, stream: TextIO, interval: float) -> None:
        self.stats, self.stream, self.interval = stats, stream, interval
        self._seen: dict[str, str | None] = {}
        self._cdc = RateMeter()
        self._t0 = self._last = time.monotonic()

    def write(self, message: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} replikit: {message}\n")
        self.stream.flush()

    def poll(self) -> None:
        for t in self.stats:
            event = _event(t)
            last = self._seen.get(t.table)
            if event is None or last == event:
                continue
            if last is None and event != "started" and t.start is not None:
                self.write(_event_text(t, "started"))  # it started and ended between polls
            self._seen[t.table] = event
            self.write(_event_text(t, event))
        now = time.monotonic()
        rate = self._cdc.rate(self.stats.cdc.changes, now)
        if now - self._last >= self.interval:
            self._last = now
            self.write(self.summary(now, rate))

    def summary(self, now: float, cdc_rate: float) -> str:
        if replicating(self.stats):
            return cdc_line(self.stats, cdc_rate)
        return load_line(self.stats, now - self._t0)

    def close(self) -> None:
        self.poll()
        if not len(self.stats):  # refused before any table started: the error says why
            return
        elapsed = time.monotonic() - self._t0
        self.write(f"done in {duration(elapsed)}: {display.statistics_summary(self.stats)}")


class _StatusLine:
    """One line redrawn in place (a terminal without rich)."""

    def __init__(self, stats: Statistics, stream: TextIO) -> None:
        self.stats, self.stream = stats, stream
        self._cdc = RateMeter()
        self._t0 = time.monotonic()

    def poll(self) -> None:
        rate = self._cdc.rate(self.stats.cdc.changes)
        if replicating(self.stats):
            text = cdc_line(self.stats, rate)
        else:
            text = load_line(self.stats, time.monotonic() - self._t0)
        self.stream.write("\r\x1b[K" + text[:200])
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


class _NotebookTable:
    """The statistics' HTML table, updated in place in a notebook (no ipywidgets needed)."""

    def __init__(self, stats: Statistics) -> None:
        from IPython.display import HTML, display  # in a notebook, IPython is there

        self.stats, self._html = stats, HTML
        self._handle: Any = display(HTML(stats._repr_html_()), display_id=True)

    def poll(self) -> None:
        self._handle.update(self._html(self.stats._repr_html_()))

    def close(self) -> None:
        self.poll()


class Progress:
    """Shows a task's progress while the ``with`` block runs (see the module docs).

    Args:
        statistics: what to show (read, never changed).
        enabled: ``None`` live display in a terminal or notebook only; ``True`` also plain
            lines elsewhere; ``False`` nothing.
        stream: where to write (default ``sys.stderr``, so ``stdout`` stays for results).
        interval: seconds between summary lines in plain mode.
        refresh: seconds between redraws of a live display.
    """

    def __init__(
        self,
        statistics: Statistics,
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        interval: float = 10.0,
        refresh: float = 0.25,
    ) -> None:
        self.stats = statistics
        self.stream = stream or sys.stderr
        self.interval = interval
        self.refresh = refresh
        self.mode = self._mode(enabled)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._view: Any = None

    def _mode(self, enabled: bool | None) -> str:
        """``off``, ``live`` (rich), ``notebook`` (HTML), ``line`` or ``plain``."""
        if enabled is False:
            return "off"
        notebook = in_notebook()
        if notebook:
            return "live" if _has("rich") and _has("ipywidgets") else "notebook"
        if _isatty(self.stream):
            return "live" if _has("rich") else "line"
        return "plain" if enabled else "off"

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from replikit.pipeline.progress_live import LiveTable

            self._view = LiveTable(self.stats, self.stream, self.refresh)
            self._view.start()
            return self
        if self.mode == "off":
            return self
        if self.mode == "plain":
            self._view = _PlainLines(self.stats, self.stream, self.interval)
        elif self.mode == "line":
            self._view = _StatusLine(self.stats, self.stream)
        else:
            self._view = _NotebookTable(self.stats)
        period = _POLL if self.mode == "plain" else self.refresh
        self._thread = threading.Thread(
            target=self._loop, args=(period,), name="replikit-progress", daemon=True
        )
        self._thread.start()
        return self

    def _loop(self, period: float) -> None:
        while not self._stop.wait(period):
            self._view.poll()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._view is not None:
            self._view.close()
            self._view = None
