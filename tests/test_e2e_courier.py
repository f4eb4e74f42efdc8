"""The courier, the process that sends while `backfill` reads (cdrsync/courier.py), through the
real command line: it dies with its parent, its own death stops the backfill with one line, and
a SIGTERM to the parent alone repeats nothing. Each test then lets a second backfill finish and
asserts the exact set of calls Planfix accepted."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests import synth
from tests.e2e import cdrsync, start_cdrsync
from tests.test_e2e_sync import (
    assert_at_most_inflight_repeats,
    external,
    utc_now,
)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_backfill(env_, n_calls: int, seed: int):
    pbx_db, planfix, config = env_
    since = utc_now() - timedelta(days=10)
    calls = list(synth.generate(n_calls, since, seed=seed, mean_gap=600))
    synth.insert(pbx_db.admin, calls)
    proc = start_cdrsync(config(planfix={"rate": 25}), "backfill", "--since",
                         since.date().isoformat())
    assert planfix.wait_for(lambda s: len(s.received("event")) >= 15, timeout=30), \
        proc.stderr.read() if proc.poll() is not None else "no delivery"
    courier = children(proc.pid)
    assert len(courier) == 1, "backfill sends from one child process"
    return calls, since, proc, courier[0]


def finish(env_, calls, since) -> None:
    _, _, config = env_
    cdrsync(config(planfix={"rate": 0}), "backfill", "--since", since.date().isoformat(),
            check=True)


def test_a_killed_backfill_takes_its_courier_with_it(env):
    _, planfix, _ = env
    calls, since, proc, courier = start_backfill(env, 90, seed=21)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(courier) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(courier), "the courier outlived its parent"
    count = len(planfix.received("event"))
    time.sleep(0.5)
    assert len(planfix.received("event")) == count, "requests kept coming after the kill"
    assert count < len(external(calls))
    finish(env, calls, since)
    assert_at_most_inflight_repeats(planfix, calls, kills=1)


def test_a_courier_killed_alone_stops_the_backfill_with_one_line(env):
    _, planfix, _ = env
    calls, since, proc, courier = start_backfill(env, 90, seed=22)
    os.kill(courier, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("cdrsync:")]
    assert len(lines) == 1 and "delivery process ended unexpectedly" in lines[0], err
    assert "Traceback" not in err
    finish(env, calls, since)
    assert_at_most_inflight_repeats(planfix, calls, kills=1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_parent_alone_stops_both_cleanly(env, signum):
    _, planfix, _ = env
    calls, since, proc, courier = start_backfill(env, 90, seed=23)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not alive(courier)
    assert len(set(r.callid for r in planfix.received("event"))) < len(external(calls))
    finish(env, calls, since)
    assert_at_most_inflight_repeats(planfix, calls, kills=0)


def test_the_reader_stays_at_most_max_ahead_of_the_courier(env, monkeypatch):
    """Without the back-pressure the reader would record all 90 calls at once."""
    from cdrsync import config as config_mod
    from cdrsync import courier
    from cdrsync.pipeline import Pipeline

    pbx_db, planfix, config = env
    since = utc_now() - timedelta(days=10)
    calls = list(synth.generate(90, since, seed=24, mean_gap=600))
    synth.insert(pbx_db.admin, calls)
    monkeypatch.setattr(courier, "MAX_AHEAD", 10)
    cfg = config_mod.load(str(config(planfix={"rate": 50}, source={"batch": 5})), env={})
    seen: list[tuple[int, int]] = []
    pipeline = Pipeline(cfg)
    try:
        result = pipeline.backfill(since.replace(hour=0, minute=0, second=0), None,
                                   notify_missed=False,
                                   progress=lambda found, sent, *_: seen.append((found, sent)))
    finally:
        pipeline.close()
    assert result.sent == len(external(calls))
    # one batch (5 calls, at most 2 requests each) may be recorded past the limit
    assert max(found - sent for found, sent in seen) <= 10 + 10
    assert_at_most_inflight_repeats(planfix, calls, kills=0)
