"""Server state stores through the real command line (issue 14 item 4): a daemon and a cron sync
against one PostgreSQL / MariaDB store, each with a temp dir of its own (systemd's PrivateTmp),
never work at once; a SIGKILLed daemon leaves no lock behind; a backfill keeps the lock while
its courier (a forked child) sends. Rows: tests/synth.py (FreePBX 16 / Asterisk 20 shapes)."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from tests import synth
from tests.e2e import cdrsync, start_cdrsync
from tests.test_e2e_courier import children
from tests.test_e2e_sync import assert_at_most_inflight_repeats, assert_once, recent, utc_now

BUSY = "another cdrsync is working"


@pytest.fixture(params=["postgresql", "mysql"])
def server_env(request, env, store_servers, tmp_path):
    """`env` with a new, empty server state store, and a private temp dir per process."""
    pbx_db, planfix, config = env
    url = store_servers.empty(request.param)

    def with_store(**sections):
        return config(state={"url": url}, **sections)

    def private_tmp(name: str) -> dict[str, str]:
        folder = tmp_path / f"tmp-{name}"
        folder.mkdir(exist_ok=True)
        return {"TMPDIR": str(folder)}

    return pbx_db, planfix, with_store, private_tmp


def test_a_daemon_and_a_cron_sync_with_their_own_temp_dirs_never_work_at_once(server_env):
    pbx_db, planfix, config, private_tmp = server_env
    calls = recent(12, seed=41)
    synth.insert(pbx_db.admin, calls)
    cfg = config(schedule={"interval": 1})
    daemon = start_cdrsync(cfg, "run", env=private_tmp("daemon"))
    try:
        assert planfix.wait_for(lambda s: len(s.received("event")) >= 1, timeout=30)
        cron = cdrsync(cfg, "sync", env=private_tmp("cron"))
        assert cron.returncode == 0 and BUSY in cron.stderr, cron.stderr
        second = cdrsync(cfg, "run", env=private_tmp("second"))
        assert BUSY in second.stderr and "not starting a second daemon" in second.stderr
        assert planfix.wait_for(lambda s: len(s.received("event")) >= 10, timeout=30)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.communicate(timeout=30)
    # killed, it holds nothing: the next cron run works, and nothing goes twice
    more = recent(6, seed=42, minutes=20)
    synth.insert(pbx_db.admin, more)
    after = cdrsync(cfg, "sync", env=private_tmp("cron"))
    assert after.returncode == 0 and BUSY not in after.stderr, after.stderr
    assert_at_most_inflight_repeats(planfix, calls + more, kills=1)


def test_a_backfill_keeps_its_locks_while_its_courier_sends(server_env):
    """The backfill keeps the history lock (a second backfill is busy) while its courier, which
    holds the send lock, sends; a cron sync beside it reads the live tables and leaves the
    sending to the courier."""
    pbx_db, planfix, config, private_tmp = server_env
    since = utc_now() - timedelta(days=10)
    calls = list(synth.generate(48, since, seed=43, mean_gap=600))
    synth.insert(pbx_db.admin, calls)
    cfg = config(planfix={"rate": 4})  # 48 calls take twelve seconds or more
    backfill = start_cdrsync(cfg, "backfill", "--since", since.date().isoformat(),
                             env=private_tmp("backfill"))
    try:
        assert planfix.wait_for(lambda s: len(s.received("event")) >= 5, timeout=60)
        assert len(children(backfill.pid)) == 1, "the backfill sends from its courier"
        for _ in range(2):  # the courier forked and is sending: the lock is still the parent's
            second = cdrsync(cfg, "backfill", "--since", since.date().isoformat(),
                             env=private_tmp("second"))
            cron = cdrsync(cfg, "sync", env=private_tmp("cron"))
            assert backfill.poll() is None, "the backfill ended before the check: slow it down"
            assert second.returncode == 0 and BUSY in second.stderr, second.stderr
            assert cron.returncode == 0 and BUSY not in cron.stderr, cron.stderr
            assert "another cdrsync sends" in cron.stderr, cron.stderr
            time.sleep(0.5)
        _out, err = backfill.communicate(timeout=120)
    finally:
        if backfill.poll() is None:
            backfill.kill()
            backfill.communicate(timeout=30)
    assert backfill.returncode == 0, err
    after = cdrsync(cfg, "sync", env=private_tmp("cron"))
    assert after.returncode == 0 and BUSY not in after.stderr, after.stderr
    assert_once(planfix, calls)
