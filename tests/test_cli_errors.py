"""How the command line fails: the library's expected errors become one `cdrsync: ...` line and
the documented exit code (0 ok, 1 the work failed, 2 bad usage, configuration or an unwritable
store); a bug is one `internal error` line, and its traceback with -v. Never a secret."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import update

from cdrsync.cli import BadSetup, Context, WorkFailed, _Group
from cdrsync.config import ConfigError
from cdrsync.source.reader import SourceError
from cdrsync.state import ledger
from cdrsync.state.db import StoreError, open_store
from tests import synth
from tests.e2e import cdrsync, make_config
from tests.planfix_stub import stub_config
from tests.test_e2e_sync import external, recent

TOKEN = stub_config().planfix.token


def app(error: Exception) -> click.Group:
    """A command line built the way cdrsync's is, with a command in a sub-group (as
    `cdrsync pbx ...` would be) that raises `error` with the configuration loaded."""

    @click.group(cls=_Group)
    @click.option("-v", "verbose", count=True)
    @click.pass_context
    def top(ctx: click.Context, verbose: int) -> None:
        ctx.obj = Context(None, verbose, None, demo=False)
        ctx.obj._cfg = stub_config()

    @top.group()
    def sub() -> None:
        pass

    @sub.command()
    def boom() -> None:
        raise error

    return top


@pytest.mark.parametrize("error, code, line", [
    (ConfigError("planfix.rate: must be a number"), 2,
     "cdrsync: configuration: planfix.rate: must be a number"),
    (StoreError("state.db is read-only"), 2,
     "cdrsync: state store: state.db is read-only; nothing was lost, fix it and start again"),
    (SourceError("PBX database: reading cel: gone away"), 1,
     "cdrsync: PBX database: reading cel: gone away"),
    (SourceError("source.url: Can't load plugin"), 1,
     "cdrsync: PBX database: source.url: Can't load plugin"),
    (KeyError(f"token {TOKEN}"), 1,
     "cdrsync: internal error: KeyError: 'token ***' (run with -v for the details)"),
])
def test_each_error_is_one_line_with_its_exit_code_in_every_command(error, code, line):
    result = CliRunner().invoke(app(error), ["sub", "boom"])
    assert result.exit_code == code
    assert result.output == line + "\n"  # stderr (click < 8.2 mixes it into output)


@pytest.mark.parametrize("error, kind, code", [
    (ConfigError("x"), BadSetup, 2), (StoreError("x"), BadSetup, 2),
    (SourceError("x"), WorkFailed, 1), (RuntimeError("x"), WorkFailed, 1)])
def test_errors_leave_as_click_exceptions_not_as_exits(error, kind, code):
    """Embedded in another click program (standalone_mode=False), cdrsync's commands raise
    a ClickException with the exit code, rather than ending the process themselves."""
    with pytest.raises(kind) as raised:
        app(error).main(["sub", "boom"], standalone_mode=False)
    assert raised.value.exit_code == code and isinstance(raised.value, click.ClickException)


def test_with_v_a_bug_keeps_its_exception_for_the_traceback():
    result = CliRunner().invoke(app(ZeroDivisionError("bug")), ["-v", "sub", "boom"])
    assert isinstance(result.exception, ZeroDivisionError)  # Python prints it, exit 1


def test_with_v_an_expected_error_is_still_one_line():
    result = CliRunner().invoke(app(StoreError("full")), ["-v", "sub", "boom"])
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_a_bug_in_the_real_command_is_one_line_and_with_v_its_traceback(pbx_db, planfix,
                                                                        tmp_path):
    calls = recent(3, seed=15)
    synth.insert(pbx_db.admin, calls)
    cfg = make_config(tmp_path, pbx_db.ro_url, planfix)
    cdrsync(cfg, "sync", check=True)
    callid = sorted(external(calls))[0]
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    with store.begin() as conn:  # what `show` reads of the call no longer parses: a bug's stand-in
        conn.execute(update(ledger.calls).where(ledger.calls.c.callid == callid)
                     .values(summary="{broken"))
    store.dispose()
    quiet = cdrsync(cfg, "show", callid)
    assert quiet.returncode == 1
    assert quiet.stderr.startswith("cdrsync: internal error: JSONDecodeError: ")
    assert quiet.stderr.strip().endswith("(run with -v for the details)")
    assert len(quiet.stderr.strip().splitlines()) == 1
    verbose = cdrsync(cfg, "-v", "show", callid)
    assert verbose.returncode == 1 and "Traceback (most recent call last):" in verbose.stderr
    assert planfix.token not in quiet.stderr + verbose.stderr


def test_a_call_the_pbx_does_not_know_is_exit_1(pbx_db, planfix, tmp_path):
    proc = cdrsync(make_config(tmp_path, pbx_db.ro_url, planfix), "show", "1.1")
    assert proc.returncode == 1
    assert proc.stderr == "cdrsync: no rows for call 1.1 in the PBX database\n"
