"""What cdrsync writes on stderr: one line per call delivered, JSON when asked, never a secret,
and nothing but requests on stdout."""

from __future__ import annotations

import json

from tests import synth
from tests.e2e import cdrsync, make_config
from tests.test_e2e_sync import external, recent


def test_json_log_lines_name_each_delivered_call_and_hold_no_secret(pbx_db, planfix, tmp_path):
    calls = recent(8, seed=31)
    synth.insert(pbx_db.admin, calls)
    password = pbx_db.ro_url.split("@")[0].rsplit(":", 1)[1]
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix, recordings={
        "base_url": "http://127.0.0.1:1/rec", "sign_key": "log-test-signing-key-0123456789"})
    proc = cdrsync(cfg, "-v", "--log-format", "json", "sync", check=True)
    assert proc.stdout == ""
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    text = proc.stderr
    for secret in (password, planfix.token, "log-test-signing-key-0123456789"):
        assert secret not in text
    delivered = [entry["message"] for entry in lines if entry["message"].startswith("delivered")]
    for callid in external(calls):
        assert sum(callid in message for message in delivered) == 1, callid
    assert any("sync pass:" in entry["message"] for entry in lines)
    assert any(entry["level"] == "debug" for entry in lines), "-v shows the reasoning"


def test_a_failing_database_is_reported_without_its_password(tmp_path, planfix):
    url = "mysql+pymysql://cdrsync:Sup3r-Secret@127.0.0.1:1/asteriskcdrdb"
    cfg = make_config(tmp_path, url, planfix)
    proc = cdrsync(cfg, "sync")
    assert proc.returncode == 1
    assert "Sup3r-Secret" not in proc.stderr
    assert "PBX database" in proc.stderr and "Traceback" not in proc.stderr
