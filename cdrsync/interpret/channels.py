"""Channel name -> what it is: a phone of an extension, a trunk, a Local leg, or something else.

FreePBX names tell who is behind a channel: `PJSIP/101-0000001f` is the device of extension 101,
`PJSIP/carrier-00000020` a trunk, `Local/101@from-queue-00000003;1` a queue member leg,
`Local/FMPR-101@...` follow-me, `Local/LC-101@...` / `Local/RG-600*-101#@...` ring-group confirm
legs. A device whose name is not an extension number is a trunk unless `[pbx] trunk_channels` is
set, in which case exactly the matching channels are trunks and every other device is a phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from cdrsync.config import PbxConfig

PHONE, TRUNK, LOCAL, OTHER = "phone", "trunk", "local", "other"
DEVICE_TECHS = {"PJSIP", "SIP", "IAX2", "DAHDI", "ZAP", "SKINNY", "SCCP", "MGCP", "H323",
                "OOH323", "UNISTIM", "MOTIF", "USTM"}
_DEVICE = re.compile(r"^(?P<tech>[A-Za-z0-9]+)/(?P<peer>.+?)(?:-[0-9a-fA-F]{1,8})?(?:<\w+>)?$")
_LOCAL = re.compile(r"^Local/(?P<exten>[^@]*)@(?P<context>.+?)(?:-[0-9a-fA-F]{4,8})?;(?P<n>\d)$")
_LOCAL_PREFIX = re.compile(r"^(?:FMPR-|FMGL-|LC-|RG-[^*]*\*-?)")


@dataclass(frozen=True)
class ChanInfo:
    name: str
    kind: str  # PHONE / TRUNK / LOCAL / OTHER
    ext: str = ""  # extension of a phone, or the extension a Local leg rings
    number: str = ""  # outside number a Local leg dials (follow-me / forward to a mobile)
    base: str = ""  # Local name without ";1"/";2": both halves share it
    context: str = ""  # Local context (from-queue, from-internal, ...)

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL


@lru_cache(maxsize=4096)
def classify(name: str, pbx: PbxConfig) -> ChanInfo:
    """What the channel called `name` is, under the [pbx] settings."""
    local = _LOCAL.match(name)
    if local:
        target = _LOCAL_PREFIX.sub("", local.group("exten")).rstrip("#")
        is_ext = bool(re.match(pbx.extension_pattern, target))
        return ChanInfo(name, LOCAL, ext=target if is_ext else "",
                        number="" if is_ext else target,
                        base=name.rsplit(";", 1)[0], context=local.group("context"))
    if name.startswith("Local/"):
        return ChanInfo(name, LOCAL, base=name.rsplit(";", 1)[0])
    device = _DEVICE.match(name)
    if not device or device.group("tech").upper() not in DEVICE_TECHS:
        return ChanInfo(name, OTHER)
    peer = device.group("peer")
    if pbx.trunk_channels:
        if any(re.search(p, name) for p in pbx.trunk_channels):
            return ChanInfo(name, TRUNK)
        return ChanInfo(name, PHONE, ext=peer)
    if re.match(pbx.extension_pattern, peer):
        return ChanInfo(name, PHONE, ext=peer)
    return ChanInfo(name, TRUNK)


