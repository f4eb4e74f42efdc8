"""`cdrsync check` against a real MariaDB, a real loopback Planfix and real folders: every problem
it claims to detect is produced for real and must be reported with the right verdict."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect

from cdrsync.check import (
    FAIL,
    OK,
    WARN,
    CheckResult,
    exit_code,
    format_results,
    judge_grants,
    rows_offset,
    run_checks,
)
from cdrsync.pbx.report import THIN_CALLS
from cdrsync.state.db import open_store
from tests.e2e import cdrsync, write_config
from tests.planfix_stub import PlanfixStub, stub_config

ROOT = Path(__file__).resolve().parent.parent
MOSCOW = ZoneInfo("Europe/Moscow")
EPOCH = int(datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def stub():
    with PlanfixStub() as server:
        yield server


def add_calls(db, n: int = 3, zone: ZoneInfo = MOSCOW, cel: bool = True,
              record: bool = True) -> list[str]:
    """`n` answered inbound calls written as a PBX in `zone` writes them; returns the
    recordingfile names (FreePBX layout)."""
    names = []
    for i in range(n):
        epoch = EPOCH + 60 * i
        uid = f"{epoch}.{i}"
        local = datetime.fromtimestamp(epoch, zone).replace(tzinfo=None)
        name = f"in-5551000-2125551001-{local:%Y%m%d-%H%M%S}-{uid}.wav" if record else ""
        names.append(name)
        db.insert_cdr([{"calldate": local, "src": "2125551001", "dst": "101",
                        "channel": f"PJSIP/carrier-{i:08x}", "dstchannel": f"PJSIP/101-{i:08x}",
                        "lastapp": "Dial", "lastdata": "PJSIP/101,20", "duration": 20,
                        "billsec": 15, "dcontext": "from-did-direct",
                        "disposition": "ANSWERED", "uniqueid": uid, "linkedid": uid,
                        "did": "5551000", "recordingfile": name},
                       # a later row of the same channel (voicemail after the dial): later
                       # calldate, same uniqueid, must not disturb the time zone verdict
                       {"calldate": local + timedelta(seconds=20), "uniqueid": uid,
                        "linkedid": uid, "lastapp": "VoiceMail", "disposition": "ANSWERED"}])
        if cel:
            for offset, event in ((0, "CHAN_START"), (20, "HANGUP"), (20, "CHAN_END"),
                                  (20, "LINKEDID_END")):
                db.insert_cel([{"eventtype": event, "uniqueid": uid, "linkedid": uid,
                                "eventtime": local + timedelta(seconds=offset)}])
    return names


def put_recordings(folder: Path, names: list[str]) -> None:
    for name in names:
        m = re.search(r"-(\d{4})(\d{2})(\d{2})-\d{6}-", name)
        day = folder / m.group(1) / m.group(2) / m.group(3)
        day.mkdir(parents=True, exist_ok=True)
        (day / name).write_bytes(b"RIFF" + b"\0" * 2000)
        old = datetime.now().timestamp() - 3600
        os.utime(day / name, (old, old))


def apply_indexes(db) -> None:
    sql = (ROOT / "sql" / "indexes.sql").read_text(encoding="utf-8")
    for stmt in re.sub(r"^--.*$", "", sql, flags=re.M).split(";"):
        if stmt.strip():
            db.execute(stmt)


def config(db_url: str, stub: PlanfixStub, tmp_path: Path, **sections):
    sections.setdefault("source", {})
    sections["source"] = {"url": db_url, "timezone": "Europe/Moscow", **sections["source"]}
    sections.setdefault("recordings", {"dir": str(tmp_path / "monitor")})
    return stub_config(stub, state_url=f"sqlite:///{tmp_path}/state/state.db", **sections)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_a_healthy_setup_passes_every_check(pbx_db, stub, tmp_path):
    apply_indexes(pbx_db)
    put_recordings(tmp_path / "monitor", add_calls(pbx_db, n=THIN_CALLS))
    results = run_checks(config(pbx_db.ro_url, stub, tmp_path))
    assert [(r.name, r.verdict) for r in results if r.verdict != OK] == []
    found = by_name(results)
    assert set(found) == {"config", "database", "cdr table", "cel table", "indexes", "privileges",
                          "time zone", "recordings", "planfix", "state store", "pbx model"}
    assert "CEL mode" in found["cel table"].detail
    assert f"{THIN_CALLS} newest recordings found" in found["recordings"].detail
    # the rows' did names the trunk, the Dial string the phone 101 it reached by dialling 101
    assert found["pbx model"].detail == f"learned from {THIN_CALLS} calls: 1 phone, 1 trunk"
    assert exit_code(results) == 0
    assert format_results(results)[-1] == "all checks passed"
    assert not (tmp_path / "state").exists()  # the check created no store


def test_wrong_password_fails_without_showing_it(pbx_db, stub, tmp_path):
    password = "Wr0ng-Pa55word-xyz"
    url = re.sub(r"(://[^:]+:)[^@]+@", rf"\g<1>{password}@", pbx_db.ro_url)
    results = run_checks(config(url, stub, tmp_path))
    db = by_name(results)["database"]
    assert db.verdict == FAIL and "Access denied" in db.detail
    assert "sql/readonly-user.sql" in db.hint
    assert password not in "\n".join(format_results(results))
    assert exit_code(results) == 2


def test_unreachable_database_fails_with_a_hint(stub, tmp_path):
    url = "mysql+pymysql://cdrsync:pw@127.0.0.1:1/asteriskcdrdb"  # nothing listens on port 1
    db = by_name(run_checks(config(url, stub, tmp_path)))["database"]
    assert db.verdict == FAIL and "reachable" in db.hint and ":pw@" not in db.detail


def test_missing_cel_means_cdr_only_mode(pbx_db, stub, tmp_path):
    add_calls(pbx_db, cel=False)
    pbx_db.execute("DROP TABLE cel")
    cel = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["cel table"]
    assert cel.verdict == WARN and "CDR-only mode" in cel.detail
    forced = config(pbx_db.ro_url, stub, tmp_path, source={"use_cel": True})
    assert by_name(run_checks(forced))["cel table"].verdict == FAIL
    off = config(pbx_db.ro_url, stub, tmp_path, source={"use_cel": False})
    assert by_name(run_checks(off))["cel table"].verdict == OK


def test_cel_without_end_events_or_stopped_is_cdr_only(pbx_db, stub, tmp_path):
    add_calls(pbx_db, cel=False)
    pbx_db.insert_cel([{"eventtype": "CHAN_START", "uniqueid": "1.1", "linkedid": "1.1",
                        "eventtime": datetime(2026, 11, 26, 12)}])
    cel = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["cel table"]
    assert cel.verdict == WARN and "no LINKEDID_END" in cel.detail
    pbx_db.insert_cel([{"eventtype": "LINKEDID_END", "uniqueid": "1.1", "linkedid": "1.1",
                        "eventtime": datetime(2026, 11, 20, 12)}])  # days before the last call
    pbx_db.execute("UPDATE cel SET eventtime = '2026-11-20 12:00:00'")
    cel = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["cel table"]
    assert cel.verdict == WARN and "no longer written" in cel.detail


def test_missing_indexes_are_named_with_the_script(pbx_db, stub, tmp_path):
    add_calls(pbx_db)  # the stock FreePBX schema: no index on cdr.linkedid
    pbx_db.execute("ALTER TABLE cel DROP INDEX uniqueid_index")
    idx = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["indexes"]
    assert idx.verdict == WARN
    assert "cdr(linkedid)" in idx.detail and "cel(uniqueid)" in idx.detail
    assert "cdr(calldate)" not in idx.detail and "sql/indexes.sql" in idx.hint
    apply_indexes(pbx_db)
    assert by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["indexes"].verdict == OK


def test_a_login_that_can_write_is_a_warning(pbx_db, stub, tmp_path):
    user = re.search(r"://([^:]+):", pbx_db.ro_url).group(1)
    pbx_db.execute(f"GRANT INSERT, DELETE ON `{pbx_db.name}`.`cdr` TO '{user}'@'127.0.0.1'")
    priv = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["privileges"]
    assert priv.verdict == WARN and "DELETE, INSERT" in priv.detail
    assert "IDENTIFIED" not in priv.detail and "*" not in priv.detail  # no password hash shown


def test_the_admin_login_is_a_warning(pbx_db, stub, tmp_path):
    priv = by_name(run_checks(config(pbx_db.admin_url, stub, tmp_path)))["privileges"]
    assert priv.verdict == WARN and "ALL PRIVILEGES" in priv.detail


@pytest.mark.parametrize("grants, verdict, words", [
    (["GRANT USAGE ON *.* TO `cdrsync`@`%` IDENTIFIED BY PASSWORD '*ABCDEF'",
      "GRANT SELECT ON `asteriskcdrdb`.`cdr` TO `cdrsync`@`%`",
      "GRANT SELECT ON `asteriskcdrdb`.`cel` TO `cdrsync`@`%`"], OK, []),
    (["GRANT USAGE ON *.* TO 'cdrsync'@'10.0.0.5'",  # MySQL 8 quoting
      "GRANT SELECT ON `asteriskcdrdb`.* TO 'cdrsync'@'10.0.0.5'"], WARN, ["asteriskcdrdb.*"]),
    (["GRANT SELECT (calldate, src), UPDATE (userfield) ON `asteriskcdrdb`.`cdr` TO `c`@`h`"],
     WARN, ["UPDATE on asteriskcdrdb.cdr"]),
    (["GRANT SELECT ON *.* TO `c`@`h` WITH GRANT OPTION"], WARN, ["GRANT OPTION", "SELECT on *.*"]),
    (["GRANT `cdr_reader` TO `c`@`h`"], WARN, ["role(s) cdr_reader"]),
])
def test_grant_lines_of_mariadb_and_mysql(grants, verdict, words):
    result = judge_grants(grants, "asteriskcdrdb")
    assert result.verdict == verdict
    for word in words:
        assert word in result.detail
    assert "PASSWORD" not in result.detail


def test_privileges_on_postgresql(pg_pbx, stub, tmp_path):
    ok = by_name(run_checks(config(pg_pbx.ro_url, stub, tmp_path)))
    assert ok["database"].verdict == OK and ok["privileges"].verdict == OK
    admin = by_name(run_checks(config(pg_pbx.admin_url, stub, tmp_path)))["privileges"]
    assert admin.verdict == WARN and "superuser" in admin.detail


def test_sqlite_source_is_checked_and_never_created(sqlite_pbx, stub, tmp_path):
    add_calls(sqlite_pbx)
    found = by_name(run_checks(config(sqlite_pbx.admin_url, stub, tmp_path)))
    assert found["cdr table"].verdict == OK and found["time zone"].verdict == OK
    assert found["privileges"].verdict == OK  # not applicable, said so
    ghost = tmp_path / "no-such.sqlite"
    db = by_name(run_checks(config(f"sqlite:///{ghost}", stub, tmp_path)))["database"]
    assert db.verdict == FAIL and not ghost.exists()


def test_a_wrong_time_zone_is_detected_from_the_rows(pbx_db, stub, tmp_path):
    add_calls(pbx_db, n=5, zone=MOSCOW)
    right = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["time zone"]
    assert right.verdict == OK, right
    wrong = config(pbx_db.ro_url, stub, tmp_path, source={"timezone": "Europe/Berlin"})
    tz = by_name(run_checks(wrong))["time zone"]
    assert tz.verdict == WARN and "UTC+03:00" in tz.detail and "Europe/Berlin" in tz.detail


def test_rows_offset_handles_prefixes_dst_and_later_rows():
    berlin = ZoneInfo("Europe/Berlin")
    rows = []
    # a summer and a winter call: +02:00 and +01:00, both right for Berlin
    for when in (datetime(2024, 7, 1, 10, tzinfo=timezone.utc),
                 datetime(2024, 12, 1, 10, tzinfo=timezone.utc)):
        epoch = int(when.timestamp())
        local = when.astimezone(berlin).replace(tzinfo=None)
        rows.append((local, f"pbx1-{epoch}.7", ""))
        rows.append((local + timedelta(minutes=40), f"pbx1-{epoch}.7", ""))  # a later leg
    suggested, agree, total = rows_offset(rows, berlin)
    assert (agree, total) == (2, 2)
    assert rows_offset(rows, ZoneInfo("UTC"))[1:] == (0, 2)
    assert rows_offset([(datetime(2024, 1, 1), "not-a-uniqueid", "")], berlin) == (
        timedelta(0), 0, 0)
    assert suggested in (timedelta(hours=1), timedelta(hours=2))


def test_recordings_folder_missing_or_files_missing(pbx_db, stub, tmp_path):
    apply_indexes(pbx_db)
    names = add_calls(pbx_db)
    absent = tmp_path / "nowhere"
    rec = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path,
                                    recordings={"dir": str(absent)})))["recordings"]
    assert rec.verdict == WARN and "not found" in rec.detail and "asterisk" in rec.hint
    linked = config(pbx_db.ro_url, stub, tmp_path,
                    recordings={"dir": str(absent), "base_url": "https://pbx.example.com/rec",
                                "sign_key": "k" * 32})
    assert by_name(run_checks(linked))["recordings"].verdict == FAIL
    a_file = tmp_path / "monitor-file"
    a_file.write_text("x")
    rec = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path,
                                    recordings={"dir": str(a_file)})))["recordings"]
    assert rec.verdict == WARN
    put_recordings(tmp_path / "monitor", names[:1])
    rec = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["recordings"]
    assert rec.verdict == WARN and "1 of the 3 newest" in rec.detail
    assert names[1] in rec.detail or names[2] in rec.detail


def test_header_only_recordings_count_as_found(pbx_db, stub, tmp_path):
    """A call nobody took leaves a 44-byte WAV: the folder is right, nothing is missing."""
    apply_indexes(pbx_db)
    names = add_calls(pbx_db, n=2)
    put_recordings(tmp_path / "monitor", names)
    day = next((tmp_path / "monitor").glob("*/*/*"))
    (day / names[0]).write_bytes(b"RIFF" + b"\0" * 40)
    rec = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["recordings"]
    assert rec.verdict == OK and "2 newest recordings found" in rec.detail


def test_an_old_cdr_without_the_freepbx_columns_still_works(pbx_db, stub, tmp_path):
    add_calls(pbx_db)
    (tmp_path / "monitor").mkdir()
    for column in ("linkedid", "did", "recordingfile", "peeraccount"):
        pbx_db.execute(f"ALTER TABLE cdr DROP COLUMN {column}")
    found = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))
    assert found["cdr table"].verdict == WARN
    detail = found["cdr table"].detail
    assert "linkedid, did, recordingfile" in detail
    assert "peeraccount" not in detail  # cdrsync does not read it: nothing is lost without it
    assert found["time zone"].verdict == OK and found["recordings"].verdict == OK
    pbx_db.execute("ALTER TABLE cdr DROP COLUMN disposition")
    cdr = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["cdr table"]
    assert cdr.verdict == FAIL and "disposition" in cdr.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder (the missing-folder case "
                    "above covers root)")
def test_unreadable_recordings_folder_as_a_user(pbx_db, stub, tmp_path):
    folder = tmp_path / "monitor"
    folder.mkdir(mode=0o000)
    try:
        rec = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["recordings"]
    finally:
        folder.chmod(0o755)
    assert rec.verdict == WARN and "not readable" in rec.detail


def test_planfix_wrong_token_fails(pbx_db, stub, tmp_path):
    cfg = config(pbx_db.ro_url, stub, tmp_path, planfix={"token": "wrong-token-123456"})
    pf = by_name(run_checks(cfg))["planfix"]
    assert pf.verdict == FAIL and "token" in pf.detail
    assert "wrong-token-123456" not in "\n".join(format_results(run_checks(cfg)))
    stub.stop()
    down = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["planfix"]
    assert down.verdict == FAIL


def test_state_store_probes_leave_nothing_behind(pbx_db, stub, tmp_path):
    store = tmp_path / "state" / "state.db"
    open_store(f"sqlite:///{store}").dispose()
    tables = set(inspect(open_store(f"sqlite:///{store}")).get_table_names())
    st = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["state store"]
    assert st.verdict == OK and "writable" in st.detail
    assert set(inspect(open_store(f"sqlite:///{store}")).get_table_names()) == tables


def test_read_only_state_store_fails(pbx_db, stub, tmp_path):
    store = tmp_path / "state" / "state.db"
    open_store(f"sqlite:///{store}").dispose()
    cfg = stub_config(stub, state_url=f"sqlite:///file:{store}?mode=ro&uri=true",
                      source={"url": pbx_db.ro_url, "timezone": "Europe/Moscow"})
    st = by_name(run_checks(cfg))["state store"]
    assert st.verdict == FAIL and "readonly" in st.detail.replace("-", "").replace(" ", "")
    cfg = stub_config(stub, state_url="sqlite:////proc/cdrsync/state.db",
                      source={"url": pbx_db.ro_url, "timezone": "Europe/Moscow"})
    st = by_name(run_checks(cfg))["state store"]
    assert st.verdict == FAIL and "cannot be created" in st.detail


def as_unprivileged_user() -> list[str]:
    """argv prefix running a command as an ordinary user (root ignores file modes)."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if not shutil.which("setpriv") or subprocess.run(
            prefix + [sys.executable, "-c", "import cdrsync.cli"], capture_output=True,
            cwd="/", env={"PYTHONPATH": str(ROOT)}).returncode != 0:
        pytest.skip("running as root, and no other user can run this Python (setpriv missing, "
                    "or the interpreter lives in a folder only root can enter)")
    return prefix


def test_read_only_state_folder_fails_for_the_service_user(pbx_db, stub, tmp_path):
    """The real case: the cdrsync user may not write the state folder."""
    argv = as_unprivileged_user()
    work = tmp_path / "w"
    (work / "state").mkdir(parents=True)
    (work / "monitor").mkdir()
    open_store(f"sqlite:///{work}/state/state.db").dispose()
    path = write_config(work / "cdrsync.toml", {
        "source": {"url": pbx_db.ro_url, "timezone": "Europe/Moscow"},
        "planfix": {"url": stub.url, "token": stub.token},
        "recordings": {"dir": str(work / "monitor")},
        "state": {"url": f"sqlite:///{work}/state/state.db"}})
    for p in (tmp_path, work, work / "monitor", path):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (work / "state").chmod(0o555)
    (work / "state" / "state.db").chmod(0o444)
    tmp_path.parent.chmod(0o755)
    tmp_path.parent.parent.chmod(0o755)
    proc = subprocess.run(argv + [sys.executable, "-m", "cdrsync", "--config", str(path), "check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next((x for x in proc.stdout.splitlines() if "state store" in x), proc.stderr)
    assert line.startswith("FAIL"), proc.stdout + proc.stderr
    assert proc.returncode == 2


def test_a_thin_model_is_a_warning(pbx_db, stub, tmp_path):
    """Three calls teach too little: the check says so (devices not seen are guessed)."""
    apply_indexes(pbx_db)
    put_recordings(tmp_path / "monitor", add_calls(pbx_db))
    result = by_name(run_checks(config(pbx_db.ro_url, stub, tmp_path)))["pbx model"]
    assert result.verdict == WARN
    assert result.detail.startswith("learned from 3 calls: 1 phone, 1 trunk; too little")
    assert not (tmp_path / "state").exists()


def test_the_command_prints_lines_and_exit_codes(pbx_db, stub, tmp_path):
    apply_indexes(pbx_db)
    put_recordings(tmp_path / "monitor", add_calls(pbx_db, n=THIN_CALLS))
    path = write_config(tmp_path / "cdrsync.toml", {
        "source": {"url": pbx_db.ro_url, "timezone": "Europe/Moscow"},
        "planfix": {"url": stub.url, "token": stub.token},
        "recordings": {"dir": str(tmp_path / "monitor")},
        "state": {"url": f"sqlite:///{tmp_path}/state.db"}})
    proc = cdrsync(path, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("OK")
    proc = cdrsync(path, "check", env={"CDRSYNC_PLANFIX_TOKEN": "bad-token-999"})
    assert proc.returncode == 2 and "FAIL  planfix" in proc.stdout
    assert "bad-token-999" not in proc.stdout + proc.stderr


def test_exit_code_and_format():
    ok = CheckResult("a", OK, "fine", "never shown")
    warn = CheckResult("b", WARN, "meh", "do this")
    fail = CheckResult("ccc", FAIL, "broken", "do that")
    assert exit_code([ok]) == 0 and exit_code([ok, warn]) == 1 and exit_code([warn, fail]) == 2
    lines = format_results([ok, warn, fail])
    assert lines[0] == "OK    a    fine"
    assert lines[1] == "WARN  b    meh"
    assert lines[2] == " " * 11 + "fix: do this"
    assert "never shown" not in "\n".join(lines)
    assert lines[-1].startswith("1 failure(s), 1 warning(s)")
