"""`cdrsync --demo`: the README's first command. The shipped copy is the corpus of a real
Asterisk 20 (round A, ../shared/corpus/asterisk-20.20.1) with its recordings; the dry run
prints the requests with signed links to them, then a short summary, and nothing else."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from cdrsync import demo
from cdrsync.dryrun import DryRunOut
from cdrsync.recordings.links import verify
from tests import demo_db
from tests.corpus import CORPUS
from tests.e2e import ROOT, cdrsync

HEADER_ONLY = 44  # bytes of a WAV header with no sound: Asterisk's file of a call never answered


def truths() -> list[dict]:
    """Each call's truth; a scenario of several calls holds a list of them."""
    found = []
    for path in sorted((CORPUS / "truth").glob("*.json")):
        truth = json.loads(path.read_text(encoding="utf-8"))
        found += truth if isinstance(truth, list) else [truth]
    return found


def rows(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as db:
        return {name: sorted(db.execute(f'SELECT * FROM "{name}"')) for name in ("cdr", "cel")}


def test_the_shipped_copy_is_the_corpus_with_its_recordings(tmp_path):
    demo_db.build(tmp_path / "demo.sqlite")
    assert rows(tmp_path / "demo.sqlite") == rows(demo.DATA)
    demo_db.copy_recordings(tmp_path / "monitor")
    shipped = {p.relative_to(demo.RECORDINGS): p.read_bytes()
               for p in demo.RECORDINGS.rglob("*") if p.is_file()}
    built = {p.relative_to(tmp_path / "monitor"): p.read_bytes()
             for p in (tmp_path / "monitor").rglob("*") if p.is_file()}
    assert shipped == built and shipped


@pytest.fixture(scope="module")
def dry_run() -> subprocess.CompletedProcess:
    for path in demo.RECORDINGS.rglob("*"):  # as new as a `pip install` a second ago leaves them
        os.utime(path)
    return cdrsync(None, "--demo", "sync", "--dry-run", check=True)


def test_the_demo_links_every_recording_the_pbx_wrote(dry_run):
    requests = [json.loads(line) for line in dry_run.stdout.splitlines()]  # JSON, line by line
    linked = {r["callid"]: r["record_link"] for r in requests if r.get("record_link")}
    expected = {t["linkedid"]: f["path"] for t in truths() if t["direction"] != "internal"
                for f in t.get("recording_files") or () if f["bytes"] > HEADER_ONLY}
    assert {callid: unquote(urlsplit(link).path).split("/monitor/", 1)[1]
            for callid, link in linked.items()} == expected
    cfg = demo.demo_config().recordings
    for link in linked.values():
        relpath = unquote(urlsplit(link).path).split("/monitor/", 1)[1]
        assert verify(relpath, urlsplit(link).query, cfg, now=0)
        assert (demo.RECORDINGS / relpath).stat().st_size > HEADER_ONLY


def test_the_demo_ends_with_a_summary_and_says_nothing_else(dry_run):
    requests = [json.loads(line) for line in dry_run.stdout.splitlines()]
    events = [r for r in requests if r.get("event") == "COMPLETED"]
    lines = dry_run.stderr.splitlines()
    assert "no recording" not in dry_run.stderr
    assert lines[0] == (f"dry run: {len(events)} calls would go to Planfix; nothing was sent or "
                        "recorded")
    by_type = Counter(r["type"] for r in events)
    assert f"  inbound: {by_type['in']} (" in lines[1] and f"  outbound: {by_type['out']} (" \
        in lines[2]
    missed = Counter(r["status"] for r in events if r["type"] == "in")["Missed"]
    assert f"{missed} Missed" in lines[1]
    linked = sum(1 for r in events if r.get("record_link"))
    assert lines[3] == (f"  recordings: {linked} linked, {len(events) - linked} without a file "
                        "(-v says why)")
    notices = [r for r in requests if r.get("event") == "callMissedNotify"]
    exts = ", ".join(sorted({r["intNum"] for r in notices}))
    assert notices and lines[4] == f"  missed-call notices: {len(notices)}, to extension(s) {exts}"
    assert len(lines) == 5


def test_dry_run_summary_counts_what_passes_through():
    out = io.StringIO()
    tally = DryRunOut(out)
    text = "".join(json.dumps(r) + "\n" for r in [
        {"cmd": "event", "event": "COMPLETED", "type": "in", "callid": "1.1", "status": "Success",
         "record_link": "https://pbx/r/a.wav?s=x"},
        {"cmd": "event", "event": "COMPLETED", "type": "in", "callid": "1.1", "ext": "102",
         "status": "Cancelled"},
        {"cmd": "event", "event": "COMPLETED", "type": "in", "callid": "2.1", "status": "Missed"},
        {"cmd": "event", "event": "COMPLETED", "type": "in", "callid": "3.1", "status": "Success",
         "data_direction": "internal"},
        {"cmd": "record", "callid": "4.1", "record_link": "https://pbx/r/b.wav?s=y"},
        {"event": "callMissedNotify", "uniqueId": "2.1", "intNum": "101", "extNum": "+1212"},
        {"event": "callMissedNotify", "uniqueId": "2.1", "intNum": "103", "extNum": "+1212"},
    ])
    tally.write(text)
    assert out.getvalue() == text
    assert tally.summary() == [
        "dry run: 3 calls would go to Planfix; nothing was sent or recorded",
        "  inbound: 2 (1 Success, 1 Missed)",
        "  internal: 1 (1 Success)",
        "  recordings: 1 linked, 2 without a file (-v says why), 1 late link(s)",
        "  ring groups: 1 Cancelled event(s) for the extensions that rang but did not talk",
        "  missed-call notices: 2, to extension(s) 101, 103",
    ]
    assert DryRunOut(io.StringIO()).summary() == [
        "dry run: no finished call to send; nothing was sent or recorded"]


def test_a_build_carries_the_recordings_in_their_folders(tmp_path):
    """What package-data names is what a wheel, and so a non-editable install, holds: the
    nested monitor/YYYY/MM/DD too (setuptools' build_py, the step that fills the wheel)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "cdrsync", src / "cdrsync",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(tmp_path / "lib")],
                   cwd=src, check=True, capture_output=True, timeout=300)
    built = {p.relative_to(tmp_path / "lib" / "cdrsync" / "data")
             for p in (tmp_path / "lib" / "cdrsync" / "data").rglob("*") if p.is_file()}
    shipped = {p.relative_to(demo.DATA.parent)
               for p in demo.DATA.parent.rglob("*") if p.is_file()}
    assert built == shipped and Path("monitor/2026/11/26") in {p.parent for p in built}


def test_printed_requests_are_counted_as_their_lines_would_be():
    """`print_requests` counts the dicts it prints instead of parsing its lines back: the same
    text and the same summary as those lines passing through `write`."""
    requests = [
        {"cmd": "event", "event": "COMPLETED", "type": "out", "callid": "1.1", "status": "Busy",
         "phone": "+74955550101", "data_path": "101 → трунк"},
        {"cmd": "event", "event": "COMPLETED", "type": "in", "callid": "2.1", "status": "Missed"},
        {"cmd": "event", "event": "COMPLETED", "type": "in", "callid": "2.1", "ext": "102",
         "status": "Cancelled"},
        {"event": "callMissedNotify", "uniqueId": "2.1", "intNum": "101", "extNum": "+1212"},
    ]
    printed, passed = io.StringIO(), io.StringIO()
    by_dict, by_line = DryRunOut(printed), DryRunOut(passed)
    assert by_dict.print_requests(iter(requests)) == 4
    by_line.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests))
    assert printed.getvalue() == passed.getvalue() and "трунк" in printed.getvalue()
    assert by_dict.summary() == by_line.summary()
    assert by_dict.summary()[1] == "  outbound: 1 (1 Busy)"
    assert by_dict.print_requests([]) == 0 and printed.getvalue() == passed.getvalue()
