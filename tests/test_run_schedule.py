"""`cdrsync run` after a suspend: the intervals missed while the machine slept make ONE catch-up
pass, not one per interval. The suspend is real: the daemon is stopped with SIGSTOP."""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime

from tests.e2e import make_config, start_cdrsync

PASS_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO cdrsync\.cli: sync pass:",
                       re.MULTILINE)


def pass_times(log: str) -> list[float]:
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for m in PASS_LINE.finditer(log)]


def test_a_suspended_daemon_runs_one_pass_on_waking_not_one_per_missed_interval(
        pbx_db, planfix, tmp_path):
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix, schedule={"interval": 1})
    daemon = start_cdrsync(cfg, "run")
    try:
        time.sleep(3)  # a few regular passes
        daemon.send_signal(signal.SIGSTOP)
        time.sleep(6)  # "suspended" through six intervals
        woke = time.time()
        daemon.send_signal(signal.SIGCONT)
        time.sleep(0.8)  # less than one interval: the catch-up pass and at most one regular one
    finally:
        daemon.send_signal(signal.SIGCONT)
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    times = pass_times(err)
    assert len([t for t in times if t < woke]) >= 2, err
    after = [t for t in times if woke - 0.05 <= t < woke + 0.8]
    # without coalescing, each of the six missed intervals runs: 6 passes within milliseconds
    assert 1 <= len(after) <= 2, f"{len(after)} passes right after waking:\n{err}"
