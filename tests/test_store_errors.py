"""A state store that cannot serve stops every command with one line naming the culprit, exit 2
(issue 14 item 8), through the real command line.

File modes are enforced by running cdrsync without the capabilities that let root ignore them,
or change them (`setpriv --bounding-set -dac_override,-dac_read_search,-chown,-fowner`; SQLite
running as root hands its -wal / -shm back to the database's owner): root then meets a read-only
file or folder as the cdrsync user would, and can still run this Python wherever it lives.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests import synth
from tests.e2e import ROOT, cdrsync
from tests.test_e2e_sync import recent

COMMANDS = (("sync",), ("backfill", "--since", "2024-01-01"), ("run",))


def as_file_modes_apply() -> list[str]:
    """argv prefix under which file modes apply to this process."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file modes cannot be made to apply")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-chown,-fowner"]


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRSYNC_")}
    return subprocess.run([*as_file_modes_apply(), sys.executable, "-m", "cdrsync", "--config",
                           str(config), *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT)


def one_line(proc: subprocess.CompletedProcess, after_logs: bool = False) -> str:
    """The `cdrsync: state store: ...` line that ends the command, exit 2: the whole stderr, or
    (`after_logs`) its last line after the pass's log lines."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("cdrsync: state store: "), proc.stderr
    assert after_logs or len(lines) == 1, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return lines[-1]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_state_folder_this_user_may_not_write(env, tmp_path, command):
    _, _, config = env
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line(run_cli(config(state={"url": f"sqlite:///{folder / 'state.db'}"}),
                                *command))
    finally:
        folder.chmod(0o755)
    assert str(folder) in line and "Permission denied" in line


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_state_folder_that_cannot_be_created(env, tmp_path, command):
    _, _, config = env
    (tmp_path / "plain-file").write_text("")
    folder = tmp_path / "plain-file" / "state"
    line = one_line(run_cli(config(state={"url": f"sqlite:///{folder / 'state.db'}"}),
                            *command))
    assert f"state store folder {folder} cannot be created" in line


def damage(path: Path) -> None:
    """Overwrite the middle of the file (its header, and so its schema page, stays good)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"\xa5" * min(32768, size // 3))


def test_a_partly_damaged_store_is_named_in_one_line(env, tmp_path):
    pbx_db, _, config = env
    synth.insert(pbx_db.admin, recent(30, seed=51))
    cfg = config()
    cdrsync(cfg, "sync", check=True)
    state = tmp_path / "state.db"
    damage(state)
    for command in (("sync",), ("status",)):
        line = one_line(cdrsync(cfg, *command))
        assert f"{state} is damaged" in line and "malformed" in line, line


@pytest.mark.parametrize("suffix", ["-shm", "-wal"])
def test_a_read_only_wal_or_shm_file_is_named(env, tmp_path, suffix):
    pbx_db, _, config = env
    cfg = config()
    cdrsync(cfg, "status", check=True)  # the store, made
    state = tmp_path / "state.db"
    synth.insert(pbx_db.admin, recent(5, seed=52))
    keeper = sqlite3.connect(state)  # an open reader keeps -wal and -shm in place
    try:
        keeper.execute("SELECT count(*) FROM outbox").fetchone()
        culprit = state.with_name(state.name + suffix)
        assert culprit.exists()
        os.chown(culprit, 65534, 65534)  # left by another user (root's `cdrsync status`, say)
        line = one_line(run_cli(cfg, "sync"), after_logs=True)
    finally:
        keeper.close()
    assert f"{culprit} is read-only for user" in line, line


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://cdrsync:s3cret-pw@127.0.0.1:1/cdrsync",
    "mysql+pymysql://cdrsync:s3cret-pw@127.0.0.1:1/cdrsync",
])
def test_an_unreachable_server_store_is_one_line_without_its_password(env, url):
    _, _, config = env
    for command in (("sync",), ("status",)):
        proc = cdrsync(config(state={"url": url}), *command)
        line = one_line(proc)
        assert "s3cret-pw" not in proc.stderr and "127.0.0.1" in line, line
