"""Late recordings in the real state store (SQLite file): remembered, found again, forgotten."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import inspect

from cdrsync.config import RecordingsConfig
from cdrsync.model import Call, Direction, Status
from cdrsync.recordings import late
from cdrsync.recordings.resolve import find_recording
from cdrsync.state.db import open_store

NOW = 1_800_000_000.0
START = datetime(2026, 11, 26, 22, 30, 5, tzinfo=timezone.utc)  # Nov 27 in Moscow


def a_call(callid: str, cands: tuple[str, ...] = ("ondemand-101-1795697854.0.wav",)) -> Call:
    return Call(callid=callid, direction=Direction.INBOUND, status=Status.SUCCESS, start=START,
                end=START, phone="+74950000000", phone_raw="4950000000", ext="101", duration=5,
                recording_candidates=cands, uniqueids=(callid, "1795697854.1"))


def test_table_is_created_by_open_store(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert "late_recordings" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_remember_due_forget_round_trip(store_url):  # SQLite, PostgreSQL, MariaDB
    engine = open_store(store_url)
    try:
        with engine.begin() as conn:
            late.remember(conn, a_call("1795697854.0", ("a ü.wav", "2026/11/27/b.wav")), NOW + 100)
            late.remember(conn, a_call("1795697999.5"), NOW + 50)
            late.remember(conn, a_call("1795697854.0"), NOW + 999)  # again: window unchanged
        with engine.begin() as conn:
            items = late.due(conn, NOW + 60)
        assert [(i.call.callid, i.until, i.expired) for i in items] == [
            ("1795697999.5", int(NOW) + 50, True), ("1795697854.0", int(NOW) + 100, False)]
        back = items[1].call
        assert back.recording_candidates == ("a ü.wav", "2026/11/27/b.wav")
        assert back.uniqueids == ("1795697854.0", "1795697854.1")
        assert back.start == START
        with engine.begin() as conn:
            late.forget(conn, "1795697999.5")
            assert [i.call.callid for i in late.due(conn, NOW)] == ["1795697854.0"]
    finally:
        engine.dispose()


def test_a_remembered_call_is_found_when_its_file_appears(tmp_path: Path):
    """What the pipeline does each pass: re-run find_recording on the stored call."""
    root = tmp_path / "monitor"
    root.mkdir()
    cfg = RecordingsConfig(dir=str(root), sign_key="k" * 20)
    zone = ZoneInfo("Europe/Moscow")
    engine = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with engine.begin() as conn:
            late.remember(conn, a_call("1795697854.0"), NOW + 3600)
        with engine.begin() as conn:
            (item,) = late.due(conn, NOW + 10)
        first = find_recording(item.call, cfg, zone, NOW + 10)
        assert (first.state, first.retry) == ("none", True)
        path = root / "2026/11/27/ondemand-101-1795697854.0.wav"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\0" * 44 + b"\1" * 800)
        os.utime(path, (NOW + 20, NOW + 20))
        found = find_recording(item.call, cfg, zone, NOW + 60)
        assert (found.state, found.relpath) == ("ready", "2026/11/27/ondemand-101-1795697854.0.wav")
    finally:
        engine.dispose()


def test_call_without_start_survives_the_store(store_url):  # SQLite, PostgreSQL, MariaDB
    engine = open_store(store_url)
    try:
        call = a_call("1.1")
        call.start = None
        with engine.begin() as conn:
            late.remember(conn, call, NOW)
            assert late.due(conn, NOW)[0].call.start is None
    finally:
        engine.dispose()
