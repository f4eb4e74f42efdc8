"""Channel names and dial strings, read the way Asterisk writes them (no knowledge of the PBX).

`PJSIP/6871322562-0000001f` is a channel of the device `PJSIP/6871322562`; `Local/101@from-queue-
00000003;1` is one half of a Local channel that dials 101 in from-queue; FreePBX's Local legs carry
prefixes (`FMPR-`, `FMGL-`, `LC-`, `RG-600*-`) around the number they stand for. A Dial string says
whether a device was dialled as an endpoint (`PJSIP/101`, `PJSIP/client2/sip:client2@10.0.0.5`,
`SIP/101`) or with a number to call through it (`PJSIP/2125550188@voipms`, `SIP/voipms/2125550188`,
`IAX2/user:secret@voipms/2125550188`, `DAHDI/g0/2125550188`): the second is what trunks are
dialled with. A DAHDI device is a channel (`DAHDI/3-1`: analog channel 3) or a span
(`DAHDI/i1/2125550188-5`: a PRI call on span 1, chan_dahdi.c names it after the number), and a
Dial of a group or span (`DAHDI/g0/...`) reaches whichever of its channels is free.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple, Optional

_DAHDI = {"DAHDI", "ZAP"}
DEVICE_TECHS = {"PJSIP", "SIP", "IAX2", "DAHDI", "ZAP", "SKINNY", "SCCP", "MGCP", "H323",
                "OOH323", "UNISTIM", "MOTIF", "USTM"}
_DEVICE = re.compile(r"^(?P<tech>[A-Za-z0-9]+)/(?P<peer>.+?)(?:-[0-9a-fA-F]{1,8})?(?:<\w+>)?$")
_LOCAL = re.compile(r"^Local/(?P<exten>[^@]*)@(?P<context>.+?)(?:-[0-9a-fA-F]{4,8})?;(?P<n>[0-9])$")
_LOCAL_PREFIX = re.compile(r"^(?:FMPR-|FMGL-|LC-|RG-[^*-]*\*?-)")  # RG-600*-101# (13+), RG-600-101#


class Device(NamedTuple):
    key: str  # "PJSIP/6871322562": the device, the same in every call
    tech: str
    peer: str


class LocalLeg(NamedTuple):
    target: str  # the number or extension the leg stands for, prefixes and "#" stripped
    context: str
    base: str  # the name without ";1" / ";2": both halves share it


_COUNTER = re.compile(r"[0-9a-fA-F]{1,8}")


@lru_cache(maxsize=8192)
def first_channel(name: str) -> str:
    """`name` with its channel counter set to 0 (`PJSIP/101-0000001f` -> `PJSIP/101-0`), else
    `name`: a device's channels have the device in common, and each name is new, so what is
    asked of a channel's device is best remembered under this one name. The device of
    `<head>-<hex counter>` is that of `<head>-0`: it is all before the counter's one dash (an
    empty peer, `PJSIP/-1f`, would take the counter in: left as it is). Cached: learning and
    interpretation ask it of the same few names of a call a dozen times."""
    head, dash, counter = name.rpartition("-")
    if dash and _COUNTER.fullmatch(counter) and not head.endswith("/"):
        return head + "-0"
    return name


def device_of(name: str) -> Optional[Device]:
    """The device behind a channel name, or None (Local, Message/, Parked/, empty...)."""
    if name.partition("/")[0].upper() not in DEVICE_TECHS:
        # what `_device_of` would say, without its pattern and caches: Local names (most of
        # the channels of a ring group or queue) are each new, and would push devices out
        return None
    return _device_of(first_channel(name))


@lru_cache(maxsize=8192)
def _device_of(name: str) -> Optional[Device]:
    found = _DEVICE.match(name)
    if not found or found.group("tech").upper() not in DEVICE_TECHS:
        return None
    tech, peer = found.group("tech"), found.group("peer")
    if tech.upper() in _DAHDI:  # DAHDI/i1/<number>: the span, not the number it carries
        peer = peer.split("/", 1)[0]
    return Device(f"{tech}/{peer}", tech, peer)


@lru_cache(maxsize=8192)
def local_of(name: str) -> Optional[LocalLeg]:
    """The Local leg of a channel name, or None; a Local name Asterisk cut short has no target."""
    if not name.startswith("Local/"):
        return None
    found = _LOCAL.match(name)
    base = name.rsplit(";", 1)[0]
    if not found:
        return LocalLeg("", "", base)
    target = _LOCAL_PREFIX.sub("", found.group("exten")).rstrip("#")
    return LocalLeg(target, found.group("context"), base)


class DialTarget(NamedTuple):
    device: str  # "PJSIP/voipms"
    number: str  # what was dialled through it ("" = the device itself, as an endpoint)


def reaches(target: DialTarget, device: str) -> bool:
    """Whether dialling `target` can have made a channel of `device`: the device itself, or any
    channel of DAHDI when a group or span was dialled (`DAHDI/g0/...` answers on `DAHDI/i1`)."""
    if target.device == device:
        return True
    return pooled(target) and device.split("/", 1)[0].upper() == target.device.split("/")[0].upper()


def pooled(target: DialTarget) -> bool:
    """A Dial of a DAHDI group or span (`DAHDI/g0/...`), not of one device."""
    tech, _, peer = target.device.partition("/")
    return tech.upper() in _DAHDI and bool(_DAHDI_POOL.match(peer))


_DAHDI_POOL = re.compile(r"[gGrRi][0-9]+$")  # g/G: group, r/R: round robin, i: span


@lru_cache(maxsize=4096)
def dial_targets(data: str) -> tuple[DialTarget, ...]:
    """What a Dial() application data dials (Asterisk 1.8 separates arguments with "|")."""
    first = re.split(r"[,|]", data, maxsplit=1)[0]
    out = []
    for part in first.split("&"):
        tech, _, rest = part.strip().partition("/")
        if tech.upper() not in DEVICE_TECHS or not rest:
            continue
        if tech.upper() == "IAX2":
            out.append(_iax2(rest))
            continue
        if "@" in rest and "/" not in rest.split("@", 1)[0]:  # PJSIP/<number>@<trunk>
            number, peer = rest.split("@", 1)
            out.append(DialTarget(f"{tech}/{peer.split('/', 1)[0]}", number))
            continue
        peer, _, extra = rest.partition("/")
        if extra.startswith(("sip:", "sips:")):  # PJSIP/<endpoint>/<contact URI>
            user = extra.split(":", 1)[1].split("@", 1)[0] if "@" in extra else ""
            out.append(DialTarget(f"{tech}/{peer}", "" if user in ("", peer) else user))
        else:  # SIP/<peer>, SIP/<trunk>/<number>, DAHDI/g0/<number>
            out.append(DialTarget(f"{tech}/{peer}", extra))
    return tuple(out)


def _iax2(rest: str) -> DialTarget:
    """`[user[:secret]@]peer[:port][/exten[@context]][/options]` (chan_iax2.c
    parse_dial_string): the device is `IAX2/<peer>`, as the channel is named; the user and its
    secret are dropped here, so that they reach no log or reason line."""
    host, _, tail = rest.partition("/")
    peer = host.rsplit("@", 1)[-1].split(":", 1)[0]
    number = tail.split("/", 1)[0].split("@", 1)[0]
    return DialTarget(f"IAX2/{peer}", number)
