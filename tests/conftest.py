"""Throw-away PBX databases for tests: a real MariaDB (the FreePBX schema from sql/), plus SQLite
and PostgreSQL copies of the same two tables for the less common back-ends.

Each fixture yields a `PbxDatabase`: `name`, `admin_url`, `ro_url` (a SELECT-only login where the
back-end has logins), `admin` (an SQLAlchemy engine that may write), `insert_cdr(rows)`,
`insert_cel(rows)`, `execute(sql)`; the MariaDB one also `load_dump(path)` for mysqldump files.
Rows are dicts; columns left out get the table's default, or ""/0/now when the column is NOT NULL
without a default (FreePBX's `cel` has no defaults at all). `cel.id` is auto-assigned unless given.

The portable DDL of `cdr` / `cel` for SQLite and PostgreSQL lives here (`PORTABLE_DDL`): those
back-ends are only used to prove `Source` is not MySQL-bound, so a faithful copy is not needed.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

import pymysql
import pytest
from sqlalchemy import Engine, create_engine, inspect, text

# The loopback Planfix (`planfix` fixture) for every test.
pytest_plugins = ["tests.planfix_stub"]

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "sql" / "asteriskcdrdb.sql"
MARIADB = ("127.0.0.1", 3306)
POSTGRES = ("127.0.0.1", 5432)

_CDR_TEXT = ["clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
             "disposition", "accountcode", "uniqueid", "userfield", "did", "recordingfile", "cnum",
             "cnam", "outbound_cnum", "outbound_cnam", "dst_cnam", "linkedid", "peeraccount"]
_CEL_TEXT = ["eventtype", "cid_name", "cid_num", "cid_ani", "cid_rdnis", "cid_dnid", "exten",
             "context", "channame", "appname", "appdata", "accountcode", "uniqueid", "linkedid",
             "peer", "userdeftype", "extra"]


def _portable_ddl(datetime_type: str, id_column: str) -> list[str]:
    def text_cols(names: list[str]) -> str:
        return ",\n".join(f"  {n} VARCHAR(255) NOT NULL DEFAULT ''" for n in names)

    return [
        f"CREATE TABLE cdr (\n  calldate {datetime_type} NOT NULL,\n{text_cols(_CDR_TEXT)},\n"
        "  duration INTEGER NOT NULL DEFAULT 0,\n  billsec INTEGER NOT NULL DEFAULT 0,\n"
        "  amaflags INTEGER NOT NULL DEFAULT 0,\n  sequence INTEGER NOT NULL DEFAULT 0\n)",
        "CREATE INDEX cdr_calldate ON cdr (calldate)",
        "CREATE INDEX cdr_uniqueid ON cdr (uniqueid)",
        f"CREATE TABLE cel (\n  {id_column},\n  eventtime {datetime_type} NOT NULL,\n"
        f"{text_cols(_CEL_TEXT)},\n  amaflags INTEGER NOT NULL DEFAULT 0\n)",
        "CREATE INDEX cel_linkedid ON cel (linkedid)",
        "CREATE INDEX cel_uniqueid ON cel (uniqueid)",
    ]


PORTABLE_DDL = {
    # SQLite keeps times as text (as Asterisk's cdr_sqlite3_custom writes them).
    "sqlite": _portable_ddl("TEXT", "id INTEGER PRIMARY KEY AUTOINCREMENT"),
    "postgresql": _portable_ddl("TIMESTAMP", "id SERIAL PRIMARY KEY"),
}


def _port_open(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=1):
            return True
    except OSError:
        return False


def _wait_for(addr: tuple[str, int], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not _port_open(addr):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up on {addr[0]}:{addr[1]}")
        time.sleep(0.2)


class PbxDatabase:
    """A throw-away asteriskcdrdb; see the module docstring."""

    def __init__(self, name: str, admin_url: str, ro_url: str, admin: Engine) -> None:
        self.name = name
        self.admin_url = admin_url
        self.ro_url = ro_url
        self.admin = admin

    def execute(self, sql: str, params: Optional[dict[str, Any]] = None) -> None:
        with self.admin.begin() as conn:
            conn.execute(text(sql), params or {})

    def insert_cdr(self, rows: Iterable[dict[str, Any]]) -> None:
        self._insert("cdr", rows)

    def insert_cel(self, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Insert CEL rows; returns their ids (max id after each insert, in order)."""
        ids = []
        for row in rows:
            self._insert("cel", [row])
            with self.admin.connect() as conn:
                ids.append(conn.execute(text("SELECT MAX(id) FROM cel")).scalar_one())
        return ids

    def _insert(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        columns = inspect(self.admin).get_columns(table)
        names = {c["name"] for c in columns}
        quote = self.admin.dialect.identifier_preparer.quote
        with self.admin.begin() as conn:
            for row in rows:
                unknown = set(row) - names
                if unknown:
                    raise KeyError(f"{table} has no column(s) {sorted(unknown)}")
                values = {k: self._value(v) for k, v in row.items()}
                for col in columns:
                    if col["name"] in values or col["nullable"] or col.get("default") is not None:
                        continue
                    if col["name"] == "id" or col.get("autoincrement") is True:
                        continue
                    values[col["name"]] = self._value(_filler(col))
                cols = ", ".join(quote(k) for k in values)
                marks = ", ".join(f":{k}" for k in values)
                conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({marks})"), values)

    def _value(self, value: Any) -> Any:
        if isinstance(value, dt.datetime) and self.admin.dialect.name == "sqlite":
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value


def _filler(col: dict[str, Any]) -> Any:
    try:
        kind = col["type"].python_type
    except NotImplementedError:
        kind = str
    if kind is int:
        return 0
    if kind is dt.datetime:
        return dt.datetime.now().replace(microsecond=0)
    return ""


class MariaDbPbx(PbxDatabase):
    def load_dump(self, path: str | Path) -> None:
        """Run a mysqldump file (e.g. the corpus) against this database."""
        sql = Path(path).read_text(encoding="utf-8")
        if sql.startswith("/*M!999999"):  # MariaDB 10.11+ sandbox marker; older clients choke
            sql = sql.split("\n", 1)[1]
        conn = pymysql.connect(host=MARIADB[0], port=MARIADB[1], user="root", password="",
                               database=self.name, charset="utf8mb4",
                               client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                while cur.nextset():
                    pass
            conn.commit()
        finally:
            conn.close()


def _schema_statements() -> list[str]:
    sql = re.sub(r"^--.*$", "", SCHEMA.read_text(encoding="utf-8"), flags=re.M)
    return [s.strip() for s in sql.split(";") if s.strip()]


@pytest.fixture(scope="session")
def mariadb_server() -> str:
    """MariaDB at 127.0.0.1:3306 (root, no password); started here if it is down."""
    if not _port_open(MARIADB):
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background",
                        "--exec", "/usr/sbin/mariadbd"], check=False)
        _wait_for(MARIADB, "MariaDB")
    return "mysql+pymysql://root:@127.0.0.1:3306"


@pytest.fixture
def pbx_db(mariadb_server: str) -> Iterator[MariaDbPbx]:
    """A fresh MariaDB asteriskcdrdb with the FreePBX schema and a SELECT-only user."""
    tag = secrets.token_hex(4)
    name, user, password = f"cdrsync_t_{tag}", f"cdrsync_ro_{tag}", secrets.token_hex(12)
    server = create_engine(mariadb_server + "/", future=True, pool_pre_ping=True)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    admin_url = f"{mariadb_server}/{name}?charset=utf8mb4"
    admin = create_engine(admin_url, future=True)
    with admin.begin() as conn:
        for stmt in _schema_statements():
            conn.execute(text(stmt))
        for host in ("127.0.0.1", "localhost"):
            conn.execute(text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
            for table in ("cdr", "cel"):
                conn.execute(text(f"GRANT SELECT ON `{name}`.`{table}` TO '{user}'@'{host}'"))
    ro_url = f"mysql+pymysql://{user}:{password}@127.0.0.1:3306/{name}?charset=utf8mb4"
    try:
        yield MariaDbPbx(name, admin_url, ro_url, admin)
    finally:
        admin.dispose()
        with server.begin() as conn:
            for host in ("127.0.0.1", "localhost"):
                conn.execute(text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


@pytest.fixture
def sqlite_pbx(tmp_path: Path) -> Iterator[PbxDatabase]:
    """A SQLite asteriskcdrdb (cdr_sqlite3_custom style); `ro_url` opens the file read-only."""
    path = tmp_path / "asteriskcdrdb.sqlite"
    admin_url = f"sqlite:///{path}"
    admin = create_engine(admin_url, future=True)
    with admin.begin() as conn:
        for stmt in PORTABLE_DDL["sqlite"]:
            conn.execute(text(stmt))
    try:
        yield PbxDatabase(path.stem, admin_url, f"sqlite:///file:{path}?mode=ro&uri=true", admin)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """PostgreSQL at 127.0.0.1:5432 (user postgres, trusted); started here if it is down."""
    if not _port_open(POSTGRES):
        versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
        if not versions or not shutil.which("pg_ctlcluster"):
            pytest.fail("PostgreSQL is not running and no cluster is installed")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                        "start"], check=False)
        _wait_for(POSTGRES, "PostgreSQL")
    return "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_pbx(postgres_server: str) -> Iterator[PbxDatabase]:
    """A throw-away PostgreSQL asteriskcdrdb at 127.0.0.1:5432 with a SELECT-only role."""
    tag = secrets.token_hex(4)
    name, user, password = f"cdrsync_t_{tag}", f"cdrsync_ro_{tag}", secrets.token_hex(12)
    server = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT",
                           future=True)
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        conn.execute(text(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"))
    admin_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    admin = create_engine(admin_url, future=True)
    with admin.begin() as conn:
        for stmt in PORTABLE_DDL["postgresql"]:
            conn.execute(text(stmt))
        conn.execute(text(f'GRANT SELECT ON cdr, cel TO "{user}"'))
    ro_url = f"postgresql+psycopg://{user}:{password}@127.0.0.1:5432/{name}"
    try:
        yield PbxDatabase(name, admin_url, ro_url, admin)
    finally:
        admin.dispose()
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{user}"'))
        server.dispose()


@pytest.fixture
def env(pbx_db: MariaDbPbx, planfix: Any, tmp_path: Path):
    """(pbx_db, planfix stub, config(**sections) -> path of a cdrsync config for both)."""
    from tests.e2e import make_config

    def config(**overrides: dict[str, Any]) -> Path:
        return make_config(tmp_path, pbx_db.ro_url, planfix, **overrides)

    return pbx_db, planfix, config


# ---- cdrsync's own state store on each back-end ------------------------------------------------

STORE_KINDS = ("sqlite", "postgresql", "mysql")


class StoreServers:
    """Throw-away state-store databases on the local MariaDB and PostgreSQL servers.

    `empty(kind)` is a new, empty database (what a first start meets). `migrated(kind)` is a
    store as cdrsync's revisions make it, with no rows: one database per server, made by
    `open_store` once a session and emptied (rows, id counters) for each test that asks — making
    a new one costs up to a second on these shared cores. URLs are the root / superuser's;
    `drop_all()` drops what `empty` made, force-closing what is still connected (a killed
    process's lock connection, say).
    """

    def __init__(self, mariadb: str, postgres: str) -> None:
        self.servers = {"mysql": mariadb, "postgresql": postgres}
        self.made: list[tuple[str, str]] = []
        self._stores: dict[str, str] = {}  # kind -> the session's migrated store

    def url(self, kind: str, name: str) -> str:
        if kind == "mysql":
            return f"{self.servers[kind]}/{name}?charset=utf8mb4"
        return f"{self.servers[kind]}/{name}"

    def _admin(self, kind: str) -> Engine:
        if kind == "mysql":
            return create_engine(self.servers[kind] + "/", isolation_level="AUTOCOMMIT")
        return create_engine(f"{self.servers[kind]}/postgres", isolation_level="AUTOCOMMIT")

    def empty(self, kind: str) -> str:
        name = f"cdrsync_s_{secrets.token_hex(4)}"
        admin = self._admin(kind)
        try:
            with admin.connect() as conn:
                if kind == "mysql":
                    conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                else:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        self.made.append((kind, name))
        return self.url(kind, name)

    def migrated(self, kind: str) -> str:
        from cdrsync.state.db import open_store
        from cdrsync.state.migrations import VERSION_TABLE

        if kind not in self._stores:
            self._stores[kind] = self.empty(kind)
            open_store(self._stores[kind]).dispose()
        url = self._stores[kind]
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                tables = [t for t in inspect(conn).get_table_names() if t != VERSION_TABLE]
                if kind == "mysql":
                    for table in tables:
                        conn.execute(text(f"TRUNCATE TABLE `{table}`"))
                else:
                    conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                    conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
        finally:
            engine.dispose()
        return url

    def drop(self, kind: str, name: str) -> None:
        admin = self._admin(kind)
        try:
            with admin.connect() as conn:
                if kind == "mysql":
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                else:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    def drop_all(self, keep: tuple[str, ...] = ()) -> None:
        for kind, name in self.made:
            if self.url(kind, name) not in keep:
                self.drop(kind, name)
        self.made = [(k, n) for k, n in self.made if self.url(k, n) in keep]


@pytest.fixture(scope="session")
def _store_servers(mariadb_server: str, postgres_server: str) -> Iterator[StoreServers]:
    servers = StoreServers(mariadb_server, postgres_server)
    yield servers
    servers.drop_all()


@pytest.fixture
def store_servers(_store_servers: StoreServers) -> Iterator[StoreServers]:
    """`StoreServers` whose databases made during the test are dropped after it."""
    yield _store_servers
    _store_servers.drop_all(keep=tuple(_store_servers._stores.values()))


@pytest.fixture(params=STORE_KINDS)
def store_url(request: Any, tmp_path: Path) -> str:
    """The URL of a new state store, up to date, on SQLite, PostgreSQL and MariaDB in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("store_servers").migrated(request.param)
