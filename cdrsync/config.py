"""Configuration: one TOML file, secrets optionally from the environment.

Every problem is reported as one `ConfigError` line naming the key, without echoing secret values.
Where the file is found: `--config PATH`, else `$CDRSYNC_CONFIG`, else `/etc/cdrsync/cdrsync.toml`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

DEFAULT_PATH = "/etc/cdrsync/cdrsync.toml"
ENV_PATH = "CDRSYNC_CONFIG"
ENV_SOURCE_URL = "CDRSYNC_SOURCE_URL"
ENV_TOKEN = "CDRSYNC_PLANFIX_TOKEN"
# The latest expiry a recording link may carry: 12 digits in recordings/links.py and the Lua
# script; nginx's secure_link parses it into a time_t, which holds it.
MAX_EXPIRES = 10**12 - 1


class ConfigError(Exception):
    """A wrong or missing setting; the message is one line, names the key, holds no secret."""


@dataclass(frozen=True)
class SourceConfig:
    url: str
    timezone: str
    use_cel: str = "auto"  # "auto" | "true" | "false"
    lookback: int = 3600  # s: the window a CDR-only pass re-reads every time
    max_call: int = 86400  # s: re-read every `long_every` s, for calls longer than lookback
    long_every: int = 600
    batch: int = 500  # LINKEDID_END events / rows per query

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class PlanfixConfig:
    url: str
    token: str = field(repr=False)
    missed_url: str = ""
    rate: float = 5.0  # requests per second; 0 = no limit
    timeout: float = 10.0
    ca_bundle: str = ""  # path of a CA bundle for a private CA; certificates are always checked
    backoff_max: float = 300.0  # s: cap of the exponential back-off between retries
    send_internal: bool = False
    ring_group_cancelled: bool = False  # also send COMPLETED/Cancelled for each other ext that rang


@dataclass(frozen=True)
class RecordingsConfig:
    dir: str = "/var/spool/asterisk/monitor"
    base_url: str = ""  # empty: no record_link is sent
    sign_key: str = field(default="", repr=False)
    link_ttl: int = 0  # s; 0 = permanent links (what Planfix needs); >0 sends is_temp=1
    listen: str = "127.0.0.1:8089"  # address of `cdrsync serve-recordings`
    late_window: int = 86400  # s: how long a missing file is looked for again
    min_age: int = 5  # s: a file younger than this may still be written
    mp3: bool = False  # hand Planfix an mp3 made with ffmpeg/lame instead of a large wav
    cache_dir: str = "/var/cache/cdrsync"


@dataclass(frozen=True)
class StateConfig:
    url: str = "sqlite:////var/lib/cdrsync/state.db"
    keep_days: int = 90  # delivered requests' bodies kept this long (for `show`); 0 = forever
    namespace: str = ""  # PostgreSQL: this instance's schema in a store several instances share


@dataclass(frozen=True)
class ScheduleConfig:
    interval: int = 10
    settle: int = 60  # s of quiet before a call without an end-of-call event counts as finished
    cel_settle: int = 5  # s after the last LINKEDID_END before the call's cdr rows are read
    orphan_after: int = 7200  # s: a call whose LINKEDID_END never came is closed after this


@dataclass(frozen=True)
class PbxConfig:
    """How to read a dialplan; the defaults fit a stock FreePBX."""

    # Who is a phone, a trunk, a group is learned from the rows (cdrsync.pbx); these override it.
    extension_pattern: str = ""  # regex: a device whose name matches is the phone of that number
    trunk_channels: tuple[str, ...] = ()  # regexes of trunk channel names, e.g. "^PJSIP/carrier-"
    inbound_contexts: tuple[str, ...] = (
        "from-pstn",
        "from-trunk",
        "from-pstn-*",
        "from-trunk-*",
        "from-sip-external",
    )
    internal_contexts: tuple[str, ...] = ("from-internal", "from-internal-*")  # phones' contexts
    default_country: str = "RU"  # region for numbers written without a country code
    ext_policy: str = "last"  # "last" | "first": who gets a transferred call
    ivr_hangup_missed: bool = True  # a caller hanging up in an IVR is a missed call


@dataclass(frozen=True)
class MissedConfig:
    """Who is told about a missed inbound call (callMissedNotify)."""

    notify: str = "rang"  # "rang": every extension that rang; "targets": only the lists below;
    # "responsible": whom Planfix names responsible for the caller (else those that rang)
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # DID or queue -> exts
    callback_window: int = 0  # min; >0: no notice if the caller got through or was called back
    responsible_ttl: int = 3600  # s Planfix's answer for a caller is reused; 0 = ask every time
    responsible_timeout: float = 3.0  # s to wait for that answer before telling those that rang


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # "text" | "json"
    level: str = "INFO"


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = ""  # "127.0.0.1:9464": a Prometheus endpoint in `run` mode
    textfile: str = ""  # path of a node-exporter textfile, rewritten after each pass
    pbx: str = ""  # the `pbx` label of every series; "": the config file's name, else host name


@dataclass(frozen=True)
class Config:
    source: SourceConfig
    planfix: PlanfixConfig
    recordings: RecordingsConfig = RecordingsConfig()
    state: StateConfig = StateConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    pbx: PbxConfig = PbxConfig()
    missed: MissedConfig = MissedConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    path: str = ""


_SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "planfix": PlanfixConfig,
    "recordings": RecordingsConfig,
    "state": StateConfig,
    "schedule": ScheduleConfig,
    "pbx": PbxConfig,
    "missed": MissedConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
}
_SECRET_KEYS = {"planfix.token", "recordings.sign_key", "source.url", "state.url"}


def config_path(explicit: Optional[str]) -> Path:
    return Path(explicit or os.environ.get(ENV_PATH) or DEFAULT_PATH)


def load(path: Optional[str] = None, env: Optional[dict[str, str]] = None) -> Config:
    """Read, merge with the environment and validate the configuration."""
    env = dict(os.environ) if env is None else env
    p = config_path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found (use --config PATH or ${ENV_PATH})") from None
    except PermissionError:
        raise ConfigError(f"config file {p} is not readable by this user") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return from_dict(raw, env, str(p))


def from_dict(raw: dict[str, Any], env: dict[str, str], path: str = "") -> Config:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for key in raw:
        if key not in _SECTIONS:
            raise ConfigError(f"[{key}]: unknown section (known: {', '.join(_SECTIONS)})")
        if not isinstance(raw[key], dict):
            raise ConfigError(f"{key}: must be a [section]")
    if env.get(ENV_SOURCE_URL):
        raw.setdefault("source", {})["url"] = env[ENV_SOURCE_URL]
    if env.get(ENV_TOKEN):
        raw.setdefault("planfix", {})["token"] = env[ENV_TOKEN]
    sections = {name: _build(name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    cfg = Config(path=path, **sections)
    _validate(cfg)
    return cfg


def _build(section: str, cls: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown key")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        full = f"{section}.{name}"
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                hint = ""
                if full == "source.url":
                    hint = f" (or set ${ENV_SOURCE_URL})"
                elif full == "planfix.token":
                    hint = f" (or set ${ENV_TOKEN})"
                raise ConfigError(f"{full}: missing required key{hint}")
            continue
        kwargs[name] = _coerce(full, f, values[name])
    return cls(**kwargs)


def _coerce(full: str, f: Any, value: Any) -> Any:
    default = f.default if f.default is not MISSING else None
    kind = type(default) if default is not None else str
    if f.default_factory is not MISSING:
        kind = dict
    shown = "(hidden)" if full in _SECRET_KEYS else repr(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{full}: must be true or false, not {shown}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{full}: must be a number, not {shown}")
        if value < 0:
            raise ConfigError(f"{full}: must not be negative")
        if kind is int and value != int(value):
            raise ConfigError(f"{full}: must be a whole number of seconds")
        return kind(value)
    if kind is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{full}: must be a list of strings")
        return tuple(value)
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{full}: must be a table of KEY = [\"ext\", ...]")
        out = {}
        for k, v in value.items():
            exts = [v] if isinstance(v, str) else v
            if not isinstance(exts, list) or not all(isinstance(x, str) for x in exts):
                raise ConfigError(f"{full}.{k}: must be a list of extension numbers as strings")
            out[str(k)] = tuple(exts)
        return out
    if isinstance(value, bool) and full == "source.use_cel":
        return "true" if value else "false"
    if not isinstance(value, str):
        raise ConfigError(f"{full}: must be a string, not {shown}")
    return value


def _validate(cfg: Config) -> None:
    try:
        cfg.source.zone  # noqa: B018 - resolving the zone is the check
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"source.timezone: unknown IANA zone {cfg.source.timezone!r} (e.g. \"Europe/Moscow\")"
        ) from None
    if cfg.source.use_cel not in ("auto", "true", "false"):
        raise ConfigError('source.use_cel: must be "auto", true or false')
    for key, url in (("source.url", cfg.source.url), ("state.url", cfg.state.url)):
        if "://" not in url:
            raise ConfigError(f"{key}: not an SQLAlchemy URL (e.g. mysql+pymysql://user:pw@host/db)")
    if _same_database(cfg.source.url, cfg.state.url):
        raise ConfigError("state.url: must not be the PBX database; cdrsync never writes there")
    _validate_namespace(cfg.state)
    for key, url in (("planfix.url", cfg.planfix.url),
                     ("planfix.missed_url", cfg.planfix.missed_url),
                     ("recordings.base_url", cfg.recordings.base_url)):
        if url and not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"{key}: must be an http(s):// address")
    if not cfg.planfix.token:
        raise ConfigError(f"planfix.token: is empty (or set ${ENV_TOKEN})")
    if cfg.planfix.ca_bundle and not Path(cfg.planfix.ca_bundle).is_file():
        raise ConfigError(f"planfix.ca_bundle: file {cfg.planfix.ca_bundle} not found")
    if cfg.recordings.base_url and not cfg.recordings.sign_key:
        raise ConfigError("recordings.sign_key: required when recordings.base_url is set "
                          "(links must not be guessable)")
    if cfg.recordings.sign_key and len(cfg.recordings.sign_key) < 16:
        raise ConfigError("recordings.sign_key: too short; use at least 16 random characters")
    longest = int(MAX_EXPIRES - time.time())
    if cfg.recordings.link_ttl > longest:
        raise ConfigError(f"recordings.link_ttl: links would expire later than the link check can "
                          f"hold; use at most {longest} s (0 = links that never expire)")
    if cfg.schedule.interval < 1:
        raise ConfigError("schedule.interval: must be at least 1 second")
    if cfg.pbx.ext_policy not in ("last", "first"):
        raise ConfigError('pbx.ext_policy: must be "last" or "first"')
    if cfg.missed.notify not in ("rang", "targets", "responsible"):
        raise ConfigError('missed.notify: must be "rang", "targets" or "responsible"')
    if cfg.missed.responsible_timeout <= 0:
        raise ConfigError("missed.responsible_timeout: must be more than 0 seconds")
    if cfg.log.format not in ("text", "json"):
        raise ConfigError('log.format: must be "text" or "json"')
    for pattern_key, patterns in (("pbx.extension_pattern", (cfg.pbx.extension_pattern,) if
                                   cfg.pbx.extension_pattern else ()),
                                  ("pbx.trunk_channels", cfg.pbx.trunk_channels)):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"{pattern_key}: bad regular expression {pattern!r}: {exc}") from None


def _validate_namespace(state: StateConfig) -> None:
    """A namespace is a PostgreSQL schema: MySQL's schemas are databases, SQLite's are files."""
    if not state.namespace:
        return
    if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", state.namespace) or \
            state.namespace.startswith("pg_"):
        raise ConfigError("state.namespace: lower-case letters, digits and _, not starting with "
                          "a digit or pg_, at most 63 (it names a PostgreSQL schema)")
    if not re.match(r"^postgresql(\+\w+)?://", state.url):
        raise ConfigError("state.namespace: only for a PostgreSQL state store; with SQLite give "
                          "each instance its own file, with MySQL its own database, in state.url")


def _same_database(a: str, b: str) -> bool:
    def strip(url: str) -> str:
        return re.sub(r"//[^@/]*@", "//", url).split("?")[0].rstrip("/").lower()

    return strip(a) == strip(b)


def redact(text: str, cfg: Optional[Config] = None) -> str:
    """Remove passwords in URLs and the configured secrets from a text meant for a log or error."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    if cfg is not None:
        for secret in (cfg.planfix.token, cfg.recordings.sign_key):
            if secret:
                text = text.replace(secret, "***")
    return text
