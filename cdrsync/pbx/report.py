"""The model in words: `cdrsync pbx` (one line per thing, with its evidence) and the one-line
summary of `cdrsync check`, so that an admin can see in one look what cdrsync believes."""

from __future__ import annotations

from cdrsync.pbx.model import (
    CONFERENCE,
    IVR,
    KINDS,
    PARKING,
    PHONE,
    QUEUE,
    RING_GROUP,
    TRUNK,
    VOICEMAIL,
    Known,
    PbxModel,
)

THIN_CALLS = 20  # fewer calls than this teach too little: check warns
_PLURAL = {PHONE: "phones", TRUNK: "trunks", RING_GROUP: "ring groups", QUEUE: "queues",
           IVR: "IVRs", VOICEMAIL: "voicemail boxes", PARKING: "parking lots",
           CONFERENCE: "conference rooms"}


def _n(count: int) -> str:
    return f"{count:,}"


def _counted(text: str, count: int) -> str:
    """`212 calls begun in ...`, `1 call begun in ...`."""
    if count == 1:
        for many, one in (("calls ", "call "), ("times ", "time ")):
            if text.startswith(many):
                text = one + text[len(many):]
    return f"{_n(count)} {text}"


def line(known: Known) -> str:
    """`phone 6871322562 (PJSIP/6871322562): 212 calls begun in from-internal; ...`"""
    evidence = "; ".join(_counted(text, n) for text, n in known.evidence)
    if known.kind == PHONE:
        return f"phone {known.name} ({', '.join(known.devices)}): {evidence}"
    if known.kind in (RING_GROUP, QUEUE):
        members = " ".join(known.members) or "none seen"
        return f"{known.kind} {known.name}: members {members} ({evidence})"
    return f"{known.kind} {known.name}: {evidence}"


def counts(model: PbxModel) -> str:
    """`5 phones, 1 trunk, 2 ring groups, ...` (kinds with none are left out)."""
    found = [(kind, len(model.of_kind(kind))) for kind in KINDS]
    return ", ".join(f"{n} {_PLURAL[k] if n != 1 else k}" for k, n in found if n) or "nothing"


def lines(model: PbxModel) -> list[str]:
    out = [f"learned from {_n(model.rows)} rows ({_n(model.calls)} calls): {counts(model)}"]
    out += [line(k) for k in model.known]
    return out


def summary(model: PbxModel) -> tuple[bool, str]:
    """(thin, one line): thin when too few calls, no phone or no trunk was seen."""
    thin = model.calls < THIN_CALLS or not model.phones or not model.trunks
    text = f"learned from {_n(model.calls)} calls: {counts(model)}"
    if thin:
        text += (f"; too little to know this PBX (fewer than {THIN_CALLS} calls, or no phone "
                 "or trunk seen): devices it has not seen are guessed from their names")
    return thin, text
