"""How the call ended, in Planfix's words, with the reason a person would give.

Answered means a phone talked to the outside party (or, internally, to the caller): a talk from the
bridge timeline, never an ANSWER event or an ANSWERED row of an IVR, queue or voicemail.
Unanswered outbound calls take the Dial result (BUSY, NOANSWER/CANCEL, CHANUNAVAIL/CONGESTION/
FAILED); a phone that dialled an outside number that never reached a trunk was refused by the
dialplan (NotAllowed). An inbound caller who hung up in an IVR before anything rang is Missed,
or - with `[pbx] ivr_hangup_missed = false` - Success with no extension and no talk time, since
such offices treat the IVR as the answer. Only a caller whose last place was the IVR hung up
there: one that chose an option and was sent on (a queue with no agent, a ring group or an
extension that could not ring) is told by where it went.
"""

from __future__ import annotations

from cdrsync.config import PbxConfig
from cdrsync.interpret.facts import Facts
from cdrsync.model import Direction, Status

_OUTBOUND = {"BUSY": Status.BUSY, "NOANSWER": Status.NO_ANSWER, "NO ANSWER": Status.NO_ANSWER,
             "CANCEL": Status.NO_ANSWER, "CHANUNAVAIL": Status.NOT_AVAILABLE,
             "CONGESTION": Status.NOT_AVAILABLE, "FAILED": Status.NOT_AVAILABLE,
             "ANSWER": Status.SUCCESS, "ANSWERED": Status.SUCCESS}


def decide_status(facts: Facts, direction: Direction, pbx: PbxConfig) -> tuple[Status, str]:
    """The status and the one-line reason for it."""
    if facts.talks:
        first = facts.talks[0]
        # isoformat, not strftime (a tenth of its cost): every answered call has this line
        when = f"{first.start.time().isoformat('seconds')} UTC" if first.start else \
            "an unknown time"
        who = first.channel
        return Status.SUCCESS, f"answered: {who} bridged with the other party at {when}"
    if direction == Direction.OUTBOUND:
        return _outbound(facts)
    return _unanswered(facts, direction, pbx)


def _outbound(facts: Facts) -> tuple[Status, str]:
    if not facts.trunk_seen and facts.route_ran:
        # the route ran but its Dial made no trunk channel: chan_sip peer UNREACHABLE, PJSIP
        # without a contact (CHANUNAVAIL / CONGESTION before any channel existed)
        return Status.NOT_AVAILABLE, (
            f"not available: an outbound route ran ({facts.route_ran}) but no trunk channel "
            f"came up ({facts.dialstatus or 'no dial status'})")
    if not facts.trunk_seen:
        return Status.NOT_ALLOWED, (
            f"not allowed: {facts.root.name} dialled {facts.dialled} and no trunk was dialled")
    result = facts.trunk_disposition or facts.dialstatus
    status = _OUTBOUND.get(result.upper(), Status.NO_ANSWER)
    if status == Status.SUCCESS:  # answered without any bridge: nobody talked
        status = Status.NO_ANSWER
    return status, f"{status.value}: the trunk said {result or 'nothing'}; nobody talked"


def _unanswered(facts: Facts, direction: Direction, pbx: PbxConfig) -> tuple[Status, str]:
    waited = f"after {facts.caller_seconds} s"
    rang = ", ".join(f"{e} ({facts.outcomes.get(e, 'rang')})" for e in facts.rung)
    if facts.voicemail and not facts.rung:
        where = f"IVR {facts.ivr} sent it to" if facts.ivr else "went straight to"
        return Status.MISSED, (f"missed: {where} voicemail {facts.voicemail} (no phone rang: "
                               "DND, a forward to voicemail, an unregistered phone)")
    if direction == Direction.INBOUND and facts.ivr and not facts.after_ivr and not facts.rung:
        if not pbx.ivr_hangup_missed:
            return Status.SUCCESS, (f"handled: caller left IVR {facts.ivr} {waited}; "
                                    "[pbx] ivr_hangup_missed = false")
        return Status.MISSED, (f"missed: caller hung up in IVR {facts.ivr} {waited}; "
                               "no phone was bridged")
    if facts.voicemail:
        where = f"rang {rang}, then" if rang else "went to"
        return Status.MISSED, f"missed: {where} voicemail {facts.voicemail}; no phone was bridged"
    if facts.queue:
        return Status.MISSED, (f"missed: caller left queue {facts.queue} {waited}; "
                               f"rang {rang or 'no agent'}; no agent was bridged")
    if facts.ring_group:
        return Status.MISSED, (f"missed: ring group {facts.ring_group} rang {rang or 'nobody'}; "
                               f"caller hung up {waited}")
    if rang:
        return Status.MISSED, f"missed: rang {rang}; caller hung up {waited}, no phone was bridged"
    return Status.MISSED, f"missed: no extension rang; caller hung up {waited}"
