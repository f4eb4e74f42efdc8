"""What the rows say about a call, before any rule decides what it means.

Two readers fill `Facts`: `bridges.read_cel` from CEL (exact: who was bridged with the caller and
when) and `legs.read_cdr` from CDR rows only (Asterisk 13/14 sites with CEL off). The rules
(direction, status, transfers) only ever look at `Facts`, so both modes decide alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from cdrsync.interpret.channels import ChanInfo


@dataclass(frozen=True)
class Talk:
    """The caller was bridged with `party` (a phone's extension or an outside number)."""

    party: str
    channel: str
    start: Optional[datetime]
    end: Optional[datetime]
    outside: bool = False  # the conversation crossed a trunk (outbound, forward to a mobile)


@dataclass
class Facts:
    mode: str  # "cel" | "cdr"
    root: ChanInfo  # the caller's channel
    root_uniqueid: str
    entry_context: str = ""  # context the root channel started in (CEL only)
    dialled: str = ""  # what the root channel dialled / the number it arrived on
    caller_num: str = ""
    caller_name: str = ""
    start: Optional[datetime] = None  # aware UTC
    end: Optional[datetime] = None
    uniqueids: list[str] = field(default_factory=list)
    rung: list[str] = field(default_factory=list)  # extensions, in order, no repeats
    rung_channels: dict[str, str] = field(default_factory=dict)  # ext -> first channel name
    outcomes: dict[str, str] = field(default_factory=dict)  # ext -> how its leg ended
    talks: list[Talk] = field(default_factory=list)
    trunk_numbers: list[str] = field(default_factory=list)  # outside numbers dialled via trunks
    trunk_seen: bool = False  # some non-root channel is a trunk
    dialstatus: str = ""  # the caller's last Dial/Queue result (HANGUP dialstatus / disposition)
    trunk_disposition: str = ""  # CDR disposition of the caller's row towards a trunk
    ivr: str = ""  # last IVR context the caller was in
    after_ivr: str = ""  # where the caller went from that IVR ("": it stayed there to the end)
    voicemail: str = ""  # mailbox the caller reached, if any
    queue: str = ""
    ring_group: str = ""
    transfers: list[str] = field(default_factory=list)  # "blind transfer" / "attended transfer"
    direction_hint: str = ""  # CRM_DIRECTION written by the dialplan
    route_ran: str = ""  # how an outbound route showed itself (outbound_cnum, its contexts)
    routed_to: str = ""  # the extension an inbound route sent the call to (cdr dst there)
    mixmonitor_files: list[str] = field(default_factory=list)
    caller_seconds: int = 0  # how long the caller's channel existed
    # (start, end) when the outside party waited without a person (parked, holding bridge,
    # back in a queue): not talk time, even between two talks
    held: list[tuple[Optional[datetime], Optional[datetime]]] = field(default_factory=list)
