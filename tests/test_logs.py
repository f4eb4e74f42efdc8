"""What cdrsync writes on stderr: one line per call delivered, JSON when asked, never a secret,
and nothing but requests on stdout."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from urllib.parse import quote_plus

import pytest
from sqlalchemy import insert

from cdrsync import logs
from cdrsync.state import ledger
from cdrsync.state.db import open_store
from tests import synth
from tests.e2e import cdrsync, make_config
from tests.planfix_stub import stub_config
from tests.test_e2e_sync import external, recent, utc_now


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


# --- tracebacks: kept, redacted, at the level of the record that carries them ----------------

@pytest.fixture
def own_logging():
    """logs.setup replaces the root handlers (pytest's too): put everything back afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("cdrsync")
    saved = (list(root.handlers), root.level, ours.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def failing_log(capsys, fmt: str, verbose: int, level: str = "debug") -> str:
    """What stderr shows for an exception logged with its traceback at `level`."""
    cfg = stub_config()
    logs.setup(cfg, verbose, fmt)
    try:
        raise RuntimeError(f"Planfix said: planfix_token={quote_plus(cfg.planfix.token)}")
    except RuntimeError:
        getattr(logging.getLogger("cdrsync.courier"), level)("delivery process failed",
                                                             exc_info=True)
    logging.getLogger("cdrsync.courier").error("delivery process: RuntimeError")
    return capsys.readouterr().err


def test_a_traceback_shows_with_v_redacted_in_text(capsys, own_logging):
    err = failing_log(capsys, "text", verbose=1)
    assert "Traceback (most recent call last):" in err
    assert 'raise RuntimeError(f"Planfix said' in err  # the source line, from the traceback
    assert "RuntimeError: Planfix said: planfix_token=***" in err
    assert quote_plus(stub_config().planfix.token) not in err


def test_a_traceback_is_one_json_field_redacted(capsys, own_logging):
    lines = [json.loads(line) for line in
             failing_log(capsys, "json", verbose=1).splitlines()]  # still one JSON per line
    [failed] = [entry for entry in lines if entry["message"] == "delivery process failed"]
    assert failed["traceback"].startswith("Traceback (most recent call last):")
    assert failed["traceback"].endswith("RuntimeError: Planfix said: planfix_token=***")
    assert all("traceback" not in entry for entry in lines if entry is not failed)


def test_without_v_a_debug_traceback_stays_out_and_the_error_line_stays(capsys, own_logging):
    err = failing_log(capsys, "text", verbose=0)
    assert "Traceback" not in err and "delivery process: RuntimeError" in err


def test_an_error_logged_with_its_exception_shows_the_traceback_at_error(capsys, own_logging):
    err = failing_log(capsys, "text", verbose=0, level="error")
    assert "ERROR cdrsync.courier: delivery process failed\nTraceback" in err


def test_when_the_backfill_courier_dies_v_shows_its_traceback(pbx_db, planfix, tmp_path):
    synth.insert(pbx_db.admin, recent(4, seed=13))
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    cdrsync(cfg, "status", check=True)  # creates the store
    # a queued request whose stored body no longer parses: the courier reading it dies
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    with store.begin() as conn:
        conn.execute(insert(ledger.outbox).values(
            key="1.1|completed", callid="1.1", target="api", body="{not json", state="pending",
            attempts=0, next_try=0.0, created_at=0.0))
    store.dispose()
    since = (utc_now() - timedelta(days=1)).date().isoformat()
    quiet = cdrsync(cfg, "backfill", "--since", since)
    assert quiet.returncode != 0 and "Traceback" not in quiet.stderr
    assert "delivery process: JSONDecodeError" in quiet.stderr
    verbose = cdrsync(cfg, "-v", "backfill", "--since", since)
    assert verbose.stderr.count("Traceback (most recent call last):") == 1
    assert "DEBUG cdrsync.courier: delivery process failed\nTraceback" in verbose.stderr
    assert "json.decoder.JSONDecodeError" in verbose.stderr
