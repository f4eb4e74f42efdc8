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

from dataclasses import replace
from typing import Any

from tests.synth import DIAL_OPTS, Truth, _Call, _Chan, _Flows

_NOANSWER, _CANCEL = 0, 127  # hangup causes of a callee timed out / a caller who gave up


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

    def _inbound(self, c: _Call, ext: str = "", name: str = "", num: str = ""
                 ) -> tuple[_Chan, str, str, str]:
        """The carrier's channel for a DID: the extension's own number where the numbering
        routes DIDs to their extensions, else one of the office's DIDs."""
        did = self.rnd.choice(self.o.dids)
        if ext and self.o.numbering.did_is_ext:
            did = ext
        if name or num:
            trunk = c.channel(0, self.trunk, name, num)
            c.start(0, trunk, did, self.g.trunk_context)
            trunk.cid_ani, trunk.cid_dnid = num, did
        else:
            trunk, name, num = self._trunk_in(c, did)
        return trunk, name, num, did

    def _dial_one(self, ch: _Chan, ext: str, ring: int = 15) -> str:
        """`ch` runs Dial(<device>) in `macro-dial-one` (corpus s01: context macro-dial-one,
        exten s, appdata `PJSIP/101,15,Ttrb(func-apply-sipheaders^s^1)`)."""
        ch.goto("s", "macro-dial-one", "Dial", f"{self._dev(ext)},{ring},{DIAL_OPTS}")
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
    def _in_caller(self, c: _Call, flow: str, name: str, num: str, subsecond: bool = False
                   ) -> Truth:
        """An inbound call answered by an extension (corpus s01 shape) from a caller id that is
        not an outside number, or answered and hung up within the second.

        - `in_anonymous`: a withheld number reaches Asterisk as `"Anonymous"
          <sip:anonymous@anonymous.invalid>` (RFC 3323 §4.1.1.3), which chan_sip and chan_pjsip
          put in CALLERID(num): nothing may be sent as Planfix's `phone`.
        - `in_named_caller`: a peer PBX or softphone on a trunk sending its user name
          (`client1`, as the kelysaina sample's phones call themselves) as the number.
        - `in_subsecond`: answered and ended within a second: the cdr row is ANSWERED with
          billsec 0 (`main/cdr.c` `cdr_object_get_billsec` counts whole seconds).
        """
        ext = self._mailbox()
        trunk, name, num, did = self._inbound(c, ext, name, num)
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
        return self._in_caller(c, "in_anonymous", "Anonymous", "anonymous")

    def in_named_caller(self, c: _Call) -> Truth:
        return self._in_caller(c, "in_named_caller", "", "client1")

    def in_subsecond(self, c: _Call) -> Truth:
        name, num = self._caller()
        return self._in_caller(c, "in_subsecond", name, num, subsecond=True)

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
          FAILED, which `unanswered=no` (Asterisk's default; FreePBX leaves it) drops: a
          CDR-only PBX writes nothing (`main/cdr.c` `cdr_object_dispatch`).
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
            self._record(c, 0, phone, f"out-{number}-{ext}-{c.stamp()}-{c.linkedid}.wav")
            phone.cid_name, phone.cid_num = self.out_cnam, self.out_cnum
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
