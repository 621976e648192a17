"""A unit's CSV lines read by DuckDB's own CSV reader through a named pipe (FIFO).

A source that builds CSV lines itself (MySQL/MariaDB, :data:`CSV_FORMAT`) hands a unit over as
chunks of bytes; a thread (:class:`Feeder`) writes them into a FIFO in a private temporary
folder while one ``INSERT ... SELECT ... FROM read_csv(fifo)`` reads it: DuckDB parses every
value in its own code, typed as the plan says (no sniffing), with no Python object per row or
value and no pyarrow in the process. Measured on the benchmark's 1M MariaDB ``orders`` rows
(benchmarks/README.md).

DuckDB's Python API reads a Python file object only through fsspec (not a dependency of the
DuckDB endpoint), so the pipe is a file name; a platform without ``os.mkfifo`` (Windows) loads
such units as Arrow record batches instead (:func:`supported`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence

from replikit.logs import in_context

try:
    import fcntl
except ImportError:  # Windows: no FIFO either (supported())
    fcntl = None  # type: ignore[assignment]

__all__ = ["CSV_FORMAT", "Feeder", "fifo", "read_csv", "supported"]

#: the text format DuckDB reads here (as :data:`replikit.endpoints.mysql._csvlines.CSV_FORMAT`)
CSV_FORMAT = "csv"
#: DuckDB's read buffer and longest line: a longer line fails the unit, which is then loaded
#: as Arrow record batches (DuckDB's defaults, 32 MB of buffer for 2 MB lines, do not fit
#: the endpoint's 32MB memory limit)
BUFFER_BYTES = 4 << 20
_WAIT = 0.05
#: the pipe's buffer (Linux: ``F_SETPIPE_SZ``; 1 MB is what an unprivileged process may set)
PIPE_BYTES = 1 << 20
_SETPIPE = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None


def supported() -> bool:
    """True where a named pipe can be made (``os.mkfifo``)."""
    return hasattr(os, "mkfifo")


@contextlib.contextmanager
def fifo() -> Iterator[str]:
    """The path of a new FIFO only this user can open, removed with its folder at the end."""
    folder = tempfile.mkdtemp(prefix="replikit-duckdb-")
    try:
        path = os.path.join(folder, "unit.csv")
        os.mkfifo(path, 0o600)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_csv(path: str, types: Sequence[str]) -> str:
    """The ``read_csv(...)`` call reading ``path`` as :data:`CSV_FORMAT` into columns ``c0``,
    ``c1``... of ``types``: every option given, nothing detected."""
    columns = ", ".join(f"'c{i}': '{t}'" for i, t in enumerate(types))
    quoted = path.replace("'", "''")
    return (
        f"read_csv('{quoted}', columns = {{{columns}}}, auto_detect = false, header = false, "
        "delim = ',', quote = '\"', escape = '\"', new_line = '\\n', nullstr = '', "
        "allow_quoted_nulls = false, strict_mode = true, encoding = 'utf-8', "
        f"compression = 'none', buffer_size = {BUFFER_BYTES}, max_line_size = {BUFFER_BYTES})"
    )


class Feeder:
    """Writes ``chunks`` into the FIFO ``path`` in a thread, for DuckDB reading it.

    The thread opens the FIFO (which waits for the reader), writes every chunk, and closes
    it: the reader's end of file. An exception from ``chunks`` closes it early and is kept in
    :attr:`error` (the caller must not commit what DuckDB read); a reader that stopped reading
    (its own error) ends the thread quietly. :meth:`finish` stops and joins the thread
    whatever state it is in.
    """

    def __init__(self, path: str, chunks: Iterable[bytes]) -> None:
        self.path = path
        self.chunks = chunks
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=in_context(self._run), name="replikit-duckdb-csv", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        fd = -1
        try:
            if self._stop.is_set():
                return
            fd = os.open(self.path, os.O_WRONLY)  # waits for a reader
            _widen(fd)
            for data in self.chunks:
                if self._stop.is_set():
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        except BrokenPipeError:
            pass  # the reader stopped: its error says why
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            if fd >= 0:
                os.close(fd)

    def finish(self) -> None:
        """Stop the thread and wait for it: a thread still waiting for a reader, or writing
        to one that stopped reading without closing, is let through by a reader opened and
        drained here."""
        self._stop.set()
        if not self._thread.is_alive():
            return
        fd = -1
        try:
            while self._thread.is_alive():
                if fd < 0:
                    with contextlib.suppress(OSError):
                        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                if fd >= 0:
                    _drain(fd)
                self._thread.join(_WAIT)
        finally:
            if fd >= 0:
                os.close(fd)


def _widen(fd: int) -> None:
    """The pipe's buffer at :data:`PIPE_BYTES` where Linux allows it (fewer switches between
    the writing thread and DuckDB; the default is 64 kB)."""
    if _SETPIPE is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _SETPIPE, PIPE_BYTES)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 1 << 20):
            pass
