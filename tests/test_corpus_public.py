"""Real published rows (../shared/corpus-public): every call is read and rebuilt without an error,
and a chosen set is pinned with the reasoning a person reading the rows would give.

The sites' clocks are unknown; UTC is used (times do not matter for these pins).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import PbxConfig
from cdrsync.interpret import interpret
from cdrsync.model import Call, CallRows
from cdrsync.pbx import PbxModel, learn
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
DEFAULT = PbxConfig()


@cache
def calls(source: str) -> dict[str, CallRows]:
    cdr, cel = SOURCES[source]()
    return {c.callid: c for c in calls_of(cdr, cel)}


@cache
def model(source: str) -> PbxModel:
    """What cdrsync learns from all the sample's rows, as the running product would."""
    return learn(*SOURCES[source]())


def call(source: str, callid: str, pbx: PbxConfig = DEFAULT) -> Call:
    return interpret(calls(source)[callid], pbx, UTC, model(source))


# Every call of each sample as cdrsync tells it, counted by (direction, status), with how many
# carry an outside `phone` and how many say a device was guessed (a device the model never saw:
# mango's and malaria's single-call devices). Pinned so that a change in any call's reading
# shows here; the pins below say why single calls are what they are.
TOLD = {
    "oscar": (397, {("inbound", "Missed"): 122, ("inbound", "Success"): 34,
                    ("internal", "Missed"): 148, ("internal", "Success"): 7,
                    ("outbound", "NoAnswer"): 9, ("outbound", "NotAllowed"): 1,
                    ("outbound", "Success"): 76}, 242, 0),
    "mango": (2268, {("inbound", "Missed"): 271, ("inbound", "Success"): 249,
                     ("internal", "Missed"): 435, ("internal", "Success"): 366,
                     ("outbound", "Busy"): 20, ("outbound", "NoAnswer"): 269,
                     ("outbound", "NotAllowed"): 5, ("outbound", "NotAvailable"): 62,
                     ("outbound", "Success"): 591}, 1445, 24),
    "malaria": (19, {("internal", "Missed"): 11, ("internal", "Success"): 6,
                     ("outbound", "NoAnswer"): 2}, 2, 11),
    # g9's two files hold internal calls and refused dialling only (its trunk rows were not
    # published); kely's endpoints only call each other
    "g9": (803, {("internal", "Missed"): 384, ("internal", "Success"): 403,
                 ("outbound", "NotAllowed"): 16}, 16, 0),
    "kely": (14, {("internal", "Missed"): 3, ("internal", "Success"): 11}, 0, 0),
}


@pytest.mark.parametrize("source", SOURCES)
def test_every_call_is_rebuilt_and_told_as_pinned(source):
    """Every call comes out (no error); the calls by direction and status, those with an outside
    phone (ASCII digits, E.164 or the digits of a short number; never on an internal call) and
    those that say something was guessed are exactly as pinned."""
    rebuilt = [interpret(rows, DEFAULT, UTC, model(source)) for rows in calls(source).values()]
    by_status = Counter((c.direction.value, c.status.value) for c in rebuilt)
    phones = [c.phone for c in rebuilt if c.phone]
    guessed = [c for c in rebuilt if any("guessed" in r for r in c.reasons)]
    assert (len(rebuilt), dict(by_status), len(phones), len(guessed)) == TOLD[source]
    assert all(re.fullmatch(r"\+?[0-9]+", p) for p in phones), phones
    assert not [c.callid for c in rebuilt if c.direction.value == "internal" and c.phone]


def test_counts_and_odd_rows():
    # 574 cdr rows, some hand-inserted junk dated 1000-01-01 without any uniqueid: never in a
    # pass's calldate window, so they make no call; calls that exist only in cel (unanswered
    # rows dropped by cdr.conf unanswered=no) do make calls.
    cdr, cel = SOURCES["oscar"]()
    junk = [r for r in cdr if r.calldate is None]
    assert (len(cdr), len(junk)) == (574, 38) and all(not r.uniqueid for r in junk)
    only_cel = [c for c in calls("oscar").values() if c.cel and not c.cdr]
    assert len(only_cel) == 26
    # Asterisk 1.8: no linkedid, so one call per uniqueid, except that the `;2` half of a Local
    # channel (queue members, ring groups to mobiles) joins the row that dialled its `;1` half:
    # 2,619 uniqueids make 2,268 calls (the rest are ;2 rows whose dialling row was never written)
    assert len(calls("mango")) == 2268


def test_oscar_unrouted_did_is_a_missed_call_with_nobody_rung():
    # TRUNK200 -> DID 687132562, no inbound route: FreePBX's catch-all answers and SayAlpha()s
    # the DID (cdr: ANSWERED, empty dstchannel, 11 s). A machine answered, nobody was called.
    got = call("oscar", "1713137064.8")
    assert (got.direction.value, got.status.value) == ("inbound", "Missed")
    assert (got.did, got.ext, got.rung, got.duration) == ("687132562", "", (), 0)


def test_oscar_ten_digit_extension_calls_out():
    # The softphone PJSIP/6871322562 (extension 6871322562: FreePBX lets an office use its DIDs
    # as extensions) dials 777, which the dialplan sends through Local/612345678@from-internal
    # to TRUNK200; the far end answers and talks 5 s. Learned, with no setting: 6871322562
    # began 186 calls in from-internal (a phone), TRUNK200 entered calls on from-pstn and was
    # dialled with numbers (a trunk). Before, the 10-digit name read as a trunk: "inbound".
    got = call("oscar", "1713141280.32")
    assert (got.direction.value, got.status.value) == ("outbound", "Success")
    assert (got.phone_raw, got.ext, got.duration) == ("612345678", "6871322562", 5)
    assert "PJSIP/6871322562 is phone 6871322562: learned (186 calls begun in from-internal" \
        in "\n".join(got.reasons)


def test_oscar_ten_digit_extension_is_rung_by_an_inbound_call():
    # TRUNK200 brings 0123456789 in; FreePBX rings PJSIP/6871322562, which does not answer:
    # a missed inbound call of extension 6871322562 (before: an empty ext, nobody notified).
    got = call("oscar", "1713137092.9")
    assert (got.direction.value, got.status.value) == ("inbound", "Missed")
    assert (got.ext, got.rung) == ("6871322562", ("6871322562",))


def test_oscar_call_to_a_follow_me_extension_is_internal():
    # 6871322562 dials 6871322563, a virtual extension whose follow-me (followme-check, Dial of
    # VIRTUAL/6871322563) ends in ivr-4: an internal call, not an outbound one refused. The
    # model knows 6871322563 as an extension from the followme-check rows that dialled it.
    got = call("oscar", "1713229679.6")
    assert got.direction.value == "internal" and got.phone == ""


def test_oscar_cancelled_outbound_attempt():
    # 6871322562 dials 101 through TRUNK200 and hangs up after 3 s: HANGUP dialstatus CANCEL.
    got = call("oscar", "1713136978.4")
    assert (got.direction.value, got.status.value, got.phone_raw) == ("outbound", "NoAnswer", "101")


def test_oscar_call_known_only_from_cel():
    # Four cel events, no cdr row (unanswered=no dropped it): the softphone dialled 201, which
    # was unreachable (hangupcause 34) - an internal call to 201 that nobody could take.
    rows = calls("oscar")["1713136961.2"]
    assert not rows.cdr
    got = call("oscar", "1713136961.2")
    assert (got.direction.value, got.status.value, got.ext) == ("internal", "Missed", "201")
    assert got.start is not None and got.answered_by == "" and got.phone == ""


def test_malaria_queue_agent_answers():
    # Plain Asterisk, queue "Support" with the device PJSIP/400 as member: the ANSWERED row names
    # the device, so 400 talked (13 s). Internal: 200 is a phone.
    got = call("malaria", "1675555752.0")  # a phone called the queue: internal
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


def test_kelysaina_named_endpoints_are_phones_of_their_numbers():
    # Plain Asterisk, cdr_custom CSV, context `default`, no FreePBX columns: client1 dials 6789
    # and PJSIP/client2 answers; client2 dials 1234 and PJSIP/client1 answers. The dial string
    # names the endpoint (Dial(PJSIP/client2)), so client2 is the phone of 6789 and client1 of
    # 1234: calls between them are internal (before: inbound from the "phone number" client1).
    got = call("kely", "1690325492.2")
    assert (got.direction.value, got.status.value, got.ext, got.duration) == (
        "internal", "Success", "6789", 13)
    assert (got.phone, got.phone_raw) == ("", "1234")
    missed = call("kely", "1690325531.5")
    assert (missed.direction.value, missed.status.value, missed.ext) == (
        "internal", "Missed", "1234")
    assert all(c.direction.value == "internal" for c in map(
        lambda cid: call("kely", cid), calls("kely")))


def test_kelysaina_single_call_without_the_model_is_never_an_outside_phone():
    # One call alone cannot tell that client1 is a phone (only client2 was dialled in it): the
    # device is guessed a trunk, but a caller id that is no number is never sent as a phone.
    got = interpret(calls("kely")["1690325492.2"], DEFAULT, UTC)
    assert got.phone == "" and got.ext == "6789"
