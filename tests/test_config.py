"""Configuration: every mistake is one line naming the key, and never shows a secret."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from cdrsync import config
from cdrsync.config import ConfigError
from tests.e2e import cdrsync, write_config

CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / "cdrsync.toml"
YEAR = 365 * 86400

GOOD = {
    "source": {"url": "mysql+pymysql://cdrsync:s3cret-pw@127.0.0.1/asteriskcdrdb",
               "timezone": "Europe/Moscow"},
    "planfix": {"url": "https://acme.planfix.ru/telephony", "token": "tok-VERY-secret"},
}


def build(**changes):
    raw = {k: dict(v) for k, v in GOOD.items()}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            raw.setdefault(section, {}).pop(key, None)
        else:
            raw.setdefault(section, {})[key] = value
    return raw


def test_minimal_config_gets_the_documented_defaults():
    cfg = config.from_dict(build(), env={})
    assert cfg.planfix.rate == 5.0 and cfg.planfix.timeout == 10.0
    assert cfg.schedule.interval == 1 and cfg.schedule.settle == 60
    assert cfg.state.url == "sqlite:////var/lib/cdrsync/state.db"
    assert cfg.recordings.dir == "/var/spool/asterisk/monitor"
    assert str(cfg.source.zone) == "Europe/Moscow"


def test_secrets_may_come_from_the_environment():
    raw = build(planfix__token=None, source__url=None)
    cfg = config.from_dict(raw, env={"CDRSYNC_PLANFIX_TOKEN": "from-env",
                                     "CDRSYNC_SOURCE_URL": "sqlite:////tmp/x.db"})
    assert cfg.planfix.token == "from-env" and cfg.source.url == "sqlite:////tmp/x.db"


@pytest.mark.parametrize("changes, expected", [
    ({"source__timezone": None}, "source.timezone: missing required key"),
    ({"source__timezone": "Mars/Olympus"}, "source.timezone: unknown IANA zone"),
    ({"planfix__token": None},
     "planfix.token: missing required key (or set $CDRSYNC_PLANFIX_TOKEN)"),
    ({"planfix__rate": "fast"}, "planfix.rate: must be a number"),
    ({"planfix__rate": -1}, "planfix.rate: must not be negative"),
    ({"planfix__url": "ftp://x"}, "planfix.url: must be an http(s):// address"),
    ({"schedule__interval": 0}, "schedule.interval: must be from 1 s to 1 day, not 0"),
    ({"schedule__bogus": 1}, "schedule.bogus: unknown key"),
    ({"source__use_cel": "maybe"}, 'source.use_cel: must be "auto", true or false'),
    ({"recordings__base_url": "https://pbx/monitor"}, "recordings.sign_key: required"),
    ({"pbx__trunk_channels": ["("]}, "pbx.trunk_channels: bad regular expression"),
    ({"state__url": "mysql+pymysql://other:pw@127.0.0.1/asteriskcdrdb"},
     "state.url: must not be the PBX database"),
])
def test_each_mistake_names_its_key(changes, expected):
    with pytest.raises(ConfigError) as err:
        config.from_dict(build(**changes), env={})
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_a_bad_secret_value_is_not_echoed():
    with pytest.raises(ConfigError) as err:
        config.from_dict(build(source__url=12345), env={})
    assert "12345" not in str(err.value)


def test_redact_hides_url_passwords_and_configured_secrets():
    cfg = config.from_dict(build(), env={})
    line = f"cannot reach {cfg.source.url} with token {cfg.planfix.token}"
    clean = config.redact(line, cfg)
    assert "s3cret-pw" not in clean and "tok-VERY-secret" not in clean
    assert "cdrsync:***@127.0.0.1" in clean


def test_cli_reports_a_bad_config_in_one_line_with_exit_code_2(tmp_path):
    path = write_config(tmp_path / "c.toml", build(planfix__rate="fast"))
    proc = cdrsync(path, "status")
    assert proc.returncode == 2
    expected = "cdrsync: configuration: planfix.rate: must be a number, not 'fast'"
    assert proc.stderr.strip() == expected
    assert "s3cret" not in proc.stderr + proc.stdout


def test_cli_without_a_config_file_says_where_it_looked(tmp_path):
    proc = cdrsync(None, "status", env={"CDRSYNC_CONFIG": str(tmp_path / "none.toml")})
    assert proc.returncode == 2
    assert f"config file {tmp_path / 'none.toml'} not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_rejects_broken_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[source\nurl=", encoding="utf-8")
    proc = cdrsync(path, "sync")
    assert proc.returncode == 2 and "is not valid TOML" in proc.stderr


# --- values that used to crash later or pass silently: one line and exit 2 ---------------------

def numeric_keys() -> list[str]:
    return [f"{section}.{f.name}" for section, cls in config._SECTIONS.items()
            for f in dataclasses.fields(cls)
            if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)]


def test_every_numeric_key_has_a_range_but_link_ttl_whose_check_is_its_own():
    assert set(numeric_keys()) - {"recordings.link_ttl"} == set(config._RANGES)


def load_with(key: str, value) -> config.Config:
    """A config with `key` = `value`, and the windows checked together with it left room."""
    raw = build(**{key.replace(".", "__"): value})
    windows = {"lookback": 1 if key == "source.max_call" else 2 * 86400, "max_call": 30 * YEAR}
    for name, default in windows.items():
        raw["source"].setdefault(name, default)
    raw.setdefault("schedule", {}).setdefault("settle", 0)
    raw["schedule"].setdefault("interval", 1)
    return config.from_dict(raw, env={})


@pytest.mark.parametrize("key", sorted(config._RANGES))
def test_each_range_holds_its_bounds_and_refuses_beyond(key):
    section, name = key.split(".")
    bounds = config._RANGES[key]
    default = next(f.default for f in dataclasses.fields(config._SECTIONS[section])
                   if f.name == name)
    step = 1 if type(default) is int else bounds.least / 2
    for good in (bounds.least, bounds.most) + ((0,) if bounds.off else ()):
        assert getattr(getattr(load_with(key, good), section), name) == good
    for bad in (bounds.least - step, bounds.most + step, 1e300, float("nan"), float("inf")):
        if bad == 0 and bounds.off:
            continue
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must "):
            load_with(key, bad)


def test_the_example_config_states_each_range():
    lines = CONTRIB.read_text(encoding="utf-8").splitlines()
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[]")
        key = f"{section}.{line.split('=')[0].strip()}"
        if "=" in line and not line.startswith("#") and key in config._RANGES:
            assert lines[i - 1].startswith(f"# Allowed: {config.allowed(key)}"), key


@pytest.mark.parametrize("changes, expected", [
    ({"source__lookback": 60, "schedule__settle": 60},
     "source.lookback: must be at least schedule.settle + schedule.interval (61 s)"),
    ({"source__lookback": 7200, "source__max_call": 3600},
     "source.max_call: must not be shorter than source.lookback"),
])
def test_windows_that_do_not_fit_together_are_refused(changes, expected):
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}"):
        config.from_dict(build(**changes), env={})


@pytest.mark.parametrize("listen", ["127.0.0.1:8089", "[::1]:8089", ":8089", "localhost:65535"])
def test_listen_addresses_that_can_be_bound_are_accepted(listen):
    cfg = config.from_dict(build(recordings__listen=listen, metrics__listen=listen), env={})
    assert cfg.metrics.listen == listen


def bad_config_line(tmp_path, command: str = "status", **changes) -> str:
    """Run the real command line on a config with `changes` and return its single stderr line."""
    path = write_config(tmp_path / "c.toml", build(**changes))
    proc = cdrsync(path, command)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "s3cret-pw" not in proc.stderr and "tok-VERY-secret" not in proc.stderr
    return proc.stderr.strip()


@pytest.mark.parametrize("key, value, expected", [
    ("schedule__interval", float("nan"), "schedule.interval: must be a finite number, not nan"),
    ("source__lookback", float("inf"), "source.lookback: must be a finite number, not inf"),
    ("planfix__rate", float("-inf"), "planfix.rate: must be a finite number, not -inf"),
    ("planfix__timeout", 0, "planfix.timeout: must be from 0.1 s to 5 min, not 0"),
    ("planfix__rate", 1e300, "planfix.rate: must be 0 (no limit) or from 0.1 to 100 requests/s, "
                             "not 1e+300"),
    ("source__lookback", 0, "source.lookback: must be from 1 s to 30 years, not 0"),
    ("schedule__interval", 10 ** 30,
     f"schedule.interval: must be from 1 s to 1 day, not {10 ** 30}"),
    ("log__level", "LOUD", "log.level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("recordings__listen", "127.0.0.1:65536", "recordings.listen: expected HOST:PORT with a port "
                                              "from 1 to 65535"),
    ("metrics__listen", "[::1]:99999", "metrics.listen: expected HOST:PORT"),
    ("planfix__url", "https://acme.planfix.ru:70000/telephony",
     "planfix.url: the port must be a number from 1 to 65535"),
    ("source__url", "mysql+pymysql://cdrsync:s3cret-pw@127.0.0.1:65536/asteriskcdrdb",
     "source.url: the port must be a number from 1 to 65535"),
    ("state__url", "postgresql+psycopg://cdrsync:s3cret-pw@127.0.0.1:0/state",
     "state.url: the port must be a number from 1 to 65535"),
    ("source__url", "mysql+pymysql://cdrsync:s3cret@pw@127.0.0.1/asteriskcdrdb",
     "source.url: the password holds an @: write it %-encoded (@ as %40)"),
])
def test_cli_refuses_values_that_used_to_crash_or_pass(tmp_path, key, value, expected):
    assert bad_config_line(tmp_path, **{key: value}).startswith(
        f"cdrsync: configuration: {expected}")


@pytest.mark.parametrize("url, expected", [
    # SQLAlchemy knows the dialect, but its default MySQL driver (mysqlclient) is not installed
    ("mysql+mysqldb://cdrsync:s3cret-pw@127.0.0.1/asteriskcdrdb",
     "source.url: the mysql+mysqldb driver is not installed (MySQLdb); use mysql+pymysql://"),
    ("mssql+pyodbc://cdrsync:s3cret-pw@127.0.0.1/asteriskcdrdb",
     "source.url: the mssql+pyodbc driver is not installed (pyodbc)"),
    ("oracle9://cdrsync:s3cret-pw@127.0.0.1/asteriskcdrdb",
     "source.url: unknown database kind 'oracle9' (use mysql+pymysql, postgresql+psycopg or "
     "sqlite)"),
])
def test_a_driver_that_cannot_load_is_a_config_error_before_any_connection(tmp_path, url,
                                                                            expected):
    # `sync` exited 1 with "internal error: ModuleNotFoundError" or "PBX database: ..." before
    line = bad_config_line(tmp_path, "sync", source__url=url)
    assert line.startswith(f"cdrsync: configuration: {expected}")


def test_a_directory_given_as_the_config_file(tmp_path):
    proc = cdrsync(tmp_path, "status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"cdrsync: configuration: config file {tmp_path} is a "
                                   "directory; give the path of the .toml file")
