"""A finished `Call` -> the exact requests Planfix will receive (pure; no I/O).

A `Request` is what the ledger stores in its outbox *before* anything is sent, so its `fields` are
final: a retry after a crash sends the very same body. `planfix_token` is never part of them; the
client adds it at send time, so neither the store nor `--dry-run` ever holds the token.

Internal calls (sent only with `[planfix] send_internal`): Planfix knows only `in` and `out`, so an
internal call is told from the side of `ext` (the extension Planfix attaches it to, by default the
callee who talked): `type=in`, `phone` = the calling extension, plus `data_direction=internal` so
the Planfix admin can tell them apart.

Missed calls with `[missed] notify = "responsible"`: who is told is Planfix's to say, and it is
asked only once the call's `COMPLETED` went. So a missed call queues one `RESPONSIBLE` request (a
`callInfoRespNum`, with the extensions that rang as its `FALLBACK`); the deliverer sends it
after the `COMPLETED` and, in one transaction, replaces it by the `callMissedNotify` requests for
the extensions named in the answer (`notices()`), which then go like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from cdrsync.config import Config
from cdrsync.missed import recipients
from cdrsync.model import Call, ClosedBy, Direction, Status

API = "api"  # form-encoded, to [planfix] url
MISSED = "missed"  # JSON, to [planfix] missed_url
RESPONSIBLE = "responsible"  # JSON callInfoRespNum, to [planfix] missed_url; becomes notices
FALLBACK = "fallback"  # field of a RESPONSIBLE request, not sent: who is told if nobody is named

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
    target: str  # API | MISSED | RESPONSIBLE
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
        # "" for a caller id that is no number (anonymous); internal: the calling extension
        "phone": call.phone or (call.phone_raw if call.direction is Direction.INTERNAL else ""),
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
    `[planfix] missed_url` is set — or, with `notify = "responsible"` and a caller's number, the
    one `RESPONSIBLE` request that will become them. With `[missed] callback_window` they are
    held back until the window (plus `settle`, so the callback is surely recorded) has passed;
    the deliverer then drops them if the caller got through or was called back (see
    `cdrsync.missed`)."""
    if not cfg.planfix.missed_url:
        return []
    if call.direction is not Direction.INBOUND or call.status is not Status.MISSED:
        return []
    not_before = None
    if cfg.missed.callback_window > 0:
        ended = call.end or call.start
        if ended is not None:
            not_before = ended.timestamp() + cfg.missed.callback_window * 60 + cfg.schedule.settle
    phone = call.phone or call.phone_raw
    told = recipients(call, cfg.missed)
    if cfg.missed.notify == "responsible" and phone:
        # intNum: the extension called; Planfix answers "no persons responsible" when that one
        # is the responsible, and the fallback (who rang, that extension first) tells them
        return [Request(f"{call.callid}|responsible", call.callid, RESPONSIBLE,
                        {"event": "callInfoRespNum", "uniqueId": call.callid,
                         "intNum": call.ext or next(iter(told), ""), "extNum": phone,
                         FALLBACK: ",".join(told)},
                        not_before)]
    return notices(call.callid, phone, told, not_before)


def notices(callid: str, phone: str, extensions: Iterable[str],
            not_before: Optional[float] = None) -> list[Request]:
    """The `callMissedNotify` of a missed call from `phone` for each extension; the keys
    (callid|missed|ext) make queuing them twice, after a crash, queue nothing new."""
    return [Request(f"{callid}|missed|{ext}", callid, MISSED,
                    {"event": "callMissedNotify", "uniqueId": callid, "intNum": ext,
                     "extNum": phone},
                    not_before)
            for ext in extensions]


def lookup_body(request: Request) -> dict[str, str]:
    """What a `RESPONSIBLE` request sends (its fields but the fallback); the token comes later."""
    return {k: v for k, v in request.fields.items() if k != FALLBACK}


def fallback(request: Request) -> tuple[str, ...]:
    """The extensions a `RESPONSIBLE` request tells when Planfix names nobody."""
    return tuple(ext for ext in request.fields.get(FALLBACK, "").split(",") if ext)


def as_dry_run(request: Request) -> dict[str, str]:
    """What `--dry-run` prints: exactly the form fields or the JSON body; never the token."""
    return {k: v for k, v in request.fields.items() if k != "planfix_token"}
