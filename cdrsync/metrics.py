"""Metrics of `cdrsync run` in the Prometheus text format, for alerting on a stalled delivery.

Served on `[metrics] listen` (GET /metrics, stdlib HTTP server in a thread) and/or written after
each pass to `[metrics] textfile` for node-exporter's textfile collector (written to a temporary
file and renamed, so the collector never reads half a file). No dependency on prometheus_client.

What to alert on: `time() - cdrsync_last_success_timestamp_seconds` (passes keep failing),
`cdrsync_outbox_requests{state="failed"}` > 0 (Planfix refused something),
`cdrsync_outbox_requests{state="pending"}` growing (Planfix unreachable).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import __version__
from .config import ConfigError

log = logging.getLogger("cdrsync.metrics")

# Seconds between a call's end and Planfix accepting it: a pass or two when all is well, hours
# during an outage.
LAG_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The daemon's counters; every method is thread-safe (the HTTP thread reads while a pass
    writes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = {"ok": 0, "failed": 0}
        self._last_pass = 0.0
        self._last_success = 0.0
        self._queue = {"sent": 0, "failed": 0, "pending": 0}
        self._buckets = [0] * len(LAG_BUCKETS)
        self._lag_count = 0
        self._lag_sum = 0.0
        self._last_lag = 0.0

    def observe_pass(self, ok: bool, at: float) -> None:
        """A pass ended at `at` (epoch seconds), successfully or not."""
        with self._lock:
            self._passes["ok" if ok else "failed"] += 1
            self._last_pass = at
            if ok:
                self._last_success = at

    def observe_delivery(self, lag_seconds: float) -> None:
        """Planfix accepted a call `lag_seconds` after the call ended."""
        lag = max(0.0, float(lag_seconds))
        with self._lock:
            for i, bound in enumerate(LAG_BUCKETS):
                if lag <= bound:
                    self._buckets[i] += 1
            self._lag_count += 1
            self._lag_sum += lag
            self._last_lag = lag

    def set_queue(self, sent: int, failed: int, pending: int) -> None:
        """The outbox as the state store counts it (it survives restarts, unlike counters here)."""
        with self._lock:
            self._queue = {"sent": int(sent), "failed": int(failed), "pending": int(pending)}

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        with self._lock:
            lines = [
                *_family("cdrsync_info", "gauge", "cdrsync version"),
                f'cdrsync_info{{version="{__version__}"}} 1',
                *_family("cdrsync_passes_total", "counter",
                         "Passes since the daemon started, by result"),
                *(f'cdrsync_passes_total{{result="{k}"}} {v}' for k, v in self._passes.items()),
                *_family("cdrsync_last_pass_timestamp_seconds", "gauge",
                         "When the last pass ended (0: none yet)"),
                f"cdrsync_last_pass_timestamp_seconds {_num(self._last_pass)}",
                *_family("cdrsync_last_success_timestamp_seconds", "gauge",
                         "When the last successful pass ended (0: none yet)"),
                f"cdrsync_last_success_timestamp_seconds {_num(self._last_success)}",
                *_family("cdrsync_outbox_requests", "gauge",
                         "Requests to Planfix in cdrsync's outbox, by state"),
                *(f'cdrsync_outbox_requests{{state="{k}"}} {v}' for k, v in self._queue.items()),
                *_family("cdrsync_last_delivery_lag_seconds", "gauge",
                         "Seconds from the end of the last delivered call to its delivery"),
                f"cdrsync_last_delivery_lag_seconds {_num(self._last_lag)}",
                *_family("cdrsync_delivery_lag_seconds", "histogram",
                         "Seconds from the end of a call to Planfix accepting it"),
                *(f'cdrsync_delivery_lag_seconds_bucket{{le="{_num(b)}"}} {n}'
                  for b, n in zip(LAG_BUCKETS, self._buckets)),
                f'cdrsync_delivery_lag_seconds_bucket{{le="+Inf"}} {self._lag_count}',
                f"cdrsync_delivery_lag_seconds_sum {_num(self._lag_sum)}",
                f"cdrsync_delivery_lag_seconds_count {self._lag_count}",
            ]
        return "\n".join(lines) + "\n"

    def write_textfile(self, path: str) -> None:
        """Replace `path` atomically with the current metrics (node-exporter textfile)."""
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.render())
            os.chmod(tmp, 0o644)  # node-exporter usually runs as another user
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def serve(self, listen: str) -> ThreadingHTTPServer:
        """Start the endpoint on "host:port" in a daemon thread; stop it with `.shutdown()`."""
        host, port = parse_listen(listen)
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.split("?")[0] not in ("/", "/metrics"):
                    self.send_error(404)
                    return
                body = metrics.render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("metrics %s: " + format, self.client_address[0], *args)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="cdrsync-metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", host, server.server_address[1])
        return server


def parse_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:9464", "[::1]:9464" or ":9464" (all addresses) -> (host, port)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics.listen: expected HOST:PORT (e.g. 127.0.0.1:9464), "
                          f"not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _family(name: str, kind: str, help_text: str) -> tuple[str, str]:
    return f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))
