"""Issue 14's planted-poison scenario: the real rows of a FreePBX 16 / Asterisk 18 lab
(../shared/corpus-public/freepbx-oscar6262-2024, 574 cdr rows and 4,100 cel events as the PBX
wrote them) with four poison calls planted among them, run as a real `backfill` and as a real
`run` over rows that keep arriving.

The poisons are copies of real calls of the same dump (new uniqueids, same shapes), damaged as
the issue found them: a hang-up in 9999, an unreadable linkedid, a lonely LINKEDID_END, a zero
calldate with an absurd duration on a call whose CEL is fine. Every good call arrives exactly
once, each poison call is delivered or named by `status`, and the daemon keeps delivering the
calls that arrive after the poison.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from typing import Any

from sqlalchemy import text

from tests.corpus import PUBLIC, calls_of, load_sql, sql_tables
from tests.e2e import cdrsync, make_config, start_cdrsync

DUMP = PUBLIC / "freepbx-oscar6262-2024" / "asteriskcdrdb_cdr_cel.sql"
FOREVER = 20 * 365 * 86400  # the first sync of `run` reaches back over the 2024 rows
NEVER = "9999-12-31 23:59:59"
_ID = re.compile(r"\b(1713\d{6})\.(\d+)\b")

HANGUP_9999 = "1713231241.9110"  # copy of 1713231241.10: inbound, answered on a follow-me leg
JUNK_LINKEDID = "99999999999999.1"  # copy of 1713229661.4: outbound, answered, 32 s
LONELY = "1713607200.9007"  # a LINKEDID_END and nothing else
ZERO_CALLDATE = "1713241362.940"  # copy of 1713241362.0: outbound, answered, CEL complete


def _copy(tables: dict[str, list[dict[str, Any]]], linkedid: str, tag: int
          ) -> tuple[list[dict], list[dict]]:
    """The rows of one real call with every id of it renamed (`<epoch>.<tag><counter>`)."""
    def renamed(row: dict[str, Any]) -> dict[str, Any]:
        return {k: _ID.sub(lambda m: f"{m.group(1)}.{tag}{m.group(2)}", v)
                if isinstance(v, str) else v for k, v in row.items() if k != "id"}
    return ([renamed(r) for r in tables["cdr"] if r["linkedid"] == linkedid],
            [renamed(r) for r in tables["cel"] if r["linkedid"] == linkedid])


def poison_rows(tables: dict[str, list[dict[str, Any]]]) -> tuple[list[dict], list[dict]]:
    cdr, cel = [], []
    rows, events = _copy(tables, "1713231241.10", 91)
    for event in events:
        if event["eventtype"] in ("BRIDGE_EXIT", "HANGUP", "CHAN_END", "LINKEDID_END"):
            event["eventtime"] = NEVER
    cdr += rows
    cel += events
    rows, events = _copy(tables, "1713229661.4", 92)
    for row in rows + events:
        row["linkedid"] = JUNK_LINKEDID
    cdr += rows
    cel += events
    cel.append({"eventtype": "LINKEDID_END", "eventtime": "2024-04-20 10:00:00",
                "uniqueid": LONELY, "linkedid": LONELY, "channame": "PJSIP/201-0000ffff",
                "context": "from-internal", "exten": "h"})
    rows, events = _copy(tables, "1713241362.0", 94)
    for row in rows:
        row["calldate"], row["duration"] = "0000-00-00 00:00:00", 2**31 - 1
    cdr += rows
    cel += events
    return cdr, cel


def insert(pbx_db, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows as the PBX writes them (columns left out take '' / 0: FreePBX's cel has no
    defaults)."""
    if not rows:
        return
    with pbx_db.admin.connect() as conn:
        columns = [c for c in (r[0] for r in conn.execute(text(f"SHOW COLUMNS FROM {table}")))
                   if c != "id" or table == "cel"]
    filled = []
    for row in rows:
        filled.append({c: row.get(c, 0 if c == "amaflags" else "") for c in columns
                       if c != "id" or "id" in row})
    names = list(filled[0])
    with pbx_db.admin.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                          f"({', '.join(':' + n for n in names)})"), filled)


def good_callids() -> set[str]:
    """Every call of the dump, grouped as production groups it (tests/corpus.py), but two
    fragments that never ended: a few CEL events, no LINKEDID_END, no cdr row (the lab PBX
    stopped mid-call), so no rule closes them, poison or not."""
    return {c.callid for c in calls_of(*load_sql(DUMP))
            if c.cdr or any(e.eventtype == "LINKEDID_END" for e in c.cel)}


def config(tmp_path, pbx_db, planfix):
    (tmp_path / "monitor").mkdir(exist_ok=True)
    return make_config(tmp_path, pbx_db.ro_url, planfix,
                       source={"lookback": FOREVER, "max_call": FOREVER},
                       planfix={"send_internal": True},  # every call, internal ones too
                       pbx={"trunk_channels": ["^PJSIP/TRUNK"]})  # tests/test_corpus_public.py


def assert_outcome(planfix, cfg, good: set[str]) -> dict:
    got = Counter(r.callid for r in planfix.received("event"))
    assert [c for c, n in got.items() if n > 1] == [], "a call sent twice"
    assert good <= set(got), sorted(good - set(got))[:10]
    events = {r.callid: r.fields for r in planfix.received("event")}
    assert events[HANGUP_9999]["status"] == "Success"
    assert (events[JUNK_LINKEDID]["type"], events[JUNK_LINKEDID]["status"]) == ("out", "Success")
    assert events[ZERO_CALLDATE]["status"] == "Success"
    assert events[ZERO_CALLDATE]["diversion"] == "02062002"  # its cdr row was read all the same
    assert LONELY not in got
    status = cdrsync(cfg, "status")
    assert "quarantined:      1" in status.stdout, status.stdout
    assert f"  {LONELY} (interpret" in status.stdout
    return json.loads(cdrsync(cfg, "status", "--json").stdout)


def test_backfill_of_the_real_rows_with_four_poison_calls(pbx_db, planfix, tmp_path):
    pbx_db.load_dump(DUMP)
    tables = sql_tables(DUMP.read_text(encoding="utf-8", errors="replace"))
    cdr, cel = poison_rows(tables)
    insert(pbx_db, "cel", cel)
    insert(pbx_db, "cdr", cdr)
    cfg = config(tmp_path, pbx_db, planfix)
    run = cdrsync(cfg, "backfill", "--since", "2024-04-01")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 quarantined" in run.stderr
    [warned] = [line for line in run.stderr.splitlines() if LONELY in line]
    assert "WARNING" in warned and "no cdr rows and no cel events" in warned
    assert_outcome(planfix, cfg, good_callids())
    again = cdrsync(cfg, "backfill", "--since", "2024-04-01")
    assert again.returncode == 0 and LONELY not in again.stderr, again.stderr[-2000:]
    assert_outcome(planfix, cfg, good_callids())
    dropped = cdrsync(cfg, "skip", LONELY)  # the admin gives up on it: handled, not listed
    assert dropped.returncode == 0 and f"call {LONELY} dropped" in dropped.stdout
    assert "quarantined:      0" in cdrsync(cfg, "status").stdout
    assert "quarantined (dropped)" in cdrsync(cfg, "show", LONELY).stdout


def test_the_daemon_keeps_delivering_calls_that_arrive_after_the_poison(pbx_db, planfix,
                                                                          tmp_path):
    tables = sql_tables(DUMP.read_text(encoding="utf-8", errors="replace"))
    calls = calls_of(*load_sql(DUMP))
    first_event = {c.callid: min((e.id for e in c.cel), default=0) for c in calls}
    cut = sorted(first_event.values())[len(calls) // 2]
    early = {lid for c in calls if first_event[c.callid] < cut for lid in c.linkedids}
    before = [r for r in tables["cel"] if r["linkedid"] in early]
    after = [r for r in tables["cel"] if r["linkedid"] not in early]
    cdr_before = [r for r in tables["cdr"] if r["linkedid"] in early or not r["uniqueid"]]
    cdr_after = [r for r in tables["cdr"] if r not in cdr_before]
    cdr_poison, cel_poison = poison_rows(tables)
    insert(pbx_db, "cel", before)
    insert(pbx_db, "cdr", cdr_before)
    insert(pbx_db, "cel", cel_poison)  # cel ids after the early calls, before the late ones
    insert(pbx_db, "cdr", cdr_poison)
    cfg = config(tmp_path, pbx_db, planfix)
    daemon = start_cdrsync(cfg, "run")
    try:
        good = good_callids()
        early_calls = {c.callid for c in calls if first_event[c.callid] < cut} & good
        wanted = early_calls | {HANGUP_9999, JUNK_LINKEDID, ZERO_CALLDATE}
        assert planfix.wait_for(lambda s: wanted <= set(s.callids()), timeout=60), \
            sorted(wanted - set(planfix.callids()))[:10]
        marked = cdrsync(cfg, "retry", "--quarantined")  # the daemon holds the lock: it retries
        assert marked.returncode == 0 and "processes them within 10 s" in marked.stdout
        insert(pbx_db, "cel", [{k: v for k, v in r.items() if k != "id"} for r in after])
        insert(pbx_db, "cdr", cdr_after)
        assert planfix.wait_for(lambda s: good <= set(s.callids()), timeout=60), \
            sorted(good - set(planfix.callids()))[:10]
        report = assert_outcome(planfix, cfg, good)
        deadline = time.monotonic() + 30  # the daemon looks for marked calls every 10 s
        while report["quarantine"]["calls"][0]["state"] != "held" and time.monotonic() < deadline:
            time.sleep(0.5)
            report = assert_outcome(planfix, cfg, good)
        [held] = report["quarantine"]["calls"]
        assert held["callid"] == LONELY and held["state"] == "held" and held["attempts"] == 2
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "pass failed" not in err
    assert sum(LONELY in line and "quarantined" in line for line in err.splitlines()) == 2, \
        "once when it was quarantined, once when the retry failed again"
