"""Metrics of `cdrsync run` on prometheus_client: the series and their `pbx` label, the endpoint
over real HTTP on 127.0.0.1 and on ::1, the node-exporter textfile, the real daemon feeding them,
and the Grafana dashboard reading exactly the series the code exports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdrsync import config
from cdrsync.metrics import LAG_BUCKETS, PASS_RESULTS, Metrics, parse_listen, pbx_label
from cdrsync.state.ledger import STATES
from tests import synth
from tests.e2e import start_cdrsync
from tests.test_e2e_sync import external, recent, utc_now

DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana-cdrsync.json"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value}, read by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return resp.headers["Content-Type"], resp.read().decode("utf-8")


def text_of(m: Metrics, tmp_path: Path) -> str:
    m.write_textfile(str(tmp_path / "m.prom"))
    return (tmp_path / "m.prom").read_text()


def test_fresh_metrics_have_every_series_at_zero_with_the_pbx_label(tmp_path):
    s = samples(text_of(Metrics("office-1"), tmp_path))
    assert {dict(labels)["pbx"] for _, labels in s} == {"office-1"}
    for result in PASS_RESULTS:
        assert s[("cdrsync_passes_total", (("pbx", "office-1"), ("result", result)))] == 0
    for state in STATES:
        assert s[("cdrsync_outbox_requests", (("pbx", "office-1"), ("state", state)))] == 0
    assert s[("cdrsync_last_success_timestamp_seconds", (("pbx", "office-1"),))] == 0
    assert s[("cdrsync_quarantined_calls", (("pbx", "office-1"),))] == 0
    assert s[("cdrsync_delivery_lag_seconds_count", (("pbx", "office-1"),))] == 0
    [(_, info)] = [k for k in s if k[0] == "cdrsync_info"]
    assert dict(info)["version"]


def test_observations_show_up(tmp_path):
    m = Metrics("p")
    m.observe_pass("ok", 1_790_000_000.5)
    m.observe_pass("stalled", 1_790_000_010.0)
    m.outbox("sent").set(120)
    m.outbox("failed").set(2)
    m.requests_sent.inc(7)
    for lag in (3, 12, 12, 4000):
        m.observe_delivery(lag)
    s = {(name, dict(labels).get("result") or dict(labels).get("state")
          or dict(labels).get("le")): v for (name, labels), v in
         samples(text_of(m, tmp_path)).items()}
    assert s[("cdrsync_passes_total", "ok")] == 1
    assert s[("cdrsync_passes_total", "stalled")] == 1
    assert s[("cdrsync_passes_total", "failed")] == 0
    assert s[("cdrsync_last_pass_timestamp_seconds", None)] == 1_790_000_010.0
    assert s[("cdrsync_last_success_timestamp_seconds", None)] == 1_790_000_000.5
    assert s[("cdrsync_outbox_requests", "sent")] == 120
    assert s[("cdrsync_outbox_requests", "failed")] == 2
    assert s[("cdrsync_requests_sent_total", None)] == 7
    assert s[("cdrsync_last_delivery_lag_seconds", None)] == 4000
    assert s[("cdrsync_delivery_lag_seconds_sum", None)] == 3 + 12 + 12 + 4000
    assert s[("cdrsync_delivery_lag_seconds_bucket", "5.0")] == 1
    assert s[("cdrsync_delivery_lag_seconds_bucket", "15.0")] == 3
    assert s[("cdrsync_delivery_lag_seconds_bucket", "3600.0")] == 3
    assert s[("cdrsync_delivery_lag_seconds_bucket", "14400.0")] == 4
    assert s[("cdrsync_delivery_lag_seconds_bucket", "+Inf")] == 4
    assert len([k for k in s if k[0].endswith("_bucket")]) == len(LAG_BUCKETS) + 1


def test_two_instances_keep_their_series_apart(tmp_path):
    """Two registries (two daemons) each export only their own, under their own label."""
    a, b = Metrics("a"), Metrics("b")
    a.requests_sent.inc(3)
    text_a, text_b = text_of(a, tmp_path), text_of(b, tmp_path)
    assert samples(text_a)[("cdrsync_requests_sent_total", (("pbx", "a"),))] == 3
    assert samples(text_b)[("cdrsync_requests_sent_total", (("pbx", "b"),))] == 0
    assert 'pbx="b"' not in text_a and "python_gc" not in text_a  # not the global registry


def _free_port(family: socket.AddressFamily, host: str) -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host, family, url_host", [
    ("127.0.0.1", socket.AF_INET, "127.0.0.1"), ("[::1]", socket.AF_INET6, "[::1]")])
def test_endpoint_over_real_http(host, family, url_host):
    m = Metrics("p")
    port = _free_port(family, host.strip("[]"))
    server = m.serve(f"{host}:{port}")
    try:
        assert server.socket.family == family
        url = f"http://{url_host}:{port}/metrics"
        ctype, body = scrape(url)
        assert ctype.startswith("text/plain; version=0.0.4")
        assert samples(body)[("cdrsync_requests_sent_total", (("pbx", "p"),))] == 0
        m.requests_sent.inc()  # the next scrape sees the change
        assert samples(scrape(url)[1])[("cdrsync_requests_sent_total", (("pbx", "p"),))] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_textfile_is_replaced_atomically_and_readable_by_node_exporter(tmp_path):
    target = tmp_path / "cdrsync.prom"
    target.write_text("stale\n")
    m = Metrics("p")
    m.observe_pass("ok", 1_790_000_000)
    inode_before = target.stat().st_ino
    old_umask = os.umask(0o027)  # cdrsync.service's UMask
    try:
        m.write_textfile(str(target))
    finally:
        os.umask(old_umask)
    s = samples(target.read_text())
    assert s[("cdrsync_passes_total", (("pbx", "p"), ("result", "ok")))] == 1
    assert target.stat().st_ino != inode_before  # a new file renamed over, never rewritten
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["cdrsync.prom"]  # no temporary file left


def test_textfile_in_a_missing_folder_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        Metrics("p").write_textfile(str(tmp_path / "nope" / "cdrsync.prom"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)),
    (":9464", ("0.0.0.0", 9464))])
def test_listen_addresses(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_listen_is_a_config_error(listen):
    with pytest.raises(config.ConfigError, match="metrics.listen"):
        parse_listen(listen)


@pytest.mark.parametrize("pbx, path, expected", [
    ("office-7", "/etc/cdrsync/office1.toml", "office-7"),  # said in the config
    ("", "/etc/cdrsync/office1.toml", "office1"),  # cdrsync@office1.service
    ("", "/etc/cdrsync/cdrsync.toml", socket.gethostname().split(".")[0]),  # one per host
    ("", "", socket.gethostname().split(".")[0]),
])
def test_the_pbx_label(pbx, path, expected):
    cfg = config.from_dict({"source": {"url": "sqlite:///x.db", "timezone": "UTC"},
                            "planfix": {"url": "http://127.0.0.1:9/", "token": "t"},
                            "metrics": {"pbx": pbx}}, {}, path)
    assert pbx_label(cfg) == expected


# ---- the Grafana dashboard ------------------------------------------------------------------

_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less functions, keywords,
    label names (in {...} and in by / without / on / ignoring lists), strings, durations and
    Grafana's $variables. Grafana's `label_values(metric, label)` gives its metric."""
    values = re.fullmatch(r"\s*label_values\(\s*(?:([A-Za-z_:][\w:]*)\s*,\s*)?\w+\s*\)\s*", expr)
    if values:
        return {values.group(1)} if values.group(1) else set()
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", expr):
        before = expr[m.start() - 1] if m.start() else " "
        if (m.group().lower() in _NOT_METRICS or before in "$." or before.isdigit()
                or expr[m.end():].lstrip().startswith("(")):
            continue
        names.add(m.group())
    return names


def test_metric_names_finds_the_metrics_and_nothing_else():
    expr = ('histogram_quantile(0.95, sum by (le, pbx) (rate(a_bucket{pbx=~"$pbx", '
            'state="b_total"}[5m]))) / on(pbx) group_left(version) b_info offset 1h '
            '* 1e3 + time() - c:recorded unless d{x="y"}')
    assert metric_names(expr) == {"a_bucket", "b_info", "c:recorded", "d"}
    assert metric_names("label_values(cdrsync_info, pbx)") == {"cdrsync_info"}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variables."""
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    found.append(value)
                elif key == "query" and isinstance(value, dict) and "query" in value:
                    found.append(value["query"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def test_dashboard_reads_exactly_the_series_cdrsync_exports():
    queries = dashboard_queries()
    assert len(queries) >= 10
    used = set().union(*(metric_names(q) for q in queries))
    families = {f.name: {s.name for s in f.samples if not s.name.endswith("_created")}
                for f in Metrics("p").registry.collect()}
    exported = set().union(*families.values())
    assert sorted(used - exported) == []  # no panel on a name the code lacks
    assert sorted(f for f, names in families.items() if not names & used) == []  # all shown


def test_dashboard_is_importable_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        assert all('pbx=~"$pbx"' in t["expr"] for t in panel["targets"]), panel["title"]


# ---- the real daemon -------------------------------------------------------------------------

def _values(text: str) -> dict[tuple[str, str], float]:
    """{(sample name, its result / state label): value}, every sample asserted to be office-7's."""
    out = {}
    for (name, labels), value in samples(text).items():
        labels = dict(labels)
        assert labels.pop("pbx") == "office-7", name
        out[(name, labels.get("result") or labels.get("state") or labels.get("le") or "")] = value
    return out


def test_run_feeds_the_metrics_on_ipv6_and_in_the_textfile(env, tmp_path):
    pbx_db, planfix, config_for = env
    calls = recent(8, seed=15)
    synth.insert(pbx_db.admin, calls)
    rejected = sorted(external(calls))[0]
    planfix.reject_callid(rejected)  # Planfix refuses one call's requests
    # and one call can not be rebuilt: only its LINKEDID_END landed (as in test_poison.py)
    lonely = synth.one("in_answered", utc_now() - timedelta(minutes=10), seed=36, first_uid=9000)
    pbx_db.insert_cel([e for e in lonely.cel if e["eventtype"] == "LINKEDID_END"])
    planfix.fail_next(2)  # and has a hiccup: two requests are tried again
    port = _free_port(socket.AF_INET6, "::1")
    textfile = tmp_path / "cdrsync.prom"
    daemon = start_cdrsync(config_for(schedule={"interval": 1}, metrics={
        "listen": f"[::1]:{port}", "textfile": str(textfile), "pbx": "office-7"}), "run")
    url = f"http://[::1]:{port}/metrics"
    delivered = external(calls) - {rejected}
    try:
        assert planfix.wait_for(lambda stub: {r.callid for r in stub.received("event")}
                                == delivered, 30)

        def observed(stub) -> bool:
            """A pass since the last delivery has been counted (the outbox as it stays)."""
            got = _values(scrape(url)[1])
            return (got[("cdrsync_outbox_requests", "pending")] == 0
                    and got[("cdrsync_outbox_requests", "failed")] == 1
                    and got[("cdrsync_requests_sent_total", "")] == len(stub.received(None)))
        assert planfix.wait_for(observed, 10)
        time.sleep(1.5)  # a pass more, so the textfile has caught up too
        got = _values(scrape(url)[1])
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert got[("cdrsync_requests_sent_total", "")] == len(planfix.received(None))
    assert got[("cdrsync_requests_refused_total", "")] == 1
    assert got[("cdrsync_outbox_requests", "failed")] == 1
    assert got[("cdrsync_requests_retried_total", "")] == 2
    assert got[("cdrsync_calls_total", "")] == len(calls)
    assert got[("cdrsync_delivery_lag_seconds_count", "")] == len(delivered)
    assert got[("cdrsync_last_delivery_lag_seconds", "")] > 0  # the calls ended minutes ago
    assert got[("cdrsync_passes_total", "ok")] >= 1
    assert got[("cdrsync_last_success_timestamp_seconds", "")] > time.time() - 60
    assert got[("cdrsync_oldest_undelivered_age_seconds", "")] > 0  # the refused call waits
    assert got[("cdrsync_quarantined_calls", "")] == 1
    written = _values(textfile.read_text())
    assert written[("cdrsync_requests_sent_total", "")] == got[("cdrsync_requests_sent_total", "")]
    assert "Traceback" not in err
