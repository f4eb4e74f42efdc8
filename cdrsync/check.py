"""`cdrsync check`: the preflight a PBX admin runs before starting cdrsync, and whenever in doubt.

Each check gives one line: what was looked at, the verdict (ok / warn / fail) and how to fix it.
"fail" means cdrsync cannot work (exit code 2), "warn" that it works but loses something (exit 1).
The checks only read the PBX database, and leave nothing behind in the state store: a missing
SQLite store is not created, an existing one is written to inside a transaction that is undone.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .config import Config, redact
from .recordings.resolve import find_recording
from .source.rows import CDR_FIELDS, decode_text, decode_time
from .state.db import StoreError, describe, open_store

OK, WARN, FAIL = "ok", "warn", "fail"

# Without these cdrsync cannot rebuild a call; the other model fields only enrich it.
CDR_REQUIRED = ("calldate", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
                "duration", "billsec", "disposition", "uniqueid")
CEL_REQUIRED = ("id", "eventtype", "eventtime", "uniqueid", "linkedid", "channame", "context",
                "exten", "appname", "appdata", "peer", "extra")
# (table, leading column) of each index cdrsync's queries rely on; see sql/indexes.sql.
INDEXES = (("cdr", "linkedid"), ("cdr", "uniqueid"), ("cdr", "calldate"),
           ("cel", "linkedid"), ("cel", "uniqueid"))
CEL_TAIL = 5000  # newest cel events looked at for LINKEDID_END (a primary-key range, cheap)
CEL_STALE = timedelta(days=1)  # cel this much older than the newest cdr row: CEL stopped
RECENT_ROWS = 200  # newest cdr rows sampled for the time zone
RECENT_RECORDINGS = 20
RECORDINGS_SPAN = timedelta(days=7)  # how far back from the newest call recordings are sampled
TZ_TOLERANCE = 300  # s between the rows' offset and the configured zone's before warning
_EPOCH = re.compile(r"(\d{9,11})\.\d+$")  # uniqueid = [system-]<epoch>.<counter>
_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?:(?:TABLE|FUNCTION|PROCEDURE)\s+)?"
                    r"(?P<obj>\S+)\s+TO\s+(?P<rest>.*)$", re.I | re.S)
_ROLE_GRANT = re.compile(r"^GRANT\s+(?P<roles>.+?)\s+TO\s+", re.I | re.S)


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: str  # OK | WARN | FAIL
    detail: str
    hint: str = ""


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 all good, 1 warnings only, 2 something blocks."""
    verdicts = {r.verdict for r in results}
    return 2 if FAIL in verdicts else 1 if WARN in verdicts else 0


def format_results(results: list[CheckResult]) -> list[str]:
    """Plain lines for a terminal: verdict, check, detail; the fix under each warning/failure."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        lines.append(f"{r.verdict.upper():<4}  {r.name:<{width}}  {r.detail}")
        if r.hint and r.verdict != OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {r.hint}")
    fails = sum(r.verdict == FAIL for r in results)
    warns = sum(r.verdict == WARN for r in results)
    if fails:
        lines.append(f"{fails} failure(s), {warns} warning(s): cdrsync cannot work until the "
                     "failures are fixed")
    elif warns:
        lines.append(f"{warns} warning(s): cdrsync works, with the limits above")
    else:
        lines.append("all checks passed")
    return lines


def run_checks(cfg: Config) -> list[CheckResult]:
    """Every check, in the order an admin fixes things; never raises for a broken environment."""
    results = [CheckResult("config", OK, f"loaded {cfg.path or '(built-in)'}")]
    results += _source_checks(cfg)
    results.append(_guarded("planfix", cfg, lambda: check_planfix(cfg)))
    results.append(_guarded("state store", cfg, lambda: check_state(cfg)))
    if results[1].verdict != FAIL:  # the PBX database is reachable
        results.append(_guarded("pbx model", cfg, lambda: check_model(cfg)))
    return results


def check_model(cfg: Config) -> CheckResult:
    """One line on what cdrsync knows of the PBX (`cdrsync pbx` has the details); a warning
    when it knows too little, since unknown devices are then guessed from their names."""
    from .pbx.keeper import current
    from .pbx.report import summary
    from .source.reader import Source, SourceError

    try:
        source = Source.from_config(cfg)
    except SourceError as exc:
        return CheckResult("pbx model", WARN, f"not learned: {redact(str(exc), cfg)}")
    try:
        model, _ = current(cfg.state, source, cfg.pbx)
    except SourceError as exc:
        return CheckResult("pbx model", WARN, f"not learned: {redact(str(exc), cfg)}")
    finally:
        source.close()
    thin, text = summary(model)
    return CheckResult("pbx model", WARN if thin else OK, text,
                       "let cdrsync see more calls, or set [pbx] trunk_channels / "
                       "extension_pattern; `cdrsync pbx` shows what it knows")


def _guarded(name: str, cfg: Config, check: Callable[[], CheckResult]) -> CheckResult:
    """A check that breaks on an unexpected error reports it as its own failure line."""
    try:
        return check()
    except (SQLAlchemyError, OSError) as exc:
        return CheckResult(name, FAIL, f"could not be checked: {redact(describe(exc), cfg)}")


# --- the PBX database ------------------------------------------------------------------------


class Pbx:
    """What the checks learn about the PBX database, each thing read once."""

    def __init__(self, conn: Connection, cfg: Config) -> None:
        self.conn = conn
        self.cfg = cfg
        self.dialect = conn.dialect.name
        insp = inspect(conn)
        self.columns: dict[str, set[str]] = {}
        self.indexed: dict[str, set[str]] = {}
        for table in ("cdr", "cel"):
            if not insp.has_table(table):
                continue
            self.columns[table] = {c["name"].lower() for c in insp.get_columns(table)}
            leading = {(ix.get("column_names") or [None])[0] for ix in insp.get_indexes(table)}
            leading |= set((insp.get_pk_constraint(table).get("constrained_columns") or [])[:1])
            self.indexed[table] = {c.lower() for c in leading if c}

    @property
    def uses_cel(self) -> bool:
        return self.cfg.source.use_cel != "false"

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.conn.execute(text(sql), params).scalar()

    @property
    def has_calldate_index(self) -> bool:
        """Without it, "the newest rows" means a full scan of a possibly huge table: skipped."""
        return "calldate" in self.indexed.get("cdr", set())

    def newest_call(self) -> Optional[datetime]:
        if not self.has_calldate_index:
            return None
        return decode_time(self.scalar("SELECT MAX(calldate) FROM cdr"))

    def recent_cdr(self, only_recorded: bool = False, limit: int = RECENT_ROWS
                   ) -> list[tuple[datetime, str, str]]:
        """(calldate, uniqueid, recordingfile) of the newest rows (recorded ones: of the last
        week of calls, so that a PBX that never records is not scanned to its first row)."""
        if not self.has_calldate_index:
            return []
        has_file = "recordingfile" in self.columns["cdr"]
        file_column = "recordingfile" if has_file else "''"
        where, params = "", {}
        if only_recorded:
            newest = self.newest_call()
            if not has_file or newest is None:
                return []
            where, params = "WHERE recordingfile <> '' AND calldate >= :since ", {
                "since": newest - RECORDINGS_SPAN}
        rows = self.conn.execute(text(
            f"SELECT calldate, uniqueid, {file_column} FROM cdr {where}"
            f"ORDER BY calldate DESC LIMIT {int(limit)}"), params)
        out = []
        for calldate, uniqueid, recordingfile in rows:
            when = decode_time(calldate)
            if when is not None:
                out.append((when, decode_text(uniqueid), decode_text(recordingfile)))
        return out


def _source_checks(cfg: Config) -> list[CheckResult]:
    url = make_url(cfg.source.url)
    file = _sqlite_file(cfg.source.url)
    if file is not None and not file.is_file():  # connecting would create an empty file
        return [CheckResult("database", FAIL, f"SQLite file {file} not found",
                            "source.url must point at the existing CDR database")]
    connect_args = {"connect_timeout": 10} if url.get_backend_name() == "mysql" else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            pbx = Pbx(conn, cfg)
            version = ".".join(str(p) for p in (engine.dialect.server_version_info or ()))
            kind = "mariadb" if getattr(engine.dialect, "is_mariadb", False) else pbx.dialect
            where = f"{url.host}{f':{url.port}' if url.port else ''}/{url.database or ''}" \
                if url.host else str(url.database)
            results = [CheckResult("database", OK, f"{kind} {version} reachable: {where}")]
            for name, check in (("cdr table", check_cdr), ("cel table", check_cel),
                                ("indexes", check_indexes), ("privileges", check_privileges),
                                ("time zone", check_timezone)):
                results.append(_guarded(name, cfg, lambda c=check: c(pbx)))
            results.append(_guarded("recordings", cfg, lambda: check_recordings(cfg, pbx)))
            return results
    except (SQLAlchemyError, OSError) as exc:
        return [CheckResult("database", FAIL, f"cannot connect: {redact(describe(exc), cfg)}",
                            _connect_hint(exc)),
                _guarded("recordings", cfg, lambda: check_recordings(cfg, None))]
    finally:
        engine.dispose()


def _connect_hint(exc: BaseException) -> str:
    args = getattr(getattr(exc, "orig", None), "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if code in (1045, 1698):
        return ("wrong user or password in source.url (or the login is for another host); "
                "create the login with sql/readonly-user.sql")
    if code in (1044, 1049):
        return "the database named in source.url does not exist or this login may not use it"
    if code in (2002, 2003, 2005, 2006, 2013):
        return ("is the database server running and reachable from here? A remote cdrsync needs "
                "the server to listen on the network (bind-address) and the firewall open")
    return "check source.url (mysql+pymysql://cdrsync:PASSWORD@HOST/asteriskcdrdb)"


def check_cdr(pbx: Pbx) -> CheckResult:
    columns = pbx.columns.get("cdr")
    if columns is None:
        return CheckResult("cdr table", FAIL, "no table `cdr` visible to this login",
                           "source.url must name the CDR database (FreePBX: asteriskcdrdb) and "
                           "the login needs SELECT on cdr (sql/readonly-user.sql)")
    missing = [c for c in CDR_REQUIRED if c not in columns]
    if missing:
        return CheckResult("cdr table", FAIL, f"cdr lacks column(s) {', '.join(missing)}",
                           "this is not an Asterisk CDR table cdrsync can read")
    optional = [c for c in CDR_FIELDS if c not in columns]
    if optional:
        return CheckResult("cdr table", WARN,
                           f"cdr lacks {', '.join(optional)}: cdrsync reads them as empty "
                           "(linkedid: a transfer or ring group may show as several calls; did: "
                           "no DID; recordingfile: recordings found by uniqueid only)",
                           "an older FreePBX: upgrading its cdr module adds the columns")
    return CheckResult("cdr table", OK, f"cdr has every column cdrsync reads ({len(CDR_FIELDS)})")


def check_cel(pbx: Pbx) -> CheckResult:
    """Is CEL written, with end-of-call events? That decides CEL mode versus CDR-only mode."""
    cfg = pbx.cfg.source
    if not pbx.uses_cel:
        return CheckResult("cel table", OK, "not used (source.use_cel = false): CDR-only mode")
    bad = FAIL if cfg.use_cel == "true" else WARN
    then = (" (source.use_cel = true requires CEL)" if bad == FAIL else
            ": CDR-only mode until LINKEDID_END appears (`run` then switches within a minute)")
    hint = ("enable CEL in FreePBX (Advanced Settings: Enable CEL Reporting; cel.conf events=all "
            "or at least LINKEDID_END), fwconsole reload; or set source.use_cel = false")
    columns = pbx.columns.get("cel")
    if columns is None:
        return CheckResult("cel table", bad, f"no table `cel` visible to this login{then}",
                           hint + "; the login needs SELECT on cel (sql/readonly-user.sql)")
    missing = [c for c in CEL_REQUIRED if c not in columns]
    if missing:
        return CheckResult("cel table", bad, f"cel lacks column(s) {', '.join(missing)}{then}",
                           "cel is not the table the FreePBX cel module creates")
    newest = pbx.conn.execute(text("SELECT id, eventtime FROM cel ORDER BY id DESC LIMIT 1")
                              ).first()
    last_call = pbx.newest_call()
    if newest is None:
        if last_call is None:
            return CheckResult("cel table", WARN, "cdr and cel are empty: nothing to judge yet",
                               "run `cdrsync check` again after a few calls")
        return CheckResult("cel table", bad, f"cel is empty, cdr has calls up to {last_call}{then}",
                           hint)
    top, last_event = int(newest[0]), decode_time(newest[1])
    ends = pbx.scalar("SELECT COUNT(*) FROM cel WHERE id > :floor AND eventtype = 'LINKEDID_END'",
                      floor=top - CEL_TAIL)
    if not ends:
        return CheckResult("cel table", bad, f"no LINKEDID_END among the newest {CEL_TAIL} cel "
                           f"events: Asterisk does not log end-of-call events{then}", hint)
    if last_call and last_event and last_event < last_call - CEL_STALE:
        return CheckResult("cel table", bad, f"the newest cel event is of {last_event}, the newest "
                           f"call of {last_call}: CEL is no longer written{then}", hint)
    return CheckResult("cel table", OK, f"CEL written (newest event {last_event}, {ends} "
                       f"LINKEDID_END among the newest {CEL_TAIL}): CEL mode")


def check_indexes(pbx: Pbx) -> CheckResult:
    wanted = [(t, c) for t, c in INDEXES
              if t in pbx.columns and c in pbx.columns[t] and (t == "cdr" or pbx.uses_cel)]
    missing = [f"{t}({c})" for t, c in wanted if c not in pbx.indexed[t]]
    if missing:
        return CheckResult("indexes", WARN,
                           f"no index on {', '.join(missing)}: each pass scans whole tables, "
                           "which gets slow and loads the PBX as they grow",
                           "apply sql/indexes.sql once as the database admin (online on InnoDB; "
                           "cdrsync itself never writes there)")
    return CheckResult("indexes", OK, "indexed: " + ", ".join(f"{t}({c})" for t, c in wanted))


def check_privileges(pbx: Pbx) -> CheckResult:
    if pbx.dialect in ("mysql", "mariadb"):
        grants = [decode_text(row[0]) for row in pbx.conn.execute(text("SHOW GRANTS"))]
        database = decode_text(pbx.scalar("SELECT DATABASE()"))
        return judge_grants(grants, database)
    if pbx.dialect == "postgresql":
        return _postgres_privileges(pbx)
    return CheckResult("privileges", OK, f"not checked on {pbx.dialect} (no logins): access is "
                       "the file's permissions")


def judge_grants(grants: list[str], database: str) -> CheckResult:
    """Verdict on MySQL/MariaDB `SHOW GRANTS` lines: anything beyond SELECT on cdr and cel."""
    extra: list[str] = []
    wide: list[str] = []
    roles: list[str] = []
    allowed = {f"{database}.cdr".lower(), f"{database}.cel".lower()}
    for line in grants:
        m = _GRANT.match(line.strip())
        if not m:
            role = _ROLE_GRANT.match(line.strip())
            if role:
                roles.append(_unquote(role.group("roles")))
            continue
        obj = _unquote(m.group("obj"))
        privs = {re.sub(r"\s*\(.*", "", p).strip().upper()
                 for p in _split_privileges(m.group("privs"))}
        if re.search(r"WITH\s+GRANT\s+OPTION", m.group("rest"), re.I):
            privs.add("GRANT OPTION")
        more = sorted(privs - {"SELECT", "USAGE"})
        if more:
            extra.append(f"{', '.join(more)} on {obj}")
        if "SELECT" in privs and obj.lower() not in allowed:
            wide.append(f"SELECT on {obj}")
    problems = []
    if extra:
        problems.append("may also " + "; ".join(extra))
    if wide:
        problems.append("may read more than cdr and cel: " + "; ".join(wide))
    if roles:
        problems.append(f"has role(s) {', '.join(roles)} whose privileges are not checked")
    if problems:
        return CheckResult("privileges", WARN, "this login " + "; ".join(problems),
                           "give cdrsync its own SELECT-only login (sql/readonly-user.sql) and "
                           "REVOKE the rest; see sql/show-privileges.sql")
    return CheckResult("privileges", OK, f"SELECT on {database}.cdr and {database}.cel only")


def _split_privileges(privs: str) -> list[str]:
    """Split "SELECT (a, b), INSERT" on the commas outside column lists."""
    parts, depth, current = [], 0, ""
    for ch in privs:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in (*parts, current) if p.strip()]


def _unquote(name: str) -> str:
    return name.replace("`", "").replace("'", "").replace('"', "").replace("\\", "").strip()


def _postgres_privileges(pbx: Pbx) -> CheckResult:
    if pbx.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        return CheckResult("privileges", WARN, "this login is a superuser",
                           "give cdrsync its own role with only: GRANT SELECT ON cdr, cel")
    rows = pbx.conn.execute(text(
        "SELECT table_schema, table_name, privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee = current_user AND NOT (privilege_type = 'SELECT' AND table_name IN "
        "('cdr', 'cel')) AND table_schema NOT IN ('pg_catalog', 'information_schema')"))
    extra = sorted(f"{p} on {s}.{t}" for s, t, p in rows)
    if extra:
        return CheckResult("privileges", WARN, "this login may also " + "; ".join(extra[:8]) +
                           (f" (+{len(extra) - 8} more)" if len(extra) > 8 else ""),
                           "REVOKE everything but SELECT on cdr and cel")
    return CheckResult("privileges", OK, "SELECT on cdr and cel only")


def check_timezone(pbx: Pbx) -> CheckResult:
    """Do recent rows agree with source.timezone? The epoch inside uniqueid is UTC, calldate is
    the PBX's local time: their difference is the zone offset the PBX wrote in."""
    zone_name = pbx.cfg.source.timezone
    zone = pbx.cfg.source.zone
    session = _session_zone(pbx)
    suggested, agree, total = rows_offset(pbx.recent_cdr(), zone)
    if total == 0:
        now_offset = datetime.now(zone).utcoffset() or timedelta(0)
        if session and abs((session[1] - now_offset).total_seconds()) > TZ_TOLERANCE:
            return CheckResult("time zone", WARN,
                               f"no recent rows to compare; the database clock is "
                               f"{_utc(session[1])} ({session[0]}), {zone_name} is "
                               f"{_utc(now_offset)}",
                               "set source.timezone to the zone the PBX writes in (timedatectl "
                               "on the PBX; \"UTC\" with FreePBX's CDRUSEGMT)")
        return CheckResult("time zone", OK, f"no recent rows to compare; source.timezone "
                           f"{zone_name}{_session_note(session)}")
    if agree * 2 > total:
        return CheckResult("time zone", OK, f"{agree} of {total} recent channels agree with "
                           f"{zone_name}{_session_note(session)}")
    return CheckResult("time zone", WARN,
                       f"recent rows were written at {_utc(suggested)} (calldate against the UTC "
                       f"time inside uniqueid), but {zone_name} gives another offset for "
                       f"{total - agree} of {total} channels; call times would be wrong",
                       f"set source.timezone to a zone at {_utc(suggested)} (timedatectl on "
                       "the PBX; \"UTC\" if FreePBX's CDRUSEGMT is on)")


def rows_offset(rows: list[tuple[datetime, str, str]], zone) -> tuple[timedelta, int, int]:
    """(offset the rows suggest, channels agreeing with `zone`, channels compared).

    A channel's first row starts when the channel was created, i.e. at its uniqueid's epoch;
    later rows of the same channel start later. So the smallest difference per uniqueid is the
    zone offset (plus a second of truncation); the most common one over channels is suggested.
    """
    first: dict[str, tuple[float, datetime]] = {}
    for calldate, uniqueid, _ in rows:
        m = _EPOCH.search(uniqueid)
        if not m:
            continue
        utc = datetime.fromtimestamp(int(m.group(1)), timezone.utc).replace(tzinfo=None)
        diff = (calldate - utc).total_seconds()
        if uniqueid not in first or diff < first[uniqueid][0]:
            first[uniqueid] = (diff, calldate)
    if not first:
        return timedelta(0), 0, 0
    agree = 0
    for diff, calldate in first.values():
        expected = (calldate.replace(tzinfo=zone).utcoffset() or timedelta(0)).total_seconds()
        agree += abs(diff - expected) <= TZ_TOLERANCE
    offsets = Counter(round(diff / 900) for diff, _ in first.values())  # zones: 15 min steps
    return timedelta(minutes=15 * offsets.most_common(1)[0][0]), agree, len(first)


def _session_zone(pbx: Pbx) -> Optional[tuple[str, timedelta]]:
    if pbx.dialect in ("mysql", "mariadb"):
        name, seconds = pbx.conn.execute(text(
            "SELECT @@session.time_zone, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")).one()
    elif pbx.dialect == "postgresql":
        name, seconds = pbx.conn.execute(text(
            "SELECT current_setting('TimeZone'), EXTRACT(TIMEZONE FROM now())")).one()
    else:
        return None
    return decode_text(name), timedelta(seconds=round(float(seconds) / 60) * 60)


def _session_note(session: Optional[tuple[str, timedelta]]) -> str:
    return f"; database session {session[0]} ({_utc(session[1])})" if session else ""


def _utc(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# --- recordings, Planfix, state store -------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    """A recent cdr row shaped as the recordings resolver wants a call."""

    callid: str
    recording_candidates: tuple[str, ...]
    uniqueids: tuple[str, ...]
    start: Optional[datetime]


def check_recordings(cfg: Config, pbx: Optional[Pbx]) -> CheckResult:
    rec = cfg.recordings
    bad = FAIL if rec.base_url else WARN
    access = ("the cdrsync user needs read access (FreePBX: usermod -a -G asterisk cdrsync); "
              "or fix recordings.dir")
    folder = Path(rec.dir)
    if not folder.is_dir():
        return CheckResult("recordings", bad, f"folder {rec.dir} not found or not a folder",
                           access)
    try:
        os.listdir(folder)
    except OSError as exc:
        return CheckResult("recordings", bad, f"folder {rec.dir} not readable: {exc.strerror}",
                           access)
    if not os.access(folder, os.R_OK | os.X_OK):
        return CheckResult("recordings", bad, f"folder {rec.dir} not readable", access)
    if pbx is None:
        return CheckResult("recordings", OK, f"folder {rec.dir} readable")
    newest: dict[str, tuple[datetime, str, str]] = {}  # a call repeats its file on many rows
    for row in pbx.recent_cdr(only_recorded=True, limit=RECENT_RECORDINGS * 5):
        newest.setdefault(row[2], row)
    recent = list(newest.values())[:RECENT_RECORDINGS]
    if not recent:
        return CheckResult("recordings", OK, f"folder {rec.dir} readable; no recent call names a "
                           "recording to look for")
    zone, now = cfg.source.zone, time.time()
    missing = []
    for calldate, uniqueid, name in recent:
        sample = _Sample(uniqueid, (name,), (uniqueid,), calldate.replace(tzinfo=zone))
        found = find_recording(sample, rec, zone, now)
        # A header-only file (a call nobody took) was found all the same: only a file that
        # may still appear (retry) or a refused path counts as missing.
        if found.state == "refused" or (found.state == "none" and found.retry):
            missing.append(f"{name} ({found.reason})" if found.state == "refused" else name)
    seen = len(recent) - len(missing)
    if missing:
        return CheckResult("recordings", WARN,
                           f"{seen} of the {len(recent)} newest recordings found under {rec.dir}; "
                           f"missing e.g. {missing[0]}",
                           "is recordings.dir where Asterisk records (FreePBX: MIXMON_DIR, "
                           "default /var/spool/asterisk/monitor)? Were files moved or deleted?")
    return CheckResult("recordings", OK, f"folder {rec.dir} readable; the {len(recent)} newest "
                       "recordings found")


def check_planfix(cfg: Config) -> CheckResult:
    from .planfix.client import PlanfixClient

    client = PlanfixClient(cfg.planfix)
    try:
        ok, detail = client.ping()
    finally:
        client.close()
    if ok:
        return CheckResult("planfix", OK, f"ping answered: {redact(detail, cfg)}")
    return CheckResult("planfix", FAIL, f"ping failed: {redact(detail, cfg)}",
                       "planfix.url and planfix.token must be the address and key shown in "
                       "Planfix's PBX integration settings")


def check_state(cfg: Config) -> CheckResult:
    """The state store must take a write; probe it without leaving anything behind."""
    url = make_url(cfg.state.url)
    hint = ("the cdrsync user needs write access to the state store and its folder: "
            "install -d -o cdrsync -g cdrsync -m 750 /var/lib/cdrsync (the systemd unit's "
            "StateDirectory does the same)")
    file = _sqlite_file(cfg.state.url)
    if file is not None and not file.exists():
        return _probe_new_file(file, hint)
    try:
        engine = open_store(cfg.state)
    except StoreError as exc:
        return CheckResult("state store", FAIL, redact(str(exc), cfg), hint)
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                # Undone on every back-end: rolled back where DDL is transactional, dropped where
                # it commits by itself (MySQL, pysqlite).
                conn.execute(text("CREATE TABLE cdrsync_check_probe (x INTEGER)"))
                conn.execute(text("DROP TABLE cdrsync_check_probe"))
            finally:
                trans.rollback()
    except (SQLAlchemyError, StoreError) as exc:
        return CheckResult("state store", FAIL, f"not writable: {redact(describe(exc), cfg)}", hint)
    finally:
        engine.dispose()
    shown = url.render_as_string(hide_password=True)
    return CheckResult("state store", OK, f"{shown} writable")


def _sqlite_file(url: str) -> Optional[Path]:
    """The file of a plain SQLite URL (not `:memory:`, not a `file:` URI), else None."""
    parsed = make_url(url)
    name = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or name in ("", ":memory:") \
            or name.startswith("file:"):
        return None
    return Path(name)


def _probe_new_file(path: Path, hint: str) -> CheckResult:
    """A store that does not exist yet: can its folder be made and written? (Nothing is left.)"""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=".cdrsync-check-", dir=ancestor))
    except OSError as exc:
        return CheckResult("state store", FAIL, f"{path} cannot be created: "
                           f"{exc.strerror or exc} in {ancestor}", hint)
    return CheckResult("state store", OK, f"{path} will be created on the first run "
                       f"({ancestor} is writable)")
