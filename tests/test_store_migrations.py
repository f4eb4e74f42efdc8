"""The state store's schema under Alembic, on real SQLite, PostgreSQL and MariaDB stores.

- A store made by cdrsync 0.1.0 (the last release without revisions; its DDL is frozen below, as
  its `create_all` emitted it, commit 4bccb47) is adopted and upgraded in place when the new code
  opens it: every pending request still pending, every sent one still sent, cursors intact.
- The revisions make exactly what the table declarations say (Alembic's autogenerate compare
  finds nothing), so a change of a declaration without its revision fails here.
- A store at a revision this code does not know is refused with one line, and left alone.
- The revisions form one line of history, and the tool that writes the next one works.
- Processes starting together on an empty store create it once, without an error.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    text,
)

from cdrsync.deliver import Deliverer
from cdrsync.planfix.client import PlanfixClient
from cdrsync.planfix.messages import completed_requests
from cdrsync.state import ledger, migrations, passes, progress
from cdrsync.state.db import TABLE_MODULES, StoreError, metadata, open_store
from cdrsync.state.migrations.__main__ import new_revision
from tests.e2e import ROOT, cdrsync, write_config
from tests.planfix_stub import make_call, stub_config

# cdrsync 0.1.0's schema, statement by statement as its `metadata.create_all` emitted them
# (SQLAlchemy 2.0 compiler, commit 4bccb47); only the id, datetime and quoting words differ by
# back-end.
DDL_0_1_0 = """
CREATE TABLE call_linkedids (
    linkedid VARCHAR(64) NOT NULL,
    callid VARCHAR(64) NOT NULL,
    PRIMARY KEY (linkedid)
);
CREATE INDEX ix_call_linkedids_callid ON call_linkedids (callid);
CREATE TABLE calls (
    callid VARCHAR(64) NOT NULL,
    direction VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL,
    ext VARCHAR(64) NOT NULL,
    phone VARCHAR(64) NOT NULL,
    start_utc {datetime},
    end_utc {datetime},
    origin VARCHAR(16) NOT NULL,
    summary TEXT NOT NULL,
    created_at FLOAT NOT NULL,
    PRIMARY KEY (callid)
);
CREATE INDEX ix_calls_phone_start ON calls (phone, start_utc);
CREATE TABLE delivery_flags (
    name VARCHAR(32) NOT NULL,
    value TEXT NOT NULL,
    since FLOAT NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE late_recordings (
    callid VARCHAR(64) NOT NULL,
    candidates TEXT NOT NULL,
    uniqueids TEXT NOT NULL,
    start BIGINT,
    until BIGINT NOT NULL,
    PRIMARY KEY (callid)
);
CREATE TABLE outbox (
    id {serial},
    {key} VARCHAR(255) NOT NULL,
    callid VARCHAR(64) NOT NULL,
    target VARCHAR(16) NOT NULL,
    body TEXT NOT NULL,
    state VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    next_try FLOAT NOT NULL,
    last_error TEXT,
    created_at FLOAT NOT NULL,
    last_try FLOAT,
    sent_at FLOAT,
    PRIMARY KEY (id),
    UNIQUE ({key})
);
CREATE INDEX ix_outbox_callid ON outbox (callid);
CREATE INDEX ix_outbox_state_id ON outbox (state, id);
CREATE INDEX ix_outbox_state_next ON outbox (state, next_try);
CREATE TABLE passes (
    id {serial},
    kind VARCHAR(16) NOT NULL,
    started FLOAT NOT NULL,
    finished FLOAT NOT NULL,
    found INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    error VARCHAR(500) NOT NULL,
    PRIMARY KEY (id)
);
CREATE TABLE progress_cursors (
    name VARCHAR(200) NOT NULL,
    value VARCHAR(64) NOT NULL,
    updated_at FLOAT NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE progress_pending (
    linkedid VARCHAR(80) NOT NULL,
    first_seen FLOAT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    PRIMARY KEY (linkedid)
);
CREATE TABLE progress_quiet (
    callid VARCHAR(80) NOT NULL,
    fingerprint VARCHAR(64) NOT NULL,
    changed_at FLOAT NOT NULL,
    PRIMARY KEY (callid)
);
"""
WORDS = {
    "sqlite": {"serial": "INTEGER NOT NULL", "datetime": "DATETIME", "key": '"key"'},
    "postgresql": {"serial": "SERIAL NOT NULL", "datetime": "TIMESTAMP WITHOUT TIME ZONE",
                   "key": "key"},
    "mysql": {"serial": "INTEGER NOT NULL AUTO_INCREMENT", "datetime": "DATETIME",
              "key": "`key`"},
}
# The time the old store holds: one that MySQL's single-precision FLOAT of 0.1.0 kept exact (what
# it did to other times is the subject of test_store_times.py).
T = 1_700_000_000.0
CFG = stub_config(planfix={"ring_group_cancelled": True})
SENT_CALL, PENDING_CALL, FAILED_CALL = "1700000000.1", "1700000100.2", "1700000200.3"
CURSORS = {"horizon": "1699999872.0", "cel_end": "48211", "history:2024-01-01..": "91.5"}


def old_ddl(kind: str, leave_out: tuple[str, ...] = ()) -> list[str]:
    statements = [s.strip() for s in DDL_0_1_0.format(**WORDS[kind]).split(";") if s.strip()]
    return [s for s in statements if not any(word in s for word in leave_out)]


def build_old_store(kind: str, url: str, leave_out: tuple[str, ...] = ()) -> None:
    """A store as cdrsync 0.1.0 left it: its tables, and rows as its ledger, finder and passes
    wrote them — one call delivered, one waiting (its COMPLETED and a Cancelled), one Planfix
    refused; cursors, a settling linkedid, a quiet call, a late recording, a stall flag."""
    engine = create_engine(url)
    with engine.begin() as conn:
        if kind == "sqlite":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # 0.1.0's stores ran in WAL mode
        for statement in old_ddl(kind, leave_out):
            conn.exec_driver_sql(statement)
        key = WORDS[kind]["key"]
        entry_id = 0
        # each call's COMPLETED and Cancelled: delivered; waiting; refused (its Cancelled held)
        for callid, states in ((SENT_CALL, ("sent", "sent")), (PENDING_CALL, ("pending",) * 2),
                               (FAILED_CALL, ("failed", "pending"))):
            call = make_call(callid, rung=("101", "102"))
            conn.execute(text(
                "INSERT INTO calls (callid, direction, status, ext, phone, start_utc, end_utc, "
                "origin, summary, created_at) VALUES (:c, 'inbound', 'Success', '101', :p, "
                ":s, :e, 'sync', :summary, :t)"),
                {"c": callid, "p": call.phone, "s": call.start.replace(tzinfo=None),
                 "e": call.end.replace(tzinfo=None),
                 "summary": json.dumps(ledger.call_summary(call)), "t": T})
            conn.execute(text("INSERT INTO call_linkedids (linkedid, callid) VALUES (:c, :c)"),
                         {"c": callid})
            for request, state in zip(completed_requests(call, CFG), states):
                entry_id += 1
                tried = state != "pending"
                conn.execute(text(
                    f"INSERT INTO outbox (id, {key}, callid, target, body, state, attempts, "
                    "next_try, last_error, created_at, last_try, sent_at) VALUES (:id, :k, :c, "
                    ":target, :body, :state, :n, :t, :err, :t, :tried, :sent)"),
                    {"id": entry_id, "k": request.key, "c": callid, "target": request.target,
                     "body": json.dumps(request.fields, ensure_ascii=False, sort_keys=True),
                     "state": state, "n": int(tried), "t": T,
                     "err": 'HTTP 400: {"error":"Invalid parameters"}'
                     if state == "failed" else None,
                     "tried": T if tried else None, "sent": T if state == "sent" else None})
        conn.execute(text("INSERT INTO call_linkedids (linkedid, callid) VALUES (:l, :c)"),
                     {"l": "1700000101.5", "c": PENDING_CALL})
        for name, value in CURSORS.items():
            conn.execute(text("INSERT INTO progress_cursors (name, value, updated_at) "
                              "VALUES (:n, :v, :t)"), {"n": name, "v": value, "t": T})
        conn.execute(text("INSERT INTO progress_pending (linkedid, first_seen, kind) "
                          "VALUES ('1700000300.1', :t, 'settle')"), {"t": T})
        conn.execute(text("INSERT INTO progress_quiet (callid, fingerprint, changed_at) "
                          "VALUES ('1700000400.1', 'ab12', :t)"), {"t": T})
        conn.execute(text("INSERT INTO passes (kind, started, finished, found, sent, error) "
                          "VALUES ('sync', :t, :t, 3, 2, '')"), {"t": T})
        conn.execute(text("INSERT INTO delivery_flags (name, value, since) "
                          "VALUES ('stalled', 'HTTP 503', :t)"), {"t": T})
        if "late_recordings" not in leave_out:
            conn.execute(text(
                "INSERT INTO late_recordings (callid, candidates, uniqueids, start, until) "
                "VALUES (:c, '[\"in-1.wav\"]', :u, 1700000000, 1700086400)"),
                {"c": SENT_CALL, "u": json.dumps([SENT_CALL])})
    engine.dispose()


def differences(engine: Engine, declared: MetaData = metadata) -> list:
    """What Alembic's autogenerate finds between the store and the declarations."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        return compare_metadata(context, declared)


def empty_store(kind: str, tmp_path: Path, servers) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return servers.empty(kind)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def kind(request):
    return request.param


def test_a_store_of_the_last_release_is_upgraded_in_place_and_loses_nothing(
        kind, tmp_path, store_servers, planfix):
    url = empty_store(kind, tmp_path, store_servers)
    build_old_store(kind, url)
    store = open_store(url)
    try:
        with store.connect() as conn:
            assert migrations.current(conn) == migrations.head()
            stats = ledger.stats(conn, now=T + 1000)
            assert (stats["sent"], stats["pending"], stats["failed"], stats["calls"]) == (
                2, 3, 1, 3)
            assert stats["stalled"] == {"value": "HTTP 503", "since": T}
            waiting = ledger.due(conn, T + 1000, include_held=True)
            assert [(e.callid, e.kind) for e in waiting] == [
                (PENDING_CALL, "completed"), (PENDING_CALL, "cancelled"),
                (FAILED_CALL, "cancelled")]
            # revision 0005: what was queued before the lanes existed goes in the LIVE one
            assert conn.execute(text("SELECT DISTINCT priority FROM outbox")).scalars().all() == [
                ledger.LIVE]
            sent = ledger.summary(conn, SENT_CALL)["requests"]
            assert [(r["state"], r["sent_at"]) for r in sent] == [("sent", T)] * 2
            assert progress.read_cursors(conn) == {k: (v, T) for k, v in CURSORS.items()}
            assert progress.read_pending(conn) == {"1700000300.1": (T, "settle")}
            assert progress.read_quiet(conn) == {"1700000400.1": ("ab12", T)}
            assert passes.last(conn)["found"] == 3
            assert ledger.handled_linkedids(conn, ["1700000101.5"]) == {"1700000101.5"}
        # a backfill meeting the calls again queues nothing: the ledger still knows them
        with ledger.transaction(store) as conn:
            again = [(make_call(c), [c], completed_requests(make_call(c), CFG))
                     for c in (SENT_CALL, PENDING_CALL, FAILED_CALL)]
            assert ledger.record_calls(conn, again, "backfill", now=T + 2000) == []
        # and delivery sends what waited, once, and nothing that was sent before
        cfg = stub_config(planfix, planfix={"ring_group_cancelled": True})
        Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(),
                                                                now=lambda: T + 3000)
        assert sorted(planfix.callids()) == [PENDING_CALL, PENDING_CALL]
        assert differences(store) == []  # upgraded, it is what a new store is
    finally:
        store.dispose()


def test_an_older_store_gets_the_table_and_index_it_lacked(tmp_path):
    """Stores of releases before 0.1.0 had no late_recordings and no ix_outbox_state_id (the
    after_create hook of 0.1.0 added the index); revision 0001 creates what is missing, and 0005
    turns the index into the lanes' one, which the drain's query walks without sorting."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    build_old_store("sqlite", url, leave_out=("late_recordings", "ix_outbox_state_id"))
    open_store(url).dispose()
    with sqlite3.connect(tmp_path / "state.db") as raw:
        plan = raw.execute("EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE state = 'pending' "
                           "AND priority = 1 AND id > 5 ORDER BY id LIMIT 10").fetchall()
        assert raw.execute("SELECT count(*) FROM late_recordings").fetchone() == (0,)
        assert raw.execute("SELECT count(*) FROM outbox").fetchone() == (6,)
    assert "ix_outbox_state_priority_id" in str(plan) and "TEMP B-TREE" not in str(plan)


def test_a_new_store_is_exactly_what_the_declarations_say(kind, tmp_path, store_servers):
    store = open_store(empty_store(kind, tmp_path, store_servers))
    try:
        assert differences(store) == []
        assert inspect(store).has_table(migrations.VERSION_TABLE)
    finally:
        store.dispose()


def test_a_declaration_changed_without_a_revision_is_found(tmp_path):
    """What makes the test above fail when an engineer forgets a revision."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    declared = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(declared)
    Table("outbox", declared, Column("weight", Integer, nullable=False, server_default="0"),
          extend_existing=True)
    Table("forgotten", declared, Column("callid", String(64), primary_key=True))
    try:
        found = differences(store, declared)
    finally:
        store.dispose()
    assert sorted(d[0] for d in found) == ["add_column", "add_table"]


def test_a_store_of_a_newer_cdrsync_is_refused_with_one_line_and_left_alone(
        kind, tmp_path, store_servers, planfix):
    url = empty_store(kind, tmp_path, store_servers)
    open_store(url).dispose()
    raw = create_engine(url)
    with raw.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError) as refused:
        open_store(url)
    message = str(refused.value)
    assert "9999" in message and "newer" in message and "\n" not in message
    with raw.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    raw.dispose()
    config = write_config(tmp_path / "cdrsync.toml", {
        "source": {"url": "mysql+pymysql://nobody:x@127.0.0.1:1/none", "timezone": "UTC"},
        "planfix": {"url": planfix.url, "token": planfix.token},
        "state": {"url": url}})
    proc = cdrsync(config, "status")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "revision 9999" in proc.stderr, proc.stderr


def test_the_revisions_form_one_line_numbered_like_their_files():
    script = ScriptDirectory(str(migrations.FOLDER))
    assert script.get_heads() == [migrations.head()]
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert chain == migrations.revisions()
    assert chain == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    for path in (migrations.FOLDER / "versions").glob("[0-9]*.py"):
        assert path.name.startswith(script.get_revision(path.name[:4]).revision)


def test_the_revision_tool_writes_the_next_revision_from_the_declarations(tmp_path):
    location = tmp_path / "migrations"
    shutil.copytree(migrations.FOLDER, location, ignore=shutil.ignore_patterns("__pycache__"))
    probe = Table("quarantine_probe", metadata, Column("callid", String(64), primary_key=True),
                  Column("reason", String(500), nullable=False))
    try:
        path = new_revision("add the quarantine probe", location)
        number = f"{int(migrations.head()) + 1:04d}"
        assert path.name == f"{number}_add_the_quarantine_probe.py"
        written = path.read_text()
        assert "op.create_table('quarantine_probe'" in written
        assert f"down_revision = '{migrations.head()}'" in written
        store = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
        with store.connect() as conn:
            from alembic import command

            command.upgrade(migrations.alembic_config(conn, location), "head")
            conn.commit()
            assert migrations.current(conn) == number
        assert differences(store) == []
        store.dispose()
    finally:
        metadata.remove(probe)


RACER = """
import sys, time
from cdrsync.state.db import open_store
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_store(url).dispose()
"""


def test_processes_creating_a_new_store_at_once_create_it_once(kind, tmp_path, store_servers):
    url = empty_store(kind, tmp_path, store_servers)
    start = time.time() + 3  # every racer imported and waiting by then
    racers = [subprocess.Popen([sys.executable, "-c", RACER, url, str(start)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in racers]
    for p in racers:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in results] == [0] * 6, [err for _, err in results]
    store = create_engine(url)
    try:
        assert differences(store) == []
        with store.connect() as conn:
            assert migrations.current(conn) == migrations.head()
    finally:
        store.dispose()


def test_an_installed_cdrsync_carries_every_file_the_revisions_need(tmp_path):
    """`pip install .` (not editable) installs what setuptools' build_py gathers (packages and
    package data, from pyproject.toml): the revisions, env.py and the template must be there,
    or an installed cdrsync cannot open a store."""
    source = tmp_path / "source"  # a clean copy: no egg-info of an earlier build to lean on
    shutil.copytree(ROOT / "cdrsync", source / "cdrsync",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "-d", str(tmp_path / "built")], cwd=source, check=True,
                   capture_output=True, timeout=300)
    needed = {p.relative_to(migrations.FOLDER) for p in migrations.FOLDER.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    built = tmp_path / "built" / "cdrsync" / "state" / "migrations"
    installed = {p.relative_to(built) for p in built.rglob("*") if p.is_file()}
    assert Path("script.py.mako") in needed and Path("env.py") in needed
    assert needed <= installed, sorted(map(str, needed - installed))
