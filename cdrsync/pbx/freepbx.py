"""What FreePBX's dialplan names mean: its contexts, applications and voicemail forms, in one place.

Learning (`cdrsync.pbx.learn`) and interpretation (`cdrsync.interpret`) read the same names, so
they are kept here once; checked against FreePBX core (functions.inc.php, releases 13-17).
"""

from __future__ import annotations

import re
from typing import Optional

# where `dst` is the extension a call was sent to: an inbound route to an extension, an internal
# dial, the extension whose follow-me rings (findmefollow's followme-check / ext-findmefollow)
EXTENSION_CONTEXTS = ("from-did-direct", "ext-local", "followme-check", "ext-findmefollow")
# where `dst` is a group's, a queue's or a follow-me's number, not the extension of the phone
# that answered it
RING_GROUP_CONTEXT, QUEUE_CONTEXT = "ext-group", "ext-queues"  # `dst` / exten: the group's number
GROUP_CONTEXTS = (RING_GROUP_CONTEXT, QUEUE_CONTEXT, "followme-check", "ext-findmefollow")
IVR_PREFIX = "ivr-"
# contexts only an outbound route runs (FreePBX 13 Macro(), 17 Gosub), the failure path included
ROUTE_CONTEXTS = ("outrt-", "macro-dialout", "sub-dialout", "dialout-", "macro-outisbusy",
                  "sub-outisbusy")
NOT_A_NUMBER = ("", "s", "h", "i", "t")  # Asterisk's special extensions
PARK_APPS = ("park", "parkedcall")
ROOM_APPS = ("confbridge", "meetme")

# ext-local's voicemail destinations: vmb (busy), vmu (unavailable), vms (no message),
# vmi (instructions only) + the extension (functions.inc.php, core_do_get_config)
_VM_DESTINATION = re.compile(r"vm[busi]([0-9]+)", re.ASCII)
# Asterisk before 1.4 took the options as letters in front of the box (`VoiceMail(u101)`);
# only a numeric box is read that way, so that a named box (`sue`) keeps its name
_LEGACY_BOX = re.compile(r"[subj]+([0-9]+)", re.ASCII)


def leaves_ivr(context: str, exten: str) -> bool:
    """Whether the caller, once in an IVR, is somewhere else when its channel is in `context`:
    the option's destination (`ext-group,600`, `ext-queues,400`, `ext-local,vmu101`,
    `from-did-direct-ivr,101`...). The IVR's own `h`/`i`/`t`, the subroutines it runs
    (`macro-*`, `sub-*`) and its hang-up destination (`app-blackhole`) are still the IVR."""
    return bool(context) and exten != "h" and not context.startswith(
        (IVR_PREFIX, "macro-", "sub-", "app-blackhole"))


def mailbox(appdata: str) -> str:
    """The (first) box of a VoiceMail() application data: `101@default,u` (FreePBX's macro-vm
    writes `${MEXTEN}@${VMCONTEXT},<options>`), `101@default|u` (Asterisk 1.8), `101&102`,
    the legacy `u101@default`; "" when there is none."""
    first = re.split(r"[,|]", appdata, maxsplit=1)[0].strip()
    box = first.split("&", 1)[0].split("@", 1)[0].strip()
    legacy = _LEGACY_BOX.fullmatch(box)
    return legacy.group(1) if legacy else box


def voicemail_destination(dst: str) -> Optional[str]:
    """The extension whose mailbox an ext-local `vmu101` / `vmb101` / `vms101` / `vmi101`
    destination reaches, else None."""
    found = _VM_DESTINATION.fullmatch(dst)
    return found.group(1) if found else None

