"""Learn the PBX from its rows: `learn(cdr_rows, cel_events, base, pbx) -> PbxModel`, pure.

What counts as evidence, and why (FreePBX 13-17 dialplans, Asterisk 13-20):

- A channel is created in its endpoint's context, dialled or dialling: `CHAN_START` in
  `from-internal` (`[pbx] internal_contexts`) is a phone, in `from-pstn` / `from-trunk*`
  (`[pbx] inbound_contexts`) a trunk. Its caller id there names a phone's extension.
- Dial strings: a device dialled as an endpoint (`PJSIP/client2`, `SIP/101`) after the caller
  dialled `dst` 6789 is the phone of extension 6789; a device dialled with a number to call
  (`PJSIP/2125550188@voipms`, `SIP/voipms/2125550188`) is a trunk.
- CDR columns FreePBX fills: `did` only on inbound routes (the channel is a trunk),
  `outbound_cnum` only in `macro-dialout-trunk` (the caller is a phone), `cnum` the internal
  caller's extension.
- Ring groups are the `ext-group` extensions, with the members they dialled; queues the first
  argument of `Queue()` (members `Local/<ext>@from-queue`); IVRs the `ivr-*` contexts; voicemail
  boxes, parking lots and conference rooms the arguments of `VoiceMail`, `Park` / `PARK_START`,
  `ConfBridge` / `MeetMe`.

Each observation counts once per call (linkedid), so the evidence reads as calls. One pass over
the rows, a few string tests per row: learning follows every pass at a small cost. A row that
cannot be read (damaged, of a shape nothing expected) is left out with a warning: it costs
that row's evidence, never the pass.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache
from operator import itemgetter
from typing import Optional

from cdrsync.config import PbxConfig
from cdrsync.model import CdrRow, CelEvent
from cdrsync.numbers import is_digits
from cdrsync.pbx.freepbx import (
    EXTENSION_CONTEXTS,
    GROUP_CONTEXTS,
    IVR_PREFIX,
    NOT_A_NUMBER,
    PARK_APPS,
    RING_GROUP_CONTEXT,
    ROOM_APPS,
    mailbox,
    voicemail_destination,
)
from cdrsync.pbx.model import (
    CONFERENCE,
    EXTENSION,
    IVR,
    PARKING,
    QUEUE,
    RING_GROUP,
    VOICEMAIL,
    Evidence,
    Observation,
    PbxModel,
)
from cdrsync.pbx.names import device_of, dial_targets, local_of, pooled, reaches

_DEFAULT = PbxConfig()
log = logging.getLogger("cdrsync.pbx")


def learn(cdr_rows: Iterable[CdrRow], cel_events: Iterable[CelEvent],
          base: Optional[PbxModel] = None, pbx: Optional[PbxConfig] = None) -> PbxModel:
    """The model `base` (or an empty one) plus what these rows show."""
    found = observe(cdr_rows, cel_events, pbx)
    return PbxModel(*found) if base is None else base.merged(found)


def observe(cdr_rows: Iterable[CdrRow], cel_events: Iterable[CelEvent],
            pbx: Optional[PbxConfig] = None) -> Evidence:
    """The evidence of these rows (`learn` without deriving a model from it)."""
    pbx = pbx or _DEFAULT
    # (call, observation) in the order first seen; counted once all rows are read, which is
    # cheaper than a test and a count per note (the calls note the same things again and again)
    seen: dict[tuple[str, Observation], None] = {}
    rows = 0

    def note(call: str, observation: Observation) -> None:
        seen[call, observation] = None

    for event in cel_events:
        rows += 1
        try:
            _from_event(event, pbx, note)
        except Exception as exc:  # a damaged event teaches nothing, and costs nothing else
            _skipped("cel event", event.id, event.linkedid or event.uniqueid, exc)
    first_dials: dict[tuple[str, str], CdrRow] = {}
    for row in cdr_rows:
        rows += 1
        try:
            _from_row(row, pbx, note)
            if row.lastapp.lower() == "dial":
                key = (row.linkedid or row.uniqueid, row.channel)
                if key not in first_dials or row.sequence < first_dials[key].sequence:
                    first_dials[key] = row
        except Exception as exc:
            _skipped("cdr row", row.sequence, row.linkedid or row.uniqueid, exc)
    for row in first_dials.values():
        try:
            _extension_dialled(row, note)
        except Exception as exc:
            _skipped("cdr row", row.sequence, row.linkedid or row.uniqueid, exc)
    # C-level loops: `seen` holds every note
    return Evidence(Counter(map(itemgetter(1), seen)), rows, len(set(map(itemgetter(0), seen))))


def _skipped(what: str, key: object, call: object, exc: Exception) -> None:
    """Learning is per row: a row it cannot read is left out with a reason in the log (its type
    of error only: the message could quote the row), the way a call's interpretation is
    quarantined alone. What the row noted before it failed stays: each note is a field read."""
    log.warning("learning the PBX: %s %s of call %s left out (%s)", what, key, call,
                type(exc).__name__)


@lru_cache(maxsize=1024)
def _context_kind(context: str, internal: tuple[str, ...], inbound: tuple[str, ...]) -> str:
    if any(fnmatchcase(context, p) for p in inbound):
        return "inbound"
    if any(fnmatchcase(context, p) for p in internal):
        return "internal"
    return ""


def _from_event(event: CelEvent, pbx: PbxConfig, note) -> None:
    call = event.linkedid or event.uniqueid
    kind = event.eventtype
    context = event.context
    if kind == "CHAN_START":
        device = device_of(event.channame)
        if device is None:
            return
        side = _context_kind(context, pbx.internal_contexts, pbx.inbound_contexts)
        if not side:
            return
        began = event.uniqueid == event.linkedid
        note(call, ("dev", device.key, ("began-" if began else "rang-") + side, context))
        if side == "internal" and is_digits(event.cid_num):
            note(call, ("dev", device.key, "ext-cid", event.cid_num))
        return
    if context == RING_GROUP_CONTEXT and event.exten not in NOT_A_NUMBER:
        note(call, (RING_GROUP, event.exten, "seen", ""))
    elif context.startswith(IVR_PREFIX):
        note(call, (IVR, context, "seen", ""))
    if kind == "APP_START":
        _from_app(call, event.appname, event.appdata, note)
    elif kind == "PARK_START":
        lot = str(_extra(event.extra).get("parking_lot") or "default")
        note(call, (PARKING, lot, "seen", ""))
    elif event.appname.lower() == "dial" and kind in ("ANSWER", "BRIDGE_ENTER", "HANGUP"):
        _from_dial(call, event.appdata, "", context, note)


def _from_row(row: CdrRow, pbx: PbxConfig, note) -> None:
    call = row.linkedid or row.uniqueid
    caller = device_of(row.channel)
    context = row.dcontext
    if caller is not None:
        if row.did:
            note(call, ("dev", caller.key, "did", ""))
        elif row.cnum and is_digits(row.cnum) and _context_kind(
                context, pbx.internal_contexts, ()) == "internal" and not row.outbound_cnum:
            note(call, ("dev", caller.key, "ext-cnum", row.cnum))
        if _context_kind(context, (), pbx.inbound_contexts):
            note(call, ("dev", caller.key, "began-inbound", context))
    app = row.lastapp.lower()
    if context in EXTENSION_CONTEXTS and is_digits(row.dst):
        note(call, (EXTENSION, row.dst, "dialled", context))
    box = voicemail_destination(row.dst) if context == "ext-local" else None
    if box:
        note(call, (VOICEMAIL, box, "seen", ""))
    if context == RING_GROUP_CONTEXT and row.dst not in NOT_A_NUMBER:
        note(call, (RING_GROUP, row.dst, "seen", ""))
        _member(call, RING_GROUP, row.dst, row.dstchannel, note)
    elif context.startswith(IVR_PREFIX):
        note(call, (IVR, context, "seen", ""))
    if app == "queue":
        queue = row.lastdata.split(",", 1)[0].split("|", 1)[0].strip()
        if queue:
            note(call, (QUEUE, queue, "seen", ""))
            _member(call, QUEUE, queue, row.dstchannel, note)
    elif app == "dial":
        dialled = _from_dial(call, row.lastdata, row.dstchannel, context, note)
        if dialled and caller is not None and row.outbound_cnum and not row.did:
            note(call, ("dev", caller.key, "route-caller", ""))
    else:
        _from_app(call, row.lastapp, row.lastdata, note)


def _from_app(call: str, app: str, data: str, note) -> None:
    name = app.lower()
    first = data.split(",", 1)[0].split("|", 1)[0].strip()
    if name == "queue" and first:
        note(call, (QUEUE, first, "seen", ""))
    elif name == "voicemail" and mailbox(data):
        note(call, (VOICEMAIL, mailbox(data), "seen", ""))
    elif name in ROOM_APPS and first:
        note(call, (CONFERENCE, first, "seen", ""))
    elif name in PARK_APPS:
        note(call, (PARKING, first or "default", "seen", ""))


def _extension_dialled(row: CdrRow, note) -> None:
    """`dst` 6789 answered on PJSIP/client2: client2 is the phone of 6789. Only the first Dial
    of a channel in a call tells it: `dst` stays what was dialled first, so after a transfer
    the next Dial (PJSIP/104) still shows dst 101."""
    context, caller = row.dcontext, device_of(row.channel)
    answered = device_of(row.dstchannel)
    if (answered is None or context in GROUP_CONTEXTS or context.startswith(IVR_PREFIX)
            or row.dst in NOT_A_NUMBER or row.dst.startswith(("vm", "*"))
            or (caller is not None and caller.key == answered.key)):
        return
    if any(reaches(t, answered.key) and not t.number for t in dial_targets(row.lastdata)):
        note(row.linkedid or row.uniqueid, ("dev", answered.key, "ext-dial", row.dst))


def _from_dial(call: str, data: str, dstchannel: str, context: str, note) -> bool:
    """Evidence from a Dial string; True when it dialled a number through a trunk. With the
    row's `dstchannel` only the device that really answered or rang counts (a pickup puts the
    picker there while the string still names the phone that rang)."""
    answered = device_of(dstchannel) if dstchannel else None
    through_trunk = False
    for target in dial_targets(data):
        if answered is None and pooled(target):
            continue  # which channel of the group answered is not known here
        if answered is not None and not reaches(target, answered.key):
            continue
        device = answered.key if answered is not None else target.device
        if target.number:
            through_trunk = True
            via = "macro-dialout-trunk" if context in ("", "from-internal") else context
            clue = "route" if context.startswith(("outrt", "macro-dialout")) else "dialled-number"
            note(call, ("dev", device, clue, via if clue == "route" else ""))
        elif answered is not None:
            note(call, ("dev", device, "dialled-as-ext", ""))
    return through_trunk


def _member(call: str, kind: str, group: str, dstchannel: str, note) -> None:
    local = local_of(dstchannel)
    if local is not None:
        if local.target:
            note(call, (kind, group, "member", local.target))
        return
    device = device_of(dstchannel)
    if device is not None:
        note(call, (kind, group, "member", device.key))


def _extra(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
