"""Metrics of `cdrsync run`: the Prometheus text is valid and right, over real HTTP on 127.0.0.1
and as an atomically replaced node-exporter textfile."""

from __future__ import annotations

import math
import os
import re
import stat
import urllib.error
import urllib.request

import pytest

from cdrsync.config import ConfigError
from cdrsync.metrics import CONTENT_TYPE, LAG_BUCKETS, Metrics, parse_listen

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf'^({_NAME})(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\}})?'
                     r" ([^ ]+)(?: (-?\d+))?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A strict reader of the text exposition format 0.0.4: every line must be a well-formed
    comment or sample of a family whose TYPE came first; histograms must be consistent."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE before it"
        number = float(value)  # accepts +Inf / NaN as the format allows
        key = (name, tuple(sorted(_LABEL.findall(labels))))
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = number
    for family, kind in types.items():
        if kind == "histogram":
            buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items()
                              if k[0] == family + "_bucket"))
            assert buckets[-1][0] == math.inf
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), "buckets must be cumulative"
            assert buckets[-1][1] == samples[(family + "_count", ())]
    return samples


def test_fresh_metrics_are_valid_and_zero():
    samples = parse(Metrics().render())
    assert samples[("cdrsync_last_success_timestamp_seconds", ())] == 0
    assert samples[("cdrsync_delivery_lag_seconds_count", ())] == 0
    assert samples[("cdrsync_outbox_requests", (("state", "pending"),))] == 0


def test_observations_show_up():
    m = Metrics()
    m.observe_pass(True, 1_790_000_000.5)
    m.observe_pass(False, 1_790_000_010.0)
    m.set_queue(sent=120, failed=2, pending=7)
    for lag in (3, 12, 12, 4000):
        m.observe_delivery(lag)
    s = parse(m.render())
    assert s[("cdrsync_passes_total", (("result", "ok"),))] == 1
    assert s[("cdrsync_passes_total", (("result", "failed"),))] == 1
    assert s[("cdrsync_last_pass_timestamp_seconds", ())] == 1_790_000_010.0
    assert s[("cdrsync_last_success_timestamp_seconds", ())] == 1_790_000_000.5
    assert s[("cdrsync_outbox_requests", (("state", "sent"),))] == 120
    assert s[("cdrsync_outbox_requests", (("state", "failed"),))] == 2
    assert s[("cdrsync_outbox_requests", (("state", "pending"),))] == 7
    assert s[("cdrsync_last_delivery_lag_seconds", ())] == 4000
    assert s[("cdrsync_delivery_lag_seconds_sum", ())] == 3 + 12 + 12 + 4000
    assert s[("cdrsync_delivery_lag_seconds_bucket", (("le", "5"),))] == 1
    assert s[("cdrsync_delivery_lag_seconds_bucket", (("le", "15"),))] == 3
    assert s[("cdrsync_delivery_lag_seconds_bucket", (("le", "3600"),))] == 3
    assert s[("cdrsync_delivery_lag_seconds_bucket", (("le", "14400"),))] == 4
    assert s[("cdrsync_delivery_lag_seconds_bucket", (("le", "+Inf"),))] == 4
    assert len([k for k in s if k[0].endswith("_bucket")]) == len(LAG_BUCKETS) + 1


def test_endpoint_over_real_http():
    m = Metrics()
    server = m.serve("127.0.0.1:0")
    try:
        port = server.server_address[1]
        m.set_queue(5, 0, 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == CONTENT_TYPE
            body = resp.read().decode("utf-8")
        assert parse(body)[("cdrsync_outbox_requests", (("state", "sent"),))] == 5
        m.observe_pass(True, 1_790_000_000)  # the next scrape sees the change
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert parse(resp.read().decode())[("cdrsync_passes_total", (("result", "ok"),))] == 1
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_textfile_is_replaced_atomically(tmp_path):
    target = tmp_path / "cdrsync.prom"
    target.write_text("stale\n")
    m = Metrics()
    m.observe_pass(True, 1_790_000_000)
    inode_before = target.stat().st_ino
    m.write_textfile(str(target))
    assert parse(target.read_text())[("cdrsync_passes_total", (("result", "ok"),))] == 1
    assert target.stat().st_ino != inode_before  # a new file renamed over, never rewritten
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["cdrsync.prom"]  # no temporary file left


def test_textfile_in_a_missing_folder_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        Metrics().write_textfile(str(tmp_path / "nope" / "cdrsync.prom"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)),
    (":9464", ("0.0.0.0", 9464))])
def test_listen_addresses(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_listen_is_a_config_error(listen):
    with pytest.raises(ConfigError, match="metrics.listen"):
        parse_listen(listen)
