"""The scripts in sql/, run the documented way (placeholders replaced, piped into the `mysql`
client as root) against a real MariaDB: the login they create can read cdr and cel and nothing
else, and the index script applies on the stock FreePBX schema, twice."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import inspect

from cdrsync.check import OK, judge_grants
from tests.conftest import MARIADB

SQL = Path(__file__).resolve().parent.parent / "sql"
CLIENT = shutil.which("mariadb") or shutil.which("mysql")
pytestmark = pytest.mark.skipif(CLIENT is None, reason="the mysql/mariadb client is not installed")


def run_script(name: str, database: str = "", **replace: str) -> str:
    """What `sed -e s/A/B/ sql/NAME | mysql -u root [DATABASE]` does; returns the output."""
    script = (SQL / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        script = script.replace(old, new)
    argv = [CLIENT, "-u", "root", "-h", MARIADB[0], "-P", str(MARIADB[1]), "--batch"]
    proc = subprocess.run(argv + ([database] if database else []), input=script,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def readonly_login(pbx_db):
    """The cdrsync login made by sql/readonly-user.sql for the throw-away database."""
    user, password = f"cdrsync_s_{secrets.token_hex(3)}", secrets.token_hex(16)
    subst = {"__CDRSYNC_HOST__": "127.0.0.1", "__CDRSYNC_PASSWORD__": password,
             "asteriskcdrdb.": f"{pbx_db.name}.", "'cdrsync'@": f"'{user}'@"}
    run_script("readonly-user.sql", **subst)
    pbx_db.execute("CREATE TABLE other_table (secret VARCHAR(20))")
    pbx_db.execute("INSERT INTO other_table VALUES ('sip-secret')")
    try:
        yield user, password, subst
    finally:
        pbx_db.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def connect(user: str, password: str, database: str) -> pymysql.Connection:
    return pymysql.connect(host=MARIADB[0], port=MARIADB[1], user=user, password=password,
                           database=database, autocommit=True)


def denied(conn: pymysql.Connection, sql: str) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except pymysql.err.MySQLError as exc:
        return exc.args[0] in (1142, 1044, 1045, 1227, 1370)  # "command denied", "access denied"
    return False


def test_the_readonly_login_can_read_cdr_and_cel_and_nothing_else(pbx_db, readonly_login):
    user, password, _ = readonly_login
    pbx_db.insert_cdr([{"calldate": "2026-11-26 10:00:00", "uniqueid": "1.1", "linkedid": "1.1"}])
    pbx_db.insert_cel([{"eventtype": "LINKEDID_END", "eventtime": "2026-11-26 10:00:00"}])
    conn = connect(user, password, pbx_db.name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM cdr")
            assert cur.fetchone() == (1,)
            cur.execute("SELECT eventtype FROM cel")
            assert cur.fetchall() == (("LINKEDID_END",),)
        assert denied(conn, "INSERT INTO cdr (uniqueid) VALUES ('2.2')")
        assert denied(conn, "UPDATE cdr SET dst = 'x'")
        assert denied(conn, "DELETE FROM cel")
        assert denied(conn, "CREATE TABLE sneaky (x INT)")
        assert denied(conn, "DROP TABLE cdr")
        assert denied(conn, "SELECT * FROM other_table")
        assert denied(conn, "SELECT * FROM mysql.user")
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    assert judge_grants(grants, pbx_db.name).verdict == OK
    with pbx_db.admin.connect() as admin:  # nothing was changed by the attempts
        assert inspect(admin).get_table_names() == sorted(["cdr", "cel", "other_table"])


def test_running_the_login_script_again_changes_only_the_password(pbx_db, readonly_login):
    user, old_password, subst = readonly_login
    new_password = secrets.token_hex(16)
    run_script("readonly-user.sql", **{**subst, "__CDRSYNC_PASSWORD__": new_password})
    with pytest.raises(pymysql.err.OperationalError):
        connect(user, old_password, pbx_db.name)
    conn = connect(user, new_password, pbx_db.name)
    try:
        assert not denied(conn, "SELECT 1 FROM cel LIMIT 1")
        assert denied(conn, "SELECT * FROM other_table")
    finally:
        conn.close()


def test_show_privileges_lists_exactly_the_two_grants(pbx_db, readonly_login):
    user, _, _ = readonly_login
    out = run_script("show-privileges.sql", __CDRSYNC_HOST__="127.0.0.1",
                     **{"'cdrsync'": f"'{user}'"})
    assert f"GRANT SELECT ON `{pbx_db.name}`.`cdr` TO `{user}`@`127.0.0.1`" in out
    levels = ("global", "database", "table", "column")
    rows = [line.split("\t") for line in out.splitlines() if line.startswith(levels)]
    assert sorted((r[0], r[2], r[3]) for r in rows) == [
        ("global", "*", "USAGE"), ("table", "cdr", "SELECT"), ("table", "cel", "SELECT")]


def test_indexes_apply_on_the_stock_schema_twice(pbx_db):
    def leading() -> dict[str, set[str]]:
        insp = inspect(pbx_db.admin)
        return {t: {ix["column_names"][0] for ix in insp.get_indexes(t)} for t in ("cdr", "cel")}

    assert "linkedid" not in leading()["cdr"]  # stock FreePBX: the reason for the script
    before = {t: len(inspect(pbx_db.admin).get_indexes(t)) for t in ("cdr", "cel")}
    run_script("indexes.sql", pbx_db.name)
    after = leading()
    assert {"linkedid", "uniqueid", "calldate"} <= after["cdr"]
    assert {"linkedid", "uniqueid"} <= after["cel"]
    counts = {t: len(inspect(pbx_db.admin).get_indexes(t)) for t in ("cdr", "cel")}
    assert counts == {"cdr": before["cdr"] + 1, "cel": before["cel"]}  # no duplicates
    run_script("indexes.sql", pbx_db.name)  # idempotent on MariaDB, as the script says
    assert {t: len(inspect(pbx_db.admin).get_indexes(t)) for t in ("cdr", "cel")} == counts


def test_every_statement_of_the_index_script_is_online_ddl():
    statements = [s.strip() for s in re.sub(r"^--.*$", "", (SQL / "indexes.sql").read_text(),
                                            flags=re.M).split(";") if s.strip()]
    assert statements
    for stmt in statements:
        assert stmt.startswith("ALTER TABLE") and "ALGORITHM=INPLACE, LOCK=NONE" in stmt, stmt
