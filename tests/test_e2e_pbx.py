"""`cdrsync pbx`, `check`'s summary line and `show`'s rules on the real command line, against
each shared corpus PBX loaded into MariaDB and read as the SELECT-only user.

What the lines must say comes from the corpus README (phones 101-105 / 201-205, trunks
`carrier` / `voipbiz`, ring groups 600/601 / 700/701, queues 400 / 500).
"""

from __future__ import annotations

import json

import pytest

from tests.corpus import CORPUS, CORPUS_B
from tests.e2e import cdrsync, make_config

FOREVER = 20 * 365 * 86400  # a first sync that reaches back over the whole (dated) corpus
ROUNDS = {
    "A": (CORPUS, "carrier", ("101", "105"), "ring group 600: members 101 102 103",
          "queue 400: members 101 102 103"),
    "B": (CORPUS_B, "voipbiz", ("201", "205"), "ring group 700: members 201 203 204",
          "queue 500: members 201 202 203"),
}


@pytest.mark.parametrize("round_", ROUNDS)
def test_pbx_shows_what_was_learned_and_keeps_it_across_restarts(round_, pbx_db, planfix,
                                                                  tmp_path):
    folder, trunk, (low, high), group, queue = ROUNDS[round_]
    pbx_db.load_dump(folder / "asteriskcdrdb-cdr-cel.sql")
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix,
                      source={"lookback": FOREVER, "max_call": FOREVER})
    proc = cdrsync(cfg, "pbx", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "(learned now from the newest rows of the PBX database)"
    assert lines[1].startswith("learned from ") and "5 phones, 1 trunk, 2 ring groups, " \
        "1 queue" in lines[1]
    assert any(t.startswith(f"phone {low} (PJSIP/{low}): ") for t in lines)
    assert any(t.startswith(f"phone {high} (PJSIP/{high}): ") for t in lines)
    assert any(t.startswith(f"trunk {trunk}: ") and "calls entered on from-pstn" in t
               for t in lines)
    assert any(t.startswith(group + " (") for t in lines), lines
    assert any(t.startswith(queue + " (") for t in lines), lines
    assert not (tmp_path / "state.db").exists()  # showing wrote nothing

    cdrsync(cfg, "sync", check=True)  # the pass learns and stores the model
    again = cdrsync(cfg, "pbx", "--json", check=True)
    shown = json.loads(again.stdout)
    assert shown["source"] == "stored in the state store"
    phones = sorted(k["name"] for k in shown["known"] if k["kind"] == "phone")
    assert phones[0] == low and phones[-1] == high and len(phones) == 5

    check = cdrsync(cfg, "check")
    model_line = next(t for t in check.stdout.splitlines() if "pbx model" in t)
    assert model_line.split()[0] == "OK" and "5 phones, 1 trunk" in model_line, check.stdout


def test_show_prints_the_rule_behind_each_device(pbx_db, planfix, tmp_path):
    pbx_db.load_dump(CORPUS_B / "asteriskcdrdb-cdr-cel.sql")
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    proc = cdrsync(cfg, "show", "1795699908.79", check=True)  # b19: 203 picks up 201's call
    assert "  ext: 203" in proc.stdout
    assert "PJSIP/voipbiz is a trunk: learned (24 calls entered on from-pstn" in proc.stdout
    assert "PJSIP/203 is phone 203: learned (" in proc.stdout


def test_a_thin_pbx_is_a_warning_of_check(pbx_db, planfix, tmp_path):
    """A database with no rows teaches nothing: check says so and exits 1 (a warning)."""
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    proc = cdrsync(cfg, "check")
    line = next(t for t in proc.stdout.splitlines() if "pbx model" in t)
    assert line.startswith("WARN") and "learned from 0 calls: nothing; too little" in line
