"""The run lock on SQLite, PostgreSQL and MariaDB stores (issue 14 item 4), with real processes.

A server store locks in the server (advisory lock, GET_LOCK), not in a temp-dir file that
systemd's PrivateTmp gives each unit its own copy of. The lock is named, ends with its process
(SIGKILL included), survives a fork whose child closes every database connection it inherited,
and a daemon takes it again when its connection was cut.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from cdrsync.lock import Busy, StoreLock
from cdrsync.state.db import StoreError
from tests.e2e import ROOT

# Holds a lock until killed: prints "held" once it has it. With "fork", a child is forked that
# closes every DB-API connection it inherited (as a careless child might at exit), says
# "child-done PID", and lives on.
HOLDER = """
import gc, os, sys, time
from cdrsync.lock import StoreLock
url, name, fork = sys.argv[1], sys.argv[2], sys.argv[3] == "fork"
lock = StoreLock(url, name).__enter__()
print("held", flush=True)
if fork and os.fork() == 0:
    import psycopg, pymysql
    for thing in gc.get_objects():
        if isinstance(thing, (psycopg.Connection, pymysql.connections.Connection)):
            thing.close()
    print("child-done", os.getpid(), flush=True)
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


def start_holder(url: str, name: str = "live", fork: bool = False) -> subprocess.Popen:
    """The holder process; with `fork`, its child's pid in `.child`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, name, "fork" if fork else "-"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.child = None  # type: ignore[attr-defined]
    try:
        for word in ["held", "child-done"] if fork else ["held"]:
            line = proc.stdout.readline().split()
            assert line[:1] == [word], proc.stderr.read() if proc.poll() is not None else line
        if fork:
            proc.child = int(line[1])  # type: ignore[attr-defined]
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Kill the holder and the child it forked, if any."""
    for pid in (proc.pid, getattr(proc, "child", None)):
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def busy(url: str, name: str = "live") -> bool:
    try:
        with StoreLock(url, name):
            return False
    except Busy:
        return True


def free_within(url: str, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not busy(url):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def lock_url(request, tmp_path, store_servers) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return store_servers.migrated(request.param)


def test_a_second_process_finds_the_lock_taken_and_other_names_free(lock_url):
    holder = start_holder(lock_url)
    try:
        with pytest.raises(Busy, match="another cdrsync is working on this state store"), \
                StoreLock(lock_url):
            pass
        with StoreLock(lock_url, "sender"):  # another name: another lock
            assert busy(lock_url, "sender")  # held once, even within one process
    finally:
        stop(holder)


def test_the_lock_ends_with_a_sigkilled_holder(lock_url):
    holder = start_holder(lock_url)
    assert busy(lock_url)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    try:
        assert free_within(lock_url)
    finally:
        stop(holder)


def test_a_forked_child_neither_ends_nor_keeps_its_parents_lock(lock_url):
    """The child closed every connection it inherited: the parent keeps its lock. Then the
    parent is killed while the child lives on: the lock ends with the parent."""
    holder = start_holder(lock_url, fork=True)
    try:
        time.sleep(0.5)  # a terminate message, had one gone out, has reached the server
        assert busy(lock_url), "the child's close() ended the parent's lock"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert free_within(lock_url), "the child kept its parent's lock alive"
    finally:
        stop(holder)


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_daemon_whose_lock_connection_was_cut_takes_the_lock_again(kind, store_servers,
                                                                      caplog):
    url = store_servers.migrated(kind)
    admin = create_engine(url)
    own_session = "SELECT pg_backend_pid()" if kind == "postgresql" else "SELECT CONNECTION_ID()"
    cut = "SELECT pg_terminate_backend(:s)" if kind == "postgresql" else "KILL :s"
    try:
        with StoreLock(url) as lock:
            session = lock._conn.execute(text(own_session)).scalar()
            lock._conn.commit()
            with admin.begin() as conn:
                conn.execute(text(cut), {"s": session})
            with caplog.at_level(logging.WARNING, logger="cdrsync.lock"):
                lock.check()
            assert "taken again" in caplog.text
            assert busy(url)
            # cut again, and another process takes the lock first: this one must stop
            session = lock._conn.execute(text(own_session)).scalar()
            lock._conn.commit()
            with admin.begin() as conn:
                conn.execute(text(cut), {"s": session})
            other = start_holder(url)
            try:
                with pytest.raises(StoreError, match="another cdrsync has taken it"):
                    lock.check()
            finally:
                stop(other)
    finally:
        admin.dispose()


def test_a_lock_folder_this_user_may_not_create_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot be created"), \
            StoreLock(f"sqlite:///{tmp_path / 'file' / 'state.db'}"):
        pass
