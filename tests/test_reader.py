"""Source against real databases: MariaDB (FreePBX schema, SELECT-only user), SQLite, PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pymysql.constants import FIELD_TYPE
from pymysql.converters import convert_datetime
from sqlalchemy import create_engine, event, text

from cdrsync.source.reader import Source, SourceError, mysql_datetime
from tests.corpus import CORPUS as CORPUS_DIR

CORPUS = str(CORPUS_DIR / "asteriskcdrdb-cdr-cel.sql")
T0 = datetime(2024, 3, 1, 10, 0, 0)


def _fill(db, calls: int = 3) -> None:
    """`calls` small calls, one minute apart: two cdr rows, a few cel events each."""
    for n in range(calls):
        t = T0 + timedelta(minutes=n)
        lid = f"{1709276400 + 60 * n}.{2 * n}"
        leg = f"{1709276400 + 60 * n}.{2 * n + 1}"
        db.insert_cdr([
            {"calldate": t, "uniqueid": lid, "linkedid": lid, "sequence": 2 * n, "duration": 20,
             "billsec": 15, "disposition": "ANSWERED", "src": "2125551001", "dst": "101"},
            {"calldate": t, "uniqueid": leg, "linkedid": lid, "sequence": 2 * n + 1},
        ])
        db.insert_cel([
            {"eventtype": "CHAN_START", "eventtime": t, "uniqueid": lid, "linkedid": lid},
            {"eventtype": "CHAN_START", "eventtime": t, "uniqueid": leg, "linkedid": lid},
            {"eventtype": "LINKEDID_END", "eventtime": t + timedelta(seconds=20), "uniqueid": lid,
             "linkedid": lid},
        ])


def _exercise(db) -> None:
    _fill(db)
    source = Source(db.ro_url)
    try:
        assert source.schema.cel_mode and source.schema.has_linkedid
        assert source.max_cel_id() == 9
        ended = source.ended_linkedids(0, 10)
        assert [i for i, _ in ended] == [3, 6, 9]
        assert source.ended_linkedids(3, 1) == [(6, "1709276460.2")]
        events = source.cel_for_linkedids(["1709276460.2"])
        assert [e.id for e in events] == [4, 5, 6]
        assert source.linkedids_for_uniqueids(["1709276460.3"]) == {"1709276460.2"}
        rows = source.cdr_for_linkedids(["1709276460.2"], since_local=T0)
        assert sorted(r.sequence for r in rows) == [2, 3]
        assert source.cdr_for_linkedids(["1709276460.2"], since_local=T0 + timedelta(hours=1)) == []
        by_uniqueid = source.cdr_for_linkedids([], ["1709276520.4"])
        assert [r.sequence for r in by_uniqueid] == [4]
        window = list(source.cdr_window(T0 + timedelta(minutes=1)))
        assert sorted(r.sequence for r in window) == [2, 3, 4, 5]
        assert [r.calldate for r in source.cdr_window(T0, T0 + timedelta(minutes=1))] == [T0, T0]
        assert source.cel_id_at(T0 + timedelta(seconds=30)) == 4
        assert source.cel_id_at(T0 - timedelta(days=1)) == 1
        assert source.cel_id_at(T0 + timedelta(days=1)) == 10
        # events no interpretation looks at are not even read
        t, lid = T0 + timedelta(minutes=1, seconds=5), "1709276460.2"
        db.insert_cel([{"eventtype": kind, "eventtime": t, "uniqueid": lid, "linkedid": lid}
                       for kind in ("APP_START", "APP_END", "STREAM_BEGIN", "DTMF", "ANSWER",
                                    "CHAN_END")])
        assert [e.eventtype for e in source.cel_for_linkedids([lid])] == [
            "CHAN_START", "CHAN_START", "LINKEDID_END", "APP_START", "ANSWER"]
        assert [e.id for e in source.cel_range(9, 100, 10)] == [10, 14]
    finally:
        source.close()


def test_source_on_mariadb_with_select_only_user(pbx_db):
    _exercise(pbx_db)


def test_source_on_sqlite_read_only(sqlite_pbx):
    _exercise(sqlite_pbx)


def test_source_on_postgresql(pg_pbx):
    _exercise(pg_pbx)


def test_cel_id_at_with_gaps_and_many_rows(pbx_db):
    pbx_db.insert_cel([{"id": 10 * i + 5, "eventtype": "X", "eventtime": T0 + timedelta(seconds=i)}
                       for i in range(200)])
    source = Source(pbx_db.ro_url)
    assert source.cel_id_at(T0 + timedelta(seconds=57)) == 575
    assert source.cel_id_at(T0 + timedelta(seconds=57, milliseconds=1)) == 585
    source.close()


def test_select_only_user_really_cannot_write(pbx_db):
    engine = create_engine(pbx_db.ro_url)
    with engine.connect() as conn, pytest.raises(Exception, match="denied"):
        conn.execute(text("INSERT INTO cdr (uniqueid) VALUES ('x')"))
    engine.dispose()


def test_auto_mode_without_linkedid_end_is_cdr_only(pbx_db):
    pbx_db.insert_cel([{"eventtype": "CHAN_START", "eventtime": T0}])
    source = Source(pbx_db.ro_url)
    assert not source.schema.cel_mode and "no LINKEDID_END" in source.schema.reason
    assert Source(pbx_db.ro_url, use_cel="true").schema.cel_mode
    source.close()


def test_auto_mode_looks_again_at_the_new_cel_rows_only_and_switches(pbx_db):
    ids = pbx_db.insert_cel([{"eventtype": "CHAN_START", "eventtime": T0} for _ in range(30)])
    source = Source(pbx_db.ro_url)
    assert not source.schema.cel_mode
    floors: list = []
    event.listen(source.engine, "before_cursor_execute",
                 lambda conn, cur, sql, params, *rest: floors.append(params.get("id_1"))
                 if "eventtype = " in sql and "LIMIT" in sql else None)
    assert source.reprobe() is False
    assert floors == [max(ids)]  # the 30 rows were looked at already: none read again
    pbx_db.insert_cel([{"eventtype": "LINKEDID_END", "eventtime": T0, "linkedid": "1.1"}])
    assert source.reprobe() is True
    assert source.schema.cel_mode and "LINKEDID_END" in source.schema.reason
    assert Source(pbx_db.ro_url, use_cel="false").reprobe() is False
    source.close()


def test_cdr_only_database_without_cel(pbx_db):
    pbx_db.execute("DROP TABLE cel")
    source = Source(pbx_db.admin_url)
    assert not source.schema.has_cel and not source.schema.cel_mode
    assert source.max_cel_id() == 0 and source.ended_linkedids(0, 10) == []
    assert source.cel_for_linkedids(["1.1"]) == []
    with pytest.raises(SourceError, match="use_cel = true"):
        Source(pbx_db.admin_url, use_cel="true").schema  # noqa: B018
    source.close()


def test_asterisk_18_schema_without_linkedid(pbx_db):
    for col in ("linkedid", "sequence", "did", "recordingfile", "cnum"):
        pbx_db.execute(f"ALTER TABLE cdr DROP COLUMN `{col}`")
    pbx_db.insert_cdr([{"calldate": T0, "uniqueid": "1330592400.5", "src": "100"}])
    source = Source(pbx_db.admin_url, use_cel="false")
    assert not source.schema.has_linkedid
    rows = source.cdr_for_linkedids(["1330592400.5"])
    assert [(r.uniqueid, r.linkedid, r.sequence) for r in rows] == [("1330592400.5", "1330592400.5",
                                                                      0)]
    source.close()


def test_errors_are_one_line_without_password(pbx_db):
    bad = pbx_db.ro_url.replace("@127.0.0.1", "x@127.0.0.1")  # wrong password
    password = pbx_db.ro_url.split(":")[2].split("@")[0]
    source = Source(bad)
    with pytest.raises(SourceError) as info:
        source.max_cel_id()
    message = str(info.value)
    assert "\n" not in message and password not in message and "denied" in message
    with pytest.raises(SourceError):
        Source("nosuchdriver://u:secret@h/db")


def test_corpus_dump_reads_cleanly(pbx_db):
    pbx_db.load_dump(CORPUS)
    source = Source(pbx_db.ro_url)
    assert source.schema.cel_mode
    ended = source.ended_linkedids(0, 1000)
    assert len(ended) >= 28
    rows = list(source.cdr_window(datetime(2026, 11, 26)))
    assert rows and all(r.calldate is not None and r.linkedid for r in rows)
    source.close()


def test_odd_values_are_decoded_and_logged_on_the_way(sqlite_pbx, caplog):
    # SQLite keeps what it is given: bytes in a text column, text in an integer one.
    sqlite_pbx.insert_cdr([
        {"calldate": T0, "uniqueid": "1.1", "linkedid": "", "src": "100  ", "duration": "abc",
         "clid": '"Иван" <100>'.encode("cp1251")},
        {"calldate": T0 + timedelta(seconds=1), "uniqueid": "1.2", "linkedid": "1.1",
         "duration": 7},
    ])
    sqlite_pbx.insert_cel([
        {"eventtype": "CHAN_START", "eventtime": T0, "uniqueid": "1.1", "linkedid": "1.1",
         "extra": b"caf\xc3\xa9"},
        {"eventtype": "HANGUP", "eventtime": "0000-00-00 00:00:00", "uniqueid": "1.1",
         "linkedid": "1.1"},
    ])
    source = Source(sqlite_pbx.ro_url)
    try:
        with caplog.at_level("DEBUG", logger="cdrsync.source"):
            rows = list(source.cdr_window(T0))
            events = list(source.cel_range(0, 10, 10))
        assert [(r.uniqueid, r.linkedid, r.src, r.duration, r.clid) for r in rows] == [
            ("1.1", "1.1", "100", 0, '"Иван" <100>'), ("1.2", "1.1", "", 7, "")]
        assert [(e.eventtype, e.eventtime, e.extra) for e in events] == [
            ("CHAN_START", T0, "café"), ("HANGUP", None, "")]
        logged = [r.getMessage() for r in caplog.records]
        assert any("cdr.duration 'abc' is not a number" in m for m in logged)
        assert any("cel.eventtime is a zero date" in m for m in logged)
    finally:
        source.close()


@pytest.mark.parametrize("text", [
    "2024-03-01 10:00:05", "2024-03-01 10:00:05.25", "2024-03-01 10:00:05.123456",
    "2024-03-01 10:00:05.1234", "0000-00-00 00:00:00", "2024-02-31 10:00:00", "2024-03-01 24:00:00",
])
def test_fast_mysql_datetime_reads_as_pymysql_does(text):
    assert mysql_datetime(text) == convert_datetime(text)
    assert type(mysql_datetime(text)) is type(convert_datetime(text))


def test_pymysql_source_reads_datetimes_with_the_fast_converter(pbx_db):
    source = Source(pbx_db.ro_url)
    try:
        with source.engine.connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT CAST('2024-03-01 10:00:05.25' AS DATETIME(6)), "
                "CAST('2024-03-01 10:00:05' AS DATETIME), TIMESTAMP('2024-03-01 10:00:06')"
            ).one()
            decoders = conn.connection.dbapi_connection.decoders
        assert tuple(got) == (datetime(2024, 3, 1, 10, 0, 5, 250000), T0.replace(second=5),
                              T0.replace(second=6))
        assert {decoders[t] for t in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP)} == {
            mysql_datetime}
    finally:
        source.close()
