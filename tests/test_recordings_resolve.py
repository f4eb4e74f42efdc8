"""find_recording against real folder trees: every layout, late and growing files, and every way a
PBX-given name could try to lead out of the recordings dir (the security boundary)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import pytest

from cdrsync.config import RecordingsConfig
from cdrsync.recordings.resolve import Folders, find_recording, served_file
from tests.corpus import CORPUS, corpus_rows

ZONE = ZoneInfo("Europe/Moscow")
NOW = 1_800_000_000.0
OLD = NOW - 3600  # mtime of a finished file
SOUND = b"RIFF" + b"\0" * 40 + b"\x01\x02" * 500  # header + 1000 bytes of "sound"
HEADER_ONLY = b"RIFF" + b"\0" * 40
NAME = "in-5551000-2125551001-20261126-125734-1795697854.0.wav"


@dataclass
class FakeCall:
    """What the resolver reads of a call (resolve.Recorded)."""

    recording_candidates: tuple[str, ...] = ()
    uniqueids: tuple[str, ...] = ()
    start: Optional[datetime] = None
    callid: str = "1795697854.0"


def put(root: Path, rel: str, data: bytes = SOUND, mtime: float = OLD) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    return monitor


def cfg_for(root: Path, **kw) -> RecordingsConfig:
    return RecordingsConfig(dir=str(root), sign_key="k" * 32, base_url="http://127.0.0.1/r", **kw)


def find(root: Path, *cands: str, uids: tuple[str, ...] = (), start: Optional[datetime] = None,
         now: float = NOW, **kw):
    call = FakeCall(recording_candidates=cands, uniqueids=uids, start=start)
    return find_recording(call, cfg_for(root, **kw), ZONE, now)


# ---- layouts ------------------------------------------------------------------------------------

def test_date_folder_from_the_name(root):
    put(root, f"2026/11/26/{NAME}")
    found = find(root, NAME)
    assert (found.state, found.relpath) == ("ready", f"2026/11/26/{NAME}")


def test_relative_path_as_mixmonitor_writes_it(root):
    put(root, f"2026/11/26/{NAME}")
    found = find(root, f"2026/11/26/{NAME}")
    assert (found.state, found.relpath) == ("ready", f"2026/11/26/{NAME}")


def test_flat_layout(root):
    put(root, NAME)
    assert find(root, NAME).relpath == NAME


def test_dated_folder_wins_over_flat(root):
    put(root, NAME, data=SOUND + b"flat")
    put(root, f"2026/11/26/{NAME}")
    assert find(root, NAME).relpath == f"2026/11/26/{NAME}"


def test_name_without_date_uses_the_call_start_in_the_pbx_zone(root):
    # 22:30 UTC on Nov 26 is 01:30 on Nov 27 in Moscow: the folder is the local day.
    put(root, "2026/11/27/OUT101-1795697854.0.wav")
    start = datetime(2026, 11, 26, 22, 30, tzinfo=timezone.utc)
    found = find(root, "OUT101-1795697854.0.wav", start=start)
    assert found.relpath == "2026/11/27/OUT101-1795697854.0.wav"


@pytest.mark.parametrize("folder", ["2026/11/26", "2026/11/28"])
def test_name_without_date_tries_the_days_around_midnight(root, folder):
    put(root, f"{folder}/ondemand-101-1795697854.0.wav")
    start = datetime(2026, 11, 26, 22, 30, tzinfo=timezone.utc)  # local Nov 27
    assert find(root, "ondemand-101-1795697854.0.wav", start=start).relpath == \
        f"{folder}/ondemand-101-1795697854.0.wav"


def test_absolute_path_inside_dir(root):
    put(root, f"2026/11/26/{NAME}")
    found = find(root, str(root / "2026/11/26" / NAME))
    assert (found.state, found.relpath) == ("ready", f"2026/11/26/{NAME}")


def test_absolute_path_through_the_real_dir_of_a_symlinked_dir(tmp_path):
    real = tmp_path / "nas" / "monitor"
    put(real, f"2026/11/26/{NAME}")
    link = tmp_path / "monitor"
    link.symlink_to(real)
    found = find(link, str(real / "2026/11/26" / NAME))
    assert (found.state, found.relpath) == ("ready", f"2026/11/26/{NAME}")


@pytest.mark.parametrize("on_disk", [
    NAME[:-4] + ".WAV",  # wav49 / other letter case
    NAME[:-4] + ".mp3",  # MIXMON_POST converted and deleted the wav
    NAME[:-4] + ".gsm",
    NAME[:-4] + ".ogg",
    NAME[:-4] + ".Opus",
])
def test_other_case_or_format_of_the_same_name(root, on_disk):
    put(root, f"2026/11/26/{on_disk}", data=SOUND * 2)
    assert find(root, NAME).relpath == f"2026/11/26/{on_disk}"


def test_wav49_name_finds_the_WAV_file(root):
    put(root, "2026/11/26/" + NAME[:-4] + ".WAV")
    assert find(root, NAME[:-4] + ".wav49").relpath == "2026/11/26/" + NAME[:-4] + ".WAV"


def test_candidate_without_extension(root):
    put(root, f"2026/11/26/{NAME}")
    assert find(root, NAME[:-4]).relpath == f"2026/11/26/{NAME}"


def test_other_files_of_the_folder_are_not_taken(root):
    put(root, "2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.01.wav")
    put(root, "2026/11/26/" + NAME + ".txt")
    found = find(root, NAME)
    assert (found.state, found.relpath, found.retry) == ("none", None, True)


def test_every_candidate_is_tried_in_order(root):
    second = "q-400-2125551006-20261126-125944-1795697984.26.wav"
    put(root, f"2026/11/26/{second}")
    found = find(root, NAME, second)
    assert found.relpath == f"2026/11/26/{second}"


def test_uniqueid_search_when_the_pbx_named_nothing(root):
    put(root, f"2026/11/26/{NAME}")
    start = datetime(2026, 11, 26, 9, 57, 34, tzinfo=timezone.utc)
    found = find(root, uids=("1795697853.99", "1795697854.0"), start=start)
    assert found.relpath == f"2026/11/26/{NAME}"


def test_uniqueid_search_finds_a_renamed_file(root):
    put(root, f"2026/11/26/{NAME[:-4]}.mp3")
    start = datetime(2026, 11, 26, 9, 57, 34, tzinfo=timezone.utc)
    found = find(root, "gone-20261126-125734-1795697854.0.wav", uids=("1795697854.0",),
                 start=start)
    assert found.relpath == f"2026/11/26/{NAME[:-4]}.mp3"


def test_uniqueid_must_be_the_whole_tail(root):
    put(root, "2026/11/26/in-1-2-20261126-125734-11795697854.0.wav")
    start = datetime(2026, 11, 26, 9, 57, 34, tzinfo=timezone.utc)
    assert find(root, uids=("1795697854.0",), start=start).state == "none"


def test_uniqueid_with_the_system_name_and_its_dashes(root):
    name = "in-5551000-2125551001-20261126-125734-pbx-east-1795697854.0.wav"
    put(root, f"2026/11/26/{name}")
    start = datetime(2026, 11, 26, 9, 57, 34, tzinfo=timezone.utc)
    found = find(root, uids=("pbx-east-1795697854.0",), start=start)
    assert found.relpath == f"2026/11/26/{name}"
    assert find(root, uids=("west-1795697854.0",), start=start).state == "none"


def test_calls_of_a_batch_share_the_folder_listings(root):
    """One `Folders` for many calls finds what each call finds alone, and reads each folder once."""
    put(root, f"2026/11/26/{NAME}")
    put(root, "2026/11/26/q-400-2125551006-20261126-125944-1795697984.26.mp3")
    start = datetime(2026, 11, 26, 9, 57, 34, tzinfo=timezone.utc)
    calls = [FakeCall((NAME,), start=start),
             FakeCall(uniqueids=("1795697984.26",), start=start),
             FakeCall(("gone-20261126-125734-1.2.wav",), ("1.2",), start=start),
             FakeCall((f"../{NAME}",))]
    alone = [find_recording(c, cfg_for(root), ZONE, NOW) for c in calls]
    folders = Folders(str(root))
    shared = [find_recording(c, cfg_for(root), ZONE, NOW, folders) for c in calls]
    assert shared == alone
    assert [f.state for f in shared] == ["ready", "ready", "none", "refused"]
    put(root, "2026/11/26/late-20261126-125734-1.2.wav")  # the batch's listing was read before
    assert find_recording(calls[2], cfg_for(root), ZONE, NOW, folders).state == "none"
    assert find_recording(calls[2], cfg_for(root), ZONE, NOW).state == "ready"


def test_a_batch_asks_the_file_system_once_per_folder(root, monkeypatch):
    """A batch of calls whose day folders do not exist costs one look at the recordings dir and
    one at each folder, not a look per call (a backfill resolves every call of the tables)."""
    asked: list[str] = []
    real_isdir, real_scandir = os.path.isdir, os.scandir
    monkeypatch.setattr(os.path, "isdir", lambda p: asked.append(f"isdir {p}") or real_isdir(p))
    monkeypatch.setattr(os, "scandir", lambda p: asked.append(f"scandir {p}") or real_scandir(p))
    start = datetime(2026, 11, 26, 9, 57, 34, tzinfo=timezone.utc)
    folders = Folders(str(root))
    found = [find_recording(FakeCall((f"x-20261126-125734-1.{n}.wav", f"2026/11/26/y-{n}.wav"),
                                     (f"1.{n}",), start=start), cfg_for(root), ZONE, NOW, folders)
             for n in range(50)]
    assert {f.state for f in found} == {"none"}
    assert "2026/11/25, 2026/11/27" in found[0].reason  # every layout still told
    days = [root / "2026" / "11" / d for d in ("25", "26", "27")]
    assert sorted(asked) == sorted([f"isdir {root}", f"scandir {root}"]
                                   + [f"scandir {d}" for d in days])


def test_folders_of_another_dir_are_not_used(root, tmp_path):
    put(root, f"2026/11/26/{NAME}")
    other = tmp_path / "other"
    other.mkdir()
    found = find_recording(FakeCall((NAME,)), cfg_for(root), ZONE, NOW, Folders(str(other)))
    assert found.relpath == f"2026/11/26/{NAME}"


# ---- empty, missing, late, growing ------------------------------------------------------------

def test_header_only_wav_is_no_recording(root):
    put(root, f"2026/11/26/{NAME}", data=HEADER_ONLY)
    found = find(root, NAME)
    assert (found.state, found.relpath, found.retry) == ("none", None, False)
    assert "header-only" in found.reason


@pytest.mark.parametrize("name,data", [("x-1.wav", b""), ("x-1.mp3", b"ID3" + b"\0" * 300),
                                       ("x-1.gsm", b"")])
def test_empty_files_of_any_format_are_no_recording(root, name, data):
    put(root, name, data=data)
    assert find(root, name).state == "none"


def test_header_only_wav_but_a_real_mp3_beside_it(root):
    put(root, f"2026/11/26/{NAME}", data=HEADER_ONLY)
    put(root, f"2026/11/26/{NAME[:-4]}.mp3", data=b"\xff\xfb" + b"\x55" * 4000)
    assert find(root, NAME).relpath == f"2026/11/26/{NAME[:-4]}.mp3"


def test_missing_file_then_appearing_late(root):
    first = find(root, NAME)
    assert (first.state, first.relpath, first.retry) == ("none", None, True)
    assert NAME in first.reason and "not in 2026/11/26" in first.reason
    put(root, f"2026/11/26/{NAME}", mtime=NOW + 60)
    assert find(root, NAME, now=NOW + 62).state == "wait"  # just written: younger than min_age
    assert find(root, NAME, now=NOW + 66).relpath == f"2026/11/26/{NAME}"


def test_growing_file_is_waited_for_until_it_is_quiet(root):
    path = put(root, f"2026/11/26/{NAME}", mtime=NOW - 1)
    found = find(root, NAME, now=NOW)
    assert (found.state, found.relpath, found.retry) == ("wait", None, True)
    with path.open("ab") as fh:  # still being written: it grew, its mtime moved on
        fh.write(b"\x03" * 1000)
    os.utime(path, (NOW + 4, NOW + 4))
    assert find(root, NAME, now=NOW + 6).state == "wait"
    assert find(root, NAME, now=NOW + 9).state == "ready"
    assert find(root, NAME, now=NOW + 9, min_age=30).state == "wait"


def test_wav_still_converting_to_mp3_is_waited_for(root):
    put(root, f"2026/11/26/{NAME}")  # finished wav
    put(root, f"2026/11/26/{NAME[:-4]}.mp3", mtime=NOW - 1)  # the post-script is writing
    assert find(root, NAME).state == "wait"


def test_missing_dir_is_retried(tmp_path):
    found = find(tmp_path / "nowhere", NAME)
    assert (found.state, found.retry) == ("none", True)


def test_no_candidate_no_uniqueid_match(root):
    found = find(root, uids=("1.2",), start=datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert (found.state, found.retry) == ("none", False)


# ---- the boundary -----------------------------------------------------------------------------

@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the recordings dir that must never be handed out."""
    return put(tmp_path / "outside", "shadow.wav", data=SOUND)


@pytest.mark.parametrize("cand", [
    "../outside/shadow.wav",
    "../../etc/shadow",
    "2026/11/26/../../../../outside/shadow.wav",
    "./../outside/shadow.wav",
    "..",
    "x\x00.wav",
])
def test_traversal_is_refused(root, secret, cand):
    found = find(root, cand)
    assert (found.state, found.relpath) == ("refused", None)
    assert found.reason


def test_absolute_path_elsewhere_is_refused(root, secret):
    found = find(root, str(secret))
    assert (found.state, found.relpath) == ("refused", None)
    assert "outside" in found.reason
    assert find(root, "/etc/shadow").state == "refused"


def test_absolute_path_sharing_the_dir_name_prefix_is_refused(root, tmp_path):
    twin = put(tmp_path / "monitor-other", NAME)
    assert find(root, str(twin)).state == "refused"


def test_absolute_path_climbing_out_of_dir_is_refused(root, secret):
    assert find(root, f"{root}/2026/../../outside/shadow.wav").state == "refused"


def test_symlink_file_pointing_out_is_refused(root, secret):
    (root / "2026/11/26").mkdir(parents=True)
    (root / "2026/11/26" / NAME).symlink_to(secret)
    found = find(root, NAME)
    assert (found.state, found.relpath) == ("refused", None)
    assert "symlink" in found.reason


def test_symlinked_day_folder_pointing_out_is_refused(root, secret):
    put(secret.parent, NAME)
    (root / "2026/11").mkdir(parents=True)
    (root / "2026/11/26").symlink_to(secret.parent)
    assert find(root, NAME).state == "refused"
    assert find(root, f"2026/11/26/{NAME}").state == "refused"


def test_symlink_out_found_by_uniqueid_search_is_refused(root, secret):
    (root / "2026/11/26").mkdir(parents=True)
    (root / "2026/11/26" / NAME).symlink_to(secret)
    start = datetime(2026, 11, 26, 9, 57, tzinfo=timezone.utc)
    assert find(root, uids=("1795697854.0",), start=start).state != "ready"


def test_symlink_inside_dir_is_allowed(root):
    put(root, f"archive/{NAME}")
    (root / "2026/11/26").mkdir(parents=True)
    (root / "2026/11/26" / NAME).symlink_to(root / "archive" / NAME)
    assert find(root, NAME).relpath == f"2026/11/26/{NAME}"


def test_refused_candidate_does_not_hide_the_real_file(root, secret):
    put(root, f"2026/11/26/{NAME}")
    found = find(root, "../outside/shadow.wav", NAME)
    assert (found.state, found.relpath) == ("ready", f"2026/11/26/{NAME}")
    assert "refused" in found.reason


@pytest.mark.parametrize("rel", ["../outside/shadow.wav", "/etc/passwd", "2026/../../x",
                                 "a//b", "./x", "", "a\\..\\b", "x\x00"])
def test_served_file_rejects_odd_paths(root, secret, rel):
    assert served_file(rel, cfg_for(root)) is None


def test_served_file_follows_only_symlinks_that_stay_inside(root, secret):
    put(root, f"2026/11/26/{NAME}")
    (root / "evil.wav").symlink_to(secret)
    (root / "good.wav").symlink_to(root / "2026/11/26" / NAME)
    cfg = cfg_for(root)
    assert served_file("evil.wav", cfg) is None
    assert served_file("good.wav", cfg) == os.path.realpath(root / "2026/11/26" / NAME)
    assert served_file("2026/11/26", cfg) is None  # a folder is not a file


def test_served_file_maps_the_mp3_cache(root, tmp_path):
    cache = tmp_path / "cache"
    put(cache, "cdrsync-mp3/2026/11/26/x.mp3")
    put(root, "cdrsync-mp3/2026/11/26/x.mp3", data=b"decoy" * 100)
    cfg = cfg_for(root, cache_dir=str(cache))
    assert served_file("cdrsync-mp3/2026/11/26/x.mp3", cfg) == \
        os.path.realpath(cache / "cdrsync-mp3/2026/11/26/x.mp3")


# ---- the corpus: every recorded call of a real Asterisk 20 / FreePBX box ------------------------

def _truth() -> list[dict]:
    out = []
    for path in sorted((CORPUS / "truth").glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "recording_exists" in data:
            out.append(data)
    return out


@pytest.mark.parametrize("shared", [False, True], ids=["alone", "batch"])
def test_corpus_recordings(tmp_path, shared):
    """Candidates and uniqueids come from the real dump rows, as interpretation collects them;
    resolved one by one, and as one batch sharing its folder listings."""
    root = tmp_path / "monitor"
    shutil.copytree(CORPUS / "monitor", root)
    for path in root.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    cdr, cel = corpus_rows()
    calls: dict[str, tuple[list, list]] = {}
    for row in cdr:
        calls.setdefault(row.linkedid, ([], []))[0].append(row)
    for event in cel:
        calls.setdefault(event.linkedid, ([], []))[1].append(event)
    truth = _truth()
    assert len(truth) >= 25
    ready = 0
    folders = Folders(str(root)) if shared else None
    for case in truth:
        rows, events = calls[case["linkedid"]]
        cands = [r.recordingfile for r in rows if r.recordingfile]
        cands += [e.appdata.split(",", 1)[0] for e in events
                  if e.eventtype == "APP_START" and e.appname == "MixMonitor"]
        uids = sorted({r.uniqueid for r in rows} | {e.uniqueid for e in events})
        first = min(r.calldate for r in rows if r.calldate)
        call = FakeCall(tuple(dict.fromkeys(cands)), tuple(uids),
                        first.replace(tzinfo=timezone.utc), case["linkedid"])
        found = find_recording(call, cfg_for(root), ZoneInfo("UTC"), NOW, folders)
        files = case["recording_files"]
        if case["recording_exists"]:
            assert (found.state, found.relpath) == ("ready", files[0]["path"]), case["scenario"]
            assert (root / found.relpath).stat().st_size == files[0]["bytes"] > 44
            ready += 1
        else:
            assert (found.state, found.relpath) == ("none", None), case["scenario"]
            assert found.retry is False, case["scenario"]  # header-only or never recorded
            assert all(f["bytes"] == 44 for f in files), case["scenario"]
    assert ready == 15  # the 15 calls whose file holds sound


def test_a_call_dated_at_the_end_of_the_calendar_is_looked_up_without_overflow(tmp_path):
    """cel rows that say 9999-12-31 once made the day after the start overflow: the lookup, and
    with it every call behind this one, stopped."""
    put(tmp_path, "2026/11/26/" + NAME)
    for start in (datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc),
                  datetime(1, 1, 1, 0, 30, tzinfo=timezone.utc)):
        call = FakeCall(("missing.wav",), ("1795697854.0",), start)
        found = find_recording(call, cfg_for(tmp_path), ZONE, NOW)
        assert found.state == "none" and "missing.wav" in found.reason
