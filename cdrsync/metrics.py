"""Metrics of `cdrsync run` for Prometheus, on prometheus_client: to alert on a stalled delivery.

Served on `[metrics] listen` by prometheus_client's HTTP server in a thread (IPv4 or IPv6 as the
address says: "[::1]:9464" binds ::1), and/or written to `[metrics] textfile` (after a pass that
changed something, else every 15 s) for node-exporter's textfile collector (a temporary file renamed
over it, so the collector never reads half a file). The registry is cdrsync's own, not the library's
global one, so only these series are exported. Every series carries a `pbx` label (`pbx_label`), so
several cdrsync instances can share one Prometheus, or one node-exporter's textfile folder, without
their series colliding.

What to alert on (contrib/grafana-cdrsync.json shows them all):
- `time() - cdrsync_last_success_timestamp_seconds > 300`: passes keep failing (the PBX database,
  a wrong token) or Planfix is unreachable — a pass succeeds only when it read the PBX and Planfix
  took everything that was due;
- `cdrsync_outbox_requests{state="failed"} > 0`: Planfix refused a request (`cdrsync status`,
  then `retry` or `skip`);
- `cdrsync_oldest_undelivered_age_seconds > 900`: something has waited in the outbox for long;
- `cdrsync_quarantined_calls > 0`: a call no step could process is held (`cdrsync status`, then
  `cdrsync show CALLID` and `retry --quarantined`);
- `increase(cdrsync_passes_total{result="unauthorized"}[10m]) > 0`: Planfix refuses the token;
- `absent(cdrsync_info)` (or `up == 0`): the daemon is not running.

A new series is one line in `Metrics.__init__` (`self._metric(Gauge, name, help, *labels)`) and
one where `run` feeds it (`scheduler._observe`); contrib/grafana-cdrsync.json must then show it
(tests/test_metrics.py compares the two).
"""

from __future__ import annotations

import logging
import os
import socket
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
    write_to_textfile,
)

from . import __version__
from .config import Config, ConfigError
from .state.ledger import STATES

log = logging.getLogger("cdrsync.metrics")

# Seconds between a call's end and Planfix accepting it: a pass or two when all is well, hours
# during an outage.
LAG_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
# How a pass ended: "ok" read the PBX and delivered what was due; "stalled" found Planfix or the
# network down; "unauthorized": Planfix refused the token; "failed": the PBX database failed.
PASS_RESULTS = ("ok", "stalled", "unauthorized", "failed")


class Metrics:
    """The daemon's series in a registry of its own, each with this instance's `pbx` label.

    Attributes are the label-bound children: `requests_sent.inc()`, `outbox("pending").set(n)`.
    prometheus_client's metrics are thread-safe (its HTTP thread reads while a pass writes).
    """

    def __init__(self, pbx: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pbx = pbx
        self._metric(Info, "cdrsync", "The running cdrsync")().info({"version": __version__})
        self.passes = self._metric(Counter, "cdrsync_passes", "Passes of the daemon, by result",
                                   "result")
        self.last_pass = self._metric(Gauge, "cdrsync_last_pass_timestamp_seconds",
                                      "When the last pass ended (0: none yet)")()
        self.last_success = self._metric(Gauge, "cdrsync_last_success_timestamp_seconds",
                                         "When the last successful pass ended (0: none yet)")()
        self.calls = self._metric(Counter, "cdrsync_calls",
                                  "Finished calls read from the PBX and queued for Planfix")()
        self.requests_sent = self._metric(Counter, "cdrsync_requests_sent",
                                          "Requests Planfix accepted")()
        self.requests_refused = self._metric(
            Counter, "cdrsync_requests_refused",
            "Requests Planfix refused (kept as failed until retry or skip)")()
        self.requests_retried = self._metric(
            Counter, "cdrsync_requests_retried",
            "Requests that failed for a reason that passes (tried again later)")()
        self.outbox = self._metric(Gauge, "cdrsync_outbox_requests",
                                   "Requests in cdrsync's outbox, by state", "state")
        self.oldest_undelivered = self._metric(
            Gauge, "cdrsync_oldest_undelivered_age_seconds",
            "Age of the oldest request not yet delivered (0: none)")()
        self.quarantined = self._metric(
            Gauge, "cdrsync_quarantined_calls",
            "Calls held in the quarantine: no step could process them (cdrsync status)")()
        self.delivery_lag = self._metric(
            Histogram, "cdrsync_delivery_lag_seconds",
            "Seconds from the end of a call to Planfix accepting it", buckets=LAG_BUCKETS)()
        self.last_delivery_lag = self._metric(
            Gauge, "cdrsync_last_delivery_lag_seconds",
            "Seconds from the end of the last delivered call to its delivery")()
        for result in PASS_RESULTS:  # every series from the start: a rate needs its zero
            self.passes(result)
        for state in STATES:
            self.outbox(state)

    def _metric(self, kind: type, name: str, documentation: str, *labels: str,
                **options: Any) -> Any:
        """A metric of `kind` in this registry; returns a function giving its child for the
        values of `labels` (the `pbx` label already bound)."""
        metric = kind(name, documentation, ("pbx", *labels), registry=self.registry, **options)
        return partial(metric.labels, self.pbx)

    def observe_pass(self, result: str, at: float) -> None:
        """A pass ended at `at` (epoch seconds) with `result`, one of PASS_RESULTS."""
        self.passes(result).inc()
        self.last_pass.set(at)
        if result == "ok":
            self.last_success.set(at)

    def observe_delivery(self, lag_seconds: float) -> None:
        """Planfix accepted a call `lag_seconds` after the call ended."""
        lag = max(0.0, float(lag_seconds))
        self.delivery_lag.observe(lag)
        self.last_delivery_lag.set(lag)

    def write_textfile(self, path: str) -> None:
        """Replace `path` atomically with the current metrics (node-exporter textfile)."""
        write_to_textfile(path, self.registry)
        # node-exporter runs as another user, and cdrsync.service's UMask=0027 keeps others out
        os.chmod(path, 0o644)

    def serve(self, listen: str) -> Any:
        """Start the endpoint on "host:port" in a daemon thread; stop it with `.shutdown()`."""
        host, port = parse_listen(listen)
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        shown = f"[{host}]" if ":" in host else host
        log.info("metrics on http://%s:%d/metrics", shown, server.server_address[1])
        return server


def pbx_label(cfg: Config) -> str:
    """`[metrics] pbx`, else the config file's name (cdrsync@office1 reads office1.toml), else
    the host name: what tells this instance from the others in one Prometheus."""
    if cfg.metrics.pbx:
        return cfg.metrics.pbx
    stem = Path(cfg.path).stem if cfg.path else ""
    return stem if stem and stem != "cdrsync" else socket.gethostname().split(".")[0]


def parse_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:9464", "[::1]:9464" or ":9464" (all IPv4 addresses) -> (host, port)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics.listen: expected HOST:PORT (e.g. 127.0.0.1:9464), "
                          f"not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
