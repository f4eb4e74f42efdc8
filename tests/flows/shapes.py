"""The flows of issue 13 as Asterisk 13 + FreePBX 13 and Asterisk 20 + FreePBX 17 write them.

`Flows` adds to `tests/synth.py`'s flows (today's mix: direct, ring group, queue, IVR,
outbound, internal, blind transfer) the ones issue 13 names. Each method says where its shape
comes from; "corpus bNN/sNN" are the real Asterisk 20 rows of ../shared/corpus (round B / A),
"core 13/17" FreePBX core on branch release/13.0 / release/17.0, "Asterisk 13/20" the
asterisk/asterisk branches. Where a shape is derived from source and not seen in real rows, the
method says so. The generation (`synth.A13`, `synth.A20`) supplies what differs between the two:
channel technology, the trunk's context, the CEL events Asterisk 13 lacks (STREAM_*, DTMF,
LOCAL_OPTIMIZE_BEGIN), where a channel hangs up after FreePBX's macros.

Each flow returns the call's `Truth`: what a person would say, in Planfix's words (issue 13's
expected behaviour; the README's flow table).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, Optional

from tests.synth import DIAL_OPTS, Truth, _Call, _Chan, _Flows

_NOANSWER = 0  # the hangup cause of a callee whose Dial() timed out (corpus b18)

SCRIPT = (  # the flows built, one call each (`conference` builds two calls)
    # today's mix (tests/synth.py)
    "in_answered", "in_noanswer_vm", "in_noanswer_cancel", "in_busy_vm",
    "rg_answered", "rg_local_answered", "rg_noanswer", "queue_answered", "queue_abandon",
    "ivr_hangup", "ivr_option", "out_answered", "out_busy", "out_noanswer", "out_congestion",
    "internal_answered", "internal_missed", "blind_transfer",
    # issue 13 (tests/flows/shapes.py)
    "in_dnd_vm", "in_unavailable_vm", "in_cfu_vm", "in_anonymous", "in_no_callerid",
    "in_named_caller",
    "in_subsecond", "rg_hunt", "rg_via_local_group", "queue_timeout_vm", "queue_transfer_back",
    "internal_vm", "ivr_vm", "out_trunk_down", "out_notallowed", "out_prefix",
    "out_blind_transfer", "cf_outside", "fm_mobile", "originate_local", "originate_phone",
    "attended_transfer", "pickup_directed", "pickup_group", "park", "conference",
)


class Flows(_Flows):
    """Today's flows plus those of issue 13, on any generation and numbering.

    Every extension has a mailbox here, so that a flow asked for is the flow built (today's
    direct flows turn into "caller hangs up" for a mailbox-less extension); the mailbox-less case
    is its own flow, `in_noanswer_cancel`.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.o.no_voicemail = frozenset()

    # ---- shared pieces ---------------------------------------------------------------------
    def _mailbox(self) -> str:
        """An extension with a voicemail box (FreePBX's `novm` extensions have none)."""
        return self.rnd.choice([e for e in self.o.names if e not in self.o.no_voicemail])

    def _inbound(self, c: _Call, ext: str = "", caller: Optional[tuple[str, str]] = None
                 ) -> tuple[_Chan, str, str, str]:
        """The carrier's channel for a DID: the extension's own number where the numbering
        routes DIDs to their extensions, else one of the office's DIDs."""
        did = self.rnd.choice(self.o.dids)
        if ext and self.o.numbering.did_is_ext:
            did = ext
        trunk, name, num = self._trunk_in(c, did, caller)
        return trunk, name, num, did

    def _dial_one(self, ch: _Chan, ext: str) -> str:
        """`ch` runs Dial(<device>) in `macro-dial-one` (corpus s01: context macro-dial-one,
        exten s, appdata `PJSIP/101,15,Ttrb(func-apply-sipheaders^s^1)`)."""
        ch.goto("s", "macro-dial-one", "Dial", f"{self._dev(ext)},15,{DIAL_OPTS}")
        return ch.appdata

    # ---- inbound: voicemail without ringing -----------------------------------------------
    def _vm_no_ring(self, c: _Call, why: str) -> Truth:
        """The extension's mailbox answers although no phone rang: DND, or a phone that is not
        registered. One cdr row, Party A the trunk, no Party B, ANSWERED by VoiceMail.

        - DND (`in_dnd_vm`): `macro-dial-one` finds `DB(DND/<ext>)`, sets DIALSTATUS=BUSY and
          skips Dial() (core 13 `functions.inc/macro-dial-one.php`, core 17
          `Dialplan/macroDialone.php`, label `skip1` -> `nodial`); `macro-vm` plays the busy
          greeting (`VoiceMail(<ext>@default,b)`).
        - Unregistered (`in_unavailable_vm`): chan_sip's `sip_request_call` fails in
          `create_addr` (cause UNREGISTERED, Asterisk 13 `channels/chan_sip.c`), so app_dial
          creates no channel and returns CHANUNAVAIL (`apps/app_dial.c`, "Unable to create
          channel"); the CDR engine has seen the channel enter Dial and keeps `lastapp` Dial
          (`main/cdr.c` AST_CDR_LOCK_APP). PJSIP without a contact: core 17 sets
          DIALSTATUS=CHANUNAVAIL when `PJSIP_DIAL_CONTACTS` is empty and never calls Dial().
          No dial message was published, so CEL's HANGUP has an empty `dialstatus`.
        Derived from source; corpus s02 gives the VoiceMail events.
        """
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c, ext)
        rec = self._record(c, 0, trunk, f"in-{did}-{num}-{c.stamp()}-{c.linkedid}.wav")
        status, lastapp, lastdata = "BUSY", "VoiceMail", f"{ext}@default,b"
        if why == "unregistered":
            status, lastdata = "CHANUNAVAIL", f"{ext}@default,u"
            if self.g.tech == "SIP":
                lastapp, lastdata = "Dial", self._dial_one(trunk, ext)
        t = self._voicemail(c, 0, trunk, ext, status)
        self._leave(trunk, "from-did-direct")
        c.hangup(t, trunk, 16, trunk.name, "")
        c.linkedid_end(t, trunk)
        c.row(0, duration=int(t), billsec=int(t), disposition="ANSWERED",
              **self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="from-did-direct",
                                  lastapp=lastapp, lastdata=lastdata, recordingfile=rec))
        flow = "in_dnd_vm" if why == "dnd" else "in_unavailable_vm"
        return self._truth(c, flow, "inbound", "Missed", did=did, phone=num, ext=ext,
                           recorded=bool(rec))

    def in_dnd_vm(self, c: _Call) -> Truth:
        return self._vm_no_ring(c, "dnd")

    def in_unavailable_vm(self, c: _Call) -> Truth:
        return self._vm_no_ring(c, "unregistered")

    # ---- inbound: who the caller is ----------------------------------------------------------
    def _in_caller(self, c: _Call, flow: str, caller: tuple[str, str], subsecond: bool = False
                   ) -> Truth:
        """An inbound call answered by an extension (corpus s01 shape) from a caller id that is
        not an outside number, or answered and hung up within the second.

        - `in_anonymous`: a withheld number reaches Asterisk as `"Anonymous"
          <sip:anonymous@anonymous.invalid>` (RFC 3323 §4.1.1.3), which chan_sip and chan_pjsip
          put in CALLERID(num): nothing may be sent as Planfix's `phone`.
        - `in_no_callerid`: a carrier that sends no caller id at all (`"" <>`).
        - `in_named_caller`: a peer PBX or softphone on a trunk sending its user name
          (`client1`, as the kelysaina sample's phones call themselves) as the number.
        - `in_subsecond`: answered and ended within a second: the cdr row is ANSWERED with
          billsec 0 (`main/cdr.c` `cdr_object_get_billsec` counts whole seconds).
        """
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c, ext, caller)
        appdata = self._dial_one(trunk, ext)
        phone = self._phone(c, 0, ext)
        ring = self._ring()
        talk = 0.4 if subsecond else self._talk()
        end = self._conversation(c, ring, talk, trunk, phone, "from-did-direct")
        c.row(0, duration=int(end), billsec=int(talk), disposition="ANSWERED",
              **self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="from-did-direct",
                                  dstchannel=phone.name, lastapp="Dial", lastdata=appdata))
        outside = num if flow == "in_subsecond" else ""
        return self._truth(c, flow, "inbound", "Success", answered=ext, rung=(ext,),
                           talk=int(talk), did=did, phone=outside, ext=ext)

    def in_anonymous(self, c: _Call) -> Truth:
        return self._in_caller(c, "in_anonymous", ("Anonymous", "anonymous"))

    def in_no_callerid(self, c: _Call) -> Truth:
        return self._in_caller(c, "in_no_callerid", ("", ""))

    def in_named_caller(self, c: _Call) -> Truth:
        return self._in_caller(c, "in_named_caller", ("", "client1"))

    def in_subsecond(self, c: _Call) -> Truth:
        return self._in_caller(c, "in_subsecond", self._caller(), subsecond=True)

    # ---- ring group: hunt --------------------------------------------------------------------
    def rg_hunt(self, c: _Call) -> Truth:
        """Ring group strategy hunt: one Dial() per member in turn, `ringtime` seconds each, the
        third member (or the last) answers (corpus b18: one cdr row per member, Party A the
        trunk, dst the group, dcontext ext-group; the unanswered member's HANGUP has cause 0).
        Core 13 `functions.inc/macro-dial.php` `huntdial` loop, core 17 `Dialplan/macroDial.php`.
        """
        group = self.rnd.choice(list(self.o.ring_groups))
        members = self.o.ring_groups[group]
        trunk, name, num, did = self._inbound(c)
        winner = members[min(2, len(members) - 1)]
        row = self._inbound_row(c, trunk, name, num, did, dst=group, dcontext="ext-group",
                                lastapp="Dial")
        t, each = 0, 10
        for m in members[:members.index(winner)]:
            trunk.goto("s", "macro-dial", "Dial", f"{self._dev(m)},{each},{DIAL_OPTS}")
            ph = self._phone(c, t, m)
            c.hangup(t + each, ph, _NOANSWER, "", "")
            c.row(t, dstchannel=ph.name, lastdata=trunk.appdata, duration=each, billsec=0,
                  disposition="NO ANSWER", **row)
            t += each
        trunk.goto("s", "macro-dial", "Dial", f"{self._dev(winner)},{each},{DIAL_OPTS}")
        ph = self._phone(c, t, winner)
        ring, talk = self._ring(each - 1), self._talk()
        self._conversation(c, t + ring, talk, trunk, ph, "ext-group")
        c.row(t, dstchannel=ph.name, lastdata=trunk.appdata, duration=ring + talk, billsec=talk,
              disposition="ANSWERED", **row)
        rung = members[:members.index(winner) + 1]
        return self._truth(c, "rg_hunt", "inbound", "Success", answered=winner, rung=rung,
                           talk=talk, did=did, phone=num, ext=winner, group=group)

    # ---- internal -> voicemail ------------------------------------------------------------------
    def internal_vm(self, c: _Call) -> Truth:
        """An extension calls another, no answer for the ring timer, voicemail takes the message
        (corpus s14b / b14b: a NO ANSWER row phone -> phone, then a VoiceMail row without Party
        B, both Party A the caller)."""
        caller = self.rnd.choice(list(self.o.names))
        callee = self.rnd.choice([e for e in self.o.names
                                  if e != caller and e not in self.o.no_voicemail])
        me = c.channel(0, self._dev(caller), self.o.names[caller], caller)
        c.start(0, me, callee, "from-internal")
        me.cid_ani, me.cid_dnid = caller, callee
        appdata = self._dial_one(me, callee)
        other = self._phone(c, 0, callee)
        ring = 15
        c.hangup(ring, other, _NOANSWER, "", "")
        t = self._voicemail(c, ring, me, callee, "NOANSWER")
        self._leave(me, "from-internal")
        c.hangup(t, me, 16, me.name, "NOANSWER")
        c.linkedid_end(t, me)
        row = dict(clid=f'"{self.o.names[caller]}" <{caller}>', src=caller, dst=callee,
                   dcontext="from-internal", channel=me.name, uniqueid=me.uniqueid, cnum=caller,
                   cnam=self.o.names[caller])
        c.row(0, dstchannel=other.name, lastapp="Dial", lastdata=appdata, duration=ring,
              billsec=0, disposition="NO ANSWER", **row)
        c.row(ring, lastapp="VoiceMail", lastdata=f"{callee}@default,u", duration=int(t - ring),
              billsec=int(t - ring), disposition="ANSWERED", **row)
        return self._truth(c, "internal_vm", "internal", "Missed", rung=(callee,), phone="",
                           ext=callee)

    # ---- IVR -> voicemail ------------------------------------------------------------------
    def ivr_vm(self, c: _Call) -> Truth:
        """The caller presses an IVR option whose destination is an extension's voicemail
        (`ext-local,vmu<ext>,1` -> `macro-vm` -> VoiceMail(<ext>@default,u), core 13
        `functions.inc.php` ext-local vmu/vmb). The IVR answered the call, so VoiceMail does not
        answer again; the row's dst is `vmu<ext>` in ext-local (the Goto leaves the IVR
        context), as corpus b22's failover row shows. No phone rang."""
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c)
        ivr = self.o.numbering.ivr
        trunk.goto("s", ivr, "Answer")
        c.ev("ANSWER", 0, trunk)
        trunk.appname, trunk.appdata = "BackGround", "custom/ivr-main-menu"
        c.ev("STREAM_BEGIN", 1, trunk, extra={"sound": "custom/ivr-main-menu", "format": "slin",
                                              "language": "en"})
        t = 1 + self.rnd.randint(1, 6)
        c.ev("DTMF", t, trunk, extra={"digit": "2", "duration_ms": 160})
        c.ev("STREAM_END", t, trunk)
        box = f"{ext}@default,u"
        trunk.goto("s-NOANSWER", "macro-vm", "VoiceMail", box)
        c.ev("APP_START", t, trunk)
        t = c.streams(t, trunk, ("vm-theperson", *(f"digits/{d}" for d in ext), "vm-isunavail",
                                 "vm-intro", "beep"))
        t += self.rnd.randint(3, 30)
        c.ev("APP_END", t, trunk)
        self._leave(trunk, "ext-local")
        c.hangup(t, trunk, 16, trunk.name, "")
        c.linkedid_end(t, trunk)
        c.row(0, duration=int(t), billsec=int(t), disposition="ANSWERED",
              **self._inbound_row(c, trunk, name, num, did, dst=f"vmu{ext}",
                                  dcontext="ext-local", lastapp="VoiceMail", lastdata=box))
        return self._truth(c, "ivr_vm", "inbound", "Missed", did=did, phone=num, ext=ext,
                           group=ivr)

    # ---- outbound that never reached a trunk ----------------------------------------------
    def _no_trunk(self, c: _Call, flow: str) -> Truth:
        """The route never got a trunk channel up, and the caller hears an announcement.

        - `out_trunk_down`: the route matched (sub-record-check `out`, `macro-dialout-trunk`,
          `macro-outbound-callerid` put the trunk's caller id on the channel), but Dial()
          created no channel: chan_sip's peer is UNREACHABLE (`create_addr_from_peer` refuses a
          peer whose qualify failed: cause UNREGISTERED) or the PJSIP trunk has no contact
          (`chan_pjsip.c` `request`: "Failed to create outgoing session", cause
          NO_ROUTE_DESTINATION); app_dial returns CHANUNAVAIL without a dial message, so
          HANGUP's `dialstatus` is empty; FreePBX continues to `macro-outisbusy`
          (all-circuits-busy, Congestion: cause 34). The single cdr row has no Party B and is
          FAILED, which `unanswered=no` (Asterisk's default; FreePBX leaves it) drops (`main/cdr.c`
          `cdr_object_dispatch`): a CDR-only PBX writes nothing, unless it logs unanswered
          calls (as the FreePBX 13-era g9telecom sample does: FAILED rows without dstchannel);
          then the row has lastapp Dial (locked when the channel entered it), the Dial target
          in lastdata and outbound_cnum.
        - `out_notallowed`: no route matches (an international number on a PBX routing only
          10-digit numbers): `bad-number` runs ResetCDR, disables the CDR
          (`Set(CDR_PROP(disable)=true)` on Asterisk 12+, FreePBX `ext_nocdr`), plays
          cannot-complete-as-dialed and Congestion: CEL only.
        Derived from source; corpus s12b gives the announcement events.
        """
        ext = self.rnd.choice(list(self.o.names))
        if flow == "out_notallowed":
            number = f"01149{self.rnd.randint(30_000_000, 89_999_999)}"
        else:
            number = self._caller()[1]
        phone = c.channel(0, self._dev(ext), self.o.names[ext], ext)
        c.start(0, phone, number, "from-internal")
        phone.cid_ani, phone.cid_dnid = ext, number
        if flow == "out_trunk_down":
            rec = self._record(c, 0, phone, f"out-{number}-{ext}-{c.stamp()}-{c.linkedid}.wav")
            phone.cid_name, phone.cid_num = self.out_cnam, self.out_cnum
            phone.goto("s", "macro-dialout-trunk", "Dial",
                       f"{self.g.trunk_dial(self.o.numbering.trunk, number)},300,"
                       "Ttb(func-apply-sipheaders^s^1)")
            row = dict(self._out_row(phone, phone, ext, number, rec), dstchannel="")
            phone.goto("s", "macro-outisbusy", "Playback",
                       "all-circuits-busy-now&please-try-call-later,noanswer")
            sounds = ("all-circuits-busy-now", "please-try-call-later")
        else:
            phone.goto(number, "bad-number", "Playback", "silence/1&cannot-complete-as-dialed,"
                                                         "noanswer")
            sounds = ("silence/1", "cannot-complete-as-dialed")
        t = c.streams(1, phone, sounds, 1.5)
        if flow == "out_trunk_down":
            self._leave(phone, "from-internal")
        else:
            phone.appname, phone.appdata = "", ""
        c.hangup(t + 1, phone, 34, phone.name, "")
        c.linkedid_end(t + 1, phone)
        if flow == "out_trunk_down":
            c.row(0, duration=int(t + 1), disposition="FAILED", **row)
        status = "NotAvailable" if flow == "out_trunk_down" else "NotAllowed"
        return self._truth(c, flow, "outbound", status, phone=number, ext=ext)

    def out_trunk_down(self, c: _Call) -> Truth:
        return self._no_trunk(c, "out_trunk_down")

    def out_notallowed(self, c: _Call) -> Truth:
        return self._no_trunk(c, "out_notallowed")

    # ---- outbound through a route that strips a prefix -----------------------------------
    def out_prefix(self, c: _Call) -> Truth:
        """The user dials 9 + the number through a route whose pattern `9|NXXNXXXXXX` strips
        the 9: the outside party is the number the trunk dialled (`_outbound` with a prefix;
        corpus s10 shape otherwise)."""
        return replace(self._outbound(c, "answered", prefix="9"), flow="out_prefix")

    # ---- pieces for the flows that move a call ------------------------------------------
    def _bid(self) -> dict[str, str]:
        """A basic bridge's extra (CEL BRIDGE_ENTER/EXIT, Asterisk 13 and 20 `main/cel.c`)."""
        return {"bridge_id": str(uuid.UUID(int=self.rnd.getrandbits(128), version=4)),
                "bridge_technology": "simple_bridge"}

    def _local(self, c: _Call, t: float, exten: str, context: str) -> tuple[_Chan, _Chan]:
        """A Local channel pair dialled at `t` (corpus s04b: both halves start with the
        dialled exten and context)."""
        one, two = c.local_pair(t, exten, context)
        c.ev("CHAN_START", t, one)
        c.ev("CHAN_START", t, two)
        return one, two

    def _trunk_out(self, c: _Call, t: float, ch: _Chan, number: str) -> _Chan:
        """`ch` runs `macro-dialout-trunk` to `number`: Dial() creates the trunk's channel
        (corpus s10: its CHAN_START is exten s in the trunk's context, its ANSWER carries the
        caller id `s`)."""
        ch.goto("s", "macro-dialout-trunk", "Dial",
                f"{self.g.trunk_dial(self.o.numbering.trunk, number)},300,"
                "Ttb(func-apply-sipheaders^s^1)")
        trunk = c.channel(t, self.trunk)
        c.start(t, trunk, "s", self.g.trunk_context)
        trunk.cid_num, trunk.appname, trunk.appdata = "s", "AppDial", "(Outgoing Line)"
        return trunk

    def _out_row(self, ch: _Chan, trunk: _Chan, ext: str, dst: str, rec: str
                 ) -> dict[str, Any]:
        """The cdr row of an extension's call out, `ch` dialling `trunk` (corpus s10: the
        route's caller id as src, the extension in cnum, outbound_cnum set)."""
        return dict(clid=f'"{self.out_cnam}" <{self.out_cnum}>', src=self.out_cnum, dst=dst,
                    dcontext="from-internal", channel=ch.name, dstchannel=trunk.name,
                    lastapp="Dial", lastdata=ch.appdata, uniqueid=ch.uniqueid,
                    recordingfile=rec, cnum=ext, cnam=self.o.names[ext],
                    outbound_cnum=self.out_cnum, outbound_cnam=self.out_cnam)

    def _outside_leg(self, c: _Call, t: float, ring: float, caller: _Chan, number: str,
                     name: str, num: str, prefix: str = ""
                     ) -> tuple[_Chan, _Chan, _Chan, dict[str, Any]]:
        """`caller` dials `Local/<prefix><number>@from-internal/n` (a forward or follow-me
        member that is an outside number, core `macro-dial-one` `dlocal` / dialparties' `#`
        members); the `;2` goes out by the outbound route, which strips `prefix`, keeping the
        caller's number (KEEPCID, core `macro-outbound-callerid`); the far end answers at
        `ring` (corpus b20). Returns the pair, the trunk channel and the `;2`'s cdr row
        without its times."""
        one, two = self._local(c, t, prefix + number, "from-internal")
        two.cid_name, two.cid_num = name, num
        out = self._trunk_out(c, t, two, number)
        c.ev("ANSWER", ring, out)
        c.ev("ANSWER", ring, two)
        one.appname, one.appdata = "AppDial", "(Outgoing Line)"
        c.ev("ANSWER", ring, one)
        c.ev("ANSWER", ring, caller)
        row = dict(clid=f'"{name}" <{num}>', src=num, dst=prefix + number,
                   dcontext="from-internal",
                   channel=two.name, dstchannel=out.name, lastapp="Dial", lastdata=two.appdata,
                   uniqueid=two.uniqueid, cnum=num, cnam=name, outbound_cnum=num,
                   outbound_cnam=name)
        return one, two, out, row

    def _blind(self, c: _Call, t: float, by: _Chan, transferee: _Chan, partner: _Chan,
               exten: str, extra: dict[str, str]) -> None:
        """`by` blind-transfers `transferee` to `exten` (SIP REFER or features.conf blindxfer
        into `from-internal-xfer`): BLINDTRANSFER on `by`, then the transferee and its
        bridge partner leave the bridge (corpus s15 / b23)."""
        c.ev("BLINDTRANSFER", t, by, extra={
            "extension": exten, "context": "from-internal-xfer", "bridge_id": extra["bridge_id"],
            "transferee_channel_name": transferee.name,
            "transferee_channel_uniqueid": transferee.uniqueid})
        c.ev("BRIDGE_EXIT", t, transferee, extra=extra)
        c.ev("BRIDGE_EXIT", t, partner, extra=extra)

    def _optimize(self, c: _Call, t: float, one: _Chan, two: _Chan, mover: _Chan,
                  left: dict[str, str], into: dict[str, str], peer: _Chan) -> None:
        """A Local pair optimizes itself away at `t` (no `/n`): `mover`, bridged with `one` in
        `left`, swaps into `two`'s bridge `into` with `peer` (corpus s16 order: LOCAL_OPTIMIZE_
        BEGIN, the swap, LOCAL_OPTIMIZE with the `;2`'s name and uniqueid)."""
        local = {"local_two": two.name, "local_two_uniqueid": two.uniqueid}
        c.ev("LOCAL_OPTIMIZE_BEGIN", t, one, extra=local)
        c.ev("BRIDGE_EXIT", t, mover, extra=left)
        c.ev("BRIDGE_EXIT", t, two, peer=peer.name, extra=into)
        c.ev("BRIDGE_ENTER", t, mover, peer=peer.name, extra=into)
        c.ev("LOCAL_OPTIMIZE", t, one, extra=local)
        c.ev("BRIDGE_EXIT", t, one, extra=left)

    def _bridge_ends(self, c: _Call, t: float, trunk: _Chan, other: _Chan,
                     extra: dict[str, str], source: _Chan) -> None:
        """The inbound caller's last bridge, with `other`, ends at `t` because `source` hung
        up; both hang up and the call is over (corpus b19 / s16 event order)."""
        c.ev("BRIDGE_EXIT", t, trunk, peer=other.name, extra=extra)
        c.ev("BRIDGE_EXIT", t, other, extra=extra)
        self._leave(trunk, "from-did-direct")
        self._hang_all(c, t, source, other, trunk)

    def _hang_all(self, c: _Call, t: float, source: _Chan, *chans: _Chan,
                  last: bool = True) -> None:
        """`chans` hang up at `t` because `source` did; with `last`, the call is over and the
        last channel's events close the linkedid."""
        for ch in chans:
            c.hangup(t, ch, 16, source.name, "ANSWER" if ch is source else "")
        if last:
            c.linkedid_end(t, chans[-1])

    # ---- forwards and follow-me that dial out ---------------------------------------------
    def cf_outside(self, c: _Call) -> Truth:
        """The extension forwards every call to an outside number (`DB(CF/<ext>)`, core
        `macro-dial-one` `cf` -> `Local/<number>@from-internal/n`). Corpus b20: two rows, trunk
        -> Local `;1` (dst the extension) and Local `;2` -> trunk (dst the number,
        outbound_cnum the caller). The extension's phone never rings; the call is the
        extension's."""
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c, ext)
        number = self._caller()[1]
        trunk.goto("s", "macro-dial-one", "Dial",
                   f"Local/{number}@from-internal/n,15,{DIAL_OPTS}")
        ring, talk = self._ring(), self._talk()
        one, two, out, row2 = self._outside_leg(c, 0, ring, trunk, number, name, num)
        end = ring + talk
        c.bridge(ring, end, two, out)
        c.bridge(ring, end, trunk, one)
        self._leave(two, "from-internal")
        self._leave(trunk, "from-did-direct")
        self._hang_all(c, end, trunk, one, two, trunk, out)
        c.row(0, duration=end, billsec=talk, disposition="ANSWERED", **row2)
        c.row(0, dstchannel=one.name, lastdata=trunk.appdata, duration=end, billsec=talk,
              disposition="ANSWERED",
              **self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="from-did-direct",
                                  lastapp="Dial"))
        return self._truth(c, "cf_outside", "inbound", "Success", answered=ext, talk=talk,
                           did=did, phone=num, ext=ext)

    def fm_mobile(self, c: _Call) -> Truth:
        """Follow-me, strategy ringallv2, list `<ext>-9<mobile>#`, answered on the mobile.

        dialparties (core 13 `agi-bin/dialparties.agi`, core 17 `Dialplan/dialparties.php`)
        dials `Local/FMPR-<ext>@from-internal&Local/FMGL-9<mobile>#@from-internal`; the FMPR
        half rings the extension's device for the pre-ring time, the FMGL half (findmefollow
        `fmgrps`) then dials `Local/9<mobile>@from-internal/n`, which the outbound route strips
        of its 9. The caller's rows have dst the extension in `followme-check` (findmefollow
        `functions.inc.php`; oscar6262's real follow-me rows: dcontext followme-check).
        Derived from source; the outside leg's shape is corpus b20's.
        """
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c, ext)
        mobile = self._caller()[1]
        prering, ring, talk = 8, self._ring(10), self._talk()
        trunk.goto("s", "macro-dial", "Dial", f"Local/FMPR-{ext}@from-internal&Local/FMGL-9"
                                              f"{mobile}#@from-internal,28,{DIAL_OPTS}")
        pr1, pr2 = self._local(c, 0, f"FMPR-{ext}", "from-internal")
        gl1, gl2 = self._local(c, 0, f"FMGL-9{mobile}#", "from-internal")
        for half in (pr2, gl2):
            half.cid_name, half.cid_num = name, num
        pr2.goto("s", "macro-simple-dial", "Dial", f"{self._dev(ext)},{prering},{DIAL_OPTS}")
        phone = self._phone(c, 0, ext)
        c.hangup(prering, phone, _NOANSWER, "", "")
        self._leave(pr2, "from-internal")
        c.hangup(prering, pr2, 16, "", "NOANSWER")
        c.hangup(prering, pr1, 16, "", "")
        gl2.goto("s", "macro-dial", "Dial", f"Local/9{mobile}@from-internal/n,20,{DIAL_OPTS}")
        answer = prering + ring
        one, two, out, row3 = self._outside_leg(c, prering, answer, gl2, mobile, name, num,
                                                prefix="9")
        gl1.appname, gl1.appdata = "AppDial", "(Outgoing Line)"
        c.ev("ANSWER", answer, gl1)
        c.ev("ANSWER", answer, trunk)
        end = answer + talk
        c.bridge(answer, end, two, out)
        c.bridge(answer, end, gl2, one)
        c.bridge(answer, end, trunk, gl1)
        for half, home in ((two, "from-internal"), (gl2, "from-internal"),
                           (trunk, "followme-check")):
            self._leave(half, home)
        self._hang_all(c, end, trunk, one, two, gl1, gl2, trunk, out)
        base = self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="followme-check",
                                 lastapp="Dial", lastdata=trunk.appdata)
        c.row(0, dstchannel=pr1.name, duration=prering, billsec=0, disposition="NO ANSWER",
              **base)
        c.row(0, dstchannel=gl1.name, duration=end, billsec=talk, disposition="ANSWERED",
              **base)
        c.row(0, clid=base["clid"], src=num, dst=f"FMPR-{ext}", dcontext="from-internal",
              channel=pr2.name, dstchannel=phone.name, lastapp="Dial", lastdata=pr2.appdata,
              uniqueid=pr2.uniqueid, duration=prering, billsec=0, disposition="NO ANSWER")
        c.row(0, clid=base["clid"], src=num, dst=f"FMGL-9{mobile}#", dcontext="from-internal",
              channel=gl2.name, dstchannel=one.name, lastapp="Dial", lastdata=gl2.appdata,
              uniqueid=gl2.uniqueid, duration=end, billsec=talk, disposition="ANSWERED")
        c.row(prering, duration=end - prering, billsec=talk, disposition="ANSWERED", **row3)
        return self._truth(c, "fm_mobile", "inbound", "Success", answered=ext, rung=(ext,),
                           talk=talk, did=did, phone=num, ext=ext)

    # ---- a ring group reached through from-internal ----------------------------------------
    def rg_via_local_group(self, c: _Call) -> Truth:
        """Ring group A's members are an extension and ring group B (`<B>#`: dialparties makes
        any `#` member `Local/<B>@from-internal/n`, core 13 `dialparties.agi`
        `get_dial_string`, core 17 `Dialplan/dialparties.php`); B's `;2` runs `ext-group` from
        inside from-internal (an include keeps the channel's context: its rows have dcontext
        from-internal, dst B) and rings B's members; B's last member answers. B's number is a
        group, never an extension that rang. Derived from source; the Local member's rows are
        corpus s04b's shape."""
        outer, inner = list(self.o.ring_groups)[:2]
        first = next(m for m in self.o.ring_groups[outer] if m not in self.o.ring_groups[inner])
        members = self.o.ring_groups[inner]
        trunk, name, num, did = self._inbound(c)
        trunk.goto("s", "macro-dial", "Dial", f"{self._dev(first)}&Local/{inner}@from-internal"
                                              f"/n,20,{DIAL_OPTS}")
        phone1 = self._phone(c, 0, first)
        one, two = self._local(c, 0, inner, "from-internal")
        two.cid_name, two.cid_num = name, num
        two.goto("s", "macro-dial", "Dial",
                 "&".join(self._dev(m) for m in members) + f",20,{DIAL_OPTS}")
        phones = {m: self._phone(c, 0, m) for m in members}
        winner = members[-1]
        ring, talk = self._ring(18), self._talk()
        c.hangup(ring, phone1, 26, "", "")
        for m in members[:-1]:
            c.hangup(ring, phones[m], 26, "", "")
        c.answer_dialled(ring, phones[winner])
        c.ev("ANSWER", ring, two)
        one.appname, one.appdata = "AppDial", "(Outgoing Line)"
        c.ev("ANSWER", ring, one)
        c.ev("ANSWER", ring, trunk)
        end = ring + talk
        c.bridge(ring, end, two, phones[winner])
        c.bridge(ring, end, trunk, one)
        self._leave(two, "from-internal")
        self._leave(trunk, "ext-group")
        self._hang_all(c, end, trunk, one, phones[winner], two, trunk)
        base = self._inbound_row(c, trunk, name, num, did, dst=outer, dcontext="ext-group",
                                 lastapp="Dial", lastdata=trunk.appdata)
        c.row(0, dstchannel=phone1.name, duration=ring, billsec=0, disposition="NO ANSWER",
              **base)
        c.row(0, dstchannel=one.name, duration=end, billsec=talk, disposition="ANSWERED",
              **base)
        for m in members:
            won = m == winner
            c.row(0, clid=base["clid"], src=num, dst=inner, dcontext="from-internal",
                  channel=two.name, dstchannel=phones[m].name, lastapp="Dial",
                  lastdata=two.appdata, uniqueid=two.uniqueid, cnum=num, cnam=name,
                  duration=end if won else ring, billsec=talk if won else 0,
                  disposition="ANSWERED" if won else "NO ANSWER")
        return self._truth(c, "rg_via_local_group", "inbound", "Success", answered=winner,
                           rung=(first, *members), talk=talk, did=did, phone=num, ext=winner,
                           group=outer)

    # ---- queues: timeout to voicemail, transferred back -----------------------------------
    def _queue_call(self, c: _Call) -> tuple[str, _Chan, str, str, dict[str, Any]]:
        """A caller answered by `ext-queues` and waiting in Queue() (corpus s06 / b06)."""
        queue = self.rnd.choice(list(self.o.queues))
        trunk, name, num, did = self._inbound(c)
        trunk.goto(queue, "ext-queues", "Answer")
        c.ev("ANSWER", 0, trunk)
        self._queue_enter(c, 0, trunk, queue)
        qrow = self._inbound_row(c, trunk, name, num, did, dst=queue, dcontext="ext-queues",
                                 lastapp="Queue", lastdata=trunk.appdata)
        return queue, trunk, name, num, qrow

    def queue_timeout_vm(self, c: _Call) -> Truth:
        """Nobody answers within the queue's max wait; Queue() returns TIMEOUT and the failover
        destination is an extension's voicemail (corpus b22: the member rows, then a VoiceMail
        row with dst `vmu<ext>` in ext-local; queues module: `Queue(<q>,t,,,<maxwait>...)`
        then the failover Goto)."""
        queue, trunk, name, num, qrow = self._queue_call(c)
        legs, phones = self._queue_ring(c, 0, queue, name, num)
        maxwait = 20
        c.ev("STREAM_END", maxwait, trunk)
        for m, one, two in legs:
            self._queue_cancel(c, maxwait, one, two, phones[m], 0)
        c.ev("APP_END", maxwait, trunk)
        box = self._mailbox()
        trunk.goto("s-NOANSWER", "macro-vm", "VoiceMail", f"{box}@default,u")
        c.ev("APP_START", maxwait, trunk)
        t = c.streams(maxwait, trunk, ("vm-theperson", *(f"digits/{d}" for d in box),
                                       "vm-isunavail", "vm-intro", "beep"))
        t += self.rnd.randint(3, 20)
        c.ev("APP_END", t, trunk)
        self._leave(trunk, "ext-local")
        c.hangup(t, trunk, 16, trunk.name, "")
        c.linkedid_end(t, trunk)
        self._queue_rows(c, 0, maxwait, legs, phones, qrow, "", 0)
        c.row(maxwait, duration=int(t - maxwait), billsec=int(t - maxwait),
              disposition="ANSWERED", **dict(qrow, dst=f"vmu{box}", dcontext="ext-local",
                                             lastapp="VoiceMail", lastdata=f"{box}@default,u"))
        members = self.o.queues[queue]
        return self._truth(c, "queue_timeout_vm", "inbound", "Missed", rung=members,
                           did=qrow["did"], phone=num, ext=members[0], group=queue)

    def queue_transfer_back(self, c: _Call) -> Truth:
        """A member answers, talks, and blind-transfers the caller back into the queue
        (REFER / ## to the queue number: BLINDTRANSFER with context from-internal-xfer, as in
        corpus s15); the caller waits on hold music again, another member answers. The time
        back in the queue is not talk (issue 13 item 7). Derived: corpus s06 and s15 shapes."""
        queue, trunk, name, num, qrow = self._queue_call(c)
        members = self.o.queues[queue]
        first, second = members[0], members[-1]
        legs, phones = self._queue_ring(c, 0, queue, name, num)
        ring1, talk1 = self._ring(10), self._talk()
        t = ring1 + talk1
        extra = self._bid()
        one, two = self._queue_answer(c, ring1, trunk, legs, phones, first)
        c.bridge(ring1, t, two, phones[first])
        c.ev("BRIDGE_ENTER", ring1, one, extra=extra)
        c.ev("BRIDGE_ENTER", ring1, trunk, peer=one.name, extra=extra)
        self._blind(c, t, phones[first], trunk, one, queue, extra)
        c.ev("APP_END", t, trunk)
        self._hang_all(c, t, phones[first], one, phones[first], two, last=False)
        wait, ring2, talk2 = self._ring(20), self._ring(10), self._talk()
        back = t + wait
        self._queue_enter(c, t, trunk, queue)
        legs2, phones2 = self._queue_ring(c, back, queue, name, num)
        end = self._queue_bridged(c, back + ring2, talk2, trunk, legs2, phones2, second)
        m2, one2, two2 = next(leg for leg in legs2 if leg[0] == second)
        c.ev("APP_END", end, trunk)
        self._leave(two2, "from-internal")
        self._hang_all(c, end, trunk, one2, phones2[second], two2, trunk)
        self._queue_rows(c, 0, ring1, legs, phones, qrow, first, talk1)
        self._queue_rows(c, back, back + ring2, legs2, phones2, qrow, second, talk2)
        return self._truth(c, "queue_transfer_back", "inbound", "Success", answered=first,
                           final_ext=second, rung=members, talk=talk1 + talk2, did=qrow["did"],
                           phone=num, ext=second, group=queue)

    # ---- transfers ---------------------------------------------------------------------------
    def out_blind_transfer(self, c: _Call) -> Truth:
        """An extension's outbound call, blind-transferred by the caller (SIP REFER) to another
        extension; the far end hangs up (corpus b23: BLINDTRANSFER on the caller's channel, the
        trunk's channel runs from-internal-xfer and dials the target; its cdr row has the trunk
        channel as Party A, src and cnum `s`). The outside party talked from its answer to the
        end; the target's ring is counted, as the corpus truth counts it."""
        ext, target = self.rnd.sample(list(self.o.names), 2)
        number = self._caller()[1]
        phone = c.channel(0, self._dev(ext), self.o.names[ext], ext)
        c.start(0, phone, number, "from-internal")
        phone.cid_ani, phone.cid_dnid = ext, number
        rec = self._record(c, 0, phone, f"out-{number}-{ext}-{c.stamp()}-{c.linkedid}.wav")
        phone.cid_name, phone.cid_num = self.out_cnam, self.out_cnum
        trunk = self._trunk_out(c, 0, phone, number)
        ring, talk1, ring2, talk2 = self._ring(10), self._talk(), self._ring(5), self._talk()
        c.ev("ANSWER", ring, trunk)
        c.ev("ANSWER", ring, phone)
        extra = self._bid()
        trunk.exten = ""
        c.ev("BRIDGE_ENTER", ring, trunk, extra=extra)
        c.ev("BRIDGE_ENTER", ring, phone, peer=trunk.name, extra=extra)
        t = ring + talk1
        trunk.goto(target, "from-internal-xfer", "AppDial", "(Outgoing Line)")
        self._blind(c, t, phone, trunk, phone, target, extra)
        self._leave(phone, "from-internal")
        c.hangup(t, phone, 16, "dialplan/builtin", "ANSWER")
        xfer = self._dial_one(trunk, target)
        ph2 = self._phone(c, t, target)
        c.answer_dialled(t + ring2, ph2)
        end = t + ring2 + talk2
        c.bridge(t + ring2, end, trunk, ph2)
        self._leave(trunk, "from-internal-xfer")
        self._hang_all(c, end, trunk, ph2, trunk)
        c.row(0, duration=t, billsec=talk1, disposition="ANSWERED",
              **self._out_row(phone, trunk, ext, number, rec))
        c.row(t, clid='"" <s>', src="s", dst=target, dcontext="from-internal-xfer",
              channel=trunk.name, dstchannel=ph2.name, lastapp="Dial", lastdata=xfer,
              uniqueid=trunk.uniqueid, recordingfile=rec, cnum="s", duration=end - t,
              billsec=end - t, disposition="ANSWERED")
        return self._truth(c, "out_blind_transfer", "outbound", "Success", answered=ext,
                           final_ext=target, rung=(target,), talk=end - ring, phone=number,
                           ext=target, recorded=bool(rec))

    def attended_transfer(self, c: _Call) -> Truth:
        """Inbound, the extension answers, consults another through features.conf atxfer (*2,
        `Local/<target>@from-internal-xfer`), then hangs up: the caller is bridged with the
        target after a LOCAL_OPTIMIZE (corpus s16 event for event and its six cdr rows). The
        caller stays in its bridge on hold music while the extension consults: counted as talk,
        as the corpus truth counts it."""
        first, target = self.rnd.sample(list(self.o.names), 2)
        trunk, name, num, did = self._inbound(c, first)
        xfer0 = self._dial_one(trunk, first)
        a = self._phone(c, 0, first)
        ring1, talk1, ring2, consult, talk2 = (self._ring(5), self._talk(), self._ring(5),
                                               self._ring(8), self._talk())
        b1, b2, b3 = self._bid(), self._bid(), self._bid()
        c.answer_dialled(ring1, a)
        c.ev("ANSWER", ring1, trunk)
        a.exten = ""
        c.ev("BRIDGE_ENTER", ring1, a, extra=b1)
        c.ev("BRIDGE_ENTER", ring1, trunk, peer=a.name, extra=b1)
        t = ring1 + talk1  # *2 and the target's number
        for digit in ("*", "2", *target):
            c.ev("DTMF", t, a, extra={"digit": digit, "duration_ms": 160})
        c.ev("STREAM_BEGIN", t, trunk, extra={"class": "default"})
        one, two = self._local(c, t, target, "from-internal-xfer")
        c.ev("BRIDGE_ENTER", t, one, extra=b2)
        c.ev("BRIDGE_EXIT", t, a, peer=trunk.name, extra=b1)
        c.ev("BRIDGE_ENTER", t, a, peer=one.name, extra=b2)
        two.cid_name, two.cid_num = self.o.names[first], first
        xfer = self._dial_one(two, target)
        b = self._phone(c, t, target)
        c.answer_dialled(t + ring2, b)
        c.ev("ANSWER", t + ring2, two)
        b.exten = ""
        c.ev("BRIDGE_ENTER", t + ring2, b, extra=b3)
        c.ev("ANSWER", t + ring2, one)
        c.ev("BRIDGE_ENTER", t + ring2, two, peer=b.name, extra=b3)
        done = t + ring2 + consult
        c.ev("BRIDGE_EXIT", done, one, peer=a.name, extra=b2)
        c.ev("STREAM_END", done, trunk)
        c.ev("BRIDGE_ENTER", done, one, peer=trunk.name, extra=b1)
        c.ev("ATTENDEDTRANSFER", done, a, extra={
            "bridge1_id": b1["bridge_id"], "channel2_name": a.name,
            "channel2_uniqueid": a.uniqueid, "bridge2_id": b2["bridge_id"],
            "transferee_channel_name": trunk.name, "transferee_channel_uniqueid": trunk.uniqueid,
            "transfer_target_channel_name": one.name,
            "transfer_target_channel_uniqueid": one.uniqueid})
        c.ev("BRIDGE_EXIT", done, a, extra=b2)
        c.hangup(done, a, 16, a.name, "")
        self._optimize(c, done, one, two, trunk, b1, b3, b)
        c.hangup(done, one, 16, a.name, "")
        self._leave(two, "from-internal-xfer")
        c.hangup(done, two, 16, "dialplan/builtin", "ANSWER")
        end = done + talk2
        self._bridge_ends(c, end, trunk, b, b3, trunk)
        base = self._inbound_row(c, trunk, name, num, did, dst=first, dcontext="from-did-direct",
                                 lastapp="Dial", lastdata=xfer0)
        c.row(0, dstchannel=a.name, duration=t, billsec=talk1, disposition="ANSWERED", **base)
        c.row(t, clid=base["clid"], src=num, dst=target, dcontext="from-internal-xfer",
              channel=two.name, dstchannel=b.name, lastapp="Dial", lastdata=xfer,
              uniqueid=two.uniqueid, cnum=first, duration=done - t, billsec=consult,
              disposition="ANSWERED")
        c.row(t, clid=f'"{self.o.names[first]}" <{first}>', src=first, dcontext="from-internal",
              channel=a.name, dstchannel=one.name, lastapp="Return", uniqueid=a.uniqueid,
              duration=done - t, billsec=done - t, disposition="ANSWERED")
        c.row(done, clid=f'"{self.o.names[target]}" <{target}>', src=target, dst=target,
              dcontext="from-internal-xfer", channel=one.name, uniqueid=one.uniqueid,
              disposition="ANSWERED")
        c.row(t, dstchannel=one.name, duration=done - t, billsec=done - t,
              disposition="ANSWERED", **base)
        c.row(done, dstchannel=b.name, duration=talk2, billsec=talk2, disposition="ANSWERED",
              **base)
        return self._truth(c, "attended_transfer", "inbound", "Success", answered=first,
                           final_ext=target, rung=(first, target), talk=end - ring1, did=did,
                           phone=num, ext=target)

    # ---- pickup ------------------------------------------------------------------------------
    def _pickup(self, c: _Call, directed: bool) -> Truth:
        """An inbound call rings an extension; another dials `**<ext>` (core `app-pickup`:
        `Pickup(<ext>@PICKUPMARK)`) or the group pickup code `*8` (features.conf pickupexten,
        answered by the channel driver, no application) and takes it. Corpus b19 / b19b: the
        picker starts a linkedid of its own, which ends as soon as its channel joins the
        caller's bridge; PICKUP on the rung phone names the picker; the rung phone's row is
        ANSWERED with billsec 0, the picker's is the caller's second row."""
        ext, picker = self.rnd.sample(list(self.o.names), 2)
        trunk, name, num, did = self._inbound(c, ext)
        appdata = self._dial_one(trunk, ext)
        rung = self._phone(c, 0, ext)
        t, talk = self._ring(8), self._talk()
        code = f"**{ext}" if directed else "*8"
        p = c.channel(t, self._dev(picker), self.o.names[picker], picker, own=True)
        c.start(t, p, code, "from-internal")
        if directed:
            p.appname, p.appdata = "Pickup", f"{ext}@PICKUPMARK"
        c.ev("ANSWER", t, p)
        rung.appname, rung.appdata = "AppDial", "(Outgoing Line)"
        c.ev("PICKUP", t, rung, extra={"pickup_channel": p.name,
                                       "pickup_channel_uniqueid": p.uniqueid})
        c.ev("ANSWER", t, trunk)
        extra = self._bid()
        p.exten, p.appname, p.appdata = "", "AppDial", "(Outgoing Line)"
        c.ev("BRIDGE_ENTER", t, p, extra=extra)
        c.ev("LINKEDID_END", t, p)
        p.linkedid = ""  # the bridge gave it the caller's (oldest) linkedid
        c.ev("BRIDGE_ENTER", t, trunk, peer=p.name, extra=extra)
        self._leave(rung, "from-internal")
        c.hangup(t, rung, 26, "dialplan/builtin", "")
        end = t + talk
        self._bridge_ends(c, end, trunk, p, extra, p)
        base = self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="from-did-direct",
                                 lastapp="Dial", lastdata=appdata)
        c.row(0, dstchannel=rung.name, duration=t, billsec=0, disposition="ANSWERED", **base)
        c.row(t, dstchannel=p.name, duration=talk, billsec=talk, disposition="ANSWERED", **base)
        return self._truth(c, "pickup_directed" if directed else "pickup_group", "inbound",
                           "Success", answered=picker, rung=(ext,), talk=talk, did=did,
                           phone=num, ext=picker)

    def pickup_directed(self, c: _Call) -> Truth:
        return self._pickup(c, directed=True)

    def pickup_group(self, c: _Call) -> Truth:
        return self._pickup(c, directed=False)

    # ---- parking -----------------------------------------------------------------------------
    def park(self, c: _Call) -> Truth:
        """An extension answers, parks the caller by a blind transfer to the lot's extension
        (res_parking takes a blind transfer to `parkext` as a park: PARK_START with the parker's
        dial string and the lot, the caller in the lot's holding bridge, `main/cel.c` 13/20);
        another extension dials the slot (FreePBX parking `park-hints`: `parked-call` ->
        ParkedCall(default,<slot>), parking module release/13.0 `functions.inc/dialplan.php`),
        PARK_END names it as the retriever, the two are bridged in a basic bridge and the
        retriever's own linkedid gives way to the caller's. CDR (`main/cdr.c` parked state:
        appl Park, data `<lot>:<slot>`): the caller's rows with the first extension, in the lot,
        with the retriever; the retriever's own row, whose linkedid became the caller's.
        Derived from source. Talk is the time with a person: the lot is not (issue 13 item 7).
        """
        first, second = self.rnd.sample(list(self.o.names), 2)
        lot = self.o.numbering.park
        slot = str(int(lot) + 1)
        trunk, name, num, did = self._inbound(c, first)
        appdata = self._dial_one(trunk, first)
        a = self._phone(c, 0, first)
        ring, talk1, parked, talk2 = self._ring(6), self._talk(), self._ring(40), self._talk()
        b1, hold, b2 = self._bid(), self._bid(), self._bid()
        hold["bridge_technology"] = "holding_bridge"
        c.answer_dialled(ring, a)
        c.ev("ANSWER", ring, trunk)
        c.ev("BRIDGE_ENTER", ring, a, extra=b1)
        c.ev("BRIDGE_ENTER", ring, trunk, peer=a.name, extra=b1)
        t = ring + talk1
        self._blind(c, t, a, trunk, a, lot, b1)
        c.hangup(t, a, 16, a.name, "")
        c.ev("PARK_START", t, trunk, extra={"parker_dial_string": self._dev(first),
                                            "parking_lot": "default"})
        c.ev("BRIDGE_ENTER", t, trunk, extra=hold)
        back = t + parked
        r = c.channel(back, self._dev(second), self.o.names[second], second, own=True)
        c.start(back, r, slot, "from-internal")
        r.goto("s", "macro-parked-call", "ParkedCall", f"default,{slot}")
        c.ev("ANSWER", back, r)
        c.ev("BRIDGE_EXIT", back, trunk, extra=hold)
        c.ev("PARK_END", back, trunk, extra={"reason": "ParkedCallUnparked", "retriever": r.name})
        c.ev("BRIDGE_ENTER", back, r, extra=b2)
        c.ev("LINKEDID_END", back, r)
        r.linkedid = ""
        c.ev("BRIDGE_ENTER", back, trunk, peer=r.name, extra=b2)
        end = back + talk2
        self._leave(r, "from-internal")
        self._bridge_ends(c, end, trunk, r, b2, r)
        base = self._inbound_row(c, trunk, name, num, did, dst=first, dcontext="from-did-direct",
                                 lastapp="Dial", lastdata=appdata)
        c.row(0, dstchannel=a.name, duration=t, billsec=talk1, disposition="ANSWERED", **base)
        c.row(t, duration=parked, billsec=parked, disposition="ANSWERED",
              **dict(base, lastapp="Park", lastdata=f"default:{slot}"))
        c.row(back, dstchannel=r.name, duration=talk2, billsec=talk2, disposition="ANSWERED",
              **dict(base, lastapp="Park", lastdata=f"default:{slot}"))
        c.row(back, clid=f'"{self.o.names[second]}" <{second}>', src=second, dst=slot,
              dcontext="from-internal", channel=r.name, lastapp="ParkedCall",
              lastdata=f"default,{slot}", uniqueid=r.uniqueid, cnum=second,
              cnam=self.o.names[second], duration=talk2, billsec=talk2, disposition="ANSWERED")
        return self._truth(c, "park", "inbound", "Success", answered=first, final_ext=second,
                           rung=(first,), talk=talk1 + talk2, did=did, phone=num, ext=second)

    # ---- conference room ---------------------------------------------------------------------
    def conference(self, c: _Call) -> Truth:
        """An extension dials a conference room (FreePBX conferences `ext-meetme`: Answer, then
        `STARTMEETME` -> ConfBridge or MeetMe, by FreePBX's ASTCONFAPP, conferences module
        release/13.0 `functions.inc.php`); a caller's inbound route sends it into the same room.
        Both apps are in FreePBX's CEL `apps`, so both channels get APP_START.

        - ConfBridge (A20): the room is a softmix bridge, which does not merge linkedids (only
          basic bridges do, `main/bridge_basic.c`), so these are two calls; the caller's
          BRIDGE_ENTER names the extension's channel as peer. CDR (`main/cdr.c`: the older
          channel is Party A of the pair): the extension's row alone in the room and its row
          with the caller's channel, the caller's row alone.
        - MeetMe (A13): `app_meetme.c` mixes over DAHDI pseudo channels, outside Asterisk's
          bridges: no BRIDGE events, no pair row; each channel has one row with lastapp MeetMe.
        The rows' dst is `STARTMEETME` (a Goto outside any subroutine), the room only in
        `lastdata`. Derived from source. Two truths: the caller's call (`conf_caller`: Success
        for the extension in the room, the caller's time in it) and the extension's
        (`conf_employee`: internal, not sent)."""
        ext = self.rnd.choice(list(self.o.names))
        room = self.o.numbering.room
        app = self.g.conference
        data = f"{room},,," if app == "ConfBridge" else f"{room},dM,"
        bridged = app == "ConfBridge"
        me = c.channel(0, self._dev(ext), self.o.names[ext], ext)
        c.start(0, me, room, "from-internal")
        me.goto(room, "from-internal", "Answer")
        c.ev("ANSWER", 0, me)
        softmix = dict(self._bid(), bridge_technology="softmix")
        me.goto("STARTMEETME", "from-internal", app, data)
        c.ev("APP_START", 1, me)
        if bridged:
            c.ev("BRIDGE_ENTER", 1, me, extra=softmix)
        join = 2 + self._ring(20)
        name, num = self._caller()
        trunk = c.channel(join, self.trunk, name, num, own=True)
        did = self.rnd.choice(self.o.dids)
        c.start(join, trunk, did, self.g.trunk_context)
        trunk.cid_ani, trunk.cid_dnid = num, did
        trunk.goto(room, "ext-meetme", "Answer")
        c.ev("ANSWER", join, trunk)
        trunk.goto("STARTMEETME", "ext-meetme", app, data)
        c.ev("APP_START", join + 1, trunk)
        stay = self._talk()
        left = join + 1 + stay
        if bridged:
            c.ev("BRIDGE_ENTER", join + 1, trunk, peer=me.name, extra=softmix)
            c.ev("BRIDGE_EXIT", left, trunk, peer=me.name, extra=softmix)
        c.ev("APP_END", left, trunk)
        self._leave(trunk, "ext-meetme")
        c.hangup(left, trunk, 16, trunk.name, "")
        c.linkedid_end(left, trunk)
        end = left + self._ring(10)
        if bridged:
            c.ev("BRIDGE_EXIT", end, me, extra=softmix)
        c.ev("APP_END", end, me)
        self._leave(me, "from-internal")
        c.hangup(end, me, 16, me.name, "")
        c.linkedid_end(end, me)
        mine = dict(clid=f'"{self.o.names[ext]}" <{ext}>', src=ext, dst="STARTMEETME",
                    dcontext="from-internal", channel=me.name, lastapp=app, lastdata=data,
                    uniqueid=me.uniqueid, cnum=ext, cnam=self.o.names[ext],
                    disposition="ANSWERED")
        c.row(0, duration=end, billsec=end, **mine)
        if bridged:
            c.row(join + 1, dstchannel=trunk.name, duration=stay, billsec=stay, **mine)
        c.row(join, linkedid=trunk.linkedid, duration=left - join, billsec=left - join,
              disposition="ANSWERED",
              **self._inbound_row(c, trunk, name, num, did, dst="STARTMEETME",
                                  dcontext="ext-meetme", lastapp=app, lastdata=data))
        caller = replace(self._truth(c, "conf_caller", "inbound", "Success", answered=ext,
                                     talk=stay, did=did, phone=num, ext=ext, group=room),
                         linkedid=trunk.linkedid, start=c.at(join), end=c.at(left))
        c.more.append(caller)
        return self._truth(c, "conf_employee", "internal", "Success", phone="", ext=ext,
                           group=room)

    # ---- originated calls ---------------------------------------------------------------
    def originate_local(self, c: _Call) -> Truth:
        """Click-to-call from UCP: AMI Originate of `Local/<ext>@originate-skipvm` to
        `<number>@from-internal` with caller id `UCP <<ext>>` (ucp module's originate; core
        `originate-skipvm` -> Goto(from-internal,<ext>,1)). The `;2` rings the extension, which
        answers; the `;1` then runs the outbound route; when the far end answers, the Local pair
        optimizes away (no `/n`: LOCAL_OPTIMIZE, the trunk swaps into the extension's bridge,
        corpus s16's event order). CDR (`main/cdr.c`): `;1` is Party A of the trunk row (an
        originated channel), `;2` of the extension's, and after the swap the extension (the
        older of two dialled channels) of a row with the trunk. Derived from source."""
        ext = self.rnd.choice(list(self.o.names))
        number = self._caller()[1]
        one, two = self._local(c, 0, ext, "originate-skipvm")
        for half in (one, two):
            half.cid_name, half.cid_num = "UCP", ext
        xfer = self._dial_one(two, ext)
        phone = self._phone(c, 0, ext)
        ring, ring2, talk = self._ring(8), self._ring(15), self._talk()
        b1, b2 = self._bid(), self._bid()
        c.answer_dialled(ring, phone)
        c.ev("ANSWER", ring, two)
        c.ev("BRIDGE_ENTER", ring, phone, extra=b1)
        c.ev("BRIDGE_ENTER", ring, two, peer=phone.name, extra=b1)
        one.goto(number, "from-internal", "AppDial2", "(Outgoing Line)")
        c.ev("ANSWER", ring, one)
        rec = self._record(c, ring, one, f"out-{number}-{ext}-{c.stamp()}-{c.linkedid}.wav")
        one.cid_name, one.cid_num = self.out_cnam, self.out_cnum
        trunk = self._trunk_out(c, ring, one, number)
        up = ring + ring2
        c.ev("ANSWER", up, trunk)
        trunk.exten = ""
        c.ev("BRIDGE_ENTER", up, trunk, extra=b2)
        c.ev("BRIDGE_ENTER", up, one, peer=trunk.name, extra=b2)
        self._optimize(c, up, one, two, trunk, b2, b1, phone)
        self._leave(one, "from-internal")
        self._leave(two, "from-internal")
        c.hangup(up, one, 16, "", "ANSWER")
        c.hangup(up, two, 16, "", "ANSWER")
        end = up + talk
        c.ev("BRIDGE_EXIT", end, phone, peer=trunk.name, extra=b1)
        c.ev("BRIDGE_EXIT", end, trunk, extra=b1)
        c.hangup(end, trunk, 16, phone.name, "")
        c.hangup(end, phone, 16, phone.name, "")
        c.linkedid_end(end, phone)
        c.row(0, duration=up, billsec=ring2, disposition="ANSWERED",
              **self._out_row(one, trunk, ext, number, rec))
        c.row(0, clid=f'"UCP" <{ext}>', src=ext, dst=ext, dcontext="from-internal",
              channel=two.name, dstchannel=phone.name, lastapp="Dial", lastdata=xfer,
              uniqueid=two.uniqueid, cnum=ext, duration=up, billsec=ring2, disposition="ANSWERED")
        c.row(up, clid=f'"{self.o.names[ext]}" <{ext}>', src=ext, dst="s",
              dcontext="from-internal", channel=phone.name, dstchannel=trunk.name,
              lastapp="AppDial", lastdata="(Outgoing Line)", uniqueid=phone.uniqueid,
              duration=talk, billsec=talk, disposition="ANSWERED")
        return self._truth(c, "originate_local", "outbound", "Success", answered=ext,
                           talk=talk, phone=number, ext=ext, recorded=bool(rec))

    def originate_phone(self, c: _Call) -> Truth:
        """AMI Originate of the phone itself (`Channel: SIP/<dev>`, `Context: from-internal`,
        `Exten: <number>`): the phone is called first (an originated channel: CHAN_START in its
        endpoint's context at `s`, ANSWER as AppDial2), then runs the outbound route. One cdr
        row, Party A the phone (the originated channel's CDR stays the same through the
        dialplan, `main/cdr.c` dialed-pending state); its billsec runs from the phone's answer,
        so it holds the far end's ringing too. Derived from source."""
        ext = self.rnd.choice(list(self.o.names))
        number = self._caller()[1]
        phone = c.channel(0, self._dev(ext), self.o.names[ext], ext)
        c.start(0, phone, "s", "from-internal")
        ring, ring2, talk = self._ring(8), self._ring(15), self._talk()
        phone.appname, phone.appdata = "AppDial2", "(Outgoing Line)"
        c.ev("ANSWER", ring, phone)
        phone.goto(number, "from-internal")
        rec = self._record(c, ring, phone, f"out-{number}-{ext}-{c.stamp()}-{c.linkedid}.wav")
        phone.cid_name, phone.cid_num = self.out_cnam, self.out_cnum
        trunk = self._trunk_out(c, ring, phone, number)
        up = ring + ring2
        c.ev("ANSWER", up, trunk)
        trunk.exten = ""
        end = up + talk
        c.bridge(up, end, phone, trunk)
        self._leave(phone, "from-internal")
        self._hang_all(c, end, phone, trunk, phone)
        c.row(0, duration=end, billsec=end - ring, disposition="ANSWERED",
              **self._out_row(phone, trunk, ext, number, rec))
        return self._truth(c, "originate_phone", "outbound", "Success", answered=ext,
                           talk=talk, phone=number, ext=ext, recorded=bool(rec))

    # ---- voicemail through a call forward -------------------------------------------------
    def in_cfu_vm(self, c: _Call) -> Truth:
        """The extension forwards all calls to its own voicemail: `*72` then `*<ext>`, the
        voicemail module's direct-dial code (`ext-local,*<ext>` -> `macro-vm` with DIRECTDIAL,
        voicemail release/13.0 `voicemail_directdialvoicemail`). `macro-dial-one` `cf` dials
        `Local/*<ext>@from-internal/n`; VoiceMail answers the `;2`, so the trunk's Dial() is
        ANSWERED and bridged with the `;1`, a bridge with no person in it. No phone rang.
        Derived from source; the Local rows are corpus b20's shape."""
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c, ext)
        trunk.goto("s", "macro-dial-one", "Dial", f"Local/*{ext}@from-internal/n,15,{DIAL_OPTS}")
        one, two = self._local(c, 0, f"*{ext}", "from-internal")
        two.cid_name, two.cid_num = name, num
        box = f"{ext}@default,u"
        two.goto("s-DIRECTDIAL", "macro-vm", "VoiceMail", box)
        c.ev("APP_START", 1, two)
        c.ev("ANSWER", 1, two)
        one.appname, one.appdata = "AppDial", "(Outgoing Line)"
        c.ev("ANSWER", 1, one)
        c.ev("ANSWER", 1, trunk)
        extra = self._bid()
        c.ev("BRIDGE_ENTER", 1, one, extra=extra)
        c.ev("BRIDGE_ENTER", 1, trunk, peer=one.name, extra=extra)
        t = c.streams(1, two, ("vm-theperson", *(f"digits/{d}" for d in ext), "vm-isunavail",
                               "vm-intro", "beep"))
        t += self.rnd.randint(3, 30)
        c.ev("APP_END", t, two)
        self._leave(two, "from-internal")
        c.hangup(t, two, 16, "dialplan/builtin", "")
        c.ev("BRIDGE_EXIT", t, trunk, peer=one.name, extra=extra)
        c.ev("BRIDGE_EXIT", t, one, extra=extra)
        self._leave(trunk, "from-did-direct")
        self._hang_all(c, t, two, one, trunk)
        c.row(0, clid=f'"{name}" <{num}>', src=num, dst=f"*{ext}", dcontext="from-internal",
              channel=two.name, lastapp="VoiceMail", lastdata=box, uniqueid=two.uniqueid,
              cnum=num, cnam=name, duration=int(t), billsec=int(t - 1), disposition="ANSWERED")
        c.row(0, dstchannel=one.name, lastdata=trunk.appdata, duration=int(t),
              billsec=int(t - 1), disposition="ANSWERED",
              **self._inbound_row(c, trunk, name, num, did, dst=ext, dcontext="from-did-direct",
                                  lastapp="Dial"))
        return self._truth(c, "in_cfu_vm", "inbound", "Missed", did=did, phone=num, ext=ext)
