"""Channel name -> what it is on this PBX: a phone of an extension, a trunk, a Local leg, other.

The PBX model (cdrsync.pbx) knows each device from the rows: `PJSIP/6871322562` began its calls
in from-internal, so it is the phone of 6871322562; `PJSIP/client2` was reached by dialling 6789,
so it is the phone of 6789; `PJSIP/voipms` brought calls in on from-trunk, so it is a trunk. First
rule wins:

1. `[pbx] trunk_channels`: exactly the matching devices are trunks, every other one a phone;
2. `[pbx] extension_pattern`: a device whose name matches is the phone of that number (a
   number the model knows as a ring group's, a queue's, a room's or a lot's stays that);
3. what the model learned;
4. a device the rows say nothing about: a 2-6 digit name is a phone, any other a trunk (a guess,
   and the reason line says so).

A Local leg stands for the number in its name (`Local/101@from-queue`, `Local/FMPR-101@…`,
`Local/RG-600*-89161112233#@…`): a phone's extension, a group's or queue's number (which never
"rang" as an extension), or an outside number (follow-me, forward).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

from cdrsync.config import PbxConfig
from cdrsync.numbers import looks_outside
from cdrsync.pbx.model import PHONE as MODEL_PHONE
from cdrsync.pbx.model import PbxModel
from cdrsync.pbx.names import device_of, first_channel, local_of

PHONE, TRUNK, LOCAL, OTHER = "phone", "trunk", "local", "other"
OUTSIDE, GROUP = "outside", "group"
_GUESS = re.compile(r"^[0-9]{2,6}$")  # the shape of an extension, when nothing else is known
_NEVER = r"(?!)"
_NOTHING = PbxModel()  # the model when nothing was learned


@dataclass(frozen=True)
class ChanInfo:
    name: str
    kind: str  # PHONE / TRUNK / LOCAL / OTHER
    ext: str = ""  # extension of a phone, or the extension a Local leg rings
    number: str = ""  # outside number a Local leg dials (follow-me / forward to a mobile)
    base: str = ""  # Local name without ";1"/";2": both halves share it
    context: str = ""  # Local context (from-queue, from-internal, ...)
    device: str = ""  # "PJSIP/6871322562": the device behind a phone or trunk channel
    rule: str = ""  # why it is what it is (for `cdrsync show`)
    group: str = ""  # the ring group / queue / room number a Local leg stands for


def classify(name: str, pbx: PbxConfig, model: Optional[PbxModel] = None) -> ChanInfo:
    """What the channel called `name` is, under the [pbx] settings and the learned model
    (None: nothing learned). Remembered by the model itself, never across models: once per
    device for its channels (`PJSIP/101-0000001f`, `PJSIP/101-00000020`: each name is new, the
    answer the same but for the name), else once per name."""
    model = model or _NOTHING
    if name.startswith("Local/"):  # its name says what it stands for
        return model.answer(_classify, name, pbx)
    same = model.answer(_classify, first_channel(name), pbx)
    # the device's answer under this channel's name (a device's has no Local fields to drop)
    return same if same.name == name else _renamed(same, name)


def _renamed(info: ChanInfo, name: str) -> ChanInfo:
    """`replace(info, name=name)` without the frozen `__init__`, which sets each field through
    `object.__setattr__` (about 4 µs): interpretation makes one per channel. Equality, hash and
    immutability are the dataclass's own and see the same fields."""
    renamed = object.__new__(ChanInfo)
    object.__setattr__(renamed, "__dict__", {**info.__dict__, "name": name})
    return renamed


def _classify(name: str, pbx: PbxConfig, model: PbxModel) -> ChanInfo:
    local = local_of(name)
    if local is not None:
        kind = number_kind(local.target, pbx, model) if local.target else ""
        return ChanInfo(name, LOCAL, ext=local.target if kind == PHONE else "",
                        number=local.target if kind == OUTSIDE else "", base=local.base,
                        context=local.context,
                        group=local.target if kind not in (PHONE, OUTSIDE, "") else "")
    device = device_of(name)
    if device is None:
        return ChanInfo(name, OTHER)
    kind, ext, rule = device_kind(device.key, device.peer, pbx, model)
    return ChanInfo(name, kind, ext=ext, device=device.key, rule=rule)


def device_kind(device: str, peer: str, pbx: PbxConfig, model: Optional[PbxModel]
                ) -> tuple[str, str, str]:
    """(PHONE or TRUNK, extension, the rule that decided) for a device."""
    model = model or _NOTHING
    return model.answer(_device_kind, device, peer, pbx)


def _device_kind(device: str, peer: str, pbx: PbxConfig, model: PbxModel
                 ) -> tuple[str, str, str]:
    known = model.device(device)
    if pbx.trunk_channels:
        if any(re.search(p, device + "-") for p in pbx.trunk_channels):
            return TRUNK, "", f"{device} is a trunk: [pbx] trunk_channels"
        ext = known[1] if known and known[0] == MODEL_PHONE else peer
        return PHONE, ext, f"{device} is phone {ext}: not in [pbx] trunk_channels"
    if pbx.extension_pattern and re.match(pbx.extension_pattern, peer, re.ASCII):
        return PHONE, peer, f"{device} is phone {peer}: [pbx] extension_pattern"
    if known is not None:
        kind, ext = known
        return (PHONE if kind == MODEL_PHONE else TRUNK), ext, _learned(device, kind, ext, model)
    if _GUESS.match(peer):
        return PHONE, peer, f"{device} is phone {peer}: nothing learned, guessed from its name"
    return TRUNK, "", f"{device} is a trunk: nothing learned, guessed from its name"


def _learned(device: str, kind: str, ext: str, model: Optional[PbxModel]) -> str:
    what = f"phone {ext}" if kind == MODEL_PHONE else "a trunk"
    entry = next((k for k in model.known if device in k.devices), None) if model else None
    why = "; ".join(f"{n} {text}" for text, n in entry.evidence[:2]) if entry else ""
    named = model is not None and device in model.named_after_device
    return f"{device} is {what}: learned ({why})" + (
        "; its extension guessed from its name (no number reached it)" if named else "")


def number_kind(number: str, pbx: PbxConfig, model: Optional[PbxModel] = None) -> str:
    """What a dialled number is: PHONE (an extension), GROUP (ring group, queue, room, lot),
    OUTSIDE (a public number) or "" (a feature code, `s`, anything else). A learned group's
    number stays a group under `[pbx] extension_pattern`: the pattern names devices (phones),
    and FreePBX numbers its groups like its extensions (600 beside 101)."""
    model = model or _NOTHING
    return model.answer(_number_kind, number, pbx)


def _number_kind(number: str, pbx: PbxConfig, model: PbxModel) -> str:
    known = model.kind_of_number(number)
    if known and known != MODEL_PHONE:
        return GROUP
    if known or (pbx.extension_pattern and re.match(pbx.extension_pattern, number, re.ASCII)):
        return PHONE
    if looks_outside(number, pbx.extension_pattern or _NEVER):
        return OUTSIDE
    return PHONE if _GUESS.match(number) else ""


def as_caller(info: ChanInfo) -> ChanInfo:
    """The caller's channel as the person behind it: an originated call (click-to-call, AMI
    Originate of `Local/101@from-internal`) begins on a Local leg that rings phone 101 first,
    and is that phone's call."""
    if info.kind == LOCAL and info.ext:
        return replace(info, kind=PHONE, rule=f"{info.name} is phone {info.ext}{ORIGINATED}")
    return info


ORIGINATED = "'s originated call: the Local leg rang it first"
