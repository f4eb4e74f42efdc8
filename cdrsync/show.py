"""`cdrsync show`: a call's raw rows, the call as rebuilt, and one line per deciding rule."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Optional

from .config import Config
from .model import CallRows
from .pbx import PbxModel
from .salvage import read_call
from .state.quarantine import DROPPED, Entry
from .state.quarantine import summary as quarantine_summary

CDR_COLUMNS = ("calldate", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
               "duration", "billsec", "disposition", "uniqueid", "linkedid", "sequence", "did",
               "recordingfile")
CEL_COLUMNS = ("id", "eventtype", "eventtime", "channame", "context", "exten", "cid_num",
               "appname", "uniqueid", "linkedid", "peer", "extra")


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat(" ", "seconds")
    return "" if value is None else str(value)


def _table(title: str, columns: tuple[str, ...], rows: list[object]) -> list[str]:
    cells = [[_text(getattr(row, c)) for c in columns] for row in rows]
    widths = [min(max([len(c)] + [len(r[i]) for r in cells]), 48) for i, c in enumerate(columns)]
    lines = [f"{title} ({len(rows)} rows)"]
    lines.append("  " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in cells:
        lines.append("  " + " | ".join(v[:w].ljust(w) for v, w in zip(r, widths)))
    return lines


def render_call(rows: CallRows, cfg: Config, as_json: bool = False,
                delivery: Optional[dict] = None, held: Optional[Entry] = None,
                model: Optional[PbxModel] = None) -> str:
    """`delivery`: what the ledger knows of the call (`ledger.summary`), None if not recorded;
    `held`: its quarantine entry, if any (rows that can not be rebuilt are shown with why);
    `model`: the learned PBX, as the pipeline would use it (None: learned from the call)."""
    try:
        call = read_call(rows, cfg, model)
        failure = ""
    except Exception as exc:  # the rows are shown all the same: they are what needs a look
        call, failure = None, f"{type(exc).__name__}: {exc}"
    if as_json:
        return json.dumps({
            "cdr": [r._asdict() for r in rows.cdr],
            "cel": [e._asdict() for e in rows.cel],
            "call": dataclasses.asdict(call) if call else None,
            "error": failure or None,
            "delivery": delivery,
            "quarantine": held.as_dict() if held else None,
        }, default=_text, ensure_ascii=False)
    lines = _table("cdr", CDR_COLUMNS, list(rows.cdr))
    lines.append("")
    lines += _table("cel", CEL_COLUMNS, list(rows.cel))
    lines.append("")
    if held is not None:
        lines.append(f"quarantined ({held.state}) since "
                     f"{_text(datetime.fromtimestamp(held.first_at))}: {quarantine_summary(held)}")
        if held.state != DROPPED:
            lines.append(f"  once the rows or cdrsync are fixed: cdrsync retry --quarantined "
                         f"{held.callid}")
    if call is None:
        lines.append(f"call {rows.callid}: can not be rebuilt from these rows: {failure}")
        return "\n".join(lines + _delivery_lines(delivery))
    lines.append(f"call {call.callid}: {call.direction.value}, {call.status.value}")
    for name in ("phone", "phone_raw", "did", "diversion", "ext", "answered_by", "final_ext",
                 "duration", "start", "end", "queue", "ring_group", "closed_by"):
        value = getattr(call, name)
        if value not in ("", None):
            lines.append(f"  {name}: {_text(getattr(value, 'value', value))}")
    if call.rung:
        lines.append(f"  rung: {', '.join(call.rung)}")
    if call.path:
        lines.append(f"  path: {' → '.join(call.path)}")
    if call.recording_candidates:
        lines.append(f"  recording: {', '.join(call.recording_candidates)}")
    lines.append("why:")
    lines += [f"  - {reason}" for reason in call.reasons]
    lines += _delivery_lines(delivery)
    return "\n".join(lines)


def _delivery_lines(delivery: Optional[dict]) -> list[str]:
    if delivery is None:
        return ["delivery: not recorded by cdrsync (yet)"]
    lines = [f"delivery: recorded by {delivery['origin']} at "
             f"{_text(datetime.fromtimestamp(delivery['recorded_at']))}"]
    for request in delivery["requests"]:
        error = f", last error: {request['last_error']}" if request["last_error"] else ""
        lines.append(f"  {request['key']}: {request['state']} after {request['attempts']} "
                     f"attempt(s){error}")
    return lines
