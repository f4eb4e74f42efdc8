"""What cdrsync knows of one PBX: its phones, trunks, groups and rooms, each with its evidence.

The model is a bag of counted observations ("PJSIP/6871322562 began a call in from-internal",
"ring group 600 rang PJSIP/101") and the views derived from it once, when it is made. Counts
add up, so a model learned from more rows is the old one plus the new rows' observations
(`PbxModel.merged`), and what `cdrsync pbx` shows is the very evidence interpretation used.

A `PbxModel` never changes after it is made; equality and hash are those of its observations,
the hash computed once, so it is a cheap key for the caches of classification.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from cdrsync.numbers import is_digits

PHONE, TRUNK = "phone", "trunk"
RING_GROUP, QUEUE, IVR = "ring group", "queue", "ivr"
VOICEMAIL, PARKING, CONFERENCE = "voicemail", "parking lot", "conference room"
MEMO_LIMIT = 16384
_MISSING = object()
KINDS = (PHONE, TRUNK, RING_GROUP, QUEUE, IVR, VOICEMAIL, PARKING, CONFERENCE)
EXTENSION = "extension"  # a number FreePBX routes as an extension (not shown on its own)

# Observations about a device (a channel name without its "-0000001f" suffix). Each says which
# kind it points to and how `cdrsync pbx` words it; `{}` is the observation's detail.
DEVICE_CLUES: dict[str, tuple[str, str]] = {
    "began-internal": (PHONE, "calls begun in {}"),
    "rang-internal": (PHONE, "times dialled as an endpoint of context {}"),
    "route-caller": (PHONE, "calls out through an outbound route"),
    "dialled-as-ext": (PHONE, "times reached by dialling an extension"),
    "began-inbound": (TRUNK, "calls entered on {}"),
    "rang-inbound": (TRUNK, "times dialled as an endpoint of context {}"),
    "did": (TRUNK, "calls that came in on a DID (cdr.did)"),
    "route": (TRUNK, "times dialled by an outbound route ({})"),
    "dialled-number": (TRUNK, "times dialled with a number to call"),
}
# Observations naming the extension of a phone device, each a vote: the number dialled to reach
# it ("ext-dial": dst 6789 answered on PJSIP/client2), the caller id FreePBX gave its calls
# (cdr.cnum, "ext-cnum") and the one it has when it starts ("ext-cid").
EXT_CLUES = ("ext-dial", "ext-cnum", "ext-cid")
OTHER_CLUES: dict[str, str] = {
    RING_GROUP: "calls through ext-group",
    QUEUE: "calls through Queue()",
    IVR: "calls through the IVR",
    VOICEMAIL: "messages or attempts at VoiceMail()",
    PARKING: "calls parked",
    CONFERENCE: "calls in the room",
}

Observation = tuple[str, str, str, str]  # (subject kind, subject, clue, detail)


class Evidence(NamedTuple):
    """What rows show, counted: the stuff of a model before its views are derived (a keeper
    adds the evidence of many batches up and derives a model once per batch)."""

    counts: Mapping[Observation, int]  # observation -> calls that showed it
    rows: int  # cdr rows + cel events read
    calls: int  # calls (linkedids) they belong to

    @classmethod
    def none(cls) -> Evidence:
        return cls(Counter(), 0, 0)

    def plus(self, other: Evidence) -> Evidence:
        """Both, counts added up (neither is changed)."""
        counts = Counter(self.counts)
        counts.update(other.counts)
        return Evidence(counts, self.rows + other.rows, self.calls + other.calls)


@dataclass(frozen=True)
class Known:
    """One thing of the PBX as `cdrsync pbx` shows it."""

    kind: str
    name: str  # extension / trunk name / group or queue number / IVR context / mailbox / room
    devices: tuple[str, ...] = ()  # a phone's devices ("PJSIP/client2")
    members: tuple[str, ...] = ()  # a ring group's or queue's member extensions
    evidence: tuple[tuple[str, int], ...] = ()  # (what was seen, how often), strongest first

    @property
    def weight(self) -> int:
        return sum(n for _, n in self.evidence)


class PbxModel:
    """The learned PBX. Build it with `learn` (cdrsync.pbx.learn) or from stored observations."""

    __slots__ = ("observations", "rows", "calls", "_hash", "_counts", "devices", "phones", "trunks",
                 "extensions", "named_after_device", "groups", "known", "_memo", "_frozen",
                 "__weakref__")

    def __init__(self, observations: Mapping[Observation, int] | Iterable[tuple[Observation, int]]
                 = (), rows: int = 0, calls: int = 0) -> None:
        counts = Counter(dict(observations) if not isinstance(observations, Mapping)
                         else observations)
        self._counts = counts
        self.observations = tuple(sorted(counts.items()))
        self.rows = rows  # cdr rows + cel events learned from
        self.calls = calls  # calls (linkedids) they belong to
        self._hash = hash((self.observations, rows, calls))
        self.devices: dict[str, tuple[str, str]] = {}  # device -> (PHONE|TRUNK, extension)
        self.phones: dict[str, tuple[str, ...]] = {}  # extension -> devices
        self.trunks: dict[str, str] = {}  # device -> trunk name
        self.extensions: frozenset[str] = frozenset()
        # phones whose extension is their own name for want of a clue (no dialled number,
        # caller id or cnum named it): an honest "guessed" for `cdrsync show`
        self.named_after_device: frozenset[str] = frozenset()
        self.groups: dict[str, str] = {}  # number -> RING_GROUP | QUEUE | CONFERENCE | PARKING
        self.known: tuple[Known, ...] = ()
        # answers computed from this model (cdrsync.interpret.channels): kept with the model, so
        # they die with it and never answer for another model
        self._memo: dict[tuple, Any] = {}
        self._derive()
        self._frozen = True

    # -- identity -------------------------------------------------------------------------
    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PbxModel) and self._hash == other._hash
                and (self.observations, self.rows, self.calls)
                == (other.observations, other.rows, other.calls))

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_frozen"):  # set by __init__, never after
            raise AttributeError("PbxModel is immutable")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (f"PbxModel({len(self.phones)} phones, {len(self.trunks)} trunks, "
                f"{len(self.groups)} groups, {self.calls} calls, {self.rows} rows)")

    def merged(self, more: Evidence) -> PbxModel:
        """This model plus more evidence (counts add up)."""
        return PbxModel(*Evidence(self._counts, self.rows, self.calls).plus(more))

    def answer(self, compute: Callable[..., Any], *args: Any) -> Any:
        """`compute(*args, self)`, remembered for this model (at most MEMO_LIMIT answers: a
        model kept for many passes meets ever new channel names)."""
        key = (compute, *args)
        found = self._memo.get(key, _MISSING)
        if found is _MISSING:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[key] = compute(*args, self)
        return found

    # -- questions interpretation asks -------------------------------------------------------
    def device(self, device: str) -> Optional[tuple[str, str]]:
        """(PHONE, extension) or (TRUNK, "") for a known device, else None."""
        return self.devices.get(device)

    def kind_of_number(self, number: str) -> str:
        """PHONE for a phone's extension, a group's kind for its number, else ""."""
        if number in self.extensions:
            return PHONE
        return self.groups.get(number, "")

    def of_kind(self, kind: str) -> list[Known]:
        return [k for k in self.known if k.kind == kind]

    # -- derivation -----------------------------------------------------------------------
    def _derive(self) -> None:
        per_device: dict[str, Counter] = {}
        other: dict[tuple[str, str], Counter] = {}
        members: dict[tuple[str, str], Counter] = {}
        numbers = set()
        for (kind, subject, clue, detail), n in self._counts.items():
            if kind == EXTENSION:
                numbers.add(subject)
            elif kind == "dev":
                per_device.setdefault(subject, Counter())[(clue, detail)] += n
            elif clue == "member":
                members.setdefault((kind, subject), Counter())[detail] += n
            else:
                other.setdefault((kind, subject), Counter())[(clue, detail)] += n
        known: list[Known] = []
        phone_devices: dict[str, list[str]] = {}
        phone_evidence: dict[str, Counter] = {}
        unclued = set()
        for device, clues in per_device.items():
            kind, ext = _device_kind(device, clues)
            if kind is None:
                continue
            self.devices[device] = (kind, ext)
            if kind == PHONE and not any(c in EXT_CLUES for c, _ in clues):
                unclued.add(device)
            if kind == PHONE:
                phone_devices.setdefault(ext, []).append(device)
                phone_evidence.setdefault(ext, Counter()).update(
                    {_words(c, d): n for (c, d), n in clues.items() if c in DEVICE_CLUES
                     and DEVICE_CLUES[c][0] == PHONE})
            else:
                name = device.split("/", 1)[-1]
                self.trunks[device] = name
                known.append(Known(TRUNK, name, (device,), evidence=_top(
                    {_words(c, d): n for (c, d), n in clues.items()
                     if c in DEVICE_CLUES and DEVICE_CLUES[c][0] == TRUNK})))
        for ext, devices in phone_devices.items():
            self.phones[ext] = tuple(sorted(devices))
            known.append(Known(PHONE, ext, tuple(sorted(devices)),
                               evidence=_top(phone_evidence[ext])))
        self.extensions = frozenset(self.phones) | frozenset(numbers)
        self.named_after_device = frozenset(unclued)
        for (kind, subject), clues in other.items():
            if kind in (RING_GROUP, QUEUE, CONFERENCE, PARKING) and subject not in self.extensions:
                self.groups.setdefault(subject, kind)
            seen = {f"{OTHER_CLUES[kind]}{' (' + d + ')' if d else ''}": n
                    for (_, d), n in clues.items()}
            found = members.get((kind, subject), Counter())
            member_exts = tuple(sorted(dict.fromkeys(self._member_ext(m) for m in found),
                                       key=_number_key))
            known.append(Known(kind, subject, members=tuple(m for m in member_exts if m),
                               evidence=_top(seen)))
        order = {k: i for i, k in enumerate(KINDS)}
        self.known = tuple(sorted(known, key=lambda k: (order[k.kind], _number_key(k.name))))

    def _member_ext(self, member: str) -> str:
        """A member seen as a device ("PJSIP/101") or as the extension a Local leg dialled."""
        if "/" in member:
            found = self.devices.get(member)
            return found[1] if found and found[0] == PHONE else ""
        return member


def _device_kind(device: str, clues: Counter) -> tuple[Optional[str], str]:
    """Phone or trunk by the weight of the evidence (a tie goes to the phone: FreePBX dials a
    trunk by its route, which says so), and a phone's extension by its best clue."""
    score = Counter()
    for (clue, _), n in clues.items():
        if clue in DEVICE_CLUES:
            score[DEVICE_CLUES[clue][0]] += n
    if not score:
        return None, ""
    if score[TRUNK] > score[PHONE]:
        return TRUNK, ""
    peer = device.split("/", 1)[-1]
    votes = Counter()
    for (clue, detail), n in clues.items():
        if clue in EXT_CLUES:
            votes[detail] += n
    if not votes:
        return PHONE, peer
    return PHONE, max(votes.items(), key=lambda kv: (kv[1], kv[0] == peer, kv[0]))[0]


def _words(clue: str, detail: str) -> str:
    return DEVICE_CLUES[clue][1].format(detail)


def _top(evidence: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(evidence.items(), key=lambda kv: (-kv[1], kv[0])))


def _number_key(text: str) -> tuple:
    return (0, int(text), "") if is_digits(text) else (1, 0, text)
