"""The operator's commands on a call Planfix refused: status shows it, retry re-sends it, skip
drops it — through the real command line."""

from __future__ import annotations

import json

from tests import synth
from tests.e2e import cdrsync, make_config
from tests.test_e2e_sync import external, recent


def test_status_retry_and_skip_of_calls_planfix_rejected(pbx_db, planfix, tmp_path):
    calls = [c for c in recent(12, seed=41) if c.truth.direction != "internal"]
    synth.insert(pbx_db.admin, calls)
    poison, other = calls[0].truth.linkedid, calls[1].truth.linkedid
    planfix.reject_callid(poison, answer='{"error":"Invalid parameters"}')
    planfix.reject_callid(other)
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)

    cdrsync(cfg, "sync", check=True)
    assert set(planfix.callids()) == external(calls) - {poison, other}  # the rest went through
    status = cdrsync(cfg, "status", check=True).stdout
    assert "failed:           2" in status
    assert "Invalid parameters" in status
    report = json.loads(cdrsync(cfg, "status", "--json", check=True).stdout)
    assert report["delivery"]["failed"] == 2

    planfix.accept_callid(poison)
    assert cdrsync(cfg, "retry", poison).returncode == 0
    assert cdrsync(cfg, "skip", other).returncode == 0
    cdrsync(cfg, "sync", check=True)
    assert planfix.callids().count(poison) == 1
    assert other not in planfix.callids()
    report = json.loads(cdrsync(cfg, "status", "--json", check=True).stdout)
    assert report["delivery"]["failed"] == 0 and report["delivery"]["pending"] == 0
    assert report["delivery"]["skipped"] >= 1


def test_retry_and_skip_say_when_there_is_nothing_to_do(pbx_db, planfix, tmp_path):
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    assert cdrsync(cfg, "retry", "--failed").returncode == 1
    assert cdrsync(cfg, "skip", "1.2").returncode == 1
    usage = cdrsync(cfg, "retry")
    assert usage.returncode == 2 and "give a CALLID, --failed or --quarantined" in usage.stderr


def test_every_command_has_help_with_an_example():
    for command in ("check", "run", "sync", "backfill", "status", "show", "retry", "skip",
                    "serve-recordings", "init"):
        proc = cdrsync(None, command, "--help", check=True)
        assert "Example:" in proc.stdout, command


def test_a_reader_that_stops_early_gets_no_traceback():
    """`cdrsync --demo sync --dry-run | head -1`: the reader of stdout goes away before cdrsync
    is done; cdrsync ends quietly (exit 1, no "internal error", no BrokenPipeError) instead of a
    traceback. The pipe is closed before cdrsync writes its first line, so the write fails."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "cdrsync", "--demo", "sync", "--dry-run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"BrokenPipe" not in err and b"internal error" not in err and b"Traceback" not in err
    assert proc.returncode == 1
