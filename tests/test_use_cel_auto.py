"""`use_cel = "auto"` started on a PBX whose cel table holds no LINKEDID_END yet (CEL just enabled,
a new PBX) runs CDR-only, looks again every minute, and switches to CEL mode when LINKEDID_END
appears, without losing or doubling a call at the switch. Real MariaDB read with the SELECT-only
login, the loopback Planfix; passes at chosen moments (`now`), the calls' rows written between.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from cdrsync import config as config_mod
from cdrsync import pipeline as pipeline_mod
from tests import synth
from tests.e2e import make_config

SETTLE = 30  # CDR-only: s of quiet before a call is sent


def picks(t0: datetime) -> tuple[list, synth.SynthCall, synth.SynthCall, synth.SynthCall]:
    """Calls of one seeded hour around t0 (each call's times fixed relative to it): external ones
    that ended long before t0, one that ended a minute before it, one that ends 20-30 s after
    it, and one 35-55 s after."""
    pool = [c for c in synth.generate(240, t0 - timedelta(hours=1), seed=404, mean_gap=30)
            if c.truth.direction != "internal" and not c.more]

    def ends(lo: float, hi: float) -> list:
        return [c for c in pool if lo <= (c.truth.end - t0).total_seconds() < hi]

    old, before, mid, after = ends(-3000, -600), ends(-90, -45), ends(15, 30), ends(35, 55)
    assert old and before and mid and after, "seed 404 gives calls in each window"
    return old[:5], before[0], mid[0], after[0]


def test_auto_switches_to_cel_when_linkedid_end_appears_each_call_once(pbx_db, planfix,
                                                                       tmp_path):
    t0 = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    now = t0.replace(tzinfo=timezone.utc).timestamp()
    old, before, mid, after = picks(t0)
    path = make_config(tmp_path, pbx_db.ro_url, planfix, schedule={"settle": SETTLE})
    pipe = pipeline_mod.Pipeline(config_mod.load(str(path)))
    sent = lambda: Counter(r.callid for r in planfix.received("event"))  # noqa: E731
    try:
        # CEL off: only cdr rows
        synth.insert(pbx_db.admin, [replace(c, cel=[]) for c in old + [before]])
        pipe.sync_pass(now=now)
        assert not pipe.source.schema.cel_mode
        assert set(sent()) == {c.truth.linkedid for c in old}  # `before` is settling
        # CEL is switched on: LINKEDID_END events arrive, here also for a call CDR-only mode
        # is about to send
        synth.insert(pbx_db.admin, [replace(before, cdr=[]), mid])
        pipe.sync_pass(now=now + 40)  # a CDR-only pass still: the next look is a minute on
        assert not pipe.source.schema.cel_mode
        assert sent()[before.truth.linkedid] == 1
        assert mid.truth.linkedid not in sent()  # ended too recently for CDR-only mode
        synth.insert(pbx_db.admin, [after])  # a call with cdr and cel rows, just ended

        pipe.sync_pass(now=now + 61)

        assert pipe.source.schema.cel_mode
        # at once by their LINKEDID_END: CDR-only mode would wait SETTLE s of quiet. `mid`
        # ended before the switch: the CEL cursor starts early enough not to skip it, and
        # `before`, re-read there too, is not sent again
        assert sent()[after.truth.linkedid] == 1 and sent()[mid.truth.linkedid] == 1
        assert sent()[before.truth.linkedid] == 1
        pipe.sync_pass(now=now + 200)
        everything = {c.truth.linkedid for c in old + [before, mid, after]}
        assert set(sent()) == everything and set(sent().values()) == {1}, sent()
    finally:
        pipe.close()
