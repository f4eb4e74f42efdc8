"""Which way the call went. FreePBX records no direction, so it is inferred, first rule wins:

1. `CRM_DIRECTION` written by the dialplan (a `CRM_DIRECTION` USER_DEFINED CEL event, or
   `cdr.userfield` = INBOUND / OUTBOUND / INTERNAL) - the admin said so;
2. the caller's channel started in an inbound context (`[pbx] inbound_contexts`) or is a trunk;
3. `cdr.did` is set (FreePBX sets it only on inbound routes);
4. some leg is a trunk, or `cdr.outbound_cnum` is set (FreePBX sets it only for trunks);
5. a phone dialled an outside-looking number that never reached a trunk (refused: NotAllowed);
6. otherwise internal.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Optional

from cdrsync.config import PbxConfig
from cdrsync.interpret.channels import OUTSIDE, PHONE, TRUNK, number_kind
from cdrsync.interpret.facts import Facts
from cdrsync.model import CallRows, Direction
from cdrsync.pbx.model import PbxModel


def first_value(rows: CallRows, column: str) -> str:
    """The first non-empty value of a cdr column over the call's rows."""
    return next((getattr(r, column) for r in rows.cdr if getattr(r, column)), "")


def decide_direction(facts: Facts, rows: CallRows, pbx: PbxConfig,
                     model: Optional[PbxModel] = None) -> tuple[Direction, str]:
    """The direction and the one-line reason for it."""
    root = facts.root.name
    if facts.direction_hint:
        return Direction(facts.direction_hint), (
            f"direction {facts.direction_hint}: CRM_DIRECTION written by the dialplan")
    if facts.entry_context and any(fnmatchcase(facts.entry_context, p)
                                   for p in pbx.inbound_contexts):
        return Direction.INBOUND, (
            f"direction inbound: {root} entered on inbound context {facts.entry_context}")
    if facts.root.kind == TRUNK:
        return Direction.INBOUND, f"direction inbound: the caller's channel {root} is a trunk"
    did = first_value(rows, "did")
    if did:
        return Direction.INBOUND, f"direction inbound: cdr.did = {did}"
    if facts.trunk_seen:
        return Direction.OUTBOUND, f"direction outbound: {root} reached a trunk"
    cnum = first_value(rows, "outbound_cnum")
    if cnum:
        return Direction.OUTBOUND, f"direction outbound: cdr.outbound_cnum = {cnum}"
    if facts.root.kind == PHONE and number_kind(facts.dialled, pbx, model) == OUTSIDE:
        return Direction.OUTBOUND, (
            f"direction outbound: {root} dialled the outside number {facts.dialled}")
    return Direction.INTERNAL, f"direction internal: {root} reached no trunk"
