"""A finished `Call` -> the exact requests Planfix will receive (pure; no I/O).

A `Request` is what the ledger stores in its outbox *before* anything is sent, so its `fields` are
final: a retry after a crash sends the very same body. `planfix_token` is never part of them; the
client adds it at send time, so neither the store nor `--dry-run` ever holds the token.

Internal calls (sent only with `[planfix] send_internal`): Planfix knows only `in` and `out`, so an
internal call is told from the side of `ext` (the extension Planfix attaches it to, by default the
callee who talked): `type=in`, `phone` = the calling extension, plus `data_direction=internal` so
the Planfix admin can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from cdrsync.config import Config
from cdrsync.missed import recipients
from cdrsync.model import Call, ClosedBy, Direction, Status

API = "api"  # form-encoded, to [planfix] url
MISSED = "missed"  # JSON, to [planfix] missed_url

_TYPE = {Direction.INBOUND: "in", Direction.OUTBOUND: "out", Direction.INTERNAL: "in"}


@dataclass(frozen=True)
class Request:
    """One request to Planfix, as stored in the outbox and sent (token excluded).

    `key` is unique per call and purpose, so recording the same call twice (sync and backfill)
    queues nothing twice. `not_before` (epoch seconds) holds a request back, e.g. a missed-call
    notice waiting for the callback window.
    """

    key: str
    callid: str
    target: str  # API | MISSED
    fields: dict[str, str]
    not_before: Optional[float] = field(default=None, compare=False)


def completed_requests(call: Call, cfg: Config, record_link: str = "",
                       recorded: bool = False) -> list[Request]:
    """The `COMPLETED` event of `call`, and with `ring_group_cancelled` one `Cancelled` per
    other extension that rang (Planfix's ring-group pattern). Empty for an internal call unless
    `send_internal`."""
    if call.direction is Direction.INTERNAL and not cfg.planfix.send_internal:
        return []
    base = {
        "cmd": "event",
        "event": "COMPLETED",
        "type": _TYPE[call.direction],
        "phone": call.phone or call.phone_raw,
        "diversion": call.diversion,
        "ext": call.ext,
        "callid": call.callid,
    }
    main = dict(base, duration=str(max(int(call.duration), 0)),
                is_recorded="1" if recorded else "0", status=call.status.value)
    if record_link:
        main["record_link"] = record_link
    main.update(_data_fields(call, cfg))
    out = [Request(f"{call.callid}|completed", call.callid, API, main)]
    if cfg.planfix.ring_group_cancelled and _cancelled_applies(call):
        talked = {call.ext, call.answered_by, call.final_ext}
        start = _call_start(call, cfg)
        for ext in call.rung:
            if ext in talked:
                continue
            fields = dict(base, ext=ext, duration="0", is_recorded="0",
                          status=Status.CANCELLED.value)
            if start:
                fields["data_call_start"] = start
            out.append(Request(f"{call.callid}|cancelled|{ext}", call.callid, API, fields))
    return out


def _cancelled_applies(call: Call) -> bool:
    # Planfix defines Cancelled for incoming calls that someone else picked up.
    return call.direction is Direction.INBOUND and call.status is Status.SUCCESS


def _call_start(call: Call, cfg: Config) -> str:
    if call.start is None:
        return ""
    return call.start.astimezone(cfg.source.zone).isoformat(timespec="seconds")


def _data_fields(call: Call, cfg: Config) -> dict[str, str]:
    """Analytics fields: the start time (no base field carries it) and what explains the call."""
    data: dict[str, str] = {}
    start = _call_start(call, cfg)
    if start:
        data["data_call_start"] = start
    optional = (
        ("data_did", call.did),
        ("data_phone_raw", call.phone_raw),
        ("data_path", " → ".join(call.path)),
        ("data_rung", ",".join(call.rung)),
        ("data_queue", call.queue),
        ("data_ring_group", call.ring_group),
    )
    data.update({name: value for name, value in optional if value})
    if call.direction is Direction.INTERNAL:
        data["data_direction"] = Direction.INTERNAL.value
    if call.closed_by is not ClosedBy.LINKEDID_END:
        data["data_closed_by"] = call.closed_by.value
    return data


def record_request(callid: str, link: str, is_temp: bool = False) -> Request:
    """`cmd=record`: the recording's link for a call whose `COMPLETED` went without it."""
    fields = {"cmd": "record", "callid": callid, "record_link": link}
    if is_temp:
        fields["is_temp"] = "1"
    return Request(f"{callid}|record", callid, API, fields)


def missed_requests(call: Call, cfg: Config) -> list[Request]:
    """One `callMissedNotify` per extension to tell, for a missed inbound call, when
    `[planfix] missed_url` is set. With `[missed] callback_window` the notice is held back until
    the window (plus `settle`, so the callback is surely recorded) has passed; the deliverer then
    drops it if the caller got through or was called back (see `cdrsync.missed`)."""
    if not cfg.planfix.missed_url:
        return []
    if call.direction is not Direction.INBOUND or call.status is not Status.MISSED:
        return []
    not_before = None
    if cfg.missed.callback_window > 0:
        ended = call.end or call.start
        if ended is not None:
            not_before = ended.timestamp() + cfg.missed.callback_window * 60 + cfg.schedule.settle
    return [
        Request(f"{call.callid}|missed|{ext}", call.callid, MISSED,
                {"event": "callMissedNotify", "uniqueId": call.callid, "intNum": ext,
                 "extNum": call.phone or call.phone_raw},
                not_before)
        for ext in recipients(call, cfg.missed)
    ]


def as_dry_run(request: Request) -> dict[str, str]:
    """What `--dry-run` prints: exactly the form fields or the JSON body; never the token."""
    return {k: v for k, v in request.fields.items() if k != "planfix_token"}
