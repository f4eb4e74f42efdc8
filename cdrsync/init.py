"""`cdrsync init`: a starter config and the SQL for cdrsync's own login, from what FreePBX knows.

FreePBX already knows where its CDR database is: /etc/freepbx.conf (`$amp_conf['AMPDBHOST']`...),
the Asterisk ODBC files (cdr_adaptive_odbc.conf names the connection, res_odbc*.conf its
database, /etc/odbc.ini the server). Those files also hold the FreePBX admin login: it is never
read into a result here, let alone reused. cdrsync gets a new SELECT-only login with a fresh
random password, which the admin creates by running the printed SQL as root.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .config import ConfigError

DEFAULT_DB = "asteriskcdrdb"
_PHP_SETTING = re.compile(
    r"""\$amp_conf\s*\[\s*['"](?P<key>\w+)['"]\s*\]\s*=\s*(?P<q>['"])(?P<value>.*?)(?P=q)\s*;""")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
_SAFE_HOST = re.compile(r"^[A-Za-z0-9_.:%-]{1,255}$")


@dataclass
class PbxDb:
    """Where the CDR database is, and which files said so."""

    host: str = "127.0.0.1"
    port: int = 3306
    database: str = DEFAULT_DB
    found_in: list[str] = field(default_factory=list)


def parse_freepbx_conf(text: str) -> dict[str, str]:
    """The database location from /etc/freepbx.conf: AMPDBHOST, AMPDBPORT, CDRDBHOST, CDRDBPORT,
    CDRDBNAME (never AMPDBUSER / AMPDBPASS: they are FreePBX's, not ours)."""
    wanted = {"AMPDBHOST", "AMPDBPORT", "CDRDBHOST", "CDRDBPORT", "CDRDBNAME"}
    found = {}
    for m in _PHP_SETTING.finditer(_strip_php_comments(text)):
        if m.group("key") in wanted and m.group("value"):
            found[m.group("key")] = m.group("value")
    return found


def _strip_php_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"^\s*(//|#).*$", "", text, flags=re.M)


def parse_asterisk_conf(text: str) -> dict[str, dict[str, str]]:
    """An Asterisk .conf / odbc.ini as {section: {key: value}} (keys lower-case; `=>` and `=`;
    `;` comments; a repeated section merges)."""
    sections: dict[str, dict[str, str]] = {}
    current: Optional[dict[str, str]] = None
    for raw in text.splitlines():
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].strip()
        if raw.lstrip().startswith("#"):  # odbc.ini comments; Asterisk's #include is not needed
            continue
        m = re.match(r"^\[([^\]]+)\]", line)
        if m:
            current = sections.setdefault(m.group(1).strip(), {})
            continue
        if current is None or "=" not in line:
            continue
        key, _, value = line.partition("=")
        current[key.strip().lower()] = value.lstrip(">").strip()
    return sections


def discover(etc: Path = Path("/etc")) -> PbxDb:
    """Read what is readable under `etc`; anything missing or unreadable keeps the default."""
    found = PbxDb()

    def read(relative: str) -> Optional[str]:
        try:
            return (etc / relative).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    text = read("freepbx.conf")
    if text is not None:
        php = parse_freepbx_conf(text)
        host = php.get("CDRDBHOST") or php.get("AMPDBHOST")
        port = php.get("CDRDBPORT") or php.get("AMPDBPORT")
        if host:
            found.host = _tcp_host(host)
        if port and port.isdigit():
            found.port = int(port)
        if php.get("CDRDBNAME"):
            found.database = php["CDRDBNAME"]
        found.found_in.append(str(etc / "freepbx.conf"))
    connection = DEFAULT_DB
    text = read("asterisk/cdr_adaptive_odbc.conf")
    if text is not None:
        for values in parse_asterisk_conf(text).values():
            if values.get("table", "cdr") == "cdr" and values.get("connection"):
                connection = values["connection"]
                found.found_in.append(str(etc / "asterisk/cdr_adaptive_odbc.conf"))
                break
    dsn = ""
    for name in ("asterisk/res_odbc_additional.conf", "asterisk/res_odbc.conf"):
        text = read(name)
        section = parse_asterisk_conf(text).get(connection) if text is not None else None
        if section:
            dsn = section.get("dsn", "")
            if section.get("database"):
                found.database = section["database"]
            found.found_in.append(str(etc / name))
            break
    text = read("odbc.ini")
    section = parse_asterisk_conf(text).get(dsn) if text is not None and dsn else None
    if section:
        if section.get("server"):
            found.host = _tcp_host(section["server"])
        if section.get("port", "").isdigit():
            found.port = int(section["port"])
        if section.get("database"):
            found.database = section["database"]
        found.found_in.append(str(etc / "odbc.ini"))
    return found


def _tcp_host(host: str) -> str:
    """cdrsync connects over TCP: "localhost" (MySQL's socket) becomes 127.0.0.1."""
    return "127.0.0.1" if host.strip().lower() == "localhost" else host.strip()


def new_password() -> str:
    """Random, and safe in a URL, in SQL quotes and in sed (hex only)."""
    return secrets.token_hex(16)


def readonly_user_sql(db: PbxDb, password: str, client_host: str) -> str:
    """The statements of sql/readonly-user.sql with the placeholders filled in."""
    _require(_SAFE_NAME, db.database, "database name")
    _require(_SAFE_HOST, client_host, "client host")
    _require(re.compile(r"^[0-9a-f]{16,}$"), password, "password")
    user = f"'cdrsync'@'{client_host}'"
    return "\n".join([
        f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{password}';",
        f"ALTER USER {user} IDENTIFIED BY '{password}';",
        f"GRANT SELECT ON `{db.database}`.`cdr` TO {user};",
        f"GRANT SELECT ON `{db.database}`.`cel` TO {user};",
    ]) + "\n"


def starter_config(db: PbxDb, password: str, timezone: str) -> str:
    """A config with the keys that have no default; contrib/cdrsync.toml explains the rest."""
    return f"""\
# cdrsync starter configuration, written by `cdrsync init`.
# Every other key and its default: contrib/cdrsync.toml. Test it with `cdrsync check`.

[source]
# cdrsync's own read-only login (create it with the SQL printed by `cdrsync init`)
url = "mysql+pymysql://cdrsync:{password}@{db.host}:{db.port}/{db.database}"
# the zone the PBX writes calldate in (`cdrsync check` verifies it against the rows)
timezone = "{timezone}"

[planfix]
# Planfix -> PBX integration settings: the telephony API address and its key
url = "https://ACCOUNT.planfix.ru/CHANGE-ME"
token = "CHANGE-ME"

[recordings]
dir = "/var/spool/asterisk/monitor"

[state]
url = "sqlite:////var/lib/cdrsync/state.db"
"""


def local_timezone(etc: Path = Path("/etc")) -> str:
    """The host's IANA zone (/etc/timezone, else the /etc/localtime link), else "UTC"."""
    try:
        name = (etc / "timezone").read_text(encoding="utf-8").strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = str((etc / "localtime").readlink())
    except OSError:
        return "UTC"
    m = re.search(r"zoneinfo/(.+)$", target)
    return m.group(1) if m else "UTC"


def init_text(etc: Path = Path("/etc"), client_host: str = "") -> str:
    """What `cdrsync init` prints: the SQL to run as the database admin, then the config."""
    db = discover(etc)
    password = new_password()
    local = db.host in ("127.0.0.1", "::1")
    host = client_host or ("127.0.0.1" if local else "CDRSYNC-HOST")
    lines = [f"-- Learnt from: {', '.join(db.found_in) or 'nothing readable; FreePBX defaults'}",
             f"-- 1. Run as the database admin on {db.host}:{db.port} (e.g. `mysql -u root`):"]
    if host == "CDRSYNC-HOST":
        lines.append("--    first replace CDRSYNC-HOST with the address cdrsync connects from")
    return ("\n".join(lines) + "\n" + readonly_user_sql(db, password, host)
            + "\n-- 2. Save this as /etc/cdrsync/cdrsync.toml (chmod 640, group cdrsync):\n\n"
            + starter_config(db, password, local_timezone(etc)))


def _require(pattern: re.Pattern[str], value: str, what: str) -> None:
    if not pattern.match(value):
        raise ConfigError(f"cdrsync init: {what} {value!r} has characters unsafe in SQL; "
                          "use sql/readonly-user.sql by hand")
