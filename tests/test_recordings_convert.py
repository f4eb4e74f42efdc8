"""mp3 copies with the real ffmpeg / lame (whichever is installed), and cleanly without either."""

from __future__ import annotations

import logging
import math
import os
import shutil
import struct
import wave
from pathlib import Path

import pytest

from cdrsync.config import RecordingsConfig
from cdrsync.recordings.convert import playable
from cdrsync.recordings.resolve import served_file

REL = "2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.0.wav"
MP3 = "cdrsync-mp3/2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.0.mp3"


def write_wav(path: Path, seconds: float = 1.0) -> None:
    """An 8 kHz 16-bit mono tone, as Asterisk's MixMonitor writes `wav`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(i / 8000 * 2 * math.pi * 440)))
                      for i in range(int(8000 * seconds)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)


@pytest.fixture
def tree(tmp_path: Path) -> RecordingsConfig:
    write_wav(tmp_path / "monitor" / REL)
    return RecordingsConfig(dir=str(tmp_path / "monitor"), cache_dir=str(tmp_path / "cache"),
                            sign_key="k" * 20, mp3=True)


def only_tool(monkeypatch, tmp_path: Path, name: str) -> None:
    """PATH holding just the real `name` binary (skip when it is not installed)."""
    real = shutil.which(name)
    if real is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).symlink_to(real)
    monkeypatch.setenv("PATH", str(bin_dir))


def is_mp3(data: bytes) -> bool:
    if data.startswith(b"ID3"):
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        data = data[10 + size:]
    return len(data) > 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0


@pytest.mark.parametrize("tool", ["ffmpeg", "lame"])
def test_converts_into_the_cache_and_leaves_the_original(tree, tmp_path, monkeypatch, tool):
    only_tool(monkeypatch, tmp_path, tool)
    original = Path(tree.dir) / REL
    before = (original.read_bytes(), original.stat().st_mtime_ns)
    assert playable(REL, tree) == MP3
    made = Path(tree.cache_dir) / MP3
    assert is_mp3(made.read_bytes()) and 0 < made.stat().st_size < len(before[0])
    assert (original.read_bytes(), original.stat().st_mtime_ns) == before
    assert served_file(MP3, tree) == os.path.realpath(made)
    assert [p.name for p in made.parent.iterdir()] == [made.name]  # no temporary left
    stamp = made.stat().st_mtime_ns
    assert playable(REL, tree) == MP3 and made.stat().st_mtime_ns == stamp  # reused


def wav49(path: Path) -> None:
    """A RIFF/WAVE file whose samples are GSM 6.10 (format 49), as MixMonitor's `wav49` writes."""
    fmt = struct.pack("<HHIIHHHH", 49, 1, 8000, 1625, 65, 0, 2, 320)
    data = b"\xd4" * 65 * 20
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("junk", [wav49, lambda p: p.write_bytes(b"RIFF" + b"garbage" * 100)])
def test_lame_is_not_fed_what_it_would_take_for_raw_pcm(tree, tmp_path, monkeypatch, caplog, junk):
    only_tool(monkeypatch, tmp_path, "lame")
    junk(Path(tree.dir) / REL)
    with caplog.at_level(logging.WARNING, logger="cdrsync.recordings.convert"):
        assert playable(REL, tree) == REL
    assert "neither ffmpeg nor lame can convert" in caplog.text
    assert not Path(tree.cache_dir).exists()


def test_no_tool_links_the_original(tree, tmp_path, monkeypatch, caplog):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with caplog.at_level(logging.WARNING, logger="cdrsync.recordings.convert"):
        assert playable(REL, tree) == REL
    assert "neither ffmpeg nor lame" in caplog.text
    assert not Path(tree.cache_dir).exists()


def test_failed_conversion_links_the_original_and_leaves_nothing(tree, tmp_path, monkeypatch,
                                                                 caplog):
    only_tool(monkeypatch, tmp_path, "ffmpeg")
    (Path(tree.dir) / REL).write_bytes(b"RIFF" + b"garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="cdrsync.recordings.convert"):
        assert playable(REL, tree) == REL
    assert "failed" in caplog.text
    assert list(Path(tree.cache_dir).rglob("*.mp3")) == []


def test_off_by_default_and_mp3_stays_mp3(tree):
    off = RecordingsConfig(dir=tree.dir, cache_dir=tree.cache_dir)
    assert playable(REL, off) == REL
    assert playable("2026/11/26/x.MP3", tree) == "2026/11/26/x.MP3"
    assert playable("../outside.wav", tree) == "../outside.wav"  # not served: nothing converted
    assert not Path(tree.cache_dir).exists()
