"""Who hears about a missed inbound call, and when a notice would only annoy.

Recipients (`[missed] notify`): "rang" tells every extension that rang; "targets" tells the list
configured for the call's DID (or, failing that, its queue). Each falls back to the other, then to
the call's `ext`, so a missed call is never told to nobody when someone could be told.
"responsible" tells whom Planfix names responsible for the caller, asked when the notice is due
(`cdrsync.planfix.messages`); `recipients()` is then what Planfix's silence falls back to, as
"rang".

Callback window (`[missed] callback_window` minutes, off by default): the notice is held back in
the outbox until the window has passed (`Request.not_before`); the deliverer then asks
`superseded()` and drops the notice if the same outside number got through or was called back
within the window (`cdrsync.state.notices`, the store side of this policy). A notice is therefore
late by the window: that is the price of not annoying.

Pure: no I/O, so `cdrsync.planfix.messages` can build notices from it while the ledger imports
those messages.
"""

from __future__ import annotations

import re

from cdrsync.config import MissedConfig
from cdrsync.model import Call


def recipients(call: Call, cfg: MissedConfig) -> tuple[str, ...]:
    """The extensions to notify about `call`, in order, without repeats."""
    listed = _targets(call, cfg)
    chosen = (listed or call.rung) if cfg.notify == "targets" else (call.rung or listed)
    if not chosen and call.ext:
        chosen = (call.ext,)
    return tuple(dict.fromkeys(ext for ext in chosen if ext))


def _targets(call: Call, cfg: MissedConfig) -> tuple[str, ...]:
    for wanted in (call.did, call.queue):
        if not wanted:
            continue
        for key, exts in cfg.targets.items():
            if key == wanted or _digits(key) == _digits(wanted) != "":
                return exts
    return ()


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)
