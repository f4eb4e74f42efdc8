"""The corpus of a real Asterisk 20 (28 scripted calls) end to end: dump loaded into MariaDB, the
real `cdrsync sync` run as the SELECT-only user, and what the loopback Planfix received compared
with each call's truth file."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.corpus import CORPUS
from tests.e2e import cdrsync, make_config, start_cdrsync

TRUTH = CORPUS / "truth"
OUTBOUND_CID = "5551000"
FOREVER = 20 * 365 * 86400  # a first sync that reaches back over the whole (dated) corpus


def truths() -> list[dict]:
    calls = []
    for path in sorted(TRUTH.glob("*.json")):
        data = json.loads(path.read_text())
        calls += data if isinstance(data, list) else [data]
    return calls


def e164_us(number: str) -> str:
    return "+1" + number


@pytest.fixture
def corpus_run(pbx_db, planfix, tmp_path):
    """Load the corpus, run one `sync` with every option that shows in the fields, return what
    Planfix received keyed by callid (COMPLETED events) plus the missed notices."""
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    shutil.copytree(CORPUS / "monitor", tmp_path / "monitor")
    cfg = make_config(
        tmp_path, pbx_db.ro_url, planfix,
        source={"lookback": FOREVER, "max_call": FOREVER},
        planfix={"missed_url": planfix.missed_url},
        recordings={"base_url": "http://127.0.0.1:1/rec",
                    "sign_key": "corpus-test-signing-key-0123456789", "min_age": 0},
    )
    proc = cdrsync(cfg, "sync")
    assert proc.returncode == 0, proc.stderr
    events = {r.callid: r.without_token() for r in planfix.received("event")}
    missed = [r.without_token() for r in planfix.received("callMissedNotify")]
    return events, missed, proc


def test_every_external_call_arrives_once_with_its_truth(corpus_run):
    events, _missed, _proc = corpus_run
    external = [t for t in truths() if t["direction"] != "internal"]
    assert sorted(events) == sorted(t["linkedid"] for t in external)
    for truth in external:
        got = events[truth["linkedid"]]
        where = f"{truth['scenario']} ({truth['linkedid']})"
        assert got["cmd"] == "event" and got["event"] == "COMPLETED", where
        assert got["type"] == ("in" if truth["direction"] == "inbound" else "out"), where
        assert got["status"] == truth["status"], where
        assert got["phone"] == e164_us(truth["external_number"]), where
        assert got["data_phone_raw"] == truth["external_number"], where
        assert abs(int(got["duration"]) - truth["talk_seconds"]) <= 1, where
        assert got["is_recorded"] == ("1" if truth["recording_exists"] else "0"), where
        assert bool(got.get("record_link")) == truth["recording_exists"], where
        assert got["data_call_start"].startswith(truth["started_at"][:10]), where
        if truth["direction"] == "inbound":
            assert got["diversion"] == truth["did"], where
            assert got["data_did"] == truth["did"], where
            talked = truth.get("final_answered_by") or truth["answered_by"]
            if truth["status"] == "Success":
                assert got["ext"] == talked, where
            elif truth["extensions_rung"]:
                assert got["ext"] in truth["extensions_rung"], where
        else:
            assert got["ext"] == truth["extension"], where
            # corpus README: the outbound route goes through the carrier with caller id 5551000
            assert got["diversion"] == truth.get("outbound_cnum", OUTBOUND_CID), where


def test_missed_inbound_calls_notify_every_extension_that_rang(corpus_run):
    _events, missed, _proc = corpus_run
    expected = sorted(
        (t["linkedid"], ext, e164_us(t["external_number"]))
        for t in truths()
        if t["direction"] == "inbound" and t["status"] == "Missed"
        for ext in t["extensions_rung"]
    )
    got = sorted((m["uniqueId"], m["intNum"], m["extNum"]) for m in missed)
    assert got == expected


def test_internal_calls_are_not_sent_by_default_but_are_counted(corpus_run):
    events, _missed, proc = corpus_run
    internal = {t["linkedid"] for t in truths() if t["direction"] == "internal"}
    assert internal and not internal & set(events)
    assert "29 call(s) found" in proc.stderr


def test_record_links_are_signed_and_name_the_right_file(corpus_run):
    events, _missed, _proc = corpus_run
    for truth in truths():
        got = events.get(truth["linkedid"])
        if not got or not truth["recording_exists"]:
            continue
        link = got["record_link"]
        expected = truth["recording_files"][0]["path"]
        assert urllib.request.url2pathname(link.split("?")[0]).endswith(expected), link
        assert "?" in link, "a link without a signature could be guessed"


def test_a_second_sync_sends_nothing_again(corpus_run, pbx_db, planfix, tmp_path):
    before = len(planfix.attempts())
    proc = cdrsync(tmp_path / "cdrsync.toml", "sync")
    assert proc.returncode == 0, proc.stderr
    assert len(planfix.attempts()) == before


def test_show_explains_a_call(corpus_run, tmp_path):
    proc = cdrsync(tmp_path / "cdrsync.toml", "show", "1795698002.36")  # s07: queue abandoned
    assert proc.returncode == 0, proc.stderr
    assert "Missed" in proc.stdout
    assert "cdr (6 rows)" in proc.stdout
    assert "why:" in proc.stdout
    assert "delivery: recorded by sync" in proc.stdout
    assert "1795698002.36|completed: sent after 1 attempt(s)" in proc.stdout


def test_sent_fields_are_exactly_the_dry_run_lines(pbx_db, planfix, tmp_path):
    """--dry-run prints precisely the requests a real run sends (token aside), and sends none."""
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix,
                      source={"lookback": FOREVER, "max_call": FOREVER},
                      planfix={"missed_url": planfix.missed_url})
    dry = cdrsync(cfg, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert planfix.attempts() == []
    printed = [json.loads(line) for line in dry.stdout.splitlines()]
    assert all("planfix_token" not in p for p in printed)
    assert cdrsync(cfg, "sync").returncode == 0
    sent = [r.without_token() for r in planfix.attempts()]
    key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    assert sorted(map(key, printed)) == sorted(map(key, sent))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_links_cdrsync_sends_open_through_serve_recordings(pbx_db, planfix, tmp_path):
    """`serve-recordings` as the only web server: every link Planfix got downloads the exact
    file; a tampered link is refused."""
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    shutil.copytree(CORPUS / "monitor", tmp_path / "monitor")
    port = _free_port()
    cfg = make_config(
        tmp_path, pbx_db.ro_url, planfix,
        source={"lookback": FOREVER, "max_call": FOREVER},
        recordings={"base_url": f"http://127.0.0.1:{port}/rec", "listen": f"127.0.0.1:{port}",
                    "sign_key": "serve-test-signing-key-0123456789", "min_age": 0},
    )
    server = start_cdrsync(cfg, "serve-recordings")
    try:
        assert cdrsync(cfg, "sync").returncode == 0
        links = {r.callid: r.fields["record_link"] for r in planfix.received("event")
                 if r.fields.get("record_link")}
        expected = {t["linkedid"]: t["recording_files"][0]["path"] for t in truths()
                    if t["recording_exists"] and t["direction"] != "internal"}
        assert set(links) == set(expected)
        for _ in range(50):  # the server may still be starting
            try:
                urllib.request.urlopen(links[next(iter(links))], timeout=5).close()
                break
            except OSError:
                time.sleep(0.1)
        for callid, link in links.items():
            with urllib.request.urlopen(link, timeout=5) as answer:
                assert answer.read() == (CORPUS / "monitor" / expected[callid]).read_bytes()
        tampered = links[next(iter(links))].replace("?", "?x=1&", 1)[:-2] + "AA"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(tampered, timeout=5)
        assert refused.value.code == 403
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=20)
    assert server.returncode == 0


def _corpus_config(pbx_db, stub, tmp_path, **overrides):
    sections = {"source": {"lookback": FOREVER, "max_call": FOREVER}}
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return make_config(tmp_path, pbx_db.ro_url, stub, **sections)


def test_a_recording_that_appears_late_is_sent_once_after_its_call(pbx_db, planfix, tmp_path):
    """The file is missing at COMPLETED time (is_recorded=0, no link); when it appears, one
    `cmd=record` for that callid follows, after the COMPLETED, and never again."""
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    shutil.copytree(CORPUS / "monitor", tmp_path / "monitor")
    late = next(t for t in truths() if t["scenario"] == "s01_in_answered")
    path = tmp_path / "monitor" / late["recording_files"][0]["path"]
    held = path.read_bytes()
    path.unlink()
    cfg = _corpus_config(pbx_db, planfix, tmp_path, recordings={
        "base_url": "http://127.0.0.1:1/rec", "sign_key": "late-test-signing-key-0123456789",
        "min_age": 0})
    cdrsync(cfg, "sync", check=True)
    completed = {r.callid: r.fields for r in planfix.received("event")}
    assert completed[late["linkedid"]]["is_recorded"] == "0"
    assert "record_link" not in completed[late["linkedid"]]
    assert planfix.received("record") == []

    path.write_bytes(held)
    cdrsync(cfg, "sync", check=True)
    cdrsync(cfg, "sync", check=True)
    records = planfix.received("record")
    assert [r.callid for r in records] == [late["linkedid"]]
    assert records[0].fields["record_link"].split("?")[0].endswith(path.name)
    order = [(r.cmd, r.callid) for r in planfix.received(None) if r.callid == late["linkedid"]]
    assert order == [("event", late["linkedid"]), ("record", late["linkedid"])]


def test_backfill_sends_no_missed_call_notices_unless_asked(pbx_db, planfix, tmp_path):
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    cfg = _corpus_config(pbx_db, planfix, tmp_path, planfix={"missed_url": planfix.missed_url})
    cdrsync(cfg, "backfill", "--since", "2026-11-01", "--until", "2026-12-01", check=True)
    assert len(planfix.received("event")) == 25
    assert planfix.received("callMissedNotify") == []

    other = tmp_path / "other"
    other.mkdir()
    cfg = _corpus_config(pbx_db, planfix, other, planfix={"missed_url": planfix.missed_url})
    cdrsync(cfg, "backfill", "--since", "2026-11-01", "--notify-missed", check=True)
    missed = {t["linkedid"] for t in truths()  # an IVR hang-up rang nobody: no one to tell
              if t["direction"] == "inbound" and t["status"] == "Missed" and t["extensions_rung"]}
    assert {r.callid for r in planfix.received("callMissedNotify")} == missed


def test_backfill_dry_run_prints_everything_and_remembers_nothing(pbx_db, planfix, tmp_path):
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    cfg = _corpus_config(pbx_db, planfix, tmp_path)
    runs = [cdrsync(cfg, "backfill", "--since", "2026-11-01", "--dry-run", check=True)
            for _ in range(2)]
    assert runs[0].stdout and runs[0].stdout == runs[1].stdout  # the cursor did not move
    assert len(runs[0].stdout.splitlines()) == 25
    assert planfix.attempts() == []
    status = json.loads(cdrsync(cfg, "status", "--json", check=True).stdout)
    assert status["delivery"]["calls"] == 0 and status["last_pass"] is None


def test_internal_calls_are_sent_when_asked(pbx_db, planfix, tmp_path):
    pbx_db.load_dump(CORPUS / "asteriskcdrdb-cdr-cel.sql")
    cfg = _corpus_config(pbx_db, planfix, tmp_path, planfix={"send_internal": True})
    cdrsync(cfg, "sync", check=True)
    got = {r.callid: r.fields for r in planfix.received("event")}
    internal = [t for t in truths() if t["direction"] == "internal"]
    assert len(got) == 29
    for truth in internal:
        fields = got[truth["linkedid"]]
        assert fields["data_direction"] == "internal"
        assert fields["status"] == truth["status"]
        assert fields["ext"] in truth["extensions_rung"]
