"""cdrsync benchmark: a synthetic FreePBX asteriskcdrdb of N calls in the local MariaDB, then

1. backfill throughput of the real `cdrsync backfill` (rate limit lifted) into the loopback Planfix
   stub, next to the floor: streaming the same rows out of MariaDB with the same driver (PyMySQL,
   unbuffered SSCursor) — and their ratio;
2. the cost of one steady-state `cdrsync sync` pass that finds 10 and 1,000 new calls on the full
   table, with the indexes of sql/indexes.sql and without them (stock FreePBX: no cdr.linkedid);
3. peak RSS of the backfill process;
4. latency in `run` mode (the default schedule): from a call's last row landing in the database
   to its arrival at the stub;
5. the dry run (`cdrsync backfill --dry-run`: no store writes, no Planfix) against the same floor,
   alternating with it: cdrsync's own CPU per call;
6. what `run` costs while nothing happens: an idle pass's PBX queries, rows examined (MariaDB's
   session counters of the pass's own connection) and CPU; the daemon's CPU per idle hour.

Rows examined are GLOBAL `Handler_read_%` deltas around the pass: cdrsync runs in another process,
so its session counters are out of reach, and the slow log would need global settings changed and
a file parsed; on a server where nothing else runs (this benchmark's own connection is idle while
cdrsync works) the global delta is the pass's own work. The cost of the two SHOW GLOBAL STATUS
reads themselves is measured and subtracted.

    python -m tests.benchmarks --calls 20000          # quick (about a minute)
    python -m tests.benchmarks                        # 1,000,000 calls (load + run: see README)
    python -m tests.benchmarks --reuse                # keep the loaded database of a previous run
    python -m tests.benchmarks --calls 22594 --only dryrun   # CPU per call alone

Results go to stdout as a markdown table (and to --out FILE if given); progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pymysql
import pymysql.cursors
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cdrsync.config import ScheduleConfig  # noqa: E402
from tests import synth  # noqa: E402
from tests.e2e import write_config  # noqa: E402
from tests.planfix_stub import PlanfixStub  # noqa: E402

SERVER = "mysql+pymysql://root:@127.0.0.1:3306"
RO_USER, RO_PASSWORD = "cdrsync_bench_ro", "bench-ro-password-1"
SCHEMA = ROOT / "sql" / "asteriskcdrdb.sql"
INDEXES = ROOT / "sql" / "indexes.sql"
MEAN_GAP = 30.0  # s between call starts: about 2,900 calls a day, a busy office
DEFAULTS = ScheduleConfig()


def utc_now() -> datetime:
    """Naive UTC: the benchmark's PBX keeps its clock in UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (measure, value, target)

    def add(self, measure: str, value: str, target: str = "") -> None:
        self.rows.append((measure, value, target))
        log(f"RESULT {measure}: {value} {target}")

    def markdown(self, args: argparse.Namespace) -> str:
        cpu = _cpu_name()
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@innodb_buffer_pool_size")
            version, pool = cur.fetchone()
        lines = [
            f"Machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; MariaDB {version} "
            f"(innodb_buffer_pool_size {int(pool) // 2**20} MiB); Python "
            f"{platform.python_version()}.",
            f"Command: `python -m tests.benchmarks --calls {args.calls}`",
            "",
            "| Measure | Result | Target |",
            "|---|---|---|",
        ]
        lines += [f"| {m} | {v} | {t} |" for m, v, t in self.rows]
        return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---- the database ---------------------------------------------------------------------------
def _statements(path: Path) -> list[str]:
    sql = re.sub(r"^--.*$", "", path.read_text(encoding="utf-8"), flags=re.M)
    return [s.strip() for s in sql.split(";") if s.strip()]


def prepare_db(name: str, reuse: bool) -> bool:
    """Create the database (or keep it with --reuse); True when it must be loaded."""
    server = create_engine(SERVER + "/")
    with server.begin() as conn:
        exists = conn.execute(text("SELECT COUNT(*) FROM information_schema.tables "
                                   "WHERE table_schema = :n AND table_name = 'cel'"),
                              {"n": name}).scalar_one()
        if reuse and exists:
            return False
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
    with admin.begin() as conn:
        for stmt in _statements(SCHEMA):
            conn.execute(text(stmt))
        for host in ("127.0.0.1", "localhost"):
            conn.execute(text(f"CREATE USER IF NOT EXISTS '{RO_USER}'@'{host}' "
                              f"IDENTIFIED BY '{RO_PASSWORD}'"))
            for table in ("cdr", "cel"):
                conn.execute(text(f"GRANT SELECT ON `{name}`.`{table}` TO '{RO_USER}'@'{host}'"))
    admin.dispose()
    server.dispose()
    return True


def set_indexes(name: str, present: bool) -> None:
    """sql/indexes.sql applied, or the one index stock FreePBX lacks (cdr.linkedid) dropped."""
    admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
    with admin.begin() as conn:
        has = conn.execute(text("SELECT COUNT(*) FROM information_schema.statistics WHERE "
                                "table_schema = :n AND table_name = 'cdr' AND index_name = "
                                "'linkedid'"), {"n": name}).scalar_one()
        if present:
            for stmt in _statements(INDEXES):
                conn.execute(text(stmt))
        elif has:
            conn.execute(text("ALTER TABLE cdr DROP INDEX linkedid"))
    admin.dispose()


def load(name: str, n_calls: int, start: datetime) -> tuple[int, int, float]:
    admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
    began = time.monotonic()
    n_cdr, n_cel = synth.insert(admin, synth.generate(n_calls, start, seed=1, mean_gap=MEAN_GAP),
                                batch=100_000,
                                progress=lambda n: log(f"loaded {n} calls") if n % 100_000 == 0
                                else None)
    admin.dispose()
    return n_cdr, n_cel, time.monotonic() - began


def forget_new_rows(name: str, max_id: int, last: datetime) -> None:
    """Remove the calls a measurement added, so that the next run (--reuse) finds the history."""
    with pymysql.connect(host="127.0.0.1", user="root", database=name, autocommit=True) as conn, \
            conn.cursor() as cur:
        cur.execute("DELETE FROM cel WHERE id > %s", (max_id,))
        cur.execute("DELETE FROM cdr WHERE calldate > %s", (last,))


def max_cel_id(name: str) -> int:
    with pymysql.connect(host="127.0.0.1", user="root", database=name) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM cel")
        return int(cur.fetchone()[0])


def table_rows(name: str) -> tuple[int, int, datetime, datetime]:
    with pymysql.connect(host="127.0.0.1", user="root", database=name) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), MIN(calldate), MAX(calldate) FROM cdr")
        n_cdr, first, last = cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM cel")
        (n_cel,) = cur.fetchone()
    return n_cdr, n_cel, first, last


def stream_floor(name: str) -> float:
    """Seconds to read every cdr and cel row with PyMySQL's unbuffered cursor, as cdrsync would."""
    conn = pymysql.connect(host="127.0.0.1", user=RO_USER, password=RO_PASSWORD, database=name,
                           charset="utf8mb4", cursorclass=pymysql.cursors.SSDictCursor)
    began = time.monotonic()
    try:
        for sql in ("SELECT * FROM cel ORDER BY id", "SELECT * FROM cdr"):
            with conn.cursor() as cur:
                cur.execute(sql)
                for _row in cur:
                    pass
    finally:
        conn.close()
    return time.monotonic() - began


# ---- running cdrsync --------------------------------------------------------------------------
def config(workdir: Path, name: str, stub: PlanfixStub, **schedule: Any) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "monitor").mkdir(exist_ok=True)
    return write_config(workdir / "cdrsync.toml", {
        "source": {"url": f"mysql+pymysql://{RO_USER}:{RO_PASSWORD}@127.0.0.1:3306/{name}"
                          "?charset=utf8mb4", "timezone": "UTC"},
        "planfix": {"url": stub.url, "token": stub.token, "rate": 0},
        "state": {"url": f"sqlite:///{workdir / 'state.db'}"},
        "recordings": {"dir": str(workdir / "monitor")},
        "schedule": schedule,
        "log": {"level": "WARNING"},
    })


class Child:
    """`python -m cdrsync ...` with its peak RSS (VmHWM from /proc, polled until it exits), and
    that of its own child processes (backfill's courier), each the largest seen."""

    def __init__(self, cfg: Path, *args: str, stdout: Optional[Path] = None) -> None:
        self.argv = [sys.executable, "-m", "cdrsync", "--config", str(cfg), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDRSYNC_")}
        out = stdout.open("wb") if stdout else subprocess.DEVNULL
        self.began = time.monotonic()
        self._cpu0 = _children_cpu()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=out,
                                     stderr=subprocess.PIPE, text=True)
        if stdout:
            out.close()  # the child holds its own copy
        self.cpu = 0.0  # s of CPU (user + system) of the process and the children it waited for
        self.hwm_kb = 0
        self.child_hwm_kb = 0
        self.stderr = ""
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        pid = self.proc.pid
        while self.proc.poll() is None:
            self.hwm_kb = max(self.hwm_kb, _hwm_kb(pid))
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                kids = []
            for kid in kids:
                self.child_hwm_kb = max(self.child_hwm_kb, _hwm_kb(int(kid)))
            time.sleep(0.1)

    def wait(self, timeout: Optional[float] = None) -> float:
        _, self.stderr = self.proc.communicate(timeout=timeout)
        self._poller.join()
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB, max of all
        self.hwm_kb = self.hwm_kb or children
        self.cpu = _children_cpu() - self._cpu0
        if self.proc.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv[2:])} exited {self.proc.returncode}:\n"
                               f"{self.stderr[-3000:]}")
        return time.monotonic() - self.began


def _children_cpu() -> float:
    """CPU seconds of every child this process has waited for: a delta around one `Child` is
    that child's (the benchmark runs them one at a time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _hwm_kb(pid: int) -> int:
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def take(stub: PlanfixStub) -> list[Any]:
    """Empty the stub's log and return what it held (a million entries would not fit in RAM
    comfortably otherwise)."""
    with stub._lock:  # noqa: SLF001 - the stub has no atomic drain; see the report
        entries, stub._log = stub._log, []  # noqa: SLF001
    return entries


class Receiver:
    """Counts what the stub accepted, draining it every second."""

    def __init__(self, stub: PlanfixStub) -> None:
        self.stub = stub
        self.events: dict[str, int] = {}
        self.arrivals: dict[str, float] = {}
        self.other = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.collect()

    def collect(self) -> None:
        for entry in take(self.stub):
            if entry.status != 200:
                continue
            if not entry.is_json and entry.fields.get("event") == "COMPLETED":
                self.events[entry.callid] = self.events.get(entry.callid, 0) + 1
                self.arrivals.setdefault(entry.callid, entry.time)
            else:
                self.other += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.collect()


def rows_examined(name: str, work) -> tuple[int, int, Any]:
    """(all Handler_read_* rows, of them full-scan rnd_next, result of work())."""
    conn = pymysql.connect(host="127.0.0.1", user="root", database=name, autocommit=True)

    def counters() -> dict[str, int]:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Handler_read_%'")
            return {k: int(v) for k, v in cur.fetchall()}

    try:
        a, b = counters(), counters()
        overhead = {k: b[k] - a[k] for k in a}
        before = counters()
        result = work()
        after = counters()
    finally:
        conn.close()
    delta = {k: after[k] - before[k] - overhead[k] for k in after}
    return sum(delta.values()), delta["Handler_read_rnd_next"], result


# ---- the measurements -------------------------------------------------------------------------
def bench_backfill(args, name: str, res: Results, first: datetime, last: datetime,
                   expected: set[str]) -> None:
    stub = PlanfixStub().start()
    receiver = Receiver(stub)
    cfg = config(Path(args.workdir) / "backfill", name, stub)
    state = Path(args.workdir) / "backfill" / "state.db"
    if state.exists():
        state.unlink()
    log("backfill: running cdrsync backfill over the whole range")
    child = Child(cfg, "backfill", "--since", first.date().isoformat(), "--until",
                  (last.date() + timedelta(days=1)).isoformat())
    seconds = child.wait()
    receiver.stop()
    stub.stop()
    n = len(expected)
    doubles = sum(1 for c in receiver.events.values() if c > 1)
    missing = len(expected - set(receiver.events))
    res.add("backfill: calls delivered", f"{len(receiver.events):,} of {n:,} external calls; "
            f"{missing} missing, {doubles} twice", "all, once")
    res.add("backfill: throughput", f"{args.calls / seconds:,.0f} calls/s ({seconds:,.1f} s for "
            f"{args.calls:,} calls)", ">= 1,000 calls/s")
    floor = stream_floor(name)
    res.add("floor: stream cdr + cel (PyMySQL SSCursor)",
            f"{args.calls / floor:,.0f} calls/s ({floor:,.1f} s)", "")
    res.add("backfill / floor", f"{seconds / floor:.1f}x slower", "<= 3x")
    res.add("backfill: peak RSS (VmHWM)", f"{child.hwm_kb / 1024:,.0f} MB, its delivery process "
            f"{child.child_hwm_kb / 1024:,.0f} MB", "< 150 MB")


def bench_dryrun(args, name: str, res: Results, first: datetime, last: datetime) -> None:
    """`cdrsync backfill --dry-run` over the whole range (stdout to a file) against the floor,
    alternating, `--rounds` times each; medians. The dry run reads, groups, learns, interprets,
    looks for recordings and builds and prints every request, but sends and records nothing:
    what it costs above the floor is cdrsync's own CPU per call."""
    workdir = Path(args.workdir) / "dryrun"
    stub = PlanfixStub().start()  # never called: a dry run sends nothing
    cfg = config(workdir, name, stub)
    out = workdir / "requests.jsonl"
    walls, cpus, floors, floor_cpus = [], [], [], []
    for i in range(args.rounds):
        began = time.process_time()
        floors.append(stream_floor(name))
        floor_cpus.append(time.process_time() - began)
        state = workdir / "state.db"
        if state.exists():
            state.unlink()
        log(f"dry run {i + 1}/{args.rounds}: cdrsync backfill --dry-run over the whole range")
        child = Child(cfg, "backfill", "--dry-run", "--since", first.date().isoformat(),
                      "--until", (last.date() + timedelta(days=1)).isoformat(), stdout=out)
        walls.append(child.wait())
        cpus.append(child.cpu)
        log(f"  floor {floors[-1]:.2f} s, dry run {walls[-1]:.2f} s "
            f"({walls[-1] / floors[-1]:.2f}x), its CPU {cpus[-1]:.2f} s")
    stub.stop()
    with out.open("rb") as f:
        printed = sum(1 for _ in f)
    wall, cpu, floor = (statistics.median(x) for x in (walls, cpus, floors))
    res.add("dry run: cdrsync backfill --dry-run, stdout to a file",
            f"{args.calls / wall:,.0f} calls/s ({wall:.2f} s; CPU {cpu:.2f} s, "
            f"{cpu / args.calls * 1e6:,.0f} µs a call; {printed:,} requests printed)", "")
    res.add("floor: stream cdr + cel (PyMySQL SSCursor), same run",
            f"{args.calls / floor:,.0f} calls/s ({floor:.2f} s; client CPU "
            f"{statistics.median(floor_cpus):.2f} s)", "")
    res.add(f"dry run / floor (medians of {args.rounds} alternating rounds)",
            f"**{wall / floor:.2f}x** (rounds: "
            f"{', '.join(f'{w / f:.2f}' for w, f in zip(walls, floors))})", "<= 2x")


def new_calls(n: int, seed: int, end_by: datetime) -> list[synth.SynthCall]:
    """n finished calls whose rows all lie before `end_by` (and after the loaded history)."""
    return list(synth.generate(n, end_by - timedelta(seconds=n * 2 + 7200), seed=seed,
                               mean_gap=2.0, first_uid=seed * 10_000_000))


def bench_pass(args, name: str, res: Results, n_tables: tuple[int, int], max_id: int,
               last: datetime) -> None:
    for indexed in (True, False):
        forget_new_rows(name, max_id, last)
        set_indexes(name, indexed)
        label = "with sql/indexes.sql" if indexed else "stock FreePBX indexes"
        stub = PlanfixStub().start()
        workdir = Path(args.workdir) / f"pass-{int(indexed)}"
        state = workdir / "state.db"
        if state.exists():
            state.unlink()
        cfg = config(workdir, name, stub)
        Child(cfg, "sync").wait()  # first sync: cursors placed at the end of the table
        admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
        for k, seed in ((10, 100 + indexed), (1000, 200 + indexed)):
            calls = new_calls(k, seed, utc_now() - timedelta(minutes=2))
            synth.insert(admin, calls)
            take(stub)
            examined, scanned, seconds = rows_examined(
                name, lambda cfg=cfg: Child(cfg, "sync").wait())
            got = {e.callid for e in take(stub) if e.status == 200 and not e.is_json}
            external = {c.truth.linkedid for c in calls if c.truth.direction != "internal"}
            ok = "" if external <= got else f" ({len(external - got)} NOT delivered)"
            res.add(f"sync pass, {k:,} new calls, {label}",
                    f"{seconds:.2f} s, {examined:,} rows examined ({scanned:,} by full scans)"
                    f"{ok}", f"independent of table size ({n_tables[0]:,} cdr + "
                             f"{n_tables[1]:,} cel rows)")
            time.sleep(1)
        admin.dispose()
        stub.stop()
    set_indexes(name, True)


def bench_latency(args, name: str, res: Results) -> None:
    if args.latency_calls <= 0:
        return
    stub = PlanfixStub().start()
    receiver = Receiver(stub)
    workdir = Path(args.workdir) / "latency"
    state = workdir / "state.db"
    if state.exists():
        state.unlink()
    cfg = config(workdir, name, stub)  # the [schedule] defaults
    Child(cfg, "sync").wait()
    daemon = Child(cfg, "run")
    time.sleep(2)
    lead = 20.0
    now = utc_now().replace(microsecond=0)
    pool = synth.generate(args.latency_calls * 6, now + timedelta(seconds=lead), seed=300,
                          mean_gap=3.0, first_uid=3_000_000_000)
    calls = [c for c in pool if c.truth.direction != "internal"
             and (c.truth.end - c.truth.start).total_seconds() <= 60][:args.latency_calls]
    landed: dict[str, float] = {}
    admin = create_engine(f"{SERVER}/{name}?charset=utf8mb4")
    wall0, mono0 = utc_now(), time.monotonic()
    for call in sorted(calls, key=lambda c: c.truth.end):
        due = mono0 + (call.truth.end - wall0).total_seconds() + 1  # the second after its end
        time.sleep(max(0.0, due - time.monotonic()))
        synth.insert(admin, [call])
        landed[call.truth.linkedid] = time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not set(landed) <= set(receiver.events):
        time.sleep(0.5)
    daemon.proc.terminate()
    try:
        daemon.wait(timeout=60)
    except RuntimeError as exc:
        log(f"run mode stopped with: {exc}")
    receiver.stop()
    stub.stop()
    admin.dispose()
    lat = sorted(receiver.arrivals[c] - landed[c] for c in landed if c in receiver.arrivals)
    label = (f"run mode latency, last row -> Planfix (defaults: interval {DEFAULTS.interval} s, "
             f"cdr_grace {DEFAULTS.cdr_grace} s, cel_settle {DEFAULTS.cel_settle} s at most)")
    if not lat:
        res.add(label, "no call arrived", "p95 <= 3 s")
        return
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    doubles = sum(1 for c in landed if receiver.events.get(c, 0) > 1)
    res.add(label, f"median {statistics.median(lat):.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s "
            f"({len(lat)} of {len(landed)} calls, {doubles} twice)", "p95 <= 3 s, each once")


def bench_idle(args, name: str, res: Results) -> None:
    """What `run` costs while nothing happens: one idle pass in this process (PBX queries, rows
    examined by MariaDB's session counters, CPU), then the real daemon on the idle PBX for
    --idle-seconds, its CPU (utime + stime from /proc) scaled to an hour."""
    from sqlalchemy import event

    from cdrsync import config as config_mod
    from cdrsync.pipeline import Pipeline

    stub = PlanfixStub().start()
    workdir = Path(args.workdir) / "idle"
    state = workdir / "state.db"
    if state.exists():
        state.unlink()
    cfg = config(workdir, name, stub)
    pipe = Pipeline(config_mod.load(str(cfg)))
    queries: list[str] = []
    event.listen(pipe.source.engine, "before_cursor_execute",
                 lambda conn, cur, statement, *rest: queries.append(statement))
    try:
        pipe.sync_pass()  # the first sync: the cursor placed at the end of the table
        examined, cpu, counts = [], [], []
        for _ in range(args.idle_passes):
            time.sleep(1.0)
            pipe.source.engine.dispose()  # one pooled connection: the pass's, counted
            r0 = _session_reads(pipe.source.engine)
            r1 = _session_reads(pipe.source.engine)  # r1 - r0: what one reading costs
            queries.clear()
            began = time.process_time()
            pipe.sync_pass()
            cpu.append(time.process_time() - began)
            counts.append(len(queries))
            r2 = _session_reads(pipe.source.engine)
            examined.append(r2 - r1 - (r1 - r0))
    finally:
        pipe.close()
    res.add(f"idle pass (nothing new; {args.idle_passes} passes in this process)",
            f"{statistics.median(counts):.0f} PBX query (max {max(counts)}), "
            f"{statistics.median(examined):.0f} rows examined (max {max(examined)}; "
            f"Handler_read_*, the pass's own session), CPU {statistics.median(cpu) * 1e3:.1f} ms "
            f"(median)", "1 query, no row beyond the cursor")
    log(f"idle: cdrsync run on the idle PBX for {args.idle_seconds} s")
    daemon = Child(cfg, "run")
    time.sleep(10)  # past the start (imports, the first sync)
    cpu0, t0 = _proc_cpu(daemon.proc.pid), time.monotonic()
    time.sleep(args.idle_seconds)
    cpu1, t1 = _proc_cpu(daemon.proc.pid), time.monotonic()
    daemon.proc.terminate()
    daemon.wait(timeout=60)
    stub.stop()
    per_hour = (cpu1 - cpu0) / (t1 - t0) * 3600
    res.add(f"cdrsync run, idle PBX, interval {DEFAULTS.interval} s: CPU per hour",
            f"{per_hour:.1f} s of CPU per hour ({per_hour / 36:.2f}% of one core; measured over "
            f"{t1 - t0:.0f} s)", "")


def _session_reads(engine) -> int:
    """Handler_read_* of the engine's (single pooled) connection, summed; reading them costs a
    constant the caller subtracts."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Handler_read%%'").all()
    return sum(int(v) for _, v in rows)


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process, s (fields 14 and 15 of /proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--db", default="cdrsync_bench", help="database name (dropped and created)")
    ap.add_argument("--reuse", action="store_true", help="keep an already loaded --db")
    ap.add_argument("--workdir", default="/tmp/cdrsync-bench")
    ap.add_argument("--latency-calls", type=int, default=30)
    ap.add_argument("--idle-passes", type=int, default=20, help="idle passes measured in-process")
    ap.add_argument("--idle-seconds", type=int, default=180,
                    help="how long `run` idles for the CPU-per-hour figure")
    ap.add_argument("--rounds", type=int, default=3, help="dry run and floor: rounds each")
    ap.add_argument("--only", default="backfill,dryrun,pass,latency,idle",
                    help="comma-separated subset of backfill,dryrun,pass,latency,idle")
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    res = Results()
    meta = Path(args.workdir) / f"{args.db}.json"
    start = (utc_now() - timedelta(seconds=args.calls * MEAN_GAP) - timedelta(days=2)
             ).replace(hour=0, minute=0, second=0, microsecond=0)
    if args.reuse and meta.exists():
        loaded = json.loads(meta.read_text())
        if loaded["calls"] != args.calls:
            ap.error(f"--reuse: {args.db} holds {loaded['calls']} calls, not {args.calls}")
        start = datetime.fromisoformat(loaded["start"])
    elif args.reuse:
        ap.error(f"--reuse: no {meta} from an earlier run")
    if prepare_db(args.db, args.reuse):
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.unlink(missing_ok=True)
        log(f"loading {args.calls:,} synthetic calls into {args.db}")
        n_cdr, n_cel, seconds = load(args.db, args.calls, start)
        res.add("load (LOAD DATA LOCAL INFILE, stock indexes)",
                f"{n_cdr:,} cdr + {n_cel:,} cel rows in {seconds:,.0f} s "
                f"({(n_cdr + n_cel) / seconds:,.0f} rows/s)", "")
        meta.write_text(json.dumps({"calls": args.calls, "start": start.isoformat()}))
    set_indexes(args.db, True)
    n_cdr, n_cel, first, last = table_rows(args.db)
    history_max_id = max_cel_id(args.db)
    if "backfill" in parts:
        expected = {c.truth.linkedid for c in synth.generate(args.calls, start, seed=1,
                                                             mean_gap=MEAN_GAP)
                    if c.truth.direction != "internal"}
        bench_backfill(args, args.db, res, first, last, expected)
    if "dryrun" in parts:
        bench_dryrun(args, args.db, res, first, last)
    try:
        if "pass" in parts:
            bench_pass(args, args.db, res, (n_cdr, n_cel), history_max_id, last)
        if "idle" in parts:  # before latency: its calls would be new to the first idle pass
            bench_idle(args, args.db, res)
        if "latency" in parts:
            bench_latency(args, args.db, res)
    finally:
        forget_new_rows(args.db, history_max_id, last)
    table = res.markdown(args)
    print(table)
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
