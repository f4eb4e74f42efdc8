"""No secret leaves cdrsync in any encoding: not when Planfix (or a proxy before it) echoes the
request back, not in a log line, an error line or what `status` shows from the store.

The secrets hold the characters that encoders treat differently (`/ + = % & "`, a space, a
backslash, a Cyrillic letter), so that every encoding differs from the raw text. The echoing
server writes the body back the ways servers and libraries do: as received, with lower-case hex,
decoded, JSON-escaped (with ASCII escapes, without, and `\\/` as PHP writes it), HTML-escaped,
re-quoted, twice-encoded, and the `Authorization` header that Basic auth from the address made.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, quote, quote_plus

import pytest

from cdrsync import config
from tests import synth
from tests.e2e import cdrsync, make_config
from tests.test_e2e_sync import recent

TOKEN = 'Tk/9+a=b%2F&c d"ж\\e'
URL_USER, URL_PASSWORD = "cdr", "p@ss/w:rd%&+= é"  # Latin-1: requests' Basic auth needs it
SIGN_KEY = "sign/key+with=odd%chars&ж"


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


# How an echo may write a value back; each is applied to every secret in the unit test, and the
# server answers with one of them per request, in turn.
ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "quote_plus": quote_plus,
    "quote_plus, lower hex": lambda s: _lower_hex(quote_plus(s)),
    "quote": quote,
    "quote, nothing safe": lambda s: quote(s, safe=""),
    "quote, lower hex": lambda s: _lower_hex(quote(s, safe="")),
    "twice encoded": lambda s: quote(quote_plus(s), safe=""),
    "JSON": lambda s: json.dumps(s)[1:-1],
    "JSON, UTF-8": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "JSON as PHP writes it": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    "HTML": html.escape,
    "HTML, numeric": lambda s: "".join(f"&#{ord(c)};" for c in s),
    "Python repr": lambda s: repr(s)[1:-1],
}


def every_form(secret: str) -> dict[str, str]:
    return {name: encode(secret) for name, encode in ENCODINGS.items()}


def basic_auth(user: str, password: str) -> list[str]:
    """The `Authorization` values an HTTP client derives from `user:password@` in an address:
    urllib3 encodes the userinfo as written, requests decodes it first and sends it Latin-1."""
    written = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return [base64.b64encode(pair.encode(charset)).decode()
            for pair in (written, f"{user}:{password}") for charset in ("utf-8", "latin-1")]


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [f"{what}: {form!r}" for what, secret in secrets.items()
            for name, form in every_form(secret).items() if form in text] + [
        f"{what} ({name})" for what, secret in secrets.items() if secret in text
        for name in ("raw",)]


# --- every encoding of every secret, on the text itself ------------------------------------------

def full_config() -> config.Config:
    pw = quote(URL_PASSWORD, safe="")
    return config.from_dict({
        "source": {"url": f"mysql+pymysql://{URL_USER}:{pw}@127.0.0.1/asteriskcdrdb",
                   "timezone": "UTC"},
        "planfix": {"url": f"https://{URL_USER}:{pw}@acme.planfix.ru/telephony", "token": TOKEN},
        "recordings": {"base_url": "https://pbx/rec", "sign_key": SIGN_KEY},
        "state": {"url": f"postgresql+psycopg://{URL_USER}:{pw}@127.0.0.1/cdrsync_state"},
    }, env={})


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("secret", [TOKEN, SIGN_KEY, URL_PASSWORD,
                                    quote(URL_PASSWORD, safe="")])
def test_every_encoding_of_every_secret_is_redacted(secret, encoding):
    cfg = full_config()
    line = f"Planfix answered 400: got {ENCODINGS[encoding](secret)}; try again"
    clean = config.redact(line, cfg)
    assert clean == "Planfix answered 400: got ***; try again"


def test_the_basic_auth_of_an_address_with_credentials_is_redacted():
    cfg = full_config()
    for value in basic_auth(URL_USER, URL_PASSWORD):
        assert config.redact(f"Authorization: Basic {value}", cfg) == "Authorization: Basic ***"


def test_a_section_alone_knows_its_secrets():
    cfg = full_config()
    clean = config.redact(f"{quote_plus(TOKEN)} {basic_auth(URL_USER, URL_PASSWORD)[0]}",
                          cfg.planfix)
    assert clean == "*** ***"


def test_text_without_secrets_is_left_alone():
    cfg = full_config()
    text = "delivered call 1795697854.0 (in Success ext 101, 5 s) p ss"
    assert config.redact(text, cfg) == text


# --- through the real command line, against a Planfix that echoes --------------------------------

class EchoServer:
    """A loopback 'Planfix' that answers every POST with an error echoing what it was sent, in
    the next encoding of ENCODINGS; `ping` and the missed-call address are echoed too."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.count = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    token = json.loads(body).get("planfix_token", "")
                else:
                    token = dict(parse_qsl(body)).get("planfix_token", "")
                with server.lock:
                    name = list(ENCODINGS)[server.count % len(ENCODINGS)]
                    server.count += 1
                answer = (f"bad request, token {ENCODINGS[name](token)}, "
                          f"auth {self.headers.get('Authorization', '')}").encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    token = TOKEN

    @property
    def url(self) -> str:
        return f"http://{URL_USER}:{quote(URL_PASSWORD, safe='')}@127.0.0.1:{self.port}/api"

    @property
    def missed_url(self) -> str:
        return self.url.replace("/api", "/missed")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo() -> Iterator[Callable[[int], EchoServer]]:
    servers: list[EchoServer] = []

    def start(status: int) -> EchoServer:
        servers.append(EchoServer(status))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


SECRETS = {"token": TOKEN, "planfix.url password": URL_PASSWORD, "sign_key": SIGN_KEY}


def echo_config(tmp_path, source_url: str, server: EchoServer):
    return make_config(tmp_path, source_url, server,
                       planfix={"missed_url": server.missed_url},
                       recordings={"base_url": "http://127.0.0.1:1/rec", "sign_key": SIGN_KEY})


def assert_no_leak(text: str) -> None:
    found = leaks(text, SECRETS) + [f"basic auth {v}" for v in basic_auth(URL_USER, URL_PASSWORD)
                                    if v in text]
    assert found == [], found


def test_check_shows_an_echoed_ping_without_the_token(echo, pbx_db, tmp_path):
    server = echo(500)
    for _ in range(3):  # as received, quote_plus'd, lower hex (sync below goes through them all)
        proc = cdrsync(echo_config(tmp_path, pbx_db.ro_url, server), "check")
        assert "ping failed: HTTP 500: bad request, token ***, auth Basic ***" in proc.stdout
        assert_no_leak(proc.stdout + proc.stderr)
    assert server.count == 3


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_sync_v_logs_and_status_hold_no_echoed_secret(echo, pbx_db, tmp_path, log_format):
    server = echo(400)
    calls = recent(2 * len(ENCODINGS), seed=14)
    synth.insert(pbx_db.admin, calls)
    cfg = echo_config(tmp_path, pbx_db.ro_url, server)
    proc = cdrsync(cfg, "-v", "--log-format", log_format, "sync")
    assert server.count >= len(ENCODINGS), "every encoding was echoed at least once"
    refused = [line for line in proc.stderr.splitlines() if "Planfix refused" in line]
    assert len(refused) >= len(ENCODINGS)
    assert all("token ***, auth Basic ***" in line for line in refused), refused[:3]
    assert_no_leak(proc.stdout + proc.stderr)
    status = cdrsync(cfg, "status")
    assert "last Planfix error" in status.stdout
    assert_no_leak(status.stdout + status.stderr)
