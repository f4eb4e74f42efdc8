"""Configuration: every mistake is one line naming the key, and never shows a secret."""

from __future__ import annotations

import pytest

from cdrsync import config
from cdrsync.config import ConfigError
from tests.e2e import cdrsync, write_config

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
    assert cfg.schedule.interval == 10 and cfg.schedule.settle == 60
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
    ({"schedule__interval": 0}, "schedule.interval: must be at least 1 second"),
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
