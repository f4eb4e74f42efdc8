"""contrib/: the systemd unit verifies and matches cdrsync's defaults, the cron line runs the
right command, the example config loads and documents every key with its default; sd_notify
talks to a real unix socket."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cdrsync import config, readiness
from cdrsync.cli import main as cli

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
UNIT = CONTRIB / "cdrsync.service"
REQUIRED = {"source.url", "source.timezone", "planfix.url", "planfix.token"}


def unit_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this Python, keep everything else.
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable} -m cdrsync", UNIT.read_text(),
                  flags=re.M)
    unit = tmp_path / "cdrsync.service"
    unit.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_unit_is_hardened_and_matches_the_defaults():
    s = unit_settings()
    assert s["User"] == ["cdrsync"] and s["ProtectSystem"] == ["strict"]
    assert s["Restart"] == ["on-failure"] and s["NoNewPrivileges"] == ["yes"]
    assert s["PrivateTmp"] == ["yes"] and s["ProtectHome"] == ["yes"]
    # Type=notify only works because cdrsync sends READY=1 and WATCHDOG=1 (cdrsync/readiness.py)
    assert s["Type"] == ["notify"] and int(s["WatchdogSec"][0]) > 0
    scheduler = (Path(readiness.__file__).parent / "scheduler.py").read_text()
    assert '"READY=1"' in scheduler and '"WATCHDOG=1"' in scheduler
    # The writable folders are exactly where the defaults put the state store and the cache.
    state = Path(config.StateConfig().url.split("sqlite:///", 1)[1]).parent
    assert state == Path("/var/lib") / s["StateDirectory"][0]
    assert Path(config.RecordingsConfig().cache_dir) == Path("/var/cache") / s["CacheDirectory"][0]
    assert s["ReadOnlyPaths"] == ["-" + config.RecordingsConfig().dir]
    assert "ReadWritePaths" not in s
    assert s["Environment"] == [f"{config.ENV_PATH}={config.DEFAULT_PATH}"]
    binary, command = s["ExecStart"][0].split()
    assert binary.endswith("/cdrsync") and command in cli.commands


def test_cron_runs_one_sync_per_minute_as_cdrsync_into_syslog():
    jobs, env = [], {}
    for line in (CONTRIB / "cdrsync.cron").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^([A-Z_]+)=(.*)$", line)
        if m:
            env[m.group(1)] = m.group(2)
        else:
            jobs.append(line.split(None, 6))
    assert len(jobs) == 1
    minute, hour, dom, month, dow, user, command = jobs[0]
    assert (minute, hour, dom, month, dow, user) == ("*", "*", "*", "*", "*", "cdrsync")
    program, _, rest = command.partition(" ")
    assert program.endswith("/cdrsync") and rest.split()[0] in cli.commands
    assert rest.split()[0] == "sync" and "| logger -t cdrsync" in command
    assert "flock" not in command  # cdrsync's own lock does it
    assert env[config.ENV_PATH] == config.DEFAULT_PATH


def test_example_config_loads():
    cfg = config.load(str(CONTRIB / "cdrsync.toml"), env={})
    assert cfg.planfix.token == "CHANGE-ME"


def test_example_config_explains_every_key_with_its_default():
    text = (CONTRIB / "cdrsync.toml").read_text()
    raw = config.tomllib.loads(text)
    lines = text.splitlines()
    for section, cls in config._SECTIONS.items():
        assert section in raw, f"[{section}] missing from the example"
        header = lines.index(f"[{section}]")
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            assert f.name in raw[section], f"{key} is not in the example"
            if key in REQUIRED:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            value = raw[section][f.name]
            if isinstance(default, tuple):
                value = tuple(value)
            assert value == default, f"{key}: example {value!r}, default {default!r}"
            if isinstance(value, dict):
                continue  # a [section.table]: its comment sits above the table header
            at = next(i for i, line in enumerate(lines)
                      if i > header and re.match(rf"^{f.name}\s*=", line))
            assert lines[at - 1].startswith("#"), f"{key} has no explanation above it"


def test_readme_table_names_every_key_and_its_range():
    """The README's configuration table is what admins read first: a key missing from it (as
    `recordings.cache_dir` was) or a bounded key whose row hides its bounds is a gap."""
    readme = (CONTRIB.parent / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    first_cells = {line.split("|")[1]: line for line in section.splitlines()
                   if line.startswith("| `")}
    for name, cls in config._SECTIONS.items():
        for f in dataclasses.fields(cls):
            key = f"{name}.{f.name}"
            rows = [row for cell, row in first_cells.items() if f"`{key}`" in cell]
            assert len(rows) == 1, f"{key}: {len(rows)} rows in the README's table"
            if key in config._RANGES:
                assert "allowed" in rows[0], f"{key}: its row does not say what is allowed"


def test_sd_notify_reaches_a_unix_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert readiness.notify("READY=1\nSTATUS=started")
        assert sock.recv(1024) == b"READY=1\nSTATUS=started"
        assert readiness.notify("WATCHDOG=1")
        assert sock.recv(1024) == b"WATCHDOG=1"


def test_sd_notify_abstract_socket():
    name = f"cdrsync-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert readiness.notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"READY=1"


def test_sd_notify_outside_systemd_or_broken_is_harmless(tmp_path, caplog):
    assert readiness.notify("READY=1", env={}) is False
    assert readiness.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "cannot notify systemd (READY)" in caplog.text
