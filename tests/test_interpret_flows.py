"""Call flows from realistic rows, one table per flow.

Rows are written as pipe tables (only the columns that matter). Where each shape comes from is
said per flow: "corpus" = the real Asterisk 20 rows of ../shared/corpus (same channel names,
contexts and event order), "FreePBX" = the dialplan FreePBX generates (core / ringgroups / queues /
findmefollow, as summarised in call-reconstruction-notes §2c), "public" = ../shared/corpus-public.
Row tables are kept one row per line, so they may be wider than code lines.
"""
# ruff: noqa: E501

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdrsync.config import PbxConfig
from cdrsync.grouping import group_calls
from cdrsync.interpret import interpret
from cdrsync.model import CallRows, CdrRow, CelEvent

UTC = ZoneInfo("UTC")
PBX = PbxConfig()
DAY = "2026-11-26"


def _table(text: str) -> list[dict[str, str]]:
    lines = [ln.strip().strip("|") for ln in text.strip().splitlines() if ln.strip()]
    head = [h.strip() for h in lines[0].split("|")]
    return [dict(zip(head, (c.strip() for c in ln.split("|")))) for ln in lines[1:]]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text if "T" in text else f"{DAY}T{text}")


def cdr(text: str) -> tuple[CdrRow, ...]:
    """Columns: time, channel, dstchannel, disposition, duration, billsec, plus any CdrRow field;
    uniqueid defaults to the channel's, linkedid to the first row's uniqueid."""
    rows = []
    for i, r in enumerate(_table(text)):
        stamp = _when(r.pop("time"))
        ints = {k: int(r.pop(k)) for k in ("duration", "billsec") if k in r}
        r.setdefault("uniqueid", f"{int(stamp.replace(tzinfo=timezone.utc).timestamp())}.{i}")
        rows.append(CdrRow(calldate=stamp, sequence=i, **ints, **r))
    lid = rows[0].linkedid or rows[0].uniqueid
    return tuple(r._replace(linkedid=r.linkedid or lid) for r in rows)


def cel(text: str, linkedid: str = "") -> tuple[CelEvent, ...]:
    """Columns: type, time, chan, uid (+ context, exten, cid, app, data, bridge, extra...);
    `bridge` fills extra with a bridge_id ("hold:x" = a holding bridge), `status` a HANGUP's
    dialstatus, `cause` its hangupcause. Ids follow the table order."""
    events = []
    for i, r in enumerate(_table(text), 1):
        extra = r.pop("extra", "")
        bridge, status, cause = r.pop("bridge", ""), r.pop("status", ""), r.pop("cause", "16")
        if bridge:
            tech = "holding_bridge" if bridge.startswith("hold:") else "simple_bridge"
            extra = f'{{"bridge_id":"{bridge}","bridge_technology":"{tech}"}}'
        if r["type"] == "HANGUP":
            extra = f'{{"hangupcause":{cause},"hangupsource":"","dialstatus":"{status}"}}'
        events.append(CelEvent(
            id=i, eventtype=r.pop("type"), eventtime=_when(r.pop("time")),
            channame=r.pop("chan"), uniqueid=r["uid"], linkedid=r.pop("lid", "") or linkedid,
            context=r.pop("context", ""), exten=r.pop("exten", ""), cid_num=r.pop("cid", ""),
            appname=r.pop("app", ""), appdata=r.pop("data", ""), peer=r.pop("peer", ""),
            userdeftype=r.pop("userdeftype", ""), extra=extra))
        r.pop("uid")
        assert not r, f"unknown columns {r}"
    return tuple(events)


def run(cdr_rows=(), cel_rows=(), pbx: PbxConfig = PBX, zone: ZoneInfo = UTC):
    calls = group_calls(cdr_rows, cel_rows)
    assert len(calls) == 1, [c.callid for c in calls]
    return interpret(calls[0], pbx, zone)


def summary(call) -> tuple:
    return (call.direction.value, call.status.value, call.ext, call.duration)


# --- inbound to one extension (corpus s01..s03 shapes; CHANUNAVAIL from FreePBX macro-dial-one)

def test_inbound_unavailable_phone_is_missed_for_that_extension():
    rows = cdr("""
    | time     | channel         | dstchannel      | disposition | duration | billsec | src         | dst | dcontext        | did     | lastapp |
    | 10:00:00 | PJSIP/carrier-1 | PJSIP/101-2     | FAILED      | 0        | 0       | 89161234567 | 101 | from-did-direct | 5551000 | Dial    |
    | 10:00:00 | PJSIP/carrier-1 |                 | ANSWERED    | 9        | 9       | 89161234567 | 101 | from-did-direct | 5551000 | VoiceMail |
    """)
    call = run(rows, pbx=PbxConfig(default_country="RU"))
    assert summary(call) == ("inbound", "Missed", "101", 0)
    assert (call.phone, call.phone_raw, call.did) == ("+79161234567", "89161234567", "5551000")
    assert call.legs[0].outcome == "FAILED"


def test_inbound_caller_hangs_up_while_ringing():
    # corpus s02b, CEL: the phone rings, the caller's HANGUP says CANCEL.
    events = cel("""
    | type       | time     | chan            | uid   | context       | exten   | cid         | status |
    | CHAN_START | 10:00:00 | PJSIP/carrier-1 | 100.1 | from-pstn     | 5551006 | 89161234567 |        |
    | CHAN_START | 10:00:00 | PJSIP/105-2     | 100.2 | from-internal | s       | 105         |        |
    | HANGUP     | 10:00:20 | PJSIP/105-2     | 100.2 |               |         |             |        |
    | HANGUP     | 10:00:20 | PJSIP/carrier-1 | 100.1 |               |         |             | CANCEL |
    | CHAN_END   | 10:00:20 | PJSIP/carrier-1 | 100.1 |               |         |             |        |
    """, linkedid="100.1")
    call = run(cel_rows=events)
    assert summary(call) == ("inbound", "Missed", "105", 0)
    assert call.did == "5551006" and call.rung == ("105",)


# --- ring groups (FreePBX ringgroups: dialparties.agi; one row per member dialled)

HUNT = """
| time     | channel         | dstchannel  | disposition | duration | billsec | src        | dst | dcontext  | did     | lastapp |
| 10:00:00 | PJSIP/carrier-1 | PJSIP/101-2 | NO ANSWER   | 15       | 0       | 4951234567 | 600 | ext-group | 5551002 | Dial    |
| 10:00:15 | PJSIP/carrier-1 | PJSIP/102-3 | NO ANSWER   | 15       | 0       | 4951234567 | 600 | ext-group | 5551002 | Dial    |
| 10:00:30 | PJSIP/carrier-1 | PJSIP/103-4 | ANSWERED    | 70       | 60      | 4951234567 | 600 | ext-group | 5551002 | Dial    |
"""
MEMORY_HUNT = """
| time     | channel         | dstchannel  | disposition | duration | billsec | src        | dst | dcontext  | did     |
| 10:00:00 | PJSIP/carrier-1 | PJSIP/101-2 | NO ANSWER   | 10       | 0       | 4951234567 | 600 | ext-group | 5551002 |
| 10:00:10 | PJSIP/carrier-1 | PJSIP/101-3 | NO ANSWER   | 10       | 0       | 4951234567 | 600 | ext-group | 5551002 |
| 10:00:10 | PJSIP/carrier-1 | PJSIP/102-4 | NO ANSWER   | 10       | 0       | 4951234567 | 600 | ext-group | 5551002 |
| 10:00:20 | PJSIP/carrier-1 | PJSIP/101-5 | NO ANSWER   | 4        | 0       | 4951234567 | 600 | ext-group | 5551002 |
| 10:00:20 | PJSIP/carrier-1 | PJSIP/102-6 | ANSWERED    | 34       | 30      | 4951234567 | 600 | ext-group | 5551002 |
| 10:00:20 | PJSIP/carrier-1 | PJSIP/103-7 | NO ANSWER   | 4        | 0       | 4951234567 | 600 | ext-group | 5551002 |
"""
# confirm-calls to an outside mobile: the member is Local/RG-600*-<number>#, dialled on the trunk
CONFIRM_MOBILE = """
| time     | channel                                     | dstchannel                                  | disposition | duration | billsec | src        | dst         | dcontext      | did     |
| 10:00:00 | PJSIP/carrier-1                             | PJSIP/101-2                                 | NO ANSWER   | 8        | 0       | 4951234567 | 600         | ext-group     | 5551002 |
| 10:00:00 | PJSIP/carrier-1                             | Local/RG-600*-89161112233#@from-internal-00a1;1 | ANSWERED | 48      | 40      | 4951234567 | 600         | ext-group     | 5551002 |
| 10:00:00 | Local/RG-600*-89161112233#@from-internal-00a1;2 | PJSIP/carrier-3                         | ANSWERED    | 48       | 40      | 4951234567 | 89161112233 | from-internal |         |
"""


@pytest.mark.parametrize("table, expected, rung", [
    (HUNT, ("inbound", "Success", "103", 60), ("101", "102", "103")),
    (MEMORY_HUNT, ("inbound", "Success", "102", 30), ("101", "102", "103")),
    (CONFIRM_MOBILE, ("inbound", "Success", "89161112233", 40), ("101",)),
])
def test_ring_group_strategies(table, expected, rung):
    call = run(cdr(table))
    assert summary(call) == expected
    assert call.rung == rung and call.ring_group == "600"


def test_ring_group_nobody_answers_goes_to_the_first_member():
    table = HUNT.replace("ANSWERED    | 70       | 60", "NO ANSWER   | 15       | 0 ")
    call = run(cdr(table))
    assert summary(call) == ("inbound", "Missed", "101", 0)
    assert call.reasons[1].startswith("missed: ring group 600 rang 101 (NO ANSWER)")


# --- queues (corpus s06/s07 shapes; FreePBX queues: members Local/<ext>@from-queue)

def test_queue_timeout_then_voicemail_is_missed():
    rows = cdr("""
    | time     | channel                           | dstchannel                        | disposition | duration | billsec | src        | dst | dcontext      | did     | lastapp   | lastdata      |
    | 10:00:00 | PJSIP/carrier-1                   | Local/101@from-queue-0001;1       | NO ANSWER   | 30       | 30      | 4951234567 | 400 | ext-queues    | 5551003 | Queue     | 400,t,,,30    |
    | 10:00:00 | Local/101@from-queue-0001;2       | PJSIP/101-3                       | NO ANSWER   | 30       | 0       | 4951234567 | 101 | from-internal |         | Dial      |               |
    | 10:00:00 | PJSIP/carrier-1                   | Local/102@from-queue-0002;1       | NO ANSWER   | 30       | 30      | 4951234567 | 400 | ext-queues    | 5551003 | Queue     | 400,t,,,30    |
    | 10:00:00 | Local/102@from-queue-0002;2       | PJSIP/102-5                       | NO ANSWER   | 30       | 0       | 4951234567 | 102 | from-internal |         | Dial      |               |
    | 10:00:30 | PJSIP/carrier-1                   |                                   | ANSWERED    | 20       | 20      | 4951234567 | 400 | ext-queues    | 5551003 | VoiceMail | 400@default,u |
    """)
    call = run(rows)
    assert summary(call) == ("inbound", "Missed", "101", 0)
    assert (call.queue, call.path) == ("400", ("queue 400", "voicemail 400"))


# --- follow-me and forwarding (FreePBX findmefollow: Local/FMPR-<ext>; CF: Local/<number>)

def test_follow_me_answered_on_the_mobile_counts_for_the_extension():
    rows = cdr("""
    | time     | channel                              | dstchannel                           | disposition | duration | billsec | src        | dst         | dcontext        | did     |
    | 10:00:00 | PJSIP/carrier-1                      | Local/FMPR-101@from-internal-0001;1  | ANSWERED    | 100      | 90      | 4951234567 | 101         | from-did-direct | 5551000 |
    | 10:00:00 | Local/FMPR-101@from-internal-0001;2  | PJSIP/101-3                          | NO ANSWER   | 10       | 0       | 4951234567 | 101         | from-internal   |         |
    | 10:00:10 | Local/FMPR-101@from-internal-0001;2  | PJSIP/carrier-4                      | ANSWERED    | 90       | 90      | 4951234567 | 89161234567 | from-internal   |         |
    """)
    call = run(rows)
    assert summary(call) == ("inbound", "Success", "101", 90)
    assert call.answered_by == "101" and call.rung == ("101",)


def test_call_forward_to_an_outside_number_cel():
    # CFU of 101 to a mobile: FreePBX dials Local/<number>@from-internal, which goes out the trunk.
    events = cel("""
    | type         | time     | chan                                  | uid   | context       | exten       | cid        | bridge |
    | CHAN_START   | 10:00:00 | PJSIP/carrier-1                       | 100.1 | from-pstn     | 5551000     | 4951234567 |        |
    | CHAN_START   | 10:00:00 | Local/89161234567@from-internal-0001;1 | 100.2 | from-internal | 89161234567 |           |        |
    | CHAN_START   | 10:00:00 | Local/89161234567@from-internal-0001;2 | 100.3 | from-internal | 89161234567 |           |        |
    | CHAN_START   | 10:00:00 | PJSIP/carrier-4                       | 100.4 | from-pstn     | s           |            |        |
    | BRIDGE_ENTER | 10:00:05 | PJSIP/carrier-4                       | 100.4 |               |             |            | b2     |
    | BRIDGE_ENTER | 10:00:05 | Local/89161234567@from-internal-0001;2 | 100.3 |              |             |            | b2     |
    | BRIDGE_ENTER | 10:00:05 | Local/89161234567@from-internal-0001;1 | 100.2 |              |             |            | b1     |
    | BRIDGE_ENTER | 10:00:05 | PJSIP/carrier-1                       | 100.1 |               |             |            | b1     |
    | BRIDGE_EXIT  | 10:01:05 | PJSIP/carrier-1                       | 100.1 |               |             |            | b1     |
    | CHAN_END     | 10:01:05 | PJSIP/carrier-1                       | 100.1 |               |             |            |        |
    """, linkedid="100.1")
    call = run(cel_rows=events)
    assert summary(call) == ("inbound", "Success", "89161234567", 60)
    assert call.rung == () and call.path == ("89161234567",)


# --- pickup and parking (CEL; Asterisk 12+ PICKUP / PARK_START, holding bridge for the lot)

def test_pickup_credits_the_phone_that_picked_up():
    events = cel("""
    | type         | time     | chan            | uid   | lid   | context       | exten   | cid        | bridge | extra |
    | CHAN_START   | 10:00:00 | PJSIP/carrier-1 | 100.1 | 100.1 | from-pstn     | 5551000 | 4951234567 |        |       |
    | CHAN_START   | 10:00:00 | PJSIP/101-2     | 100.2 | 100.1 | from-internal | s       | 101        |        |       |
    | CHAN_START   | 10:00:04 | PJSIP/102-3     | 104.3 | 104.3 | from-internal | *8      | 102        |        |       |
    | PICKUP       | 10:00:05 | PJSIP/101-2     | 100.2 | 100.1 |               |         |            |        | {"pickup_channel":"PJSIP/102-3","pickup_channel_uniqueid":"104.3"} |
    | CHAN_END     | 10:00:05 | PJSIP/101-2     | 100.2 | 100.1 |               |         |            |        |       |
    | BRIDGE_ENTER | 10:00:05 | PJSIP/102-3     | 104.3 | 100.1 |               |         |            | b1     |       |
    | BRIDGE_ENTER | 10:00:05 | PJSIP/carrier-1 | 100.1 | 100.1 |               |         |            | b1     |       |
    | BRIDGE_EXIT  | 10:00:35 | PJSIP/carrier-1 | 100.1 | 100.1 |               |         |            | b1     |       |
    | CHAN_END     | 10:00:35 | PJSIP/carrier-1 | 100.1 | 100.1 |               |         |            |        |       |
    """)
    call = run(cel_rows=events)
    assert summary(call) == ("inbound", "Success", "102", 30)
    # 102 dialled *8 itself (its own linkedid): it picked up, it never rang (round B b19b)
    assert call.callid == "100.1" and call.rung == ("101",)


def test_parked_call_retrieved_by_another_phone():
    events = cel("""
    | type         | time     | chan            | uid   | context       | exten   | cid        | bridge  |
    | CHAN_START   | 10:00:00 | PJSIP/carrier-1 | 100.1 | from-pstn     | 5551000 | 4951234567 |         |
    | CHAN_START   | 10:00:00 | PJSIP/101-2     | 100.2 | from-internal | s       | 101        |         |
    | BRIDGE_ENTER | 10:00:02 | PJSIP/101-2     | 100.2 |               |         |            | b1      |
    | BRIDGE_ENTER | 10:00:02 | PJSIP/carrier-1 | 100.1 |               |         |            | b1      |
    | BRIDGE_EXIT  | 10:00:10 | PJSIP/carrier-1 | 100.1 |               |         |            | b1      |
    | PARK_START   | 10:00:10 | PJSIP/carrier-1 | 100.1 |               |         |            |         |
    | BRIDGE_ENTER | 10:00:10 | PJSIP/carrier-1 | 100.1 |               |         |            | hold:p1 |
    | CHAN_END     | 10:00:11 | PJSIP/101-2     | 100.2 |               |         |            |         |
    | CHAN_START   | 10:00:40 | PJSIP/102-3     | 100.3 | from-internal | 71      | 102        |         |
    | BRIDGE_EXIT  | 10:00:41 | PJSIP/carrier-1 | 100.1 |               |         |            | hold:p1 |
    | PARK_END     | 10:00:41 | PJSIP/carrier-1 | 100.1 |               |         |            |         |
    | BRIDGE_ENTER | 10:00:41 | PJSIP/102-3     | 100.3 |               |         |            | b2      |
    | BRIDGE_ENTER | 10:00:41 | PJSIP/carrier-1 | 100.1 |               |         |            | b2      |
    | BRIDGE_EXIT  | 10:01:02 | PJSIP/carrier-1 | 100.1 |               |         |            | b2      |
    | CHAN_END     | 10:01:02 | PJSIP/carrier-1 | 100.1 |               |         |            |         |
    """, linkedid="100.1")
    call = run(cel_rows=events)
    # 8 s with 101, 21 s with 102; the 31 s in the parking lot's holding bridge are no talk
    assert summary(call) == ("inbound", "Success", "102", 29)
    assert (call.answered_by, call.final_ext) == ("101", "102")
    assert call.path == ("101", "park 71", "102")  # 102 retrieved it by dialling 71


def test_a_lost_bridge_exit_ends_the_talk_at_the_phones_hangup():
    """CEL lost the phone's BRIDGE_EXIT (a reload): its HANGUP ends its time in the bridge, not
    the end of the call (the reader never reads CHAN_END, so HANGUP is the channel's end)."""
    events = cel("""
    | type         | time     | uid   | chan            | context   | cid        | bridge |
    | CHAN_START   | 09:30:00 | 300.1 | PJSIP/carrier-7 | from-pstn | 4951234567 |        |
    | CHAN_START   | 09:30:01 | 300.2 | PJSIP/103-8     | from-internal |        |        |
    | BRIDGE_ENTER | 09:30:03 | 300.2 | PJSIP/103-8     |           |            | b7     |
    | BRIDGE_ENTER | 09:30:03 | 300.1 | PJSIP/carrier-7 |           |            | b7     |
    | HANGUP       | 09:30:13 | 300.2 | PJSIP/103-8     |           |            |        |
    | BRIDGE_EXIT  | 09:31:00 | 300.1 | PJSIP/carrier-7 |           |            | b7     |
    | HANGUP       | 09:31:00 | 300.1 | PJSIP/carrier-7 |           |            |        |
    """, linkedid="300.1")
    assert summary(run(cel_rows=events)) == ("inbound", "Success", "103", 10)


# --- outbound (corpus s10..s12b; NotAllowed from FreePBX bad-number: NoCDR(), so CEL only)

@pytest.mark.parametrize("dialstatus, cause, status", [
    ("BUSY", 17, "Busy"), ("NOANSWER", 19, "NoAnswer"), ("CANCEL", 127, "NoAnswer"),
    ("CHANUNAVAIL", 20, "NotAvailable"), ("CONGESTION", 34, "NotAvailable"),
])
def test_outbound_unanswered(dialstatus, cause, status):
    events = cel(f"""
    | type       | time     | chan            | uid   | context       | exten       | cid | status       | cause   |
    | CHAN_START | 10:00:00 | PJSIP/101-1     | 100.1 | from-internal | 89161234567 | 101 |              |         |
    | CHAN_START | 10:00:00 | PJSIP/carrier-2 | 100.2 | from-pstn     | s           |     |              |         |
    | HANGUP     | 10:00:05 | PJSIP/carrier-2 | 100.2 |               |             |     |              | {cause} |
    | HANGUP     | 10:00:05 | PJSIP/101-1     | 100.1 |               |             |     | {dialstatus} | {cause} |
    """, linkedid="100.1")
    call = run(cel_rows=events, pbx=PbxConfig(default_country="RU"))
    assert summary(call) == ("outbound", status, "101", 0)
    assert (call.phone, call.rung) == ("+79161234567", ())


def test_outbound_refused_by_the_dialplan_is_not_allowed():
    events = cel("""
    | type       | time     | chan        | uid   | context       | exten          | cid | app      |
    | CHAN_START | 10:00:00 | PJSIP/101-1 | 100.1 | from-internal | 00493012345678 | 101 |          |
    | APP_START  | 10:00:01 | PJSIP/101-1 | 100.1 | bad-number    | 00493012345678 | 101 | Playback |
    | HANGUP     | 10:00:06 | PJSIP/101-1 | 100.1 | bad-number    | 00493012345678 | 101 |          |
    """, linkedid="100.1")
    call = run(cel_rows=events)
    assert summary(call) == ("outbound", "NotAllowed", "101", 0)
    assert call.phone == "+493012345678"


@pytest.mark.parametrize("trunk, dialled", [
    # FreePBX 13 IAX2 trunk with the account in its dial string (chan_iax2 parse_dial_string)
    ("IAX2/voipms-1234", "IAX2/acct:s3cr3t@voipms/2125550188,300,T"),
    # FreePBX DAHDI trunk group g0; the PRI channel is named after span and number (chan_dahdi)
    ("DAHDI/i1/2125550188-5", "DAHDI/g0/2125550188,300,T"),
    ("PJSIP/voipms-00000002", "PJSIP/voipms/sip:2125550188@sip.example.com,300"),
    ("SIP/voipms-00000002", "SIP/voipms/2125550188,300,T"),
], ids=["iax2", "dahdi", "pjsip-uri", "sip"])
def test_outbound_through_any_trunk_technology(trunk, dialled):
    """A FreePBX 13 macro-dialout-trunk row (one cdr row; dcontext stays from-internal in the
    Macro); the route stripped the 9: the trunk dialled 2125550188."""
    rows = cdr(f"""
    | time     | channel     | dstchannel | disposition | duration | billsec | src | dst         | dcontext      | outbound_cnum | lastapp | lastdata  |
    | 10:00:00 | SIP/101-1   | {trunk}    | ANSWERED    | 40       | 30      | 101 | 92125550188 | from-internal | 5551000       | Dial    | {dialled} |
    """)
    call = run(rows, pbx=PbxConfig(default_country="US"))
    assert summary(call) == ("outbound", "Success", "101", 30)
    assert (call.phone, call.phone_raw) == ("+12125550188", "2125550188")
    assert "s3cr3t" not in repr(call)


# --- IVR (FreePBX ivr module: the caller answers in ivr-<id>, BackGround/WaitExten; an option is
# a Goto to its destination, here ext-queues,<queue>,1: Queue() with no agent logged in and
# joinempty=yes, the caller waits on hold music and hangs up; corpus s06 Queue row shape)

def _ivr_then_queue(trunk: str) -> tuple:
    events = cel(f"""
    | type       | time     | chan     | uid   | context    | exten   | cid        | app        | data              | status |
    | CHAN_START | 10:00:00 | {trunk}  | 100.1 | from-pstn  | 5551000 | 2125550188 |            |                   |        |
    | ANSWER     | 10:00:00 | {trunk}  | 100.1 | ivr-3      | s       | 2125550188 | Answer     |                   |        |
    | APP_START  | 10:00:08 | {trunk}  | 100.1 | ext-queues | 400     | 2125550188 | Queue      | 400,t,,,,,,,,     |        |
    | APP_END    | 10:00:50 | {trunk}  | 100.1 | ext-queues | 400     | 2125550188 | Queue      | 400,t,,,,,,,,     |        |
    | HANGUP     | 10:00:50 | {trunk}  | 100.1 | ext-queues | 400     | 2125550188 |            |                   | CANCEL |
    """, linkedid="100.1")
    rows = cdr(f"""
    | time     | channel | dstchannel | disposition | duration | billsec | src        | dst | dcontext   | did     | lastapp | lastdata      | uniqueid | linkedid |
    | 10:00:00 | {trunk} |            | ANSWERED    | 50       | 50      | 2125550188 | 400 | ext-queues | 5551000 | Queue   | 400,t,,,,,,,, | 100.1    | 100.1    |
    """)
    return events, rows


@pytest.mark.parametrize("trunk", ["SIP/voipms-00000001", "PJSIP/voipms-00000001"],
                         ids=["A13", "A20"])
@pytest.mark.parametrize("mode", ["cel", "cdr"])
@pytest.mark.parametrize("ivr_hangup_missed", [True, False])
def test_a_caller_sent_on_by_the_ivr_did_not_hang_up_in_it(trunk, mode, ivr_hangup_missed):
    events, rows = _ivr_then_queue(trunk)
    if mode == "cdr":  # with CDR only, the IVR shows in a row of its own before the Goto
        rows = cdr(f"""
        | time     | channel | dstchannel | disposition | duration | billsec | src        | dst | dcontext   | did     | lastapp   | lastdata      | uniqueid | linkedid |
        | 10:00:00 | {trunk} |            | ANSWERED    | 8        | 8       | 2125550188 | s   | ivr-3      | 5551000 | WaitExten | 10,           | 100.1    | 100.1    |
        | 10:00:08 | {trunk} |            | ANSWERED    | 42       | 42      | 2125550188 | 400 | ext-queues | 5551000 | Queue     | 400,t,,,,,,,, | 100.1    | 100.1    |
        """)
        events = ()
    pbx = PbxConfig(default_country="US", ivr_hangup_missed=ivr_hangup_missed)
    call = run(rows, events, pbx=pbx)
    assert summary(call) == ("inbound", "Missed", "", 0)
    assert call.reasons[1].startswith("missed: caller left queue 400"), call.reasons
    assert call.path[:2] == ("IVR ivr-3", "queue 400")


@pytest.mark.parametrize("ivr_hangup_missed, status", [(True, "Missed"), (False, "Success")])
def test_a_caller_who_hangs_up_in_the_ivr_did(ivr_hangup_missed, status):
    """The same IVR, no option chosen: the caller's last place is ivr-3 (its `h` runs there)."""
    events = cel("""
    | type       | time     | chan                  | uid   | context   | exten   | cid        | app       | status |
    | CHAN_START | 10:00:00 | PJSIP/voipms-00000001 | 100.1 | from-pstn | 5551000 | 2125550188 |           |        |
    | ANSWER     | 10:00:00 | PJSIP/voipms-00000001 | 100.1 | ivr-3     | s       | 2125550188 | Answer    |        |
    | HANGUP     | 10:00:12 | PJSIP/voipms-00000001 | 100.1 | ivr-3     | h       | 2125550188 |           |        |
    """, linkedid="100.1")
    call = run(cel_rows=events, pbx=PbxConfig(ivr_hangup_missed=ivr_hangup_missed))
    assert summary(call) == ("inbound", status, "", 0)
    assert "IVR ivr-3" in call.reasons[1]


def test_crm_direction_from_the_dialplan_wins():
    events = cel("""
    | type         | time     | chan        | uid   | context       | exten | cid | userdeftype   | extra    |
    | CHAN_START   | 10:00:00 | PJSIP/101-1 | 100.1 | from-internal | 555   | 101 |               |          |
    | USER_DEFINED | 10:00:00 | PJSIP/101-1 | 100.1 | from-internal | 555   | 101 | CRM_DIRECTION | OUTBOUND |
    """, linkedid="100.1")
    call = run(cel_rows=events)
    assert call.direction.value == "outbound"
    assert call.reasons[0] == "direction outbound: CRM_DIRECTION written by the dialplan"


# --- time: midnight, DST fall-back, hours-long calls, concurrent calls

def _answered(start: str, end: str, uid: str, caller: str = "4951234567") -> tuple:
    return cel(f"""
    | type         | time    | chan            | uid      | context   | exten   | cid      | bridge |
    | CHAN_START   | {start} | PJSIP/carrier-1 | {uid}    | from-pstn | 5551000 | {caller} |        |
    | CHAN_START   | {start} | PJSIP/101-2     | {uid}1   | from-internal | s   | 101      |        |
    | BRIDGE_ENTER | {start} | PJSIP/101-2     | {uid}1   |           |         |          | b{uid} |
    | BRIDGE_ENTER | {start} | PJSIP/carrier-1 | {uid}    |           |         |          | b{uid} |
    | BRIDGE_EXIT  | {end}   | PJSIP/carrier-1 | {uid}    |           |         |          | b{uid} |
    | CHAN_END     | {end}   | PJSIP/carrier-1 | {uid}    |           |         |          |        |
    """, linkedid=uid)


def test_call_across_midnight():
    events = _answered("2026-12-31T23:59:50", "2027-01-01T00:00:20", "1798761590.1")
    call = run(cel_rows=events, zone=ZoneInfo("Europe/Moscow"))
    assert call.duration == 30
    assert call.start == datetime(2026, 12, 31, 20, 59, 50, tzinfo=timezone.utc)
    assert call.end == datetime(2026, 12, 31, 21, 0, 20, tzinfo=timezone.utc)


def test_call_across_the_dst_fall_back_hour():
    # Berlin 2026-10-25: 02:00-03:00 happens twice. The call starts at 02:50 CEST (00:50 UTC,
    # uniqueid epoch 1792889400) and ends 20 minutes later at 02:10 CET (01:10 UTC).
    events = _answered("2026-10-25T02:50:00", "2026-10-25T02:10:00", "1792889400.5")
    call = run(cel_rows=events, zone=ZoneInfo("Europe/Berlin"))
    assert call.start == datetime(2026, 10, 25, 0, 50, tzinfo=timezone.utc)
    assert call.end == datetime(2026, 10, 25, 1, 10, tzinfo=timezone.utc)
    assert call.duration == 20 * 60


def test_hours_long_call():
    events = _answered("2026-11-26T09:00:00", "2026-11-26T12:30:00", "1795683600.1")
    assert run(cel_rows=events).duration == 3 * 3600 + 1800


def test_concurrent_calls_from_the_same_number_stay_apart():
    both = _answered("10:00:00", "10:01:00", "1795687200.1") + tuple(
        e._replace(id=e.id + 100, channame=e.channame + "b")
        for e in _answered("10:00:10", "10:00:40", "1795687210.7"))
    calls = group_calls((), both)
    got = [interpret(c, PBX, UTC) for c in calls]
    assert [(c.callid, c.phone_raw, c.duration) for c in got] == [
        ("1795687200.1", "4951234567", 60), ("1795687210.7", "4951234567", 30)]


def test_internal_call_fields():
    # corpus s13 shape, CDR only: internal calls carry no outside number.
    call = run(cdr("""
    | time     | channel     | dstchannel  | disposition | duration | billsec | src | dst | dcontext      |
    | 10:00:00 | PJSIP/101-1 | PJSIP/102-2 | ANSWERED    | 8        | 5       | 101 | 102 | from-internal |
    """))
    assert summary(call) == ("internal", "Success", "102", 5)
    assert (call.phone, call.phone_raw, call.did, call.diversion) == ("", "101", "", "")


# --- damaged rows never crash interpretation (truncated extra, junk times, absurd counts)

_text = st.sampled_from(["", "101", "1795697854.7", "ivr-1", "ext-group", "{bad", "Queue",
                         '{"bridge_id":"b1"}', '{"hangupcause":"x","dialstatus":"BUSY"}'])
_chan = st.sampled_from(["", "PJSIP/101-1", "PJSIP/carrier-2", "Local/101@from-queue-0001;1",
                         "Local/101@from-queue-0001;2", "Local/@;1", "Message/ast_msg_queue"])
_time = st.one_of(st.none(), st.datetimes(min_value=datetime(1, 1, 2),
                                          max_value=datetime(9999, 12, 30)))


@given(cdr_rows=st.lists(st.builds(CdrRow, calldate=_time, channel=_chan, dstchannel=_chan,
                                   duration=st.integers(-5, 10**12), billsec=st.integers(-5, 10**12),
                                   disposition=st.sampled_from(["ANSWERED", "NO ANSWER", ""]),
                                   uniqueid=_text, dst=_text, dcontext=_text, lastapp=_text),
                         max_size=4),
       cel_rows=st.lists(st.builds(CelEvent, id=st.integers(0, 30), eventtime=_time,
                                   eventtype=st.sampled_from(["CHAN_START", "BRIDGE_ENTER",
                                                              "BRIDGE_EXIT", "HANGUP", "CHAN_END",
                                                              "APP_START", "LINKEDID_END"]),
                                   uniqueid=_text, channame=_chan, peer=_chan, context=_text,
                                   appname=_text, extra=_text),
                         min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_damaged_rows_never_crash(cdr_rows, cel_rows):
    rows = CallRows("1.2", frozenset({"1.2"}), tuple(cdr_rows), tuple(cel_rows))
    if not cdr_rows and all(e.eventtype == "LINKEDID_END" for e in cel_rows):
        with pytest.raises(ValueError, match="no cdr rows and no cel events"):
            interpret(rows, PBX, ZoneInfo("Europe/Berlin"))
        return
    call = interpret(rows, PBX, ZoneInfo("Europe/Berlin"))
    assert call.callid == "1.2" and call.reasons[0].startswith("direction ")
    assert call.duration == 0 or call.status.value == "Success"  # talk only when answered
    assert call.phone == "" or call.phone.lstrip("+").isdigit()  # never a name as a phone


@pytest.mark.parametrize("dialled, phone", [
    ("1795697854.7", "17956978547"),  # found by the property test above: dots are separators
    ("112", "112"),  # a short number: sent as dialled
    ("8 (916) 123-45-67", "+79161234567"),
])
def test_an_outbound_phone_is_digits_or_e164(dialled, phone):
    """An outbound call's `phone` is what the trunk dialled, as E.164 where phonenumbers knows
    it, else its digits: never separators or letters (shape: one FreePBX outbound row, a phone
    dialling through macro-dialout-trunk, as in round A's s10)."""
    row = CdrRow(calldate=datetime(2026, 11, 26, 10, 0, 0), src="101", dst=dialled,
                 dcontext="from-internal", channel="PJSIP/101-00000001",
                 dstchannel="PJSIP/carrier-00000002", lastapp="Dial", duration=10, billsec=5,
                 disposition="ANSWERED", uniqueid="1795697854.7", linkedid="1795697854.7",
                 outbound_cnum="5551000")
    call = interpret(CallRows("1795697854.7", frozenset({"1795697854.7"}), (row,)),
                     PbxConfig(default_country="RU"), ZoneInfo("UTC"))
    assert call.direction.value == "outbound"
    assert call.phone == phone
