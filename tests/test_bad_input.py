"""Bad input, property-based: whatever a PBX database holds, cdrsync decodes, groups and interprets
it without crashing, and the good calls among the junk still come out right.

What production has shown to hold: NULLs in NOT NULL columns (hand-made tables, ODBC), zero dates,
negative or absurd durations, cp1251 / invalid UTF-8 bytes in caller names, the same row logged
twice (two CDR back-ends), an empty linkedid, rows read out of order, CEL that lost events (a CEL
reload mid-call), recordingfile values pointing outside the monitor directory.

The last test runs the real `cdrsync sync` over such a database and checks what Planfix received.
"""

from __future__ import annotations

import os
import random
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrsync.config import PbxConfig, RecordingsConfig
from cdrsync.grouping import group_calls
from cdrsync.interpret import interpret
from cdrsync.model import Call, CdrRow, CelEvent, Direction, Status
from cdrsync.recordings.resolve import find_recording
from cdrsync.source.rows import CDR_FIELDS, CEL_FIELDS, cdr_row, cel_event
from tests import synth
from tests.e2e import cdrsync, make_config
from tests.planfix_stub import planfix  # noqa: F401 - the fixture

PBX = PbxConfig()
UTC = ZoneInfo("UTC")
START = datetime(2026, 2, 2, 9, 0)
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- strategies: what a column may hold ---------------------------------------------------------
_DATES = st.one_of(
    st.none(), st.just("0000-00-00 00:00:00"), st.just(b"0000-00-00 00:00:00"),
    st.just("1000-01-01 00:00:00"), st.datetimes(min_value=datetime(1, 1, 1)),
    st.dates(), st.text(max_size=25), st.binary(max_size=25), st.integers(), st.floats(),
)
_INTS = st.one_of(
    st.none(), st.integers(min_value=-(2**63), max_value=2**63), st.text(max_size=12),
    st.binary(max_size=12), st.floats(), st.just("inf"), st.just("1e400"), st.just(" 12 "),
    st.booleans(),
)
_TEXT = st.one_of(
    st.none(), st.text(max_size=40), st.binary(max_size=40),
    st.just("\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd".encode("latin-1")),  # UTF-8 bytes
    st.just("Иван Петров".encode("cp1251")), st.just(b"\xff\xfe\x00bad"),
    st.integers(), st.just("../../../../etc/passwd"),
)
_ID_TEXT = st.one_of(st.just(""), st.none(), st.text(alphabet="0123456789.-abc", max_size=16))


def _raw(fields: tuple[str, ...], ints: set[str], dates: set[str]):
    def column(name: str):
        if name in dates:
            return _DATES
        if name in ints:
            return _INTS
        if name in ("uniqueid", "linkedid"):
            return _ID_TEXT
        return _TEXT

    return st.fixed_dictionaries({}, optional={name: column(name) for name in fields})


RAW_CDR = _raw(CDR_FIELDS, {"duration", "billsec", "sequence"}, {"calldate"})
RAW_CEL = _raw(CEL_FIELDS, {"id"}, {"eventtime"})
EVENT_TYPES = ("CHAN_START", "ANSWER", "BRIDGE_ENTER", "BRIDGE_EXIT", "HANGUP", "CHAN_END",
               "LINKEDID_END", "BLINDTRANSFER", "ATTENDEDTRANSFER", "PICKUP", "LOCAL_OPTIMIZE",
               "APP_START", "")
RAW_CEL_TYPED = st.tuples(RAW_CEL, st.sampled_from(EVENT_TYPES), st.text(max_size=60)).map(
    lambda t: {**t[0], "eventtype": t[1], "extra": t[0].get("extra", t[2])})


def _decode_all(raw_cdr, raw_cel, first_id: int = 1_000_000):
    problems: list[str] = []
    cdr = [cdr_row(r, problems) for r in raw_cdr]
    cel = [cel_event({**r, "id": first_id + i}, problems) for i, r in enumerate(raw_cel)]
    return cdr, cel, problems


def _good_rows(calls: list[synth.SynthCall]):
    cdr = [cdr_row(r) for c in calls for r in c.cdr]
    events = [e for c in calls for e in c.cel]
    cel = [cel_event({**e, "id": i + 1}) for i, e in enumerate(events)]
    return cdr, cel


def _interpret_or_documented_error(rows) -> Call | None:
    """interpret() may refuse a group with ValueError (documented: nothing usable); nothing else."""
    try:
        return interpret(rows, PBX, UTC)
    except ValueError:
        return None


def _agrees(call: Call, truth: synth.Truth) -> bool:
    answered = call.answered_by if truth.direction != "outbound" else ""
    want = truth.answered if truth.direction != "outbound" else ""
    return (call.direction.value, call.status.value, answered) == (truth.direction, truth.status,
                                                                   want)


# ---- decoding -----------------------------------------------------------------------------------
@FAST
@given(RAW_CDR)
def test_any_cdr_row_decodes_to_plain_values(raw):
    problems: list[str] = []
    row = cdr_row(raw, problems)
    assert isinstance(row, CdrRow)
    for name in CDR_FIELDS:
        value = getattr(row, name)
        if name == "calldate":
            assert value is None or (isinstance(value, datetime) and value.tzinfo is None)
        elif name in ("duration", "billsec", "sequence"):
            assert type(value) is int
        else:
            assert isinstance(value, str)
    assert all(isinstance(p, str) and "\n" not in p for p in problems)


@FAST
@given(RAW_CEL)
def test_any_cel_row_decodes_to_plain_values(raw):
    event = cel_event(raw, [])
    assert isinstance(event, CelEvent)
    assert type(event.id) is int
    assert event.eventtime is None or event.eventtime.tzinfo is None
    assert all(isinstance(getattr(event, n), str) for n in CEL_FIELDS if n not in ("id",
                                                                                  "eventtime"))


def test_non_utf8_caller_names_are_read_not_dropped():
    row = cdr_row({"clid": '"Иван" <100>'.encode("cp1251"), "cnam": b"\xff\xfeX",
                   "calldate": "2026-01-01 10:00:00", "uniqueid": "1767261600.1"})
    assert "Иван" in row.clid and row.cnam.endswith("X")


# ---- grouping + interpretation ------------------------------------------------------------------
@FAST
@given(st.lists(RAW_CDR, max_size=12), st.lists(RAW_CEL_TYPED, max_size=12),
       st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_junk_never_crashes_and_good_calls_still_come_out(raw_cdr, raw_cel, seed, rnd):
    good = list(synth.generate(6, START, seed=seed))
    good_cdr, good_cel = _good_rows(good)
    junk_cdr, junk_cel, _ = _decode_all(raw_cdr, raw_cel)
    cdr, cel = good_cdr + junk_cdr, good_cel + junk_cel
    rnd.shuffle(cdr)
    rnd.shuffle(cel)
    groups = group_calls(cdr, cel)
    by_id = {g.callid: g for g in groups}
    for group in groups:
        _interpret_or_documented_error(group)
    junk_ids = {r.linkedid for r in junk_cdr} | {r.uniqueid for r in junk_cdr} | \
        {e.linkedid for e in junk_cel} | {e.uniqueid for e in junk_cel}
    for call in good:
        ids = {r["uniqueid"] for r in call.cdr} | {e["uniqueid"] for e in call.cel} | \
            {call.truth.linkedid}
        if ids & junk_ids:
            continue  # the junk claims a channel of this call: covered by the next test
        assert call.truth.linkedid in by_id, call.truth
        got = interpret(by_id[call.truth.linkedid], PBX, UTC)
        assert _agrees(got, call.truth), (call.truth, got)


@FAST
@given(st.integers(0, 10_000), st.data())
def test_duplicated_and_damaged_rows_of_a_call_do_not_crash_or_split_it(seed, data):
    """The same rows twice (two CDR back-ends), copies with a field damaged, an empty linkedid."""
    [call] = list(synth.generate(1, START, seed=seed))
    cdr, cel = _good_rows([call])
    extra_cdr = [cdr_row({**r, **data.draw(st.fixed_dictionaries(
        {}, optional={"duration": _INTS, "billsec": _INTS, "calldate": _DATES,
                      "linkedid": st.just(""), "dstchannel": _TEXT, "disposition": _TEXT})),
                 "uniqueid": r["uniqueid"]}) for r in call.cdr]
    dup_cel = [cel_event({**e, "id": 500 + i}) for i, e in
               enumerate(call.cel[:data.draw(st.integers(0, len(call.cel)))])]
    groups = group_calls(cdr + cdr + extra_cdr, cel + dup_cel)
    for group in groups:
        _interpret_or_documented_error(group)
    assert call.truth.linkedid in {g.callid for g in groups}


@FAST
@given(st.integers(0, 10_000), st.sets(st.sampled_from(EVENT_TYPES[:-1]), max_size=4))
def test_cel_with_lost_events_still_gives_a_call(seed, lost):
    """CEL reloaded mid-call: CHAN_START (or other events) missing."""
    [call] = list(synth.generate(1, START, seed=seed))
    cdr, cel = _good_rows([call])
    kept = [e for e in cel if e.eventtype not in (lost | {"CHAN_START"})]
    [group] = group_calls(cdr, kept)
    got = _interpret_or_documented_error(group)
    assert got is not None and got.callid == call.truth.linkedid
    assert got.direction.value == call.truth.direction


@FAST
@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_reading_order_changes_nothing(seed, rnd):
    calls = list(synth.generate(5, START, seed=seed))
    cdr, cel = _good_rows(calls)
    first = group_calls(cdr, cel)
    rnd.shuffle(cdr)
    rnd.shuffle(cel)
    again = group_calls(cdr, cel)
    assert first == again
    assert [interpret(g, PBX, UTC) for g in first] == [interpret(g, PBX, UTC) for g in again]


# ---- recordings ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def monitor(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("rec")
    root = base / "monitor"
    (root / "2026" / "02" / "02").mkdir(parents=True)
    (root / "2026" / "02" / "02" / "in-1-2-20260202-090000-1770022800.1.wav").write_bytes(
        b"RIFF" + b"\0" * 400)
    (base / "secret.wav").write_bytes(b"RIFF" + b"\0" * 400)
    os.symlink(base / "secret.wav", root / "2026" / "02" / "02" / "link-1770022800.9.wav")
    old = 1_600_000_000
    for path in root.rglob("*.wav"):
        os.utime(path, (old, old), follow_symlinks=False)
    return root


_TRAVERSAL = st.one_of(
    st.sampled_from(["../secret.wav", "../../secret.wav", "/etc/passwd", "2026/02/02/../../../../"
                     "secret.wav", "..\\secret.wav", "2026/02/02/link-1770022800.9.wav",
                     "%2e%2e/secret.wav", "\x00../secret.wav", "~/secret.wav"]),
    st.text(alphabet=string.ascii_letters + "./\\~%\x00", max_size=30),
)


@FAST
@given(st.lists(_TRAVERSAL, min_size=1, max_size=3))
def test_recordingfile_never_escapes_the_monitor_dir(monitor, candidates):
    call = Call(callid="1770022800.9", direction=Direction.INBOUND, status=Status.SUCCESS,
                start=datetime(2026, 2, 2, 9, 0, tzinfo=timezone.utc), end=None, phone="",
                phone_raw="", ext="101", duration=1, recording_candidates=tuple(candidates),
                uniqueids=("1770022800.9",))
    cfg = RecordingsConfig(dir=str(monitor), min_age=0)
    found = find_recording(call, cfg, UTC, now=2_000_000_000)
    if found.state == "ready":
        real = os.path.realpath(os.path.join(monitor, found.relpath))
        assert real.startswith(os.path.realpath(monitor) + os.sep), (candidates, found)
        assert "secret" not in found.relpath


# ---- the real pipeline --------------------------------------------------------------------------
def _junk_rows(now: datetime) -> tuple[list[dict], list[dict]]:
    """Rows that belong to no sensible call; each kind seen in the field."""
    base = {"clid": "junk", "src": "1", "dst": "2", "dcontext": "from-pstn",
            "channel": "PJSIP/x-1", "disposition": "ANSWERED"}
    cdr = [
        {**base, "calldate": "0000-00-00 00:00:00", "uniqueid": "junk.1", "linkedid": "",
         "duration": -5, "billsec": 99_999_999},
        {**base, "calldate": now - timedelta(minutes=50), "uniqueid": "", "linkedid": ""},
        {**base, "calldate": now - timedelta(minutes=49), "uniqueid": "1.2.3.4",
         "linkedid": "1.2.3.4", "duration": 2**31 - 1},
    ]
    cel = [
        {"eventtype": "LINKEDID_END", "eventtime": now - timedelta(minutes=48), "uniqueid": "",
         "linkedid": ""},
        {"eventtype": "LINKEDID_END", "eventtime": "0000-00-00 00:00:00", "uniqueid": "junk.7",
         "linkedid": "junk.7"},
        {"eventtype": "HANGUP", "eventtime": now - timedelta(minutes=47),
         "uniqueid": "1770000000.5", "linkedid": "1770000000.5", "extra": "{not json"},
        {"eventtype": "LINKEDID_END", "eventtime": now - timedelta(minutes=47),
         "uniqueid": "1770000000.5", "linkedid": "1770000000.5"},
    ]
    return cdr, cel


def test_real_sync_delivers_every_good_call_once_among_junk(pbx_db, planfix, tmp_path):  # noqa: F811
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    calls = list(synth.generate(40, now - timedelta(hours=2), seed=21, mean_gap=60))
    assert calls[-1].truth.end < now - timedelta(minutes=5)
    rnd = random.Random(21)
    damaged = rnd.sample(range(len(calls)), 4)
    # 1: caller name in cp1251 bytes in a binary column (old installs); 2: recordingfile escaping
    # the monitor dir; 3: every cdr row written twice; 4: CHAN_START events lost.
    pbx_db.execute("ALTER TABLE cdr MODIFY clid VARBINARY(80) NOT NULL DEFAULT '', "
                   "MODIFY cnam VARBINARY(80) NOT NULL DEFAULT ''")
    c1, c2, c3, c4 = (calls[i] for i in damaged)
    for row in c1.cdr:
        row["clid"] = f'"Иван Петров" <{row["src"]}>'.encode("cp1251")
        row["cnam"] = "Иван Петров".encode("cp1251") + b"\xff"
    for row in c2.cdr:
        row["recordingfile"] = "../../../../etc/passwd"
    c3.cdr.extend(dict(r) for r in list(c3.cdr))
    c4.cel[:] = [e for e in c4.cel if e["eventtype"] != "CHAN_START"]
    synth.insert(pbx_db.admin, calls)
    junk_cdr, junk_cel = _junk_rows(now)
    pbx_db.insert_cdr(junk_cdr)
    pbx_db.insert_cel(junk_cel)

    (tmp_path / "monitor").mkdir()
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix,
                      source={"lookback": 6 * 3600, "max_call": 6 * 3600})
    first = cdrsync(cfg, "sync")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    external = sorted(c.truth.linkedid for c in calls if c.truth.direction != "internal")
    received = planfix.callids("event")
    assert sorted(received) == external, first.stderr[-3000:]
    events = {r.callid: r.without_token() for r in planfix.received("event")}
    for call in calls:
        if call.truth.direction == "internal":
            continue
        got = events[call.truth.linkedid]
        assert got["status"] == call.truth.status, (call.truth, got)
    assert not events[c2.truth.linkedid].get("record_link")
    refused = [line for line in first.stderr.splitlines() if "passwd" in line]
    assert len(refused) == 1 and c2.truth.linkedid in refused[0], first.stderr
    # Each junk call is reported on one line (not once per row), and not again by the next pass.
    for marker in ("junk.7", "1770000000.5"):
        assert sum(marker in line for line in first.stderr.splitlines()) <= 1, first.stderr
    second = cdrsync(cfg, "sync")
    assert second.returncode == 0, second.stderr
    assert sorted(planfix.callids("event")) == external, "nothing is sent twice"
    for marker in ("junk.7", "1770000000.5", "passwd"):
        assert marker not in second.stderr, second.stderr

