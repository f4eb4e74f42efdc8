"""`cdrsync --demo`: a working configuration with no set-up at all.

The source is a small SQLite copy of an asteriskcdrdb shipped inside the package (a real Asterisk
20's rows for 28 scripted calls: inbound, ring groups, a queue, an IVR, outbound, internal,
transfers), with the recordings that PBX wrote for them (`data/monitor/`, in FreePBX's
YYYY/MM/DD layout: 2.2 MB of 8 kHz test tones, 0.2 MB in the wheel), so the requests carry signed
links; `cdrsync --demo serve-recordings` serves them on the address the links name. The state
store is a throw-away file in the temp dir; Planfix is an unreachable loopback address, so only
`--dry-run` shows anything useful — which is the point: see what cdrsync would send before
giving it a real address. Its log stays at WARNING: the requests and the closing summary are
what the demo is for (`-v` shows the reasoning of each call).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .config import Config, from_dict

DATA = Path(__file__).resolve().parent / "data" / "demo-asteriskcdrdb.sqlite"
RECORDINGS = DATA.parent / "monitor"
LISTEN = "127.0.0.1:8089"


def demo_config() -> Config:
    state = Path(tempfile.mkdtemp(prefix="cdrsync-demo-")) / "state.db"
    return from_dict({
        "source": {
            "url": f"sqlite:///{DATA}",
            "timezone": "UTC",  # the lab PBX's clock was UTC
            "lookback": 20 * 365 * 86400,  # a first sync that reaches back over the whole copy
            "max_call": 20 * 365 * 86400,
        },
        "planfix": {"url": "http://127.0.0.1:9/planfix-demo", "token": "demo-token",
                    "missed_url": "http://127.0.0.1:9/planfix-demo-missed"},
        "state": {"url": f"sqlite:///{state}"},
        "schedule": {"cel_settle": 0},
        "pbx": {"default_country": "US"},
        "recordings": {"dir": str(RECORDINGS), "base_url": f"http://{LISTEN}/monitor",
                       "listen": LISTEN, "sign_key": "demo-key-known-to-all-not-a-secret",
                       # finished files, but installed a moment ago: their age says nothing
                       "min_age": 0},
        "log": {"level": "WARNING"},
    }, env={}, path="(demo)")
