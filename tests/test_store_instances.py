"""One host, many PBXes (issue 15): `[state] namespace` gives each instance its own PostgreSQL
schema in a shared store, and contrib/cdrsync@.service runs one daemon per config.

The two instances below read the same PBX database, so every callid of one is a callid of the
other: the hardest case for a shared store (rows: tests/synth.py, FreePBX 16 / Asterisk 20).
Each sends to a Planfix of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from cdrsync import config
from cdrsync.config import ConfigError, StateConfig
from cdrsync.state import migrations
from cdrsync.state.db import open_store
from tests import synth
from tests.e2e import ROOT, cdrsync, make_config, start_cdrsync
from tests.planfix_stub import PlanfixStub
from tests.test_contrib import UNIT, unit_settings
from tests.test_e2e_sync import external, recent
from tests.test_store_migrations import differences

TEMPLATE = UNIT.with_name("cdrsync@.service")
BUSY = "another cdrsync is working"


def instance_config(folder: Path, pbx_url: str, stub: PlanfixStub, store: str,
                    namespace: str) -> Path:
    folder.mkdir(exist_ok=True)
    return make_config(folder, pbx_url, stub, state={"url": store, "namespace": namespace},
                       schedule={"interval": 1})


def running(daemon: subprocess.Popen) -> bool:
    """Wait for the daemon's "running" line (it holds its lock from before that line on)."""
    return any("running: a pass every" in line for line in daemon.stderr)


def test_two_instances_in_one_postgresql_store_with_the_same_callids_never_meet(
        pbx_db, store_servers, tmp_path):
    store = store_servers.empty("postgresql")
    calls = recent(15, seed=61)
    synth.insert(pbx_db.admin, calls)
    with PlanfixStub() as one, PlanfixStub() as two:
        cfg1 = instance_config(tmp_path / "office1", pbx_db.ro_url, one, store, "office1")
        cfg2 = instance_config(tmp_path / "office2", pbx_db.ro_url, two, store, "office2")
        cdrsync(cfg1, "sync", check=True)
        # office2 has not run: none of office1's cursors or calls is its
        status2 = json.loads(cdrsync(cfg2, "status", "--json", check=True).stdout)
        assert status2["cursors"] == {} and status2["delivery"]["calls"] == 0
        # nor the PBX model office1's pass stored (read without creating anything)
        model1 = json.loads(cdrsync(cfg1, "pbx", "--json", check=True).stdout)
        model2 = json.loads(cdrsync(cfg2, "pbx", "--json", check=True).stdout)
        assert model1["source"].startswith("stored") and model2["source"].startswith("learned")
        # separate locks: office1's daemon holds office1's lock only
        daemon = start_cdrsync(cfg1, "run")
        try:
            assert running(daemon), "office1's daemon did not start"
            assert BUSY in cdrsync(cfg1, "sync").stderr
            other = cdrsync(cfg2, "sync", check=True)
            assert BUSY not in other.stderr
            assert daemon.poll() is None
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.communicate(timeout=30)
        cdrsync(cfg2, "sync", check=True)  # nothing new: sends nothing again
        status1 = json.loads(cdrsync(cfg1, "status", "--json", check=True).stdout)
        status2 = json.loads(cdrsync(cfg2, "status", "--json", check=True).stdout)
        for stub in (one, two):  # each Planfix got every call of its PBX, once
            got = Counter(r.callid for r in stub.received("event"))
            assert set(got) == external(calls) and max(got.values()) == 1
    assert status1["cursors"] and status2["cursors"]
    assert status1["delivery"]["calls"] == status2["delivery"]["calls"] == len(calls)
    engine = create_engine(store)
    try:
        names = inspect(engine).get_schema_names()
        assert {"office1", "office2"} <= set(names)
        for schema in ("office1", "office2"):
            assert migrations.VERSION_TABLE in inspect(engine).get_table_names(schema=schema)
        assert inspect(engine).get_table_names(schema="public") == []
    finally:
        engine.dispose()


def test_a_namespaced_store_is_exactly_what_the_declarations_say(store_servers):
    store = open_store(StateConfig(url=store_servers.empty("postgresql"), namespace="office7"))
    try:
        assert store.dialect.default_schema_name == "office7"
        assert differences(store) == []
    finally:
        store.dispose()


RACER = """
import sys, time
from cdrsync.config import StateConfig
from cdrsync.state.db import open_store
url, namespace, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
open_store(StateConfig(url=url, namespace=namespace)).dispose()
"""


def test_processes_creating_one_namespace_at_once_create_it_once(store_servers):
    url = store_servers.empty("postgresql")
    start = time.time() + 3
    racers = [subprocess.Popen([sys.executable, "-c", RACER, url, "office3", str(start)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True) for _ in range(5)]
    errors = [p.communicate(timeout=120)[1] for p in racers]
    assert [p.returncode for p in racers] == [0] * 5, errors
    store = open_store(StateConfig(url=url, namespace="office3"))
    try:
        assert differences(store) == []
    finally:
        store.dispose()


@pytest.mark.parametrize(("url", "namespace", "complaint"), [
    ("sqlite:////var/lib/cdrsync/state.db", "office1", "only for a PostgreSQL state store"),
    ("mysql+pymysql://u:p@db/cdrsync", "office1", "only for a PostgreSQL state store"),
    ("postgresql+psycopg://u:p@db/cdrsync", "Office 1", "lower-case letters"),
    ("postgresql+psycopg://u:p@db/cdrsync", "pg_temp", "lower-case letters"),
    ("postgresql+psycopg://u:p@db/cdrsync", "x" * 64, "at most 63"),
])
def test_a_namespace_the_store_cannot_hold_is_refused(url, namespace, complaint):
    raw = {"source": {"url": "mysql+pymysql://ro:pw@127.0.0.1/asteriskcdrdb", "timezone": "UTC"},
           "planfix": {"url": "https://x.planfix.ru/api", "token": "t"},
           "state": {"url": url, "namespace": namespace}}
    with pytest.raises(ConfigError, match=complaint):
        config.from_dict(raw, env={})
    raw["state"]["namespace"] = "office_1"
    if url.startswith("postgresql"):
        assert config.from_dict(raw, env={}).state.namespace == "office_1"


def test_the_template_is_the_hardened_unit_made_per_instance():
    single, template = unit_settings(UNIT), unit_settings(TEMPLATE)
    per_instance = {"Description", "Environment", "EnvironmentFile", "StateDirectory",
                    "CacheDirectory"}
    assert {k: v for k, v in single.items() if k not in per_instance} == \
        {k: v for k, v in template.items() if k not in per_instance}
    assert template["Environment"] == [f"{config.ENV_PATH}=/etc/cdrsync/%i.toml"]
    assert template["EnvironmentFile"] == ["-/etc/cdrsync/%i.env"]
    assert template["StateDirectory"] == ["cdrsync/%i"]
    assert template["CacheDirectory"] == ["cdrsync/%i"]
    # the default store is outside what an instance may write: forgetting to give an instance
    # its own store stops it instead of sharing another's ledger
    default = Path(StateConfig().url.split("sqlite:///", 1)[1]).parent
    assert default == Path("/var/lib/cdrsync")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_template_passes_systemd_analyze_verify(tmp_path):
    unit = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable} -m cdrsync",
                   TEMPLATE.read_text(), flags=re.M)
    (tmp_path / "cdrsync@.service").write_text(unit)
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "cdrsync@office1.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
