"""Know the PBX: what `learn` makes of real rows, and the properties the pipeline relies on.

The rows are the shared corpus's (two real Asterisk 20.20.1 PBXes, round A and round B, FreePBX
context names) and the published rows of ../shared/corpus-public (oscar6262: FreePBX 16/17 with
10-digit extensions; kelysaina: plain Asterisk with named endpoints, CDR only).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import create_engine

from cdrsync.config import PbxConfig
from cdrsync.interpret.channels import PHONE, TRUNK, classify
from cdrsync.model import CdrRow, CelEvent
from cdrsync.pbx import PbxModel, learn
from cdrsync.pbx import store as pbx_store
from cdrsync.pbx.freepbx import mailbox, voicemail_destination
from cdrsync.pbx.names import DialTarget, device_of, dial_targets, local_of, reaches
from cdrsync.pbx.report import line, lines, summary
from cdrsync.state.db import metadata
from tests.corpus import CORPUS, CORPUS_B, PUBLIC, calls_of, corpus_rows, load_csv, load_sql


def _rows(folder):
    return corpus_rows(folder)


def _model(folder, **pbx) -> PbxModel:
    cdr, cel = _rows(folder)
    return learn(cdr, cel, pbx=PbxConfig(**pbx))


def _shown(model: PbxModel) -> dict[tuple[str, str], tuple]:
    return {(k.kind, k.name): (k.devices, k.members) for k in model.known}


@pytest.mark.parametrize("folder, phones, trunk, groups, queue", [
    (CORPUS, ["101", "102", "103", "104", "105"], "carrier",
     {"600": ("101", "102", "103"), "601": ("101", "102", "103")}, ("400", ("101", "102", "103"))),
    # round B's hunt group 701 lists 201, 202, 203, but no call ever went past 202
    (CORPUS_B, ["201", "202", "203", "204", "205"], "voipbiz",
     {"700": ("201", "203", "204"), "701": ("201", "202")}, ("500", ("201", "202", "203"))),
], ids=["round A", "round B"])
def test_the_corpus_pbx_is_learned_as_its_readme_describes_it(folder, phones, trunk, groups,
                                                              queue):
    shown = _shown(_model(folder))
    assert sorted(n for k, n in shown if k == "phone") == phones
    assert all(shown[("phone", p)][0] == (f"PJSIP/{p}",) for p in phones)
    assert [n for k, n in shown if k == "trunk"] == [trunk]
    assert {n: shown[("ring group", n)][1] for k, n in shown if k == "ring group"} == groups
    assert shown[("queue", queue[0])][1] == queue[1]
    assert [n for k, n in shown if k == "ivr"] == (["ivr-1"] if folder == CORPUS else ["ivr-2"])


def test_round_b_evidence_reads_as_an_admin_would_check_it():
    text = lines(_model(CORPUS_B))
    assert text[0] == "learned from 756 rows (36 calls): 5 phones, 1 trunk, 2 ring groups, " \
                      "1 queue, 1 ivr, 3 voicemail boxes"
    assert "trunk voipbiz: 24 calls entered on from-pstn; 24 calls that came in on a DID " \
           "(cdr.did); 7 times dialled as an endpoint of context from-pstn; 7 times dialled " \
           "with a number to call; 4 times dialled by an outbound route " \
           "(macro-dialout-trunk)" in text
    assert "ring group 700: members 201 203 204 (2 calls through ext-group)" in text
    assert "ring group 701: members 201 202 (1 call through ext-group)" in text
    assert any(t.startswith("phone 204 (PJSIP/204): ") and "calls begun in from-internal" in t
               for t in text)


def test_ten_digit_extensions_are_phones_and_named_trunks_trunks():
    """oscar6262 (FreePBX 16/17): the softphone PJSIP/6871322562 begins its calls in
    from-internal; TRUNK200 brings calls in on from-pstn and is dialled with numbers."""
    cdr, cel = load_sql(PUBLIC / "freepbx-oscar6262-2024/asteriskcdrdb_cdr_cel.sql")
    model = learn(cdr, cel)
    assert model.device("PJSIP/6871322562") == ("phone", "6871322562")
    assert model.device("PJSIP/TRUNK200") == ("trunk", "")
    # PJSIP/202 is reached by dialling 6871322563 through follow-me, but its own caller id and
    # cnum say 202: the follow-me number is not its extension
    assert model.device("PJSIP/202") == ("phone", "202")
    phone = next(k for k in model.known if k.name == "6871322562")
    assert line(phone).startswith("phone 6871322562 (PJSIP/6871322562): 186 calls begun in "
                                  "from-internal")


def test_named_endpoints_are_the_phones_of_the_numbers_that_reach_them():
    """kelysaina (plain Asterisk, cdr_custom CSV, no FreePBX columns): client1 dials 6789 and
    PJSIP/client2 answers, client2 dials 1234 and PJSIP/client1 answers."""
    model = learn(load_csv(PUBLIC / "asterisk-kelysaina-cdrcustom-2023/Master.csv"), [])
    assert model.device("PJSIP/client2") == ("phone", "6789")
    assert model.device("PJSIP/client1") == ("phone", "1234")
    assert classify("PJSIP/client2-00000003", PbxConfig(), model).ext == "6789"


def test_a_transfer_does_not_rename_the_phone_it_reached():
    """After a blind transfer the trunk's next Dial (PJSIP/104) still shows dst 101 (round A
    s15): only a channel's first Dial names the phone it reached."""
    cdr, _ = _rows(CORPUS)
    transfer = [r for r in cdr if r.linkedid == "1795698163.63"]  # s15: only its cdr rows
    assert {r.dstchannel.split("-")[0] for r in transfer} == {"PJSIP/101", "PJSIP/104"}
    model = learn(transfer, [])
    assert model.device("PJSIP/104") == ("phone", "104")  # from its name, not "101"


def test_learning_call_by_call_is_learning_all_at_once():
    cdr, cel = _rows(CORPUS_B)
    calls = calls_of(cdr, cel)
    model = None
    for call in calls:
        model = learn(call.cdr, call.cel, base=model)
    assert model == learn(cdr, cel)
    assert hash(model) == hash(learn(cdr, cel)) and model.calls == 36


def test_the_model_is_immutable_and_the_store_keeps_it(tmp_path):
    model = _model(CORPUS_B)
    with pytest.raises(AttributeError):
        model.rows = 0
    engine = create_engine(f"sqlite:///{tmp_path}/state.db")
    metadata.create_all(engine, tables=[pbx_store.pbx_model])
    with engine.begin() as conn:
        assert pbx_store.load(conn) is None
        pbx_store.save(conn, model, 1000.0)
        pbx_store.save(conn, model, 2000.0)  # saving again replaces
    with engine.connect() as conn:
        again, when = pbx_store.load(conn)
    assert again == model and when == 2000.0 and again.known == model.known


def test_settings_override_what_was_learned():
    model = _model(CORPUS_B)
    assert classify("PJSIP/voipbiz-00000001", PbxConfig(), model).kind == TRUNK
    forced = PbxConfig(trunk_channels=("^PJSIP/201-",))
    assert classify("PJSIP/201-0000000a", forced, model).kind == TRUNK
    assert classify("PJSIP/voipbiz-00000001", forced, model).kind == PHONE
    pattern = PbxConfig(extension_pattern=r"^voip")
    assert classify("PJSIP/voipbiz-00000001", pattern, model).kind == PHONE


def test_unknown_devices_are_guessed_and_say_so():
    info = classify("SIP/4000-0000000a", PbxConfig(), PbxModel())
    assert (info.kind, info.ext) == (PHONE, "4000")
    assert "guessed from its name" in info.rule
    assert classify("SIP/provider-0000000a", PbxConfig(), PbxModel()).kind == TRUNK


def test_ring_group_numbers_dialled_through_local_channels_never_ring_as_extensions():
    """`Local/600@from-internal` (FreePBX ringing a group from a follow-me or an IVR): 600 is
    the group, learned from the rows that entered ext-group with it."""
    model = _model(CORPUS)
    leg = classify("Local/600@from-internal-00000001;1", PbxConfig(), model)
    assert (leg.ext, leg.group) == ("", "600")
    assert classify("Local/101@from-queue-00000001;1", PbxConfig(), model).ext == "101"


def test_summary_is_thin_for_a_few_calls():
    assert summary(_model(CORPUS)) == (False, "learned from 29 calls: 5 phones, 1 trunk, "
                                       "2 ring groups, 1 queue, 1 ivr, 2 voicemail boxes")
    cdr, cel = _rows(CORPUS)
    thin, text = summary(learn(cdr[:3], cel[:40]))
    assert thin and "; too little to know this PBX" in text


@pytest.mark.parametrize("data, targets", [
    ("PJSIP/101,20,Ttr", (DialTarget("PJSIP/101", ""),)),
    ("PJSIP/2125550188@voipms,300", (DialTarget("PJSIP/voipms", "2125550188"),)),
    ("PJSIP/client2/sip:client2@10.0.0.5:5060,20", (DialTarget("PJSIP/client2", ""),)),
    ("PJSIP/voipms/sip:2125550188@sip.example.com", (DialTarget("PJSIP/voipms", "2125550188"),)),
    ("SIP/voipms/2125550188,300,T", (DialTarget("SIP/voipms", "2125550188"),)),  # FreePBX 13
    ("SIP/4660|20|tr", (DialTarget("SIP/4660", ""),)),  # Asterisk 1.8 separators
    ("PJSIP/101&PJSIP/102", (DialTarget("PJSIP/101", ""), DialTarget("PJSIP/102", ""))),
    ("Local/3125550188@from-internal/n,18", ()),
    # chan_iax2.c parse_dial_string: [user[:secret]@]peer[:port][/exten[@context]][/options];
    # the secret is dropped with the user (FreePBX 13 IAX2 trunk: IAX2/<trunk>/<number>)
    ("IAX2/acct:s3cr3t@voipms:4569/2125550188@default,300,T",
     (DialTarget("IAX2/voipms", "2125550188"),)),
    ("IAX2/voipms/2125550188,300", (DialTarget("IAX2/voipms", "2125550188"),)),
    ("IAX2/101,20", (DialTarget("IAX2/101", ""),)),  # an IAX2 phone
    ("SIP/2125550188@voipms,300", (DialTarget("SIP/voipms", "2125550188"),)),  # chan_sip exten@peer
    # FreePBX DAHDI trunks: DAHDI/g0/<number> (group), an extension on an FXS port: DAHDI/1
    ("DAHDI/g0/2125550188,300,T", (DialTarget("DAHDI/g0", "2125550188"),)),
    ("DAHDI/r1/2125550188", (DialTarget("DAHDI/r1", "2125550188"),)),
    ("DAHDI/1,20", (DialTarget("DAHDI/1", ""),)),
])
def test_dial_strings(data, targets):
    assert dial_targets(data) == targets


@pytest.mark.parametrize("name, device", [
    # chan_dahdi.c dahdi_new: "i%d/%s-%x" for a PRI call (span, number), "%d-%d" analog
    ("DAHDI/i1/2125550188-5", "DAHDI/i1"),
    ("DAHDI/i2/2125550188:1-1a", "DAHDI/i2"),
    ("DAHDI/3-1", "DAHDI/3"),
    ("IAX2/voipms-1234", "IAX2/voipms"),  # chan_iax2.c: "IAX2/%s-%d" (peer, call number)
    ("PJSIP/6871322562-0000001f", "PJSIP/6871322562"),
])
def test_devices_of_channel_names(name, device):
    assert device_of(name).key == device


@pytest.mark.parametrize("data, device, reached", [
    ("DAHDI/g0/2125550188", "DAHDI/i1", True),  # a group dial answers on a span's channel
    ("DAHDI/g0/2125550188", "DAHDI/3", True),
    ("DAHDI/g0/2125550188", "PJSIP/voipms", False),
    ("DAHDI/1", "DAHDI/2", False),  # one FXS port is not another
    ("PJSIP/101", "PJSIP/102", False),
])
def test_what_a_dial_can_reach(data, device, reached):
    assert reaches(dial_targets(data)[0], device) is reached


def _dial_row(channel, dstchannel, lastdata, dcontext="from-internal", dst="2125550188",
              **kw) -> CdrRow:
    """A FreePBX 13 macro-dialout-trunk row (cdr dcontext stays from-internal in a Macro)."""
    return CdrRow(calldate=datetime(2026, 5, 4, 9, 0), channel=channel, dstchannel=dstchannel,
                  lastapp="Dial", lastdata=lastdata, dcontext=dcontext, dst=dst,
                  disposition="ANSWERED", duration=40, billsec=30, uniqueid="1777885200.1",
                  linkedid="1777885200.1", outbound_cnum="5551000", **kw)


@pytest.mark.parametrize("row, trunk", [
    (_dial_row("SIP/101-00000001", "IAX2/voipms-1234",
               "IAX2/acct:s3cr3t@voipms/2125550188,300,T"), "IAX2/voipms"),
    (_dial_row("SIP/101-00000001", "DAHDI/i1/2125550188-5", "DAHDI/g0/2125550188,300,T"),
     "DAHDI/i1"),
    (_dial_row("PJSIP/101-00000001", "PJSIP/voipms-00000002",
               "PJSIP/voipms/sip:2125550188@sip.example.com,300"), "PJSIP/voipms"),
], ids=["iax2", "dahdi-group", "pjsip-uri"])
def test_trunks_dialled_by_a_route_are_learned_and_no_secret_is_kept(row, trunk):
    model = learn([row], [])
    assert model.device(trunk) == ("trunk", "")
    assert model.device(device_of(row.channel).key) == ("phone", "101")
    assert "s3cr3t" not in repr(model.observations) and "s3cr3t" not in "\n".join(lines(model))


@pytest.mark.parametrize("context", ["from-digital", "from-analog"])
def test_dahdi_lines_entering_on_freepbxs_dahdi_contexts_are_trunks(context):
    """FreePBX etc/extensions.conf: [from-digital] (PRI) includes from-pstn, [from-analog]
    (FXO) from-dahdi; chan_dahdi.conf sets the line's context, so CHAN_START is there."""
    start = CelEvent(id=1, eventtype="CHAN_START", eventtime=datetime(2026, 5, 4, 9, 0),
                     uniqueid="1777885200.1", linkedid="1777885200.1",
                     channame="DAHDI/i1/2125550188-5", context=context, exten="5551000",
                     cid_num="2125550188")
    assert learn([], [start]).device("DAHDI/i1") == ("trunk", "")


@pytest.mark.parametrize("appdata, box", [
    ("101@default,u", "101"),  # FreePBX macro-vm: ${MEXTEN}@${VMCONTEXT},<options>
    ("101@default,b", "101"),
    ("101@default,su", "101"),
    ("101@default|u", "101"),  # Asterisk 1.8 separators
    ("101@default&102@default,u", "101"),
    ("u100@default", "100"),  # Asterisk 1.2's option letters in front of the box
    ("bs100", "100"),
    ("sue@default,u", "sue"),  # a named box keeps its leading s and u
    ("usher", "usher"),
    ("", ""),
])
def test_voicemail_boxes(appdata, box):
    assert mailbox(appdata) == box


@pytest.mark.parametrize("dst, box", [
    ("vmu101", "101"), ("vmb101", "101"), ("vms6871322562", "6871322562"), ("vmi101", "101"),
    ("vmx101", None), ("vm101", None), ("101", None), ("vmu١٠١", None),
])
def test_ext_local_voicemail_destinations(dst, box):
    """FreePBX core functions.inc.php: ext-local vmb/vmu/vms/vmi + the extension."""
    assert voicemail_destination(dst) == box


def test_the_voicemail_box_learned_is_the_box_written():
    rows = [CdrRow(calldate=datetime(2026, 5, 4, 9, 0), channel="PJSIP/carrier-1",
                   lastapp="VoiceMail", lastdata=data, dcontext="ext-local", dst="vmu" + box,
                   uniqueid=f"1777885200.{i}", linkedid=f"1777885200.{i}")
            for i, (data, box) in enumerate([("sue@default,u", "sue"), ("u100@default", "100"),
                                             ("6871322562@default,b", "6871322562")])]
    assert sorted(k.name for k in learn(rows, []).of_kind("voicemail")) == \
        ["100", "6871322562", "sue"]


@pytest.mark.parametrize("name", ["PJSIP/١٠١-00000001", "PJSIP/²⁰¹-00000001", "SIP/１０１-1"])
def test_digits_of_other_scripts_are_not_an_extensions_shape(name):
    """No dialplan dials '١٠١' (Arabic-Indic), '²⁰¹' or fullwidth digits: a device so named is
    not guessed to be a phone, nor is an extension_pattern of \\d read to match it."""
    assert classify(name, PbxConfig(), PbxModel()).kind == TRUNK
    assert classify(name, PbxConfig(extension_pattern=r"^\d+$"), PbxModel()).kind == TRUNK


def test_a_superscript_number_in_the_rows_is_no_group_and_does_not_break_learning():
    row = CdrRow(calldate=datetime(2026, 5, 4, 9, 0), channel="PJSIP/carrier-1",
                 dcontext="ext-group", dst="6²", lastapp="Dial", lastdata="PJSIP/101",
                 dstchannel="PJSIP/101-2", uniqueid="1777885200.1", linkedid="1777885200.1")
    model = learn([row, row._replace(dst="600", uniqueid="1777885200.2",
                                     linkedid="1777885200.2")], [])
    assert [k.name for k in model.of_kind("ring group")] == ["600", "6²"]  # ordered, no crash


def test_local_leg_prefixes():
    assert local_of("Local/RG-600*-101#@from-internal-00a1;1").target == "101"
    assert local_of("Local/RG-600-9119110445540554516#@from-internal-db7e;1").target == \
        "9119110445540554516"  # FreePBX 2.8 (mango)
    assert local_of("Local/FMGL-92125550188#@from-internal-0001;2").target == "92125550188"


def test_the_keeper_samples_once_learns_each_pass_and_remembers(tmp_path):
    """The running product's model (cdrsync.pbx.keeper) on the demo database cdrsync ships (a
    copy of round A as SQLite): a first start learns from the newest rows and stores the model
    with the first pass; a restart loads it instead of reading the PBX again."""
    from cdrsync.demo import DATA as demo
    from cdrsync.pbx.keeper import Keeper, current
    from cdrsync.source.reader import Source
    from cdrsync.state.db import open_store

    source = Source(f"sqlite:///{demo}")
    state_url = f"sqlite:///{tmp_path}/state.db"
    assert current(state_url, source, PbxConfig())[1].startswith("learned now")
    store = open_store(state_url)
    keeper = Keeper(store, source, PbxConfig())
    first = keeper.model
    assert first.calls == 29 and first.device("PJSIP/carrier") == ("trunk", "")
    cdr, cel = _rows(CORPUS)
    grown = keeper.learn_calls(calls_of(cdr, cel)[:2])
    assert grown.calls == first.calls + 2  # the pass's calls are added to the sample
    keeper.save(1000.0)
    restarted = Keeper(store, Source("sqlite:////nonexistent/never-read.sqlite"), PbxConfig())
    assert restarted.model == grown  # loaded from the store: the PBX was not read again
    assert current(state_url, source, PbxConfig()) == (grown, "stored in the state store")
    store.dispose()
    source.close()


def _keepers(tmp_path, n=2, url=""):
    """`n` Keepers of one state store (as `run` and `backfill` are), on the demo database."""
    from cdrsync.demo import DATA as demo
    from cdrsync.pbx.keeper import Keeper
    from cdrsync.source.reader import Source
    from cdrsync.state.db import open_store

    source = Source(f"sqlite:///{demo}")
    store = open_store(url or f"sqlite:///{tmp_path}/state.db")
    return store, source, [Keeper(store, source, PbxConfig()) for _ in range(n)]


def _statements(engine) -> list[str]:
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(statement.split()[0]))
    return seen


def test_two_processes_saving_add_to_each_others_evidence(tmp_path, store_url):
    """`run` learns round B's first calls, `backfill` its last ones, both from the same stored
    model; each saves: the store holds the first model plus both (neither overwrote). On
    SQLite, PostgreSQL and MariaDB stores."""
    store, source, (run, backfill) = _keepers(tmp_path, url=store_url)
    assert run.model.calls == 29  # nothing stored: a sample of the newest rows (round A)
    run.save(1.0)
    with store.connect() as conn:
        first = pbx_store.load(conn)[0]
    cdr, cel = _rows(CORPUS_B)
    calls = calls_of(cdr, cel)
    assert backfill.model == first  # loaded: the stored model
    run.learn_calls(calls[:20])
    backfill.learn_calls(calls[20:])
    run.save(2.0)
    backfill.save(3.0)
    with store.connect() as conn:
        stored = pbx_store.load(conn)[0]
    assert stored == learn(cdr, cel, base=first)
    assert stored.calls == first.calls + 36
    store.dispose()
    source.close()


def test_a_call_counts_once_and_an_unchanged_model_is_not_stored(tmp_path):
    store, source, (keeper,) = _keepers(tmp_path, 1)
    cdr, cel = _rows(CORPUS_B)
    calls = calls_of(cdr, cel)
    once = keeper.learn_calls(calls[:5])
    assert keeper.learn_calls(calls[:5]) == once  # re-read by a later pass: no new evidence
    assert keeper.learn_calls(calls[3:6]).calls == once.calls + 1  # only call 6 is new
    keeper.save(1.0)
    statements = _statements(store)
    keeper.learn_calls(calls[:6])  # all learned already
    keeper.save(2.0)
    assert statements == []  # not a read, not an UPDATE
    keeper.learn_calls(calls[6:7])
    keeper.save(3.0)
    assert [s for s in statements if s in ("UPDATE", "DELETE", "INSERT")] == \
        ["UPDATE", "DELETE", "INSERT"]  # the lock's touch, then the row replaced
    store.dispose()
    source.close()


def _damaged(row: CdrRow) -> CdrRow:
    """A row whose lastapp is no text (what a broken decoder or a future column type could
    hand over): learning it raises AttributeError."""
    return row._replace(lastapp=None)


def test_a_row_learning_cannot_read_costs_that_row_only(caplog):
    cdr, cel = _rows(CORPUS_B)
    bad = _damaged(cdr[0])
    model = learn([bad, *cdr[1:]], cel)
    assert model.device("PJSIP/201") == ("phone", "201") and model.rows == len(cdr) + len(cel)
    assert "cdr row" in caplog.text and "AttributeError" in caplog.text


def test_a_call_that_breaks_the_model_is_left_out_and_the_pass_learns_the_rest(
        tmp_path, monkeypatch, caplog):
    """Derivation failing on one call's evidence (simulated: the model refuses one device)
    costs that call: the others are learned, learn_calls does not raise."""
    from cdrsync.pbx import model as pbx_model

    store, source, (keeper,) = _keepers(tmp_path, 1)
    cdr, cel = _rows(CORPUS_B)
    calls = calls_of(cdr, cel)
    poisoned = [c for c in calls if "PJSIP/204-" in repr((c.cdr, c.cel))]
    real = pbx_model._device_kind

    def refuse(device, clues):
        if device == "PJSIP/204":
            raise ValueError("a device the model cannot take")
        return real(device, clues)

    before_model = keeper.model
    monkeypatch.setattr(pbx_model, "_device_kind", refuse)
    grown = keeper.learn_calls(calls)
    monkeypatch.undo()
    assert "left out (ValueError)" in caplog.text
    assert len(poisoned) == caplog.text.count("left out (ValueError)") == 8
    kept = [c for c in calls if c not in poisoned]
    assert grown == keeper.model == learn([r for c in kept for r in c.cdr],
                                          [e for c in kept for e in c.cel], base=before_model)
    assert grown.device("PJSIP/201") == ("phone", "201") and grown.device("PJSIP/204") is None
    store.dispose()
    source.close()


def test_answers_belong_to_their_model_and_die_with_it():
    """Two models in one process (tests, `cdrsync pbx --fresh` beside the stored one, a retry):
    each answers from itself; a model no longer used is not kept alive by a cache."""
    import gc
    import weakref

    phone = learn([], [CelEvent(id=1, eventtype="CHAN_START", eventtime=datetime(2026, 5, 4),
                                uniqueid="1.1", linkedid="1.1", channame="PJSIP/client7-01",
                                context="from-internal", cid_num="6789")])
    trunk = learn([], [CelEvent(id=1, eventtype="CHAN_START", eventtime=datetime(2026, 5, 4),
                                uniqueid="1.1", linkedid="1.1", channame="PJSIP/client7-01",
                                context="from-pstn", cid_num="2125550188")])
    name = "PJSIP/client7-00000002"
    assert classify(name, PbxConfig(), phone).ext == "6789"
    assert classify(name, PbxConfig(), trunk).kind == TRUNK
    assert classify(name, PbxConfig(), phone).ext == "6789"
    gone = weakref.ref(trunk)
    del trunk
    gc.collect()
    assert gone() is None
