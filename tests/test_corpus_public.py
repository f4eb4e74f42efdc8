"""Real published rows (../shared/corpus-public): every call is read and rebuilt without an error,
and a chosen set is pinned with the reasoning a person reading the rows would give.

The sites' clocks are unknown; UTC is used (times do not matter for these pins).
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import PbxConfig
from cdrsync.interpret import interpret
from cdrsync.model import Call, CallRows
from tests.corpus import PUBLIC, calls_of, load_csv, load_sql

UTC = ZoneInfo("UTC")
SOURCES = {
    "oscar": lambda: load_sql(PUBLIC / "freepbx-oscar6262-2024/asteriskcdrdb_cdr_cel.sql"),
    "mango": lambda: load_sql(PUBLIC / "freepbx-mango-nextor-2013/asteriskcdrdb.sql"),
    "malaria": lambda: load_sql(PUBLIC / "asterisk-malariapbx-2023/baseAsterisk_cdr_queue_log.sql"),
    "g9": lambda: ([row for name in ("cdr.csv", "cdr__1504542198ucoip.g9telecom.pt.csv")
                    for row in load_csv(PUBLIC / "freepbx-g9telecom-2017" / name)], []),
    "kely": lambda: (load_csv(PUBLIC / "asterisk-kelysaina-cdrcustom-2023/Master.csv"), []),
}
# Oscar's lab names its softphone after its number (PJSIP/6871322562) and its trunk TRUNK200: the
# default "a device that is not an extension number is a trunk" guesses wrong, the setting fixes it.
OSCAR = PbxConfig(trunk_channels=("^PJSIP/TRUNK",))
DEFAULT = PbxConfig()


@cache
def calls(source: str) -> dict[str, CallRows]:
    cdr, cel = SOURCES[source]()
    return {c.callid: c for c in calls_of(cdr, cel)}


def call(source: str, callid: str, pbx: PbxConfig = DEFAULT) -> Call:
    return interpret(calls(source)[callid], pbx, UTC)


@pytest.mark.parametrize("source", SOURCES)
def test_every_call_is_rebuilt(source):
    rebuilt = [interpret(rows, PbxConfig(), UTC) for rows in calls(source).values()]
    assert len(rebuilt) >= 14
    for got in rebuilt:
        assert got.reasons[0].startswith("direction ") and got.status.value
        assert got.duration >= 0 and (got.answered_by == "") == (got.final_ext == "")


def test_counts_and_odd_rows():
    # 574 cdr rows, some hand-inserted junk dated 1000-01-01 without any uniqueid: never in a
    # pass's calldate window, so they make no call; calls that exist only in cel (unanswered
    # rows dropped by cdr.conf unanswered=no) do make calls.
    cdr, cel = SOURCES["oscar"]()
    junk = [r for r in cdr if r.calldate is None]
    assert junk and all(not r.uniqueid for r in junk)
    only_cel = [c for c in calls("oscar").values() if c.cel and not c.cdr]
    assert only_cel
    # Asterisk 1.8: no linkedid, so one call per uniqueid, except that the `;2` half of a Local
    # channel (queue members, ring groups to mobiles) joins the row that dialled its `;1` half:
    # 2,619 uniqueids make 2,268 calls (the rest are ;2 rows whose dialling row was never written)
    assert len(calls("mango")) == 2268


def test_oscar_unrouted_did_is_a_missed_call_with_nobody_rung():
    # TRUNK200 -> DID 687132562, no inbound route: FreePBX's catch-all answers and SayAlpha()s
    # the DID (cdr: ANSWERED, empty dstchannel, 11 s). A machine answered, nobody was called.
    got = call("oscar", "1713137064.8", OSCAR)
    assert (got.direction.value, got.status.value) == ("inbound", "Missed")
    assert (got.did, got.ext, got.rung, got.duration) == ("687132562", "", (), 0)


def test_oscar_forward_to_an_outside_number_is_an_outbound_success():
    # The softphone 6871322562 dials 777, which the dialplan sends through
    # Local/612345678@from-internal to TRUNK200; the far end answers and talks 5 s.
    got = call("oscar", "1713141280.32", OSCAR)
    assert (got.direction.value, got.status.value) == ("outbound", "Success")
    assert (got.phone_raw, got.ext, got.duration) == ("612345678", "6871322562", 5)


def test_oscar_same_call_with_default_settings_is_outbound_too():
    # Without [pbx] trunk_channels the call's own rows teach cdrsync that PJSIP/6871322562
    # began it in from-internal (a phone) and that TRUNK200 was dialled with a number (a trunk).
    got = call("oscar", "1713141280.32")
    assert (got.direction.value, got.ext) == ("outbound", "6871322562")


def test_oscar_cancelled_outbound_attempt():
    # 6871322562 dials 101 through TRUNK200 and hangs up after 3 s: HANGUP dialstatus CANCEL.
    got = call("oscar", "1713136978.4", OSCAR)
    assert (got.direction.value, got.status.value, got.phone_raw) == ("outbound", "NoAnswer", "101")


def test_oscar_call_known_only_from_cel():
    # Four cel events, no cdr row (unanswered=no dropped it): the softphone dialled 201, which
    # was unreachable (hangupcause 34) - an internal call to 201 that nobody could take.
    rows = calls("oscar")["1713136961.2"]
    assert not rows.cdr
    got = call("oscar", "1713136961.2", OSCAR)
    assert (got.direction.value, got.status.value, got.ext) == ("internal", "Missed", "201")
    assert got.start is not None and got.answered_by == "" and got.phone == ""


def test_malaria_queue_agent_answers():
    # Plain Asterisk, queue "Support" with the device PJSIP/400 as member: the ANSWERED row names
    # the device, so 400 talked (13 s). Internal: 200 is a phone.
    got = call("malaria", "1675555752.0")
    assert (got.direction.value, got.status.value, got.ext) == ("internal", "Success", "400")
    assert (got.queue, got.duration, got.path) == ("Support", 13, ("queue Support", "400"))


def test_malaria_outbound_no_answer():
    got = call("malaria", "1677016558.1")
    assert (got.direction.value, got.status.value) == ("outbound", "NoAnswer")
    assert (got.phone_raw, got.ext) == ("08064351467", "400")


def test_g9_refused_outside_number_is_not_allowed():
    # SIP/105 dials 924109099; FreePBX has no route, plays Congestion (FAILED), no trunk is used.
    got = call("g9", "1504282325.10")
    assert (got.direction.value, got.status.value, got.ext) == ("outbound", "NotAllowed", "105")


def test_mango_asterisk_18_queue_answered_by_agent():
    # FreePBX 2.8: one row, trunk SIP/mambo -> queue 1003 -> device SIP/4660 ANSWERED. CDR-only
    # caveat: the row starts when the queue answered, so the 21 s include the wait in the queue.
    got = call("mango", "1374541626.35")
    assert (got.direction.value, got.status.value, got.ext) == ("inbound", "Success", "4660")
    assert (got.queue, got.phone_raw, got.duration) == ("1003", "5554225500", 21)


def test_mango_queue_abandon_is_missed():
    # The queue answered the trunk (ANSWERED, empty dstchannel, 13 s); no agent row at all.
    got = call("mango", "1374534187.23")
    assert (got.status.value, got.ext, got.queue) == ("Missed", "", "1002")


def test_kelysaina_named_phones_need_the_extension_pattern():
    # Phones called client1/client2 (cdr_custom CSV): with an extension pattern naming them the
    # calls are internal; client1 -> client2 answered, 13 s.
    pbx = PbxConfig(extension_pattern=r"^client\d+$")
    got = call("kely", "1690325492.2", pbx)
    assert (got.direction.value, got.status.value, got.ext, got.duration) == (
        "internal", "Success", "client2", 13)
    missed = call("kely", "1690325531.5", pbx)
    assert (missed.status.value, missed.ext) == ("Missed", "client1")
