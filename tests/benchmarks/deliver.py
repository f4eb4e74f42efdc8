"""Micro-benchmark of draining the outbox: how many requests/s the Deliverer gets into Planfix.

Fills a fresh SQLite state store (in a temporary folder, same pragmas as production) with the
requests of N realistic calls — answered ring-group calls with their `Cancelled`s, missed calls
with `callMissedNotify`s, outbound calls, some late `cmd=record`s — built by the real
`cdrsync.planfix.messages` builders, then drains it with the real `Deliverer` into the loopback
`PlanfixStub` with the rate limit lifted. Printed next to it, to tell where the time goes:

- the HTTP ceiling: the same requests sent by the same `PlanfixClient` to the same stub with no
  store at all (if the two are close, the stub — not the Deliverer — is the bottleneck); its CPU
  per request is what the client (requests) costs, shown as the share of one core it takes at
  the rate Planfix is sent at by default (`[planfix] rate`, 5 requests/s);
- CPU per request of this process (client + Deliverer + SQLite) and of the stub;
- SQL statements and commits per request issued by the Deliverer.

The stub runs in a process of its own, as it does for `cdrsync backfill` in tests/benchmarks/run.py
(in one process the two would share one GIL and one core).

    python -m tests.benchmarks.deliver --requests 20000
    python -m tests.benchmarks.deliver --requests 10000 --rounds 5  # medians of 5 drains
    python -m tests.benchmarks.deliver --requests 5000 --profile   # cProfile top of the drain
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import pstats
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cdrsync.config import PlanfixConfig  # noqa: E402
from cdrsync.deliver import Deliverer  # noqa: E402
from cdrsync.model import Direction, Status  # noqa: E402
from cdrsync.planfix.client import OK, PlanfixClient  # noqa: E402
from cdrsync.planfix.messages import (  # noqa: E402
    Request,
    completed_requests,
    missed_requests,
    record_request,
)
from cdrsync.state import ledger  # noqa: E402
from cdrsync.state.db import open_store  # noqa: E402
from tests.planfix_stub import PlanfixStub, make_call, stub_config  # noqa: E402

T0 = 1_719_826_400.0
DEFAULT_RATE = PlanfixConfig.__dataclass_fields__["rate"].default  # requests/s


def _call(i: int):
    """The i-th call of a realistic mix: 60% answered (ring group), 20% missed, 20% outbound."""
    callid = f"{1719800000 + i}.{i}"
    kind = i % 10
    if kind < 6:
        return make_call(callid), kind == 0  # every 10th answered call gets a late record
    if kind < 8:
        return make_call(callid, status=Status.MISSED, answered_by="", final_ext="",
                         duration=0), False
    return make_call(callid, direction=Direction.OUTBOUND, rung=(), path=(), ring_group="",
                     phone="+74959876543"), False


def fill(engine, cfg, wanted: int) -> list[Request]:
    """Record calls until the outbox holds at least `wanted` requests; returns them in order."""
    queued: list[Request] = []
    i = 0
    with ledger.transaction(engine) as conn:
        while len(queued) < wanted:
            call, late = _call(i)
            reqs = completed_requests(call, cfg) + missed_requests(call, cfg)
            if late:
                reqs.append(record_request(call.callid, f"https://pbx.example/r/{call.callid}"))
            ledger.record_call(conn, call, {call.callid}, reqs, "backfill", T0)
            queued += reqs
            i += 1
    return queued


class Counter:
    """SQL statements and commits an engine issues."""

    def __init__(self, engine) -> None:
        self.statements = self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, *_args) -> None:
        self.statements += 1

    def _commit(self, *_args) -> None:
        self.commits += 1


def _serve_stub(pipe: Connection) -> None:
    """The stub's process: answers "accepted" / "cpu" / "reset" / "stop" on `pipe`."""
    with PlanfixStub() as stub:
        pipe.send({"url": stub.url, "missed_url": stub.missed_url, "token": stub.token})
        while True:
            command = pipe.recv()
            if command == "accepted":
                pipe.send(len(stub.received(None)))
            elif command == "cpu":
                pipe.send(time.process_time())
            elif command == "reset":
                stub.reset_log()
                pipe.send(None)
            else:
                return


class StubProcess:
    """A `PlanfixStub` in a child process, and the commands to ask it what it saw."""

    def __init__(self) -> None:
        self.pipe, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve_stub, args=(child,), daemon=True)
        self.process.start()
        self.planfix: dict[str, str] = self.pipe.recv()

    def ask(self, command: str):
        self.pipe.send(command)
        return self.pipe.recv()

    def close(self) -> None:
        self.pipe.send("stop")
        self.process.join(timeout=10)


class Span:
    """Wall time and CPU time of this process and of the stub's over a stretch of work."""

    def __init__(self, stub: StubProcess) -> None:
        self.stub = stub

    def __enter__(self) -> Span:
        self.wall, self.cpu, self.stub_cpu = (time.perf_counter(), time.process_time(),
                                              self.stub.ask("cpu"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.stub_cpu = self.stub.ask("cpu") - self.stub_cpu

    def line(self, n: int) -> str:
        return (f"{n / self.wall:,.0f} requests/s; CPU per request: {self.cpu / n * 1e6:,.0f} us "
                f"here, {self.stub_cpu / n * 1e6:,.0f} us in the stub")


def http_ceiling(stub: StubProcess, cfg, requests: list[Request]) -> str:
    """The bare client sending into the stub: no store involved."""
    client = PlanfixClient(cfg.planfix)
    with Span(stub) as span:
        for request in requests:
            if client.send(request).kind != OK:
                raise SystemExit(f"the stub refused {request.key}")
    client.close()
    stub.ask("reset")
    share = span.cpu / len(requests) * DEFAULT_RATE
    return (f"{span.line(len(requests))}; the client at Planfix's default {DEFAULT_RATE:g} "
            f"requests/s: {share:.2%} of one core")


def drain_once(stub: StubProcess, args: argparse.Namespace) -> tuple[Span, int, str]:
    """Fill a fresh store, measure the ceiling (if asked), drain; (span, requests, report)."""
    with tempfile.TemporaryDirectory(prefix="cdrsync-bench-") as folder:
        cfg = stub_config(None, state_url=f"sqlite:///{folder}/state.db",
                          planfix={**stub.planfix, "rate": 0, "timeout": 5,
                                   "ring_group_cancelled": True})
        engine = open_store(cfg.state.url)
        queued = fill(engine, cfg, args.requests)
        print(f"outbox: {len(queued)} requests", file=sys.stderr)
        if args.ceiling:
            ceiling = http_ceiling(stub, cfg, queued[:args.ceiling])
        counter = Counter(engine)
        deliverer = Deliverer(engine, PlanfixClient(cfg.planfix), cfg)
        profiler = cProfile.Profile() if args.profile else None
        with Span(stub) as span:
            if profiler:
                profiler.enable()
            result = deliverer.drain(threading.Event(), now=lambda: T0 + 1)
            if profiler:
                profiler.disable()
        engine.dispose()
    accepted = stub.ask("accepted")
    stub.ask("reset")
    n = len(queued)
    if result.sent != n or accepted != n:
        raise SystemExit(f"drained {result.sent}, stub accepted {accepted}, queued {n}")
    report = (f"drain: {n} requests in {span.wall:.2f}s = {span.line(n)}; "
              f"{counter.statements / n:.2f} SQL statements and {counter.commits / n:.3f} "
              f"commits per request")
    if args.ceiling:
        report += f"\nHTTP ceiling (same client -> stub, no store): {ceiling}"
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        report += "\n" + out.getvalue()
    return span, n, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--ceiling", type=int, default=3000,
                        help="requests sent for the bare-HTTP ceiling (0: skip)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the drain")
    parser.add_argument("--rounds", type=int, default=1,
                        help="drains to run, each on a fresh store; with more than one the "
                             "medians are printed too (other processes make single runs noisy)")
    args = parser.parse_args(argv)

    stub = StubProcess()
    spans: list[tuple[Span, int]] = []
    try:
        for _ in range(max(1, args.rounds)):
            span, n, report = drain_once(stub, args)
            print(report, flush=True)
            spans.append((span, n))
    finally:
        stub.close()
    if len(spans) > 1:
        print(f"median of {len(spans)} drains: "
              f"{statistics.median(n / s.wall for s, n in spans):,.0f} requests/s; "
              f"CPU per request: {statistics.median(s.cpu / n for s, n in spans) * 1e6:,.0f} us "
              f"here, {statistics.median(s.stub_cpu / n for s, n in spans) * 1e6:,.0f} us in the "
              "stub")
    return 0


if __name__ == "__main__":
    sys.exit(main())
