"""The call's path as a person would tell it: ("IVR ivr-1", "101", "blind transfer", "104")."""

from __future__ import annotations

from cdrsync.interpret.facts import Facts


def route_label(facts: Facts) -> str:
    """How the call reached its extensions: "queue 400", "ring group 600", "IVR ivr-1" or ""."""
    if facts.queue:
        return f"queue {facts.queue}"
    if facts.ring_group:
        return f"ring group {facts.ring_group}"
    return f"IVR {facts.ivr}" if facts.ivr else ""


def talkers(facts: Facts) -> list[str]:
    """Who talked, in order, consecutive repeats folded (one person across Local hops)."""
    out: list[str] = []
    for talk in facts.talks:
        party = talk.party or (facts.trunk_numbers[0] if facts.trunk_numbers else "")
        if party and (not out or out[-1] != party):
            out.append(party)
    return out


def build_path(facts: Facts) -> tuple[str, ...]:
    path = [f"IVR {facts.ivr}"] if facts.ivr else []
    if facts.queue:
        path.append(f"queue {facts.queue}")
    if facts.ring_group:
        path.append(f"ring group {facts.ring_group}")
    kinds = iter(facts.transfers)
    for i, party in enumerate(talkers(facts)):
        if i:
            path.append(next(kinds, "transfer"))
        path.append(party)
    if not facts.talks and facts.voicemail:
        path.append(f"voicemail {facts.voicemail}")
    return tuple(path)
