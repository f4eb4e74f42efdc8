"""The three servers of recordings: nginx (contrib config, secure_link), Apache (contrib config,
mod_lua) and `cdrsync serve-recordings` open exactly the links cdrsync makes, and refuse tampered,
expired, unsigned and out-of-dir requests — all three alike, with one table of expiry cases for
each `link_ttl`.

Each server runs in the foreground on 127.0.0.1: nginx and Apache with a generated config that
includes the contrib file (placeholders replaced), skipped with the reason when the binary is not
installed (CI: apt-get install nginx-light apache2); serve-recordings as the real command line.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest

from cdrsync.config import MAX_EXPIRES, RecordingsConfig
from cdrsync.recordings.links import make_link, token
from tests.e2e import start_cdrsync, write_config

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
KEY = "web-test-key-0123456789abcdef"
REL = "2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.0.wav"
ODD = "2026/11/26/ondemand-101 x+y-ü-1795697854.5.wav"
MP3 = "cdrsync-mp3/2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.0.mp3"
DATA = bytes(range(256)) * 64
SECRET = b"root:secret-hash:" * 50
APACHE_MODULES = "/usr/lib/apache2/modules"


@dataclass
class Web:
    cfg: RecordingsConfig
    port: int
    root: Path
    cache: Path

    def link(self, relpath: str, now: float | None = None, ttl: int = 0) -> str:
        cfg = RecordingsConfig(**{**self.cfg.__dict__, "link_ttl": ttl})
        parts = urlsplit(make_link(relpath, cfg, time.time() if now is None else now)[0])
        return parts.path + "?" + parts.query

    def signed(self, relpath: str, expires: str) -> str:
        """A link with any expiry text, signed with the right key (what no cdrsync makes)."""
        return self.link(relpath).split("?")[0] + f"?e={expires}&s={token(relpath, expires, KEY)}"

    def get(self, target: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", target, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"server exited with {proc.returncode}: {text[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("server did not start listening")


@pytest.fixture
def tree() -> Iterator[Path]:
    """A world-readable tree (Apache's children drop root for `nobody`)."""
    base = Path(tempfile.mkdtemp(prefix="cdrsync-web-"))
    base.chmod(0o755)
    files = {f"monitor/{REL}": DATA, f"monitor/{ODD}": DATA[::-1],
             f"cache/{MP3}": b"\xff\xfb" + DATA, "outside/shadow.wav": SECRET}
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    (base / "monitor/2026/11/26/evil.wav").symlink_to(base / "outside/shadow.wav")
    for path in [base, *base.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _contrib(name: str, tree: Path, ttl_setting: tuple[str, str]) -> str:
    """The contrib file with the test's paths, key and link_ttl (`ttl_setting`: the line as
    shipped, and as the test wants it)."""
    text = (CONTRIB / name).read_text()
    assert text.count(ttl_setting[0]) == 1
    for old, new in (("/var/spool/asterisk/monitor", str(tree / "monitor")),
                     ("/var/cache/cdrsync", str(tree / "cache")),
                     ("/etc/apache2/cdrsync-recordings.lua", str(tree / "conf/cdrsync.lua")),
                     ttl_setting,
                     ("CHANGE_ME_SIGN_KEY", KEY)):
        text = text.replace(old, new)
    live = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in live if "/var/" in line or "/etc/" in line or "CHANGE_ME" in line]
    return text


def _run(proc: subprocess.Popen, port: int, log: Path, tree: Path) -> Iterator[Web]:
    try:
        _wait_port(port, proc, log)
        cfg = RecordingsConfig(dir=str(tree / "monitor"), cache_dir=str(tree / "cache"),
                               sign_key=KEY, base_url=f"http://127.0.0.1:{port}/recordings")
        yield Web(cfg, port, tree / "monitor", tree / "cache")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _nginx(tree: Path, ttl: int) -> Iterator[Web]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                       else None)
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    conf = tree / "conf"
    conf.mkdir()
    (conf / "cdrsync.conf").write_text(_contrib(
        "nginx-recordings.conf", tree,
        ("set $cdrsync_link_ttl 0;", f"set $cdrsync_link_ttl {ttl};")))
    port = _free_port()
    temps = "\n".join(f"  {kind}_temp_path {conf}/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (conf / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {conf}/nginx.pid;
error_log {conf}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temps}
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    include {conf}/cdrsync.conf;
  }}
}}
""")
    cmd = [binary, "-p", str(conf), "-e", str(conf / "error.log"), "-c", str(conf / "nginx.conf")]
    log = conf / "stderr.log"
    yield from _run(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb")),
                    port, log, tree)


def _apache(tree: Path, ttl: int) -> Iterator[Web]:
    binary = shutil.which("apache2") or ("/usr/sbin/apache2" if os.path.exists("/usr/sbin/apache2")
                                         else None)
    if binary is None or not os.path.exists(f"{APACHE_MODULES}/mod_lua.so"):
        pytest.skip("apache2 with mod_lua is not installed (apt-get install apache2)")
    conf = tree / "conf"
    conf.mkdir()
    conf.chmod(0o755)
    shutil.copy(CONTRIB / "cdrsync-recordings.lua", conf / "cdrsync.lua")
    (conf / "cdrsync.lua").chmod(0o644)
    (conf / "cdrsync.conf").write_text(_contrib(
        "apache-recordings.conf", tree,
        ('"CHANGE_ME_SIGN_KEY" 0\n', f'"CHANGE_ME_SIGN_KEY" {ttl}\n')))
    (conf / "mime.types").write_text("")
    (conf / "run").mkdir()
    (conf / "www").mkdir()
    port = _free_port()
    user = "User #65534\nGroup #65534\n" if os.geteuid() == 0 else ""
    modules = "\n".join(f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so"
                        for name in ("mpm_event", "authz_core", "alias", "mime", "lua"))
    (conf / "httpd.conf").write_text(f"""
ServerRoot "{conf}"
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
PidFile {conf}/run/httpd.pid
ErrorLog {conf}/error.log
LogLevel warn
DefaultRuntimeDir {conf}/run
{modules}
{user}TypesConfig {conf}/mime.types
DocumentRoot {conf}/www
<Directory />
    Require all denied
    Options None
    AllowOverride None
</Directory>
Include {conf}/cdrsync.conf
""")
    cmd = [binary, "-f", str(conf / "httpd.conf"), "-DFOREGROUND"]
    yield from _run(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=(conf / "stderr.log").open("wb")),
                    port, conf / "error.log", tree)


def _serve_recordings(tree: Path, ttl: int) -> Iterator[Web]:
    """`cdrsync serve-recordings`, the real command line, on a config of its own."""
    conf = tree / "conf"
    conf.mkdir()
    port = _free_port()
    config = write_config(conf / "cdrsync.toml", {
        "source": {"url": f"sqlite:///{conf / 'unused-cdr.db'}", "timezone": "UTC"},
        "planfix": {"url": "http://127.0.0.1:9/", "token": "unused"},
        "state": {"url": f"sqlite:///{conf / 'state.db'}"},
        "recordings": {"dir": str(tree / "monitor"), "cache_dir": str(tree / "cache"),
                       "sign_key": KEY, "base_url": f"http://127.0.0.1:{port}/recordings",
                       "listen": f"127.0.0.1:{port}", "link_ttl": ttl}})
    log = conf / "stderr.log"
    yield from _run(start_cdrsync(config, "serve-recordings", stderr=log.open("wb")), port, log,
                    tree)


SERVERS = {"nginx": _nginx, "apache": _apache, "serve-recordings": _serve_recordings}


@contextmanager
def serving(name: str, tree: Path, ttl: int) -> Iterator[Web]:
    yield from SERVERS[name](tree, ttl)


@pytest.fixture(params=list(SERVERS))
def web(request, tree: Path) -> Iterator[Web]:
    with serving(request.param, tree, 0) as server:
        yield server


def test_signed_link_opens_with_the_exact_bytes(web):
    status, headers, body = web.get(web.link(REL))
    assert (status, body) == (200, DATA)
    assert headers["content-type"] == "audio/wav"


def test_odd_file_names_are_signed_as_the_server_decodes_them(web):
    status, _, body = web.get(web.link(ODD))
    assert (status, body) == (200, DATA[::-1])


def test_range_request(web):
    status, headers, body = web.get(web.link(REL), headers={"Range": "bytes=1000-1999"})
    assert (status, body) == (206, DATA[1000:2000])
    assert headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"


def test_mp3_cache_is_served(web):
    status, headers, body = web.get(web.link(MP3))
    assert (status, body, headers["content-type"]) == (200, b"\xff\xfb" + DATA, "audio/mpeg")


# One table for every server: (what the link is, how it is made, the status from a server whose
# link_ttl is 0, and from one whose link_ttl is 300).
EXPIRY_CASES: list[tuple[str, Callable[[Web], str], int, int]] = [
    ("permanent link", lambda w: w.link(REL), 200, 403),
    ("temporary link", lambda w: w.link(REL, ttl=300), 200, 200),
    ("temporary link, expired", lambda w: w.link(REL, now=time.time() - 400, ttl=300), 403, 403),
    ("temporary link of a longer ttl", lambda w: w.link(REL, ttl=86400 * 365), 200, 200),
    ("permanent link with an empty e=", lambda w: w.link(REL).replace("?s=", "?e=&s="), 200, 403),
    ("the latest expiry config allows",
     lambda w: w.link(REL, ttl=MAX_EXPIRES - int(time.time())), 200, 200),
    ("a 13-digit expiry, signed", lambda w: w.signed(REL, str(MAX_EXPIRES + 1)), 403, 403),
    ("an expiry with a leading zero, signed",
     lambda w: w.signed(REL, "0" + str(int(time.time()) + 300)), 403, 403),
]


@pytest.mark.parametrize("ttl", [0, 300])
@pytest.mark.parametrize("server", list(SERVERS))
def test_expiry_cases_are_the_same_on_every_server(server, ttl, tree):
    with serving(server, tree, ttl) as web:
        got = [(case, web.get(make(web))[0]) for case, make, _, _ in EXPIRY_CASES]
    assert got == [(case, permanent_ok if ttl == 0 else expiring)
                   for case, _, permanent_ok, expiring in EXPIRY_CASES]


def test_tampered_or_missing_signature_is_403(web):
    good = web.link(REL)
    path, query = good.split("?")
    flipped = query[:-1] + ("A" if query[-1] != "A" else "B")
    other = web.link(ODD).split("?")[1]
    later = web.link(REL, ttl=300).split("?")[1]
    for target in (f"{path}?{flipped}", path, f"{path}?{other}", f"{path}?s=",
                   f"{path}?{later.replace('e=', 'e=9')}",
                   f"{path}?{later.split('&')[1]}"):  # the expiry dropped
        status, _, body = web.get(target)
        assert status == 403, target
        assert DATA[:64] not in body


def test_nothing_outside_the_dir(web):
    status, _, body = web.get(web.link("2026/11/26/evil.wav"))  # signed symlink out of dir
    assert status in (403, 404) and SECRET[:20] not in body
    for raw in ("/recordings/../outside/shadow.wav", "/recordings/%2e%2e/outside/shadow.wav",
                "/recordings/2026/../../outside/shadow.wav"):
        rel = "../outside/shadow.wav"
        status, _, body = web.get(raw + "?" + web.link(rel).split("?")[1])
        assert status != 200 and SECRET[:20] not in body, raw


def test_missing_file_and_folders(web):
    assert web.get(web.link("2026/11/26/nothing.wav"))[0] == 404
    status, _, body = web.get(web.link("2026/11/26/"))
    assert status in (403, 404) and b"in-5551000" not in body
