"""The rows of every flow keep the rules real PBXes keep, in each generation and numbering.

What is checked is what the sources say every call obeys (FreePBX's `cdr`/`cel` columns,
`main/cel.c`'s event types and `extra` keys per branch, one CHAN_START and one HANGUP per
channel, LINKEDID_END last for each linkedid, `main/cdr.c` dispositions) and what tells the
generations apart: chan_sip names and the `from-trunk` context on Asterisk 13, PJSIP and
`from-pstn` on Asterisk 20, no STREAM/DTMF/LOCAL_OPTIMIZE_BEGIN events before Asterisk 18/20.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from tests import synth
from tests.flows.shapes import SCRIPT, Flows
from tests.test_synth import _schema_columns

START = datetime(2026, 10, 24, 23, 0)  # across midnight, before the EU fall-back

# main/cel.c: the extra keys of each event that has them (branches 13 and 20)
EXTRA_KEYS = {
    "HANGUP": {"hangupcause", "hangupsource", "dialstatus"},
    "BRIDGE_ENTER": {"bridge_id", "bridge_technology"},
    "BRIDGE_EXIT": {"bridge_id", "bridge_technology"},
    "BLINDTRANSFER": {"extension", "context", "bridge_id", "transferee_channel_name",
                      "transferee_channel_uniqueid"},
    "PICKUP": {"pickup_channel", "pickup_channel_uniqueid"},
    "LOCAL_OPTIMIZE": {"local_two", "local_two_uniqueid"},
    "PARK_START": {"parker_dial_string", "parking_lot"},
}
NEWER = {"STREAM_BEGIN", "STREAM_END", "DTMF", "LOCAL_OPTIMIZE_BEGIN"}  # not in Asterisk 13


def _calls(generation: str, numbering: str) -> list[synth.SynthCall]:
    return list(synth.generate(0, START, seed=5, mean_gap=900, generation=generation,
                               numbering=numbering, flows=Flows, script=SCRIPT))


@pytest.mark.parametrize("generation", ["A13", "A20"])
@pytest.mark.parametrize("numbering", synth.NUMBERINGS)
def test_rows_keep_the_rules_of_real_pbxes(generation, numbering):
    cdr_cols, cel_cols = _schema_columns("cdr"), _schema_columns("cel")
    uid = re.compile(r"^\d{10}\.\d+$")
    for call in _calls(generation, numbering):
        flow, cel = call.truth.flow, call.cel
        assert cel[0]["eventtype"] == "CHAN_START", flow
        assert [e["eventtime"] for e in cel] == sorted(e["eventtime"] for e in cel), flow
        started = Counter(e["uniqueid"] for e in cel if e["eventtype"] == "CHAN_START")
        hung = Counter(e["uniqueid"] for e in cel if e["eventtype"] == "HANGUP")
        assert started == hung and set(started.values()) == {1}, flow
        ends = defaultdict(list)
        for i, e in enumerate(cel):
            assert set(e) == cel_cols - {"id"} and uid.match(e["uniqueid"]), flow
            keys = EXTRA_KEYS.get(e["eventtype"])
            if keys:
                assert set(json.loads(e["extra"])) >= keys, (flow, e["eventtype"])
            if e["eventtype"] == "LINKEDID_END":
                ends[e["linkedid"]].append(i)
        lids = {e["linkedid"] for e in cel}
        assert set(ends) == lids and all(len(v) == 1 for v in ends.values()), flow
        for lid, (at,) in ends.items():  # nothing of a linkedid after its end
            assert all(e["linkedid"] != lid for e in cel[at + 1:]), (flow, lid)
        assert {t.linkedid for t in (call.truth, *call.more)} <= lids, flow
        for row in call.cdr:
            assert set(row) == cdr_cols, flow
            assert row["disposition"] in ("ANSWERED", "NO ANSWER", "BUSY", "FAILED"), flow
            assert 0 <= row["billsec"] <= row["duration"] and len(row["lastdata"]) <= 80, flow
            assert row["linkedid"] in lids, flow


@pytest.mark.parametrize("numbering", synth.NUMBERINGS)
def test_the_generations_differ_where_asterisk_and_freepbx_differ(numbering):
    old, new = _calls("A13", numbering), _calls("A20", numbering)
    trunk = synth.numbers(numbering).trunk
    for calls, tech, trunk_context, newer in ((old, "SIP", "from-trunk", False),
                                              (new, "PJSIP", "from-pstn", True)):
        events = [e for c in calls for e in c.cel]
        names = {e["channame"].split("/")[0] for e in events}
        assert names == {tech, "Local"}
        assert bool(NEWER & {e["eventtype"] for e in events}) is newer
        trunks = {e["context"] for e in events if e["eventtype"] == "CHAN_START"
                  and e["channame"].startswith(f"{tech}/{trunk}-")}
        assert trunks == {trunk_context}
    # Macro() gives the outer context back at hang-up, Gosub leaves the channel in its sub
    hang = {g: Counter(e["context"] for c in calls for e in c.cel if e["eventtype"] == "HANGUP")
            for g, calls in (("A13", old), ("A20", new))}
    assert "macro-hangupcall" in hang["A20"] and "macro-hangupcall" not in hang["A13"]
    # the same story in both: the same rows, but for the room: MeetMe mixes without a bridge,
    # so no pair row and no softmix BRIDGE events (app_meetme.c) where ConfBridge has them
    rows = [(c.truth.flow, len(c.cdr)) for c in old], [(c.truth.flow, len(c.cdr)) for c in new]
    assert [r for r in rows[0] if r[0] != "conf_employee"] == \
        [r for r in rows[1] if r[0] != "conf_employee"]
    room = {g: {(e["appname"], e["eventtype"]) for c in calls if c.truth.flow == "conf_employee"
                for e in c.cel if e["eventtype"] in ("APP_START", "BRIDGE_ENTER")}
            for g, calls in (("A13", old), ("A20", new))}
    assert room["A13"] == {("MeetMe", "APP_START")}
    assert room["A20"] == {("ConfBridge", "APP_START"), ("ConfBridge", "BRIDGE_ENTER")}


def test_numberings_name_devices_apart_from_extensions():
    named = synth.numbers("named")
    calls = _calls("A20", "named")
    devices = {e["channame"].split("/")[1].rsplit("-", 1)[0] for c in calls for e in c.cel
               if e["channame"].startswith("PJSIP/client")}
    assert devices and devices <= set(named.devices)
    assert {c.truth.ext for c in calls if c.truth.ext} <= set(named.exts) | {named.room}
    ten = [c for c in _calls("A20", "10") if c.truth.flow == "in_answered"]
    assert ten[0].truth.did == ten[0].truth.ext  # the extension's own DID
