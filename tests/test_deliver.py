"""Draining the outbox to a real loopback Planfix through real SQLite, PostgreSQL and MariaDB
stores (what only SQLite does — relaxed marks, a read-only file — on SQLite alone).

Wall time (`next_try`) is a fake clock the tests move forward, so hours of outage take no time;
the rate limiter's clock is faked the same way. What is asserted is what Planfix accepted: the
set of callids equals the set expected, each exactly once (or, for the documented lost-answer
case, twice with identical bodies).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event

from cdrsync import deliver
from cdrsync.deliver import OUTAGE_AFTER, Deliverer, RateLimiter
from cdrsync.model import Status
from cdrsync.planfix.client import PlanfixClient
from cdrsync.planfix.messages import completed_requests, missed_requests, record_request
from cdrsync.state import ledger
from cdrsync.state.db import StoreError, open_store
from tests.planfix_stub import make_call, planfix, stub_config  # noqa: F401

T0 = 1_719_826_400.0  # 2024-07-01 09:33:20 UTC, just after make_call()'s call ended


class Clock:
    """A clock the test moves; usable as `now` and as the rate limiter's monotonic clock."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeTimeStop(threading.Event):
    """A stop event whose `wait` (the deliverer's sleep) moves a fake clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.slept: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.slept.append(timeout or 0.0)
        self.clock.advance(timeout or 0.0)
        return self.is_set()


@pytest.fixture
def store(store_url):
    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_store(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def deliver_log():
    """The deliverer's log records (a handler of our own: independent of logging setup)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cdrsync.deliver")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _lines(records, level=logging.INFO, containing=""):
    return [r.getMessage() for r in records if r.levelno >= level and containing in r.getMessage()]


def _cfg(stub, **planfix_keys):
    return stub_config(stub, planfix={"rate": 0, "timeout": 2, "backoff_max": 300,
                                      **planfix_keys})


def _callids(n: int, first: int = 1) -> list[str]:
    return [f"{1719826200 + i}.{i}" for i in range(first, first + n)]


def _queue(engine, cfg, callids, with_record=False, **call_values):
    with ledger.transaction(engine) as conn:
        for callid in callids:
            call = make_call(callid, **call_values)
            reqs = completed_requests(call, cfg) + missed_requests(call, cfg)
            ledger.record_call(conn, call, {callid}, reqs, "sync", T0)
            if with_record:
                ledger.add_requests(conn, [record_request(callid, f"https://pbx/r/{callid}")],
                                    now=T0)


def _drain_until_empty(deliverer, clock, step=301.0, passes=40):
    """Passes as the daemon would run them, the wall clock moving `step` between passes."""
    for _ in range(passes):
        with ledger.transaction(deliverer.engine) as conn:
            if not ledger.undelivered(conn):
                return
        deliverer.drain(threading.Event(), now=clock)
        clock.advance(step)
    raise AssertionError("outbox never emptied")


def _exactly_once(stub, expected, cmd="event"):
    counts = Counter(stub.callids(cmd))
    assert set(counts) == set(expected)
    assert all(n == 1 for n in counts.values()), counts


def test_every_call_once_and_completed_before_its_record(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    ids = _callids(8)
    _queue(store, cfg, ids, with_record=True)
    result = Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(),
                                                                     now=Clock())
    assert (result.sent, result.retried, result.failed, result.stalled) == (16, 0, 0, False)
    _exactly_once(planfix, ids)
    _exactly_once(planfix, ids, cmd="record")
    order = [(r.cmd, r.callid) for r in planfix.received(None)]
    for callid in ids:
        assert order.index(("event", callid)) < order.index(("record", callid))
    with store.connect() as conn:
        assert ledger.stats(conn)["sent"] == 16 and ledger.undelivered(conn) == 0


@pytest.mark.parametrize("batch", [1, 2, 3, 200])
def test_a_call_goes_whole_in_one_drain_whatever_the_batch_boundaries(
        planfix, store, monkeypatch, batch):  # noqa: F811
    monkeypatch.setattr(deliver, "BATCH", batch)
    cfg = _cfg(planfix, ring_group_cancelled=True)
    ids = _callids(5)
    _queue(store, cfg, ids, with_record=True, rung=("101", "102", "103"))
    result = Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(),
                                                                     now=Clock())
    assert (result.sent, result.stalled) == (20, False)  # COMPLETED, 2 Cancelled, record each
    order = [(r.fields.get("status", r.cmd), r.callid) for r in planfix.received(None)]
    for callid in ids:
        assert order.index(("Success", callid)) < order.index(("Cancelled", callid))
        assert order.index(("Success", callid)) < order.index(("record", callid))
    assert len(planfix.received("event", status=200)) == 15


def test_a_sent_request_costs_one_statement_and_other_connections_stay_durable(
        planfix, sqlite_store):  # noqa: F811
    store = sqlite_store  # PRAGMA synchronous: SQLite's
    cfg = _cfg(planfix)
    _queue(store, cfg, _callids(300))
    statements: list[str] = []
    event.listen(store, "before_cursor_execute",
                 lambda _c, _cur, sql, *_rest: statements.append(sql))
    synchronous = []
    client = PlanfixClient(cfg.planfix)
    send = client.send

    def send_and_look(request):  # what another connection of the pool gets meanwhile
        if not synchronous:
            with store.connect() as other:
                synchronous.append(other.exec_driver_sql("PRAGMA synchronous").scalar())
        return send(request)

    client.send = send_and_look  # type: ignore[method-assign]
    assert Deliverer(store, client, cfg).drain(threading.Event(), now=Clock()).sent == 300
    assert sum(sql.startswith("UPDATE outbox") for sql in statements) == 300
    assert len(statements) < 300 * 1.1  # no flag or description queries per request
    assert "PRAGMA synchronous=NORMAL" in statements  # the marks commit without an fsync ...
    assert synchronous == [2]  # ... while every other connection stays FULL,
    with store.connect() as one, store.connect() as two:  # and so does the pool afterwards
        assert [c.exec_driver_sql("PRAGMA synchronous").scalar() for c in (one, two)] == [2, 2]


def test_planfix_down_for_hours_then_back(planfix, store, deliver_log):  # noqa: F811
    cfg = _cfg(planfix)
    clock = Clock()
    ids = _callids(12)
    _queue(store, cfg, ids)
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    planfix.stop()
    for hour in range(10):  # ten hours of outage, one pass every 10 minutes
        for _ in range(6):
            result = deliverer.drain(threading.Event(), now=clock)
            assert result.sent == 0 and result.retried <= OUTAGE_AFTER
            clock.advance(600)
        _queue(store, cfg, _callids(1, first=100 + hour))  # calls keep coming meanwhile
    assert result.stalled
    stalls = _lines(deliver_log, logging.WARNING, "stalled")
    assert len(stalls) == 1 and "Connection refused" in stalls[0]
    with store.connect() as conn:
        assert ledger.stats(conn, now=clock())["stalled"]["value"].startswith("cannot connect")
    planfix.start()
    _drain_until_empty(deliverer, clock)
    _exactly_once(planfix, ids + [_callids(1, first=100 + h)[0] for h in range(10)])
    assert len(_lines(deliver_log, containing="recovered")) == 1
    assert len(_lines(deliver_log, logging.WARNING, "stalled")) == 1
    with store.connect() as conn:
        assert ledger.stats(conn)["stalled"] is None


def test_503_for_a_while(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    clock = Clock()
    ids = _callids(6)
    _queue(store, cfg, ids)
    planfix.fail_next(7, 503)
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    first = deliverer.drain(threading.Event(), now=clock)
    assert first.stalled and first.retried == OUTAGE_AFTER and first.sent == 0
    _drain_until_empty(deliverer, clock)
    _exactly_once(planfix, ids)
    assert len(planfix.received(None, status=503)) == 7


def test_hanging_past_the_timeout_is_retried(planfix, store):  # noqa: F811
    cfg = _cfg(planfix, timeout=0.5)
    clock = Clock()
    ids = _callids(4)
    _queue(store, cfg, ids)
    planfix.hang_next(2, 2.0)  # answered 503, long after the client gave up
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    result = deliverer.drain(threading.Event(), now=clock)
    assert (result.retried, result.sent) == (2, 2)
    with store.connect() as conn:
        assert "no answer within 0.5s" in ledger.stats(conn)["last_error"]["error"]
    _drain_until_empty(deliverer, clock)
    _exactly_once(planfix, ids)


def test_an_answer_lost_after_planfix_took_the_request_repeats_it_once_identically(
        planfix, store):  # noqa: F811
    cfg = _cfg(planfix, timeout=0.5)
    clock = Clock()
    ids = _callids(3)
    _queue(store, cfg, ids)
    planfix.hang_next(1, 1.5, then=200)  # Planfix processed it; the 200 never reached us
    _drain_until_empty(Deliverer(store, PlanfixClient(cfg.planfix), cfg), clock)
    counts = Counter(planfix.callids())
    assert set(counts) == set(ids) and counts[ids[0]] == 2 and sum(counts.values()) == 4
    twice = [r.fields for r in planfix.received() if r.callid == ids[0]]
    assert twice[0] == twice[1]


def test_429_honours_retry_after_for_the_whole_endpoint(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    clock = Clock()
    ids = _callids(3)
    _queue(store, cfg, ids)
    planfix.fail_next(1, 429, retry_after=30)
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    result = deliverer.drain(threading.Event(), now=clock)
    assert (result.retried, result.sent, result.stalled) == (1, 0, True)
    clock.advance(10)
    assert deliverer.drain(threading.Event(), now=clock).sent == 0
    assert len(planfix.attempts()) == 1  # quiet while Planfix asked for it
    clock.advance(21)
    result = deliverer.drain(threading.Event(), now=clock)
    assert (result.sent, result.stalled) == (3, False)
    _exactly_once(planfix, ids)


def test_400_for_one_call_among_good_ones_then_retry_or_skip(
        planfix, store, deliver_log):  # noqa: F811
    cfg = _cfg(planfix)
    clock = Clock()
    ids = _callids(5)
    _queue(store, cfg, ids, with_record=True)
    bad = ids[2]
    planfix.reject_callid(bad, answer='{"error":"Invalid parameters"}')
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    result = deliverer.drain(threading.Event(), now=clock)
    assert (result.sent, result.failed, result.stalled) == (8, 1, False)
    _exactly_once(planfix, [i for i in ids if i != bad])
    with store.connect() as conn:
        stats = ledger.stats(conn, now=clock())
        assert (stats["failed"], stats["pending"]) == (1, 1)  # its record waits behind it
        assert stats["last_error"] == {"callid": bad, "at": clock(),
                                       "error": 'HTTP 400: {"error":"Invalid parameters"}'}
    [warning] = _lines(deliver_log, logging.WARNING)
    assert bad in warning and "Invalid parameters" in warning
    assert deliverer.drain(threading.Event(), now=clock).sent == 0  # parked, not retried
    planfix.accept_callid(bad)
    with ledger.transaction(store) as conn:
        assert ledger.retry(conn, bad, now=clock()) == 2
    assert deliverer.drain(threading.Event(), now=clock).sent == 2
    _exactly_once(planfix, ids)
    _exactly_once(planfix, ids, cmd="record")


def test_skip_drops_a_refused_call_for_good(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    ids = _callids(2)
    _queue(store, cfg, ids)
    planfix.reject_callid(ids[0])
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    deliverer.drain(threading.Event(), now=Clock())
    with ledger.transaction(store) as conn:
        assert ledger.skip(conn, ids[0]) == 1
        assert ledger.retry(conn, now=T0) == 0  # nothing failed any more
        stats = ledger.stats(conn)
    assert (stats["sent"], stats["skipped"], stats["failed"], stats["pending"]) == (1, 1, 0, 0)


def test_401_stops_at_once_keeps_everything_and_resumes_with_the_right_token(
        planfix, store, deliver_log):  # noqa: F811
    cfg = _cfg(planfix)
    clock = Clock()
    ids = _callids(4)
    _queue(store, cfg, ids)
    planfix.token = "rotated-token-in-planfix"
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    for _ in range(3):
        result = deliverer.drain(threading.Event(), now=clock)
        assert result.unauthorized and result.sent == 0 and not result.stalled
        clock.advance(600)
    assert len(planfix.attempts()) == 3  # one request per pass, not the whole queue
    [error] = _lines(deliver_log, logging.ERROR)
    assert error == ("Planfix rejected the token (401): check [planfix] token; "
                     "4 requests kept queued")
    with store.connect() as conn:
        assert ledger.undelivered(conn) == 4
        assert ledger.stats(conn)["unauthorized"] is not None
    # the admin fixes the token and restarts cdrsync
    fixed = replace(cfg, planfix=replace(cfg.planfix, token="rotated-token-in-planfix"))
    result = Deliverer(store, PlanfixClient(fixed.planfix), fixed).drain(threading.Event(),
                                                                         now=clock)
    assert result.sent == 4 and not result.unauthorized
    _exactly_once(planfix, ids)
    assert len(_lines(deliver_log, containing="accepts the token again")) == 1
    assert not any("rotated-token" in r.getMessage() or cfg.planfix.token in r.getMessage()
                   for r in deliver_log)
    with store.connect() as conn:
        assert ledger.stats(conn)["unauthorized"] is None


def test_a_call_planfix_keeps_failing_does_not_hold_newer_calls_back(
        planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    clock = Clock()
    poison, *good = _callids(4)
    _queue(store, cfg, [poison, *good], with_record=True)
    planfix.reject_callid(poison, status=503)
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg, rng=lambda: 1.0)  # 1, 2, 4 s
    tried_at = []
    for batch in range(6):
        newer = _callids(1, first=50 + batch)
        _queue(store, cfg, newer)
        result = deliverer.drain(threading.Event(), now=clock)
        assert not result.stalled
        good += newer
        _exactly_once(planfix, good)
        tried_at.append(len([r for r in planfix.attempts() if r.callid == poison]))
        clock.advance(2)
    # retried with back-off (not on every pass), and its record stays behind its COMPLETED
    assert tried_at == [1, 2, 3, 3, 4, 4]
    assert poison not in planfix.callids("record")
    planfix.accept_callid(poison)
    clock.advance(300)
    _drain_until_empty(deliverer, clock)
    _exactly_once(planfix, [poison, *good])


def test_backoff_is_exponential_with_full_jitter_capped(planfix, store):  # noqa: F811
    cfg = _cfg(planfix, backoff_max=60)
    top = Deliverer(store, PlanfixClient(cfg.planfix), cfg, rng=lambda: 1.0)
    assert [top.backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert top.backoff(10_000) == 60
    low = Deliverer(store, PlanfixClient(cfg.planfix), cfg, rng=lambda: 0.0)
    assert low.backoff(7) == 1  # never a busy loop
    assert low.backoff(2, retry_after=90) == 90  # Planfix's Retry-After wins over the cap


def test_rate_limiter_spaces_requests():
    clock = Clock(0.0)
    limiter = RateLimiter(5, clock)
    stop = FakeTimeStop(clock)
    starts = []
    for _ in range(10):
        limiter.wait(stop.wait)
        starts.append(clock())
    assert starts == pytest.approx([i * 0.2 for i in range(10)])
    unlimited = RateLimiter(0, clock)
    for _ in range(10):
        unlimited.wait(stop.wait)
    assert len(stop.slept) == 9


def test_drain_honours_the_rate_and_max_seconds(planfix, store):  # noqa: F811
    cfg = _cfg(planfix, rate=4)
    ids = _callids(12)
    _queue(store, cfg, ids)
    mono = Clock(0.0)
    stop = FakeTimeStop(mono)
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg, clock=mono)
    result = deliverer.drain(stop, now=Clock(), max_seconds=2.0)
    assert result.sent == 9  # at 0, 0.25, ..., 2.0 s of (fake) time
    assert sum(stop.slept) == pytest.approx(2.0)
    assert deliverer.drain(stop, now=Clock()).sent == 3
    _exactly_once(planfix, ids)


class _StopAfterSend(PlanfixClient):
    """SIGTERM arriving while a request is in flight."""

    def __init__(self, cfg, stop):
        super().__init__(cfg)
        self.stop = stop

    def send(self, request):
        outcome = super().send(request)
        self.stop.set()
        return outcome


def test_stop_finishes_the_request_in_flight_and_returns(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    ids = _callids(5)
    _queue(store, cfg, ids)
    stop = threading.Event()
    result = Deliverer(store, _StopAfterSend(cfg.planfix, stop), cfg).drain(stop, now=Clock())
    assert result.sent == 1
    with store.connect() as conn:
        assert ledger.stats(conn)["sent"] == 1  # committed: a restart will not repeat it
    assert Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(),
                                                                   now=Clock()).sent == 4
    _exactly_once(planfix, ids)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in this process."""


class _KilledAfterTheAnswer(PlanfixClient):
    def __init__(self, cfg, after: int):
        super().__init__(cfg)
        self.left = after

    def send(self, request):
        outcome = super().send(request)
        self.left -= 1
        if self.left == 0:
            raise Killed
        return outcome


def test_killed_between_200_and_commit_repeats_only_that_request(planfix, store):  # noqa: F811
    cfg = _cfg(planfix)
    ids = _callids(5)
    _queue(store, cfg, ids)
    with pytest.raises(Killed):
        Deliverer(store, _KilledAfterTheAnswer(cfg.planfix, after=3), cfg).drain(
            threading.Event(), now=Clock())
    # restart
    Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(), now=Clock())
    counts = Counter(planfix.callids())
    assert set(counts) == set(ids)
    assert [c for c, n in counts.items() if n > 1] == [ids[2]] and counts[ids[2]] == 2
    bodies = [r.fields for r in planfix.received() if r.callid == ids[2]]
    assert bodies[0] == bodies[1]


def test_missed_notices_after_the_callback_window_unless_called_back(
        planfix, store, deliver_log):  # noqa: F811
    cfg = _cfg(planfix)
    cfg = replace(cfg, missed=replace(cfg.missed, callback_window=10))
    missed = {"status": Status.MISSED, "answered_by": "", "final_ext": "", "duration": 0,
              "rung": ("101", "102")}
    called_back, forgotten = "1719826201.1", "1719826202.2"
    with ledger.transaction(store) as conn:
        for callid, phone in ((called_back, "+74950000001"), (forgotten, "+74950000002")):
            call = make_call(callid, phone=phone, **missed)
            ledger.record_call(conn, call, {callid},
                               completed_requests(call, cfg) + missed_requests(call, cfg),
                               "sync", T0)
        first = make_call(called_back)
        back = make_call("1719826500.9", phone="+74950000001", start=first.start +
                         timedelta(minutes=4), end=first.start + timedelta(minutes=6))
        ledger.record_call(conn, back, {back.callid}, completed_requests(back, cfg), "sync", T0)
    clock = Clock()
    deliverer = Deliverer(store, PlanfixClient(cfg.planfix), cfg)
    assert deliverer.drain(threading.Event(), now=clock).sent == 3  # the COMPLETEDs only
    assert planfix.received("callMissedNotify") == []
    clock.advance(11 * 60 + 60)
    result = deliverer.drain(threading.Event(), now=clock)
    assert (result.sent, result.skipped) == (2, 2)
    got = sorted((r.callid, r.fields["intNum"]) for r in planfix.received("callMissedNotify"))
    assert got == [(forgotten, "101"), (forgotten, "102")]
    assert len(_lines(deliver_log, containing="caller got through")) == 2


def test_a_store_that_cannot_be_written_stops_delivery_with_one_line(
        planfix, sqlite_store, tmp_path):  # noqa: F811
    store = sqlite_store  # a read-only file: SQLite's
    cfg = _cfg(planfix)
    _queue(store, cfg, _callids(2))
    readonly = open_store(f"sqlite:///file:{tmp_path / 'state.db'}?mode=ro&uri=true")
    with pytest.raises(StoreError, match="readonly database"):
        Deliverer(readonly, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(),
                                                                   now=Clock())
    # the request that went out is repeated by the next (writable) run: nothing lost
    Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(threading.Event(), now=Clock())
    assert set(planfix.callids()) == set(_callids(2))


def test_each_delivered_call_reports_its_lag_from_the_call_end(tmp_path):
    """The `run` daemon's delivery-lag metric is fed from here: seconds from the call's end to
    the 200 of its COMPLETED (not of its other requests)."""
    from datetime import datetime, timedelta, timezone

    from cdrsync.deliver import Deliverer
    from cdrsync.planfix.client import PlanfixClient
    from cdrsync.planfix.messages import completed_requests, record_request
    from cdrsync.state import ledger
    from cdrsync.state.db import open_store
    from tests.planfix_stub import PlanfixStub, make_call, stub_config

    ended = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
    call = make_call("7.7", end=ended, start=ended - timedelta(seconds=40))
    with PlanfixStub() as stub:
        cfg = stub_config(stub, state_url=f"sqlite:///{tmp_path / 'state.db'}")
        store = open_store(cfg.state.url)
        with ledger.transaction(store) as conn:
            ledger.record_call(conn, call, ["7.7"], completed_requests(call, cfg)
                               + [record_request("7.7", "http://127.0.0.1:1/r.wav")], "sync",
                               now=ended.timestamp())
        result = Deliverer(store, PlanfixClient(cfg.planfix), cfg).drain(
            threading.Event(), now=lambda: ended.timestamp() + 30)
        assert result.sent == 2
        assert result.lags == [30.0]
        # backfill's courier drains for hours: it keeps no lags (one per call would pile up)
        other = make_call("8.8", end=ended, start=ended - timedelta(seconds=40))
        with ledger.transaction(store) as conn:
            ledger.record_call(conn, other, ["8.8"], completed_requests(other, cfg), "backfill",
                               now=ended.timestamp())
        quiet = Deliverer(store, PlanfixClient(cfg.planfix), cfg, keep_lags=False).drain(
            threading.Event(), now=lambda: ended.timestamp() + 30)
    assert quiet.sent == 1 and quiet.lags == []
