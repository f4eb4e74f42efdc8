"""Recordings still missing after COMPLETED are looked for again at most once a minute, however
short the pass interval: a day of calls whose files never come must not cost a folder search each,
every 10 seconds."""

from __future__ import annotations

from cdrsync import config as config_mod
from cdrsync import pipeline as pipeline_mod
from tests.corpus import CORPUS
from tests.e2e import make_config

FOREVER = 20 * 365 * 86400


def test_missing_recordings_are_looked_for_again_once_a_minute(pbx_db, planfix, tmp_path,
                                                               monkeypatch):
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    (tmp_path / "monitor").mkdir()  # every recordingfile names a file that is not there (yet)
    path = make_config(tmp_path, pbx_db.ro_url, planfix,
                       source={"lookback": FOREVER, "max_call": FOREVER},
                       recordings={"base_url": "http://127.0.0.1:1/rec", "min_age": 0,
                                   "sign_key": "late-throttle-signing-key-0123456789"})
    pipe = pipeline_mod.Pipeline(config_mod.load(str(path)))
    looks: list[str] = []
    real = pipeline_mod.find_recording

    def counting(call, *args, **kwargs):
        looks.append(call.callid)
        return real(call, *args, **kwargs)

    monkeypatch.setattr(pipeline_mod, "find_recording", counting)
    try:
        t0 = 2_000_000_000.0
        pipe.sync_pass(now=t0)
        awaited = len(looks) - 29  # beyond the first look at each of the 29 calls
        looks.clear()
        for step in range(1, 6):  # five passes within the same minute
            pipe.sync_pass(now=t0 + 10 * step)
        assert looks == []
        pipe.sync_pass(now=t0 + 61)
        assert awaited > 0 and len(looks) == awaited
    finally:
        pipe.close()
