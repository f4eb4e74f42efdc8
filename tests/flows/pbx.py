"""The matrix's one door to interpretation: every call of a synthetic PBX, told as cdrsync tells it.

cdrsync learns a model of the PBX from *all* its rows (`cdrsync.pbx.learn`, the contract of
issue 13) and interprets each call with it. What Planfix would receive comes from the request
builders themselves, so "sent or not" and "which phone" are what the outbox would hold, not a
second opinion of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from zoneinfo import ZoneInfo

from cdrsync.config import Config, PbxConfig, PlanfixConfig, SourceConfig
from cdrsync.grouping import group_calls
from cdrsync.interpret import interpret
from cdrsync.model import Call
from cdrsync.pbx import PbxModel, learn
from cdrsync.planfix.messages import completed_requests, missed_requests
from cdrsync.source.rows import cdr_row, cel_event
from tests import synth


def tell(calls: Iterable[synth.SynthCall], pbx: PbxConfig, zone: ZoneInfo,
         learned: str = "all") -> dict[str, Call]:
    """Each call of one PBX by its callid, the model learned from every row of that PBX
    (`learned` "all"), from only the call's own rows ("call": a first call on a new PBX, a
    backfill of one call) or from nothing ("none": an empty model, every device guessed).

    CEL ids are given in the order the PBX writes the events (`synth.landing_order`), as the
    database's auto-increment would.
    """
    cdr, cel = [], []
    for table, row in synth.landing_order(calls):
        if table == "cdr":
            cdr.append(cdr_row(row))
        else:
            cel.append(cel_event(dict(row, id=len(cel) + 1)))
    groups = group_calls(cdr, cel)
    if learned == "call":
        return {g.callid: interpret(g, pbx, zone) for g in groups}  # model of its own rows
    model = learn(cdr, cel, pbx=pbx) if learned == "all" else PbxModel()
    return {g.callid: interpret(g, pbx, zone, model) for g in groups}


def planfix_view(call: Call, pbx: PbxConfig) -> tuple[bool, str, tuple[str, ...]]:
    """(a COMPLETED is sent, its `phone`, the extensions a missed-call notice goes to)."""
    cfg = Config(source=SourceConfig(url="sqlite://", timezone="UTC"),
                 planfix=PlanfixConfig(url="http://127.0.0.1/pf", token="t",
                                       missed_url="http://127.0.0.1/missed"),
                 pbx=pbx)
    sent = completed_requests(call, cfg)
    notices = missed_requests(call, cfg)
    return (bool(sent), sent[0].fields["phone"] if sent else "",
            tuple(r.fields["intNum"] for r in notices))
