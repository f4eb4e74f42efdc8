"""What production does to cdrsync: the PBX database going away in the middle of its work, and a
state store it can not write. Real processes; each test asserts the exact set of calls received."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections import Counter

import pymysql
import pytest

from tests import synth
from tests.e2e import cdrsync, start_cdrsync
from tests.test_e2e_sync import assert_once, external, recent

MARIADBD = "/usr/sbin/mariadbd"


def _port_open() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 3306), timeout=1):
            return True
    except OSError:
        return False


def _answers() -> bool:
    """The server takes logins again (after a hard stop InnoDB may still be recovering)."""
    try:
        pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=2).close()
        return True
    except pymysql.MySQLError:
        return False


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def stop_mariadb() -> None:
    subprocess.run(["start-stop-daemon", "--stop", "--oknodo", "--retry", "30", "--exec",
                    MARIADBD], check=True, capture_output=True)
    assert _wait(lambda: not _port_open(), 30), "MariaDB did not stop"


def start_mariadb() -> None:
    subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                    MARIADBD], check=True, capture_output=True)
    assert _wait(_answers, 120), "MariaDB did not come back"


@pytest.fixture
def mariadb_restartable(pbx_db):
    """The MariaDB of this machine may be stopped by the test; it is always running afterwards."""
    if subprocess.run(["which", "start-stop-daemon"], capture_output=True).returncode != 0:
        pytest.skip("start-stop-daemon is needed to stop and start MariaDB")
    try:
        yield pbx_db
    finally:
        if not _port_open():
            start_mariadb()
        pbx_db.admin.dispose()  # its pooled connections died with the server


def test_the_daemon_survives_mariadb_going_away_and_loses_nothing(mariadb_restartable, planfix,
                                                                   tmp_path):
    from tests.e2e import make_config

    pbx_db = mariadb_restartable
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix, schedule={"interval": 1})
    first = recent(10, seed=21)
    synth.insert(pbx_db.admin, first)
    daemon = start_cdrsync(cfg, "run")
    try:
        assert planfix.wait_for(lambda s: len(s.received("event")) >= len(external(first)), 30)
        stop_mariadb()
        time.sleep(3)  # a few passes fail on the database
        assert daemon.poll() is None, "the daemon must keep running while the database is away"
        start_mariadb()
        second = recent(10, seed=22)
        synth.insert(pbx_db.admin, second)
        assert planfix.wait_for(
            lambda s: len(s.received("event")) >= len(external(first + second)), 60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "PBX database" in err and "Traceback" not in err
    assert pbx_db.ro_url.split("@")[0].split(":")[-1] not in err  # the password never shows
    assert_once(planfix, first + second)


def test_a_state_store_that_can_not_be_written_stops_cdrsync_with_a_clear_line(pbx_db, planfix,
                                                                                 tmp_path):
    from tests.e2e import make_config

    calls = recent(6, seed=23)
    synth.insert(pbx_db.admin, calls)
    state = tmp_path / "state.db"
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    assert cdrsync(cfg, "status").returncode == 0  # creates the store, empty
    readonly = make_config(tmp_path, pbx_db.ro_url, planfix,
                           state={"url": f"sqlite:///file:{state}?mode=ro&uri=true"})
    proc = cdrsync(readonly, "sync")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cdrsync: state store:") and "nothing was lost" in last
    assert "Traceback" not in proc.stderr
    assert planfix.attempts() == []  # nothing sent that could not be written down first
    # the same store, writable again: every call arrives, once
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    cdrsync(cfg, "sync", check=True)
    assert_once(planfix, calls)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 KiB filesystem (tmpfs) for the state store; skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root and a mount namespace that allows it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_cdrsync_with_a_clear_line_and_loses_nothing(pbx_db, planfix,
                                                                        tmp_path, tiny_disk):
    from tests.e2e import make_config

    calls = recent(150, seed=24, minutes=50)
    synth.insert(pbx_db.admin, calls)
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix,
                      state={"url": f"sqlite:///{tiny_disk / 'state.db'}"})
    proc = cdrsync(cfg, "sync")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cdrsync: state store:") and "full" in last, last
    assert "Traceback" not in proc.stderr

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    cdrsync(cfg, "sync", check=True)
    got = Counter(r.callid for r in planfix.received("event"))
    assert set(got) == external(calls)
    # a request Planfix took just before its "sent" mark hit the full disk may come once more
    assert sum(n - 1 for n in got.values()) <= 1


def test_mariadb_going_away_in_the_middle_of_a_backfill(mariadb_restartable, planfix, tmp_path):
    """The backfill stops with one line; started again it continues, and each call arrives once."""
    from datetime import timedelta

    from tests.e2e import make_config
    from tests.test_e2e_sync import assert_at_most_inflight_repeats, utc_now

    pbx_db = mariadb_restartable
    since = utc_now() - timedelta(days=5)
    # more CEL events than the backfill reads in one chunk, so it must come back for more
    calls = list(synth.generate(700, since, seed=25, mean_gap=600))
    synth.insert(pbx_db.admin, calls)
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix, planfix={"rate": 100},
                      source={"batch": 20})
    proc = start_cdrsync(cfg, "backfill", "--since", since.date().isoformat())
    assert planfix.wait_for(lambda s: len(s.received("event")) >= 20, timeout=30)
    stop_mariadb()
    _out, err = proc.communicate(timeout=60)
    start_mariadb()
    assert proc.returncode == 1, err
    assert "PBX database" in err and "Traceback" not in err
    assert len(planfix.received("event")) < len(external(calls))

    cdrsync(make_config(tmp_path, pbx_db.ro_url, planfix), "backfill", "--since",
            since.date().isoformat(), check=True)
    assert_at_most_inflight_repeats(planfix, calls, kills=0)
