"""The HTTP server of :meth:`replikit.Task.serve_metrics`: metrics and status page on one port.

A :class:`http.server.ThreadingHTTPServer` in a daemon thread; scrapes and page loads read the
task's live statistics and never block the task. ``port=0`` picks a free port
(:attr:`MonitorServer.port` says which).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from replikit.errors import ConfigError
from replikit.monitor import Watched, page
from replikit.monitor.page import Problems

__all__ = ["MonitorServer"]

log = logging.getLogger(__name__)


class MonitorServer:
    """Serves ``/metrics`` (Prometheus), ``/`` (status page) and ``/status.json`` for a task.

    Args:
        task: what to watch (a :class:`replikit.Task`).
        port: the TCP port (0: any free one).
        host: the address to listen on (default: this machine only; ``"0.0.0.0"`` for all).
        problems: returns the task's suspended tables and latest apply exceptions.
        refresh: seconds between the status page's reloads.

    Raises:
        MissingDependencyError: ``prometheus-client`` is not installed (the ``metrics`` extra).
        ConfigError: the port cannot be opened (in use, no permission).
    """

    def __init__(
        self,
        task: Watched,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        problems: Callable[[], Problems] | None = None,
        refresh: float = 5,
    ) -> None:
        from replikit.monitor import metrics  # the extra's hint before any port opens

        self.task = task
        self.problems = _guarded(problems or Problems)
        self.registry = metrics.registry(task, self.problems)
        self.refresh = refresh
        try:
            self._http = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose "
                "another port (0 picks a free one)"
            ) from None
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="replikit-metrics", daemon=True
        )
        self._thread.start()
        log.info("task %s: metrics and status page on %s", task.task_id, self.url)

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/`` (the status page; metrics at ``/metrics``)."""
        host = str(self._http.server_address[0])
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{self.port}/"

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread.is_alive():
            self._http.shutdown()
            self._thread.join()
        self._http.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MonitorServer({self.task.task_id!r}, {self.url!r})"

    # -- the three documents ------------------------------------------------------------------
    def metrics(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (text or OpenMetrics)."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def page(self) -> str:
        """The status page."""
        return page.render(self.task, self.problems(), refresh=self.refresh)

    def status(self) -> dict[str, Any]:
        """The facts of the page as a JSON-friendly dict."""
        stats = self.task.statistics()
        problems = self.problems()
        return {
            "task_id": self.task.task_id,
            "phase": self.task.phase,
            "migration_type": self.task.migration_type,
            "tables": stats.as_dicts(),
            "cdc": stats.cdc.as_dict(),
            "suspended_tables": problems.suspended,
            "exceptions": problems.exceptions_total,
            "exceptions_by_table": problems.exceptions_by_table,
        }


def _guarded(read: Callable[[], Problems]) -> Callable[[], Problems]:
    """``read``, logging its failure and answering none (a control table that cannot be
    read must not take the page or the metrics down)."""

    def problems() -> Problems:
        try:
            return read()
        except Exception as exc:
            log.warning("reading the suspended tables and apply exceptions failed: %s", exc)
            return Problems()

    return problems


def _handler(server: MonitorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    body, kind = server.metrics(self.headers.get("Accept"))
                elif path in ("/", "/index.html"):
                    body, kind = server.page().encode(), "text/html; charset=utf-8"
                elif path == "/status.json":
                    body = json.dumps(server.status(), default=str).encode()
                    kind = "application/json"
                else:
                    self.send_error(404, "not found: try /, /metrics or /status.json")
                    return
            except Exception:  # a scrape must not kill the server; the task goes on
                log.exception("serving %s failed", path)
                self.send_error(500, "internal error (see the task's log)")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
