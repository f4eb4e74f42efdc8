"""Configuration: one TOML file, secrets optionally from the environment.

Every problem is reported as one `ConfigError` line naming the key, without echoing secret values.
Where the file is found: `--config PATH`, else `$CDRSYNC_CONFIG`, else `/etc/cdrsync/cdrsync.toml`.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import os
import re
import sys
import time
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Optional
from urllib.parse import unquote, urlsplit
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
    daily_limit: int = 0  # requests per rolling 24 h that history may use; 0 = no limit
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
    interval: int = 1  # s between passes; an idle pass costs one indexed query on the PBX
    settle: int = 60  # s of quiet before a call without an end-of-call event counts as finished
    cel_settle: int = 5  # s at most after the last LINKEDID_END, for a call whose cdr rows lag
    cdr_grace: int = 1  # s after the last LINKEDID_END once the first channel's cdr row is there
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
        "from-digital",  # FreePBX's context for PRI / BRI (DAHDI) trunks: includes from-pstn
        "from-analog",  # ... and for analog DAHDI lines (FXO)
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
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MIN, _HOUR, _DAY = 60, 3600, 86400
_YEAR = 365 * _DAY


class _Range(NamedTuple):
    """The values a number may take; `off` names what 0 means where 0 switches something off."""

    least: float
    most: float
    unit: str = "s"
    off: str = ""


# Every numeric key's range, refused at load with one line: a value outside would crash a pass
# later (nan, inf, 1e300 overflow the date arithmetic), stall it, or quietly do nothing useful.
# `recordings.link_ttl` has its own check. contrib/cdrsync.toml states each range.
_RANGES: dict[str, _Range] = {
    # how far back the first sync starts and a CDR-only pass re-reads; no PBX keeps 30 years of
    # rows (the demo and the corpus tests reach 20 years back over their dated copies); the low
    # end is guarded by the checks against settle + interval and lookback (tests shrink both)
    "source.lookback": _Range(1, 30 * _YEAR),
    "source.max_call": _Range(1, 30 * _YEAR),
    # a long call found more than a day late is no longer news
    "source.long_every": _Range(1, _DAY, off="every pass"),
    # the calls of a batch are held in memory and recorded in one transaction
    "source.batch": _Range(1, 10_000, "rows"),
    # below 0.1/s a busy office's calls queue up for ever; Planfix itself allows about 5/s
    "planfix.rate": _Range(0.1, 100, "requests/s", off="no limit"),
    # less is no time for a TLS handshake; more holds a pass (and the systemd watchdog) hostage
    "planfix.timeout": _Range(0.1, 300),
    # the first retry waits 1 s; past an hour a recovered Planfix waits too long for its queue
    "planfix.backoff_max": _Range(1, _HOUR),
    # Planfix documents 20,000-100,000 requests a day for its other APIs; fewer than 100 a day
    # would take a backfill years, and the default rate sends 432,000 at most
    "planfix.daily_limit": _Range(100, 500_000, "requests", off="no limit"),
    # the late-recording table is re-read every minute while a call waits in it
    "recordings.late_window": _Range(1, 30 * _DAY, off="never look again"),
    # a file untouched for an hour is finished; more delays every recorded call's link
    "recordings.min_age": _Range(0, _HOUR),
    # pruning keeps the store small; ten years of bodies is already a store that only grows
    "state.keep_days": _Range(1, 3650, "days", off="keep for ever"),
    # APScheduler needs at least a second; a daemon passing less than daily is a cron job
    "schedule.interval": _Range(1, _DAY),
    # every call waits this long before it is sent: more than an hour is not "seconds after"
    "schedule.settle": _Range(0, _HOUR),
    "schedule.cel_settle": _Range(0, 10 * _MIN),
    # CDR batch mode may split a call's rows over two batches: then as long as cel_settle
    "schedule.cdr_grace": _Range(0, 10 * _MIN),
    # a live call is closed after this without events: at least a minute, at most a week
    "schedule.orphan_after": _Range(_MIN, 7 * _DAY),
    # the notice waits that long: past a day it is no longer a missed call but history
    "missed.callback_window": _Range(1, 24 * 60, "min", off="off"),
    # who is responsible for a caller changes: a week-old answer may name someone who left
    "missed.responsible_ttl": _Range(1, 7 * _DAY, off="ask every time"),
    # the missed-call notice waits for Planfix's answer: more than 30 s and it comes late
    "missed.responsible_timeout": _Range(0.1, 30),
}


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
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory; give the path of the .toml file"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
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
    _check_windows(cfg)
    _check_addresses(cfg)
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
        if not math.isfinite(value):
            raise ConfigError(f"{full}: must be a finite number, not {shown}")
        if value < 0:
            raise ConfigError(f"{full}: must not be negative")
        if kind is int and value != int(value):
            raise ConfigError(f"{full}: must be a whole number, not {shown}")
        _check_range(full, value)
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
    if cfg.pbx.ext_policy not in ("last", "first"):
        raise ConfigError('pbx.ext_policy: must be "last" or "first"')
    if cfg.missed.notify not in ("rang", "targets", "responsible"):
        raise ConfigError('missed.notify: must be "rang", "targets" or "responsible"')
    if cfg.log.format not in ("text", "json"):
        raise ConfigError('log.format: must be "text" or "json"')
    if cfg.log.level.upper() not in _LEVELS:
        raise ConfigError(f"log.level: must be one of {', '.join(_LEVELS)}, not "
                          f"{cfg.log.level!r}")
    for pattern_key, patterns in (("pbx.extension_pattern", (cfg.pbx.extension_pattern,) if
                                   cfg.pbx.extension_pattern else ()),
                                  ("pbx.trunk_channels", cfg.pbx.trunk_channels)):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"{pattern_key}: bad regular expression {pattern!r}: {exc}") from None


def _check_range(full: str, value: float) -> None:
    bounds = _RANGES.get(full)
    if bounds is None or bounds.least <= value <= bounds.most or (bounds.off and value == 0):
        return
    raise ConfigError(f"{full}: must be {allowed(full)}, not {value!r}")


def allowed(full: str) -> str:
    """The range of the numeric key `full` in words ("from 1 min to 30 years"), as errors and
    contrib/cdrsync.toml state it."""
    bounds = _RANGES[full]
    if bounds.unit == "s":
        text = f"from {_span(bounds.least)} to {_span(bounds.most)}"
    else:
        text = f"from {bounds.least:g} to {bounds.most:g} {bounds.unit}"
    return f"0 ({bounds.off}) or {text}" if bounds.off else text


def _span(seconds: float) -> str:
    """A bound the way an admin reads it: `30 years`, `1 day`, `10 min`, `0.1 s`."""
    for size, one, many in ((_YEAR, "year", "years"), (_DAY, "day", "days"), (_HOUR, "h", "h"),
                            (_MIN, "min", "min")):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {one if count == 1 else many}"
    return f"{seconds:g} s"


def _check_windows(cfg: Config) -> None:
    """Windows that only make sense together: a CDR-only pass must still see a call's rows when
    it has settled, and the long re-read must reach further back than the short one."""
    needed = cfg.schedule.settle + cfg.schedule.interval
    if cfg.source.lookback < needed:
        raise ConfigError(f"source.lookback: must be at least schedule.settle + schedule.interval "
                          f"({needed} s), or a CDR-only pass never sees a call settle")
    if cfg.source.max_call < cfg.source.lookback:
        raise ConfigError("source.max_call: must not be shorter than source.lookback")


def _check_addresses(cfg: Config) -> None:
    """Ports and database drivers, found wrong at load rather than at the first connection."""
    for key, url in (("source.url", cfg.source.url), ("state.url", cfg.state.url)):
        _check_database_url(key, url)
    for key, url in (("planfix.url", cfg.planfix.url),
                     ("planfix.missed_url", cfg.planfix.missed_url),
                     ("recordings.base_url", cfg.recordings.base_url)):
        if url:
            try:
                port = urlsplit(url).port
            except ValueError:  # not a number, or over 65535
                port = 0
            if port == 0:
                raise ConfigError(f"{key}: the port must be a number from 1 to 65535")
    for key, listen in (("recordings.listen", cfg.recordings.listen),
                        ("metrics.listen", cfg.metrics.listen)):
        if listen:
            listen_address(key, listen)


def listen_address(key: str, listen: str) -> tuple[str, int]:
    """("127.0.0.1", 8089) from "127.0.0.1:8089", ("::1", 9464) from "[::1]:9464", ("", 9464)
    (every address) from ":9464"; a `ConfigError` naming `key` otherwise."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]*):(\d{1,5})", listen.strip())
    port = int(match.group(2) or match.group(4)) if match else 0
    if not match or not 1 <= port <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT with a port from 1 to 65535 "
                          f"(e.g. 127.0.0.1:9464 or [::1]:9464), not {listen!r}")
    return match.group(1) or match.group(3), port


def _check_database_url(key: str, url: str) -> None:
    """The URL parses, names a port that exists, and its dialect and driver are installed
    (imported, never connected: `check` does that)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    bad_port = ConfigError(f"{key}: the port must be a number from 1 to 65535")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{key}: not an SQLAlchemy URL (e.g. mysql+pymysql://user:pw@host/db)"
                          ) from None
    except ValueError:  # a port that is not a number
        raise bad_port from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise bad_port
    if parsed.host and "@" in parsed.host:
        raise ConfigError(f"{key}: the password holds an @: write it %-encoded (@ as %40)")
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(f"{key}: unknown database kind {parsed.drivername!r} (use mysql+pymysql, "
                          "postgresql+psycopg or sqlite)") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        hint = {"mysql": "use mysql+pymysql://, installed with cdrsync",
                "postgresql": "use postgresql+psycopg:// and pip install 'cdrsync[postgres]'"}
        raise ConfigError(
            f"{key}: the {parsed.drivername} driver is not installed ({exc.name or exc}); "
            f"{hint.get(parsed.get_backend_name(), 'install it in the same environment')}"
        ) from None


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


def redact(text: str, cfg: Any = None) -> str:
    """`text` without the password of any URL in it and without any secret of `cfg` (a `Config`
    or one of its sections), in whatever encoding it was echoed: see `_secret_pattern`."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    if cfg is None:
        return text
    pattern = _pattern_of(cfg)
    return pattern.sub("***", text) if pattern is not None else text


_PATTERNS: dict[int, tuple[Any, Optional[re.Pattern[str]]]] = {}


def _pattern_of(cfg: Any) -> Optional[re.Pattern[str]]:
    """The secret pattern of a (frozen, so unchanging) configuration, worked out once: every log
    line is redacted, and walking the configuration costs five times the matching."""
    known = _PATTERNS.get(id(cfg))
    if known is None or known[0] is not cfg:
        if len(_PATTERNS) >= 16:
            _PATTERNS.clear()
        known = _PATTERNS[id(cfg)] = (cfg, _secret_pattern(secrets(cfg)))
    return known[1]


def secrets(cfg: Any) -> tuple[str, ...]:
    """Every secret a configuration or section holds: the Planfix token, the signing key, and the
    password of every address (as written in the URL and %-decoded), with the Basic-auth value an
    HTTP client derives from an address's `user:password`."""
    found: set[str] = set()
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            found.update(secrets(value))
        elif isinstance(value, str) and value and f.name in ("token", "sign_key"):
            found.add(value)
        elif isinstance(value, str) and (f.name == "url" or f.name.endswith("_url")):
            for user, password in _credentials(value):
                for pair in (f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"):
                    found.update(_basic_auth(pair))
                found.update((password, unquote(password)))
    return tuple(sorted(found - {""}, key=lambda s: (-len(s), s)))


def _basic_auth(pair: str) -> set[str]:
    """The Basic-auth values of `user:password`: UTF-8, and Latin-1 as requests encodes it."""
    found = set()
    for charset in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):  # not sendable in it: never sent in it
            found.add(base64.b64encode(pair.encode(charset)).decode("ascii"))
    return found


def _credentials(url: str) -> set[tuple[str, str]]:
    """(user, password) as written in `url`, split where SQLAlchemy splits it (the first @) and
    where urllib does (the last @ before the path): a raw @ in a password makes them differ."""
    _scheme, sep, rest = url.partition("://")
    found: set[tuple[str, str]] = set()
    if sep:
        for userinfo in (rest.partition("@")[0] if "@" in rest else "",
                         rest.split("/", 1)[0].rpartition("@")[0]):
            user, colon, password = userinfo.partition(":")
            if colon and password:
                found.add((user, password))
    return found


@lru_cache(maxsize=16)
def _secret_pattern(secret_values: tuple[str, ...]) -> Optional[re.Pattern[str]]:
    """One expression that finds each secret written raw or escaped, character by character, the
    way an echoing server or a library may write it back: %-encoded by `quote` or `quote_plus`
    (either hex case, `+` for a space, twice-encoded `%25..`), JSON-escaped (`\\u00..`, `\\/` as
    PHP writes it), HTML-escaped (`&amp;`, `&#38;`, `&#x26;`), or with Python's repr escapes.
    Letter case is ignored: hiding a look-alike costs nothing, showing a secret does."""
    if not secret_values:
        return None
    return re.compile("|".join("".join(_char_pattern(c) for c in secret)
                               for secret in secret_values), re.IGNORECASE)


def _char_pattern(char: str) -> str:
    forms = {re.escape(char), re.escape(html.escape(char)), f"&#0*{ord(char)};",
             f"&#x0*{ord(char):x};", re.escape(json.dumps(char)[1:-1]),
             re.escape(json.dumps(char, ensure_ascii=False)[1:-1]), re.escape(repr(char)[1:-1])}
    forms.add("".join(rf"%(?:25)?{byte:02x}" for byte in char.encode("utf-8")))
    forms.add("".join(rf"\\u{unit:04x}" for unit in _utf16(char)))
    if char == "/":
        forms.add(r"\\/")
    if char == " ":
        forms.update((r"\+", "%2b"))  # quote_plus's +, and that + encoded once more
    return "(?:" + "|".join(sorted(forms, key=lambda f: (-len(f), f))) + ")"


def _utf16(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
