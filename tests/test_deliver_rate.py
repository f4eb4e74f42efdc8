"""Planfix's rate signals obeyed by the real deliverer, against the loopback stub's allowance.

The stub keeps an allowance of N requests per window, says what remains in every answer
(`X-RateLimit-Remaining` / `X-RateLimit-Reset`) and answers 429 past it; a deliverer that listens
therefore never sees a 429.
"""

from __future__ import annotations

import re
import threading

import pytest

from cdrsync.deliver import PAUSE_INLINE, Deliverer
from cdrsync.planfix.client import PlanfixClient
from cdrsync.planfix.messages import record_request
from cdrsync.state import ledger
from cdrsync.state.db import open_store
from tests.planfix_stub import planfix, stub_config  # noqa: F401

T0 = 1_719_826_400.0


@pytest.fixture
def store(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


def _queue(engine, n: int) -> list[str]:
    callids = [f"{1719826200 + i}.{i}" for i in range(n)]
    with ledger.transaction(engine) as conn:
        ledger.add_requests(conn, [record_request(c, f"https://pbx/r/{c}") for c in callids], T0)
    return callids


def _deliverer(stub, engine):
    cfg = stub_config(stub, planfix={"rate": 0, "timeout": 2})
    return Deliverer(engine, PlanfixClient(cfg.planfix), cfg)


def test_a_spent_allowance_is_waited_for_within_the_drain(planfix, store):  # noqa: F811
    planfix.allow(3, per=1.0)
    callids = _queue(store, 5)
    result = _deliverer(planfix, store).drain(threading.Event(), now=lambda: T0)
    assert (result.sent, result.retried, result.stalled) == (5, 0, False)
    assert [r.status for r in planfix.attempts()] == [200] * 5  # no 429: it paused in time
    assert planfix.callids("record") == callids
    third, fourth = planfix.attempts()[2:4]
    assert fourth.time - third.time > 0.5  # the window of the first three was waited out


@pytest.mark.parametrize("epoch", [False, True])
def test_a_long_pause_ends_the_pass_and_the_next_waits_for_the_reset(planfix, store, epoch):  # noqa: F811
    reset = 600
    assert reset > PAUSE_INLINE
    planfix.allow(2, per=reset, epoch=epoch)
    callids = _queue(store, 5)
    deliverer = _deliverer(planfix, store)
    first = deliverer.drain(threading.Event(), now=lambda: T0)
    assert (first.sent, first.stalled) == (2, True)
    with store.connect() as conn:
        stall = ledger.stats(conn)["stalled"]
    assert "X-RateLimit-Remaining: 0" in stall["value"]
    assert re.search(r"for 60[01]s", stall["value"])  # a Unix time is rounded up to the second
    again = deliverer.drain(threading.Event(), now=lambda: T0 + reset - 5)
    assert (again.sent, again.stalled) == (0, True)
    assert len(planfix.attempts()) == 2  # nothing was tried while Planfix asked for quiet
    planfix.allow(None)  # the window is over
    last = deliverer.drain(threading.Event(), now=lambda: T0 + reset + 1)
    assert (last.sent, last.stalled) == (3, False)
    assert planfix.callids("record") == callids
    assert 429 not in [r.status for r in planfix.attempts()]
