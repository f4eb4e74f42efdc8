"""Rows → call, saving what damaged rows allow: the step around interpretation.

Interpretation reads rows as the PBX wrote them. Some rows lie in ways the other rows of the same
call can correct, and a call should not be lost, nor sent with nonsense, for it:

- a cdr row without a usable `calldate` (a zero or placeholder date) takes the time of its
  channel's first CEL event, else the epoch inside its uniqueid (when Asterisk created the
  channel, which is when its first row starts);
- a cdr `duration` that no call has (negative, longer than `LONGEST_CALL`, `INT_MAX`) is read
  from the channel's CEL events when it has them, else from a credible `billsec`, else as 0; a
  `billsec` longer than its row's `duration` is cut to it;
- a call without any usable time starts at the epoch inside its callid (the UTC second Asterisk
  created the caller's channel), and a talk time longer than any call is clamped.

Each correction is one reason line in `Call.reasons` (`cdrsync show` prints them), so nothing is
changed silently. What cannot be saved raises, and the pipeline quarantines the call. Pure.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Optional
from zoneinfo import ZoneInfo

from cdrsync.config import Config
from cdrsync.interpret import interpret
from cdrsync.linkedids import linkedid_epoch
from cdrsync.model import Call, CallRows, CdrRow
from cdrsync.pbx import PbxModel
from cdrsync.timeconv import LONGEST_CALL, credible_seconds, local_time, uniqueid_epoch


def read_call(rows: CallRows, cfg: Config, model: Optional[PbxModel] = None) -> Call:
    """The call the rows tell, with the corrections above among its reasons (`model`: the PBX
    as `interpret` takes it)."""
    fixed, notes = salvage_rows(rows, cfg.source.zone)
    call = interpret(fixed, cfg.pbx, cfg.source.zone, model)
    return salvage_call(call, fixed, notes)


def salvage_rows(rows: CallRows, zone: ZoneInfo) -> tuple[CallRows, list[str]]:
    """The rows with bad calldates and durations corrected from the rest of the call, and one
    line per correction."""
    # the channels' CEL spans only mend a row without a calldate or with a duration no call
    # has: most calls have none, and the spans cost a pass over every event
    spans = _channel_spans(rows) if any(
        r.calldate is None or credible_seconds(r.duration) != r.duration for r in rows.cdr) else {}
    notes: list[str] = []
    cdr = [_salvage_row(row, spans.get(row.uniqueid), zone, notes) for row in rows.cdr]
    untimed = sum(1 for e in rows.cel if e.eventtime is None)
    if untimed:
        notes.append(f"{untimed} cel event(s) carry no usable time (zero or placeholder dates): "
                     "the call's times come from the others")
    if not notes:
        return rows, notes
    return replace(rows, cdr=tuple(cdr)), notes


def salvage_call(call: Call, rows: CallRows, notes: list[str]) -> Call:
    """The interpreted call with the lines of `salvage_rows`, a start taken from its callid when
    no row had a usable time, and a talk time no call can have clamped."""
    reasons = list(call.reasons) + notes
    start, duration = call.start, call.duration
    if start is None:
        epoch = linkedid_epoch(call.callid)
        if epoch is not None:
            start = datetime.fromtimestamp(epoch, timezone.utc)
            reasons.append(f"start {start:%Y-%m-%d %H:%M:%S} UTC: no row has a usable time; "
                           f"read from the callid {call.callid}")
    if duration > LONGEST_CALL or duration < 0:
        duration = min(max(duration, 0), LONGEST_CALL)
        reasons.append(f"talk time {call.duration} s is no call's (a clock jump in the rows?): "
                       f"clamped to {duration} s")
    if (start, duration, reasons) == (call.start, call.duration, call.reasons):
        return call
    return replace(call, start=start, duration=duration, reasons=reasons)


def _channel_spans(rows: CallRows) -> dict[str, tuple[datetime, datetime]]:
    """(first, last) event time of each channel in the call's CEL."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for event in rows.cel:
        when = event.eventtime
        if when is None or not event.uniqueid:
            continue
        first, last = spans.get(event.uniqueid, (when, when))
        spans[event.uniqueid] = (min(first, when), max(last, when))
    return spans


def _salvage_row(row: CdrRow, span: Optional[tuple[datetime, datetime]], zone: ZoneInfo,
                 notes: list[str]) -> CdrRow:
    calldate, duration, billsec = row.calldate, row.duration, row.billsec
    who = row.uniqueid or row.channel or "?"
    if calldate is None and span is not None:
        calldate = span[0]
        notes.append(f"cdr row of {who}: no usable calldate; read from CEL "
                     f"({calldate:%Y-%m-%d %H:%M:%S}, the channel's first event)")
    elif calldate is None and (created := uniqueid_epoch(row.uniqueid)) is not None:
        calldate = local_time(created, zone)
        notes.append(f"cdr row of {who}: no usable calldate; read from its uniqueid "
                     f"({calldate:%Y-%m-%d %H:%M:%S}, when the channel was created)")
    if credible_seconds(duration) != duration:
        if span is not None:
            duration = credible_seconds(int((span[1] - span[0]).total_seconds()))
            source = "the channel's CEL events"
        else:
            duration = credible_seconds(billsec)
            source = "its billsec" if duration else "0: nothing else tells"
        notes.append(f"cdr row of {who}: duration {row.duration} s is no call's; "
                     f"read as {duration} s ({source})")
    if credible_seconds(billsec) != billsec or billsec > duration:
        billsec = min(credible_seconds(billsec), duration)
        notes.append(f"cdr row of {who}: billsec {row.billsec} s does not fit its duration; "
                     f"read as {billsec} s")
    if (calldate, duration, billsec) == (row.calldate, row.duration, row.billsec):
        return row
    return row._replace(calldate=calldate, duration=duration, billsec=billsec)
