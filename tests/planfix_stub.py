"""A real HTTP server on 127.0.0.1 that stands in for Planfix in every integration test.

It speaks the documented protocol (../shared/reference/planfix-telephony-api.md): form-encoded
POSTs to the telephony address (`/api/telephony`), JSON POSTs to the FreePBX-integration address
(`/missed`), `planfix_token` checked on both (401 `{"error":"Invalid token"}`), `cmd=ping` answered
with `{"pbxToken", "pbxUrl"}`, 400 `{"error":"Invalid parameters"}` when a required field is
missing.

Every request is recorded with the status it got, so a test can assert on what Planfix *accepted*
(`received()`, `callids()`) as well as on every attempt (`attempts()`). Faults are programmable:
`fail_next`, `fail_for`, `hang_next`, `reject_callid`, `token` rotation, and `stop()` / `start()` on
the same port (connection refused while down, keep-alive connections cut). `allow()` sets a rate
allowance announced in `X-RateLimit-Remaining` / `X-RateLimit-Reset` and enforced with 429.

Who is responsible for a caller (`responsible()`, `hang_lookups()`) is answered both ways Planfix
offers: `callInfoRespNum` (JSON, to the FreePBX-integration address) with
`{"responsibleNumbers": [...]}` or `{"error": "no persons responsible"}` — the latter also when
the only responsible is the extension asked about, as Planfix's help page says — and `cmd=contact`
(form, to the telephony address) with `{"contact_name", "responsible"}`.

Use it as a context manager or through the `planfix` pytest fixture defined here.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl

import pytest

from cdrsync.config import Config, from_dict
from cdrsync.model import Call, Direction, Status

API_PATH = "/api/telephony"
MISSED_PATH = "/missed"
DEFAULT_TOKEN = "stub-token-0123456789"

# Fields Planfix needs per command; presence is checked, values may be empty where Planfix allows.
_REQUIRED = {
    "event": ("type", "event", "callid", "phone", "ext"),
    "record": ("callid", "record_link"),
    "contact": ("phone",),
    "ping": (),
}
_REQUIRED_COMPLETED = ("duration", "is_recorded", "status")
_REQUIRED_MISSED = ("event", "uniqueId", "intNum", "extNum")  # callInfoRespNum's too
_JSON_EVENTS = ("callMissedNotify", "callInfoRespNum")


@dataclass(frozen=True)
class Received:
    """One request as the stub saw it, and the status it answered."""

    method: str
    path: str
    fields: dict[str, Any]  # form fields or JSON body, planfix_token included
    is_json: bool
    status: int
    time: float  # time.monotonic() at arrival
    client_port: int  # distinct values = distinct TCP connections

    @property
    def cmd(self) -> str:
        if self.is_json:
            return str(self.fields.get("event", ""))
        return str(self.fields.get("cmd", ""))

    @property
    def callid(self) -> str:
        return str(self.fields.get("uniqueId" if self.is_json else "callid", ""))

    def without_token(self) -> dict[str, Any]:
        return {k: v for k, v in self.fields.items() if k != "planfix_token"}


@dataclass
class _Faults:
    fail_next: list[tuple[int, Optional[str]]] = field(default_factory=list)  # status, Retry-After
    fail_until: float = 0.0
    fail_until_status: int = 503
    hang_next: list[tuple[float, int]] = field(default_factory=list)  # (seconds, then status)
    reject_callids: dict[str, tuple[int, str]] = field(default_factory=dict)
    lookup_hang: float = 0.0  # s every question about a caller is held before its answer


@dataclass
class _Allowance:
    """`requests` per window of `per` seconds, the window starting at its first request."""

    requests: int
    per: float
    epoch: bool  # X-RateLimit-Reset as a Unix time (else as seconds from now)
    window_end: float = 0.0  # time.monotonic()
    left: int = 0


class PlanfixStub:
    """A loopback Planfix. `start()` binds a free port once; `stop()`/`start()` reuse that port."""

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1",
                 certfile: str = "", keyfile: str = "") -> None:
        self.token = token
        self.host = host
        self.certfile, self.keyfile = certfile, keyfile  # both set: serve HTTPS
        self.port = 0
        self._lock = threading.Lock()
        self._log: list[Received] = []
        self._faults = _Faults()
        self._allowance: Optional[_Allowance] = None
        self._responsible: dict[str, tuple[tuple[str, ...], str]] = {}  # phone -> (exts, name)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._open: set[socket.socket] = set()
        self._down = threading.Event()  # wakes hanging handlers on stop()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> PlanfixStub:
        if self._server is not None:
            return self
        self._down.clear()
        server = _Server((self.host, self.port), _Handler)
        server.stub = self
        if self.certfile:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(self.certfile, self.keyfile or None)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"planfix-stub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: the port refuses connections and open keep-alive connections are cut."""
        server, self._server = self._server, None
        if server is None:
            return
        self._down.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> PlanfixStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base + API_PATH

    @property
    def missed_url(self) -> str:
        return self.base + MISSED_PATH

    # --- faults ----------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, retry_after: Optional[float] = None) -> None:
        """Answer `status` to the next `n` requests (429 with `Retry-After` when given)."""
        value = None if retry_after is None else str(int(retry_after))
        with self._lock:
            self._faults.fail_next.extend([(status, value)] * n)

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Answer `status` to every request for the next `seconds`."""
        with self._lock:
            self._faults.fail_until = time.monotonic() + seconds
            self._faults.fail_until_status = status

    def hang_next(self, n: int, seconds: float, then: int = 503) -> None:
        """Hold the next `n` requests for `seconds` (past the client's timeout), then answer `then`.

        `then=200` stands for "Planfix processed it but the answer was lost": a retry then
        duplicates the request, which is the documented at-most-once-repeated case.
        """
        with self._lock:
            self._faults.hang_next.extend([(seconds, then)] * n)

    def reject_callid(self, callid: str, status: int = 400,
                      answer: str = '{"error":"Invalid parameters"}') -> None:
        """Answer `status` with `answer` to every request about `callid` until `accept_callid`."""
        with self._lock:
            self._faults.reject_callids[callid] = (status, answer)

    def accept_callid(self, callid: str) -> None:
        with self._lock:
            self._faults.reject_callids.pop(callid, None)

    def allow(self, requests: Optional[int], per: float = 1.0, epoch: bool = False) -> None:
        """Allow `requests` per `per` seconds (None: no limit, no headers). Each answer says how
        many remain in the window and when it ends (seconds, or with `epoch` a Unix time); a
        request past the allowance gets 429 with `Retry-After`."""
        with self._lock:
            self._allowance = None if requests is None else _Allowance(requests, per, epoch)

    def responsible(self, phone: str, *extensions: str, name: str = "") -> None:
        """Planfix's contact for `phone` (as cdrsync sends it, `extNum`): its name and the
        extensions of the employees responsible for it (none: "no persons responsible")."""
        with self._lock:
            self._responsible[phone] = (tuple(extensions), name)

    def hang_lookups(self, seconds: float) -> None:
        """Hold every question about a caller `seconds` before answering it (0: answer at once)."""
        with self._lock:
            self._faults.lookup_hang = seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    # --- what arrived ----------------------------------------------------------------------
    def attempts(self) -> list[Received]:
        """Every request that reached the stub, whatever it was answered."""
        with self._lock:
            return list(self._log)

    def received(self, cmd: Optional[str] = "event", status: int = 200) -> list[Received]:
        """Requests answered `status` (accepted, by default) with this `cmd` (None: any;
        "callMissedNotify" for the JSON requests)."""
        return [r for r in self.attempts()
                if r.status == status and (cmd is None or r.cmd == cmd)]

    def callids(self, cmd: Optional[str] = "event") -> list[str]:
        """The callids Planfix accepted, in arrival order, repeats kept (so tests can count)."""
        return [r.callid for r in self.received(cmd)]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def wait_for(self, predicate: Callable[[PlanfixStub], bool], timeout: float = 10.0) -> bool:
        """Poll `predicate(self)` until true or `timeout`; for tests driving a separate process."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    # --- the protocol (called from handler threads) ------------------------------------------
    def _decide(self, path: str, fields: dict[str, Any], is_json: bool
                ) -> tuple[int, dict[str, str], bytes, float]:
        """Return (status, headers, body, seconds to hang first)."""
        with self._lock:
            allowance = self._allowance
            if allowance is not None:
                now = time.monotonic()
                if now >= allowance.window_end:
                    allowance.window_end, allowance.left = now + allowance.per, allowance.requests
                reset = allowance.window_end - now
                spent = allowance.left == 0
                allowance.left = max(0, allowance.left - 1)
                rate = {"X-RateLimit-Remaining": str(allowance.left), "X-RateLimit-Reset": str(
                    math.ceil(time.time() + reset) if allowance.epoch else math.ceil(reset))}
                if spent:
                    rate["Retry-After"] = str(math.ceil(reset))
                    return 429, rate, b'{"error":"Too many requests"}', 0.0
        status, headers, body, hang = self._protocol(path, fields, is_json)
        return status, (dict(rate, **headers) if allowance is not None else headers), body, hang

    def _protocol(self, path: str, fields: dict[str, Any], is_json: bool
                  ) -> tuple[int, dict[str, str], bytes, float]:
        with self._lock:
            faults = self._faults
            if faults.hang_next:
                seconds, then = faults.hang_next.pop(0)
                return then, {}, b"", seconds
            if faults.fail_next:
                status, retry_after = faults.fail_next.pop(0)
                headers = {"Retry-After": retry_after} if retry_after is not None else {}
                return status, headers, b'{"error":"Service unavailable"}', 0.0
            if time.monotonic() < faults.fail_until:
                return faults.fail_until_status, {}, b'{"error":"Service unavailable"}', 0.0
            token = self.token
            rejected = dict(faults.reject_callids)
            hang = faults.lookup_hang
        if path not in (API_PATH, MISSED_PATH):
            return 404, {}, b'{"error":"Not found"}', 0.0
        if fields.get("planfix_token") != token:
            return 401, {}, b'{"error":"Invalid token"}', 0.0
        if not _valid(path, fields, is_json):
            return 400, {}, b'{"error":"Invalid parameters"}', 0.0
        callid = str(fields.get("uniqueId" if is_json else "callid", ""))
        if callid in rejected:
            status, answer = rejected[callid]
            return status, {}, answer.encode(), 0.0
        if not is_json and fields.get("cmd") == "ping":
            body = json.dumps({"pbxToken": token, "pbxUrl": self.url}).encode()
            return 200, {}, body, 0.0
        if is_json and fields["event"] == "callInfoRespNum":
            return 200, {}, self._who(str(fields["extNum"]), str(fields["intNum"])), hang
        if not is_json and fields.get("cmd") == "contact":
            return 200, {}, self._contact(fields["phone"]), hang
        return 200, {}, b"", 0.0

    def _who(self, phone: str, asked: str) -> bytes:
        with self._lock:
            extensions = self._responsible.get(phone, ((), ""))[0]
        if not extensions or extensions == (asked,):
            return b'{"error":"no persons responsible"}'
        return json.dumps({"responsibleNumbers": list(extensions)}).encode()

    def _contact(self, phone: str) -> bytes:
        with self._lock:
            extensions, name = self._responsible.get(phone, ((), ""))
        return json.dumps({"contact_name": name,
                           "responsible": extensions[0] if extensions else ""}).encode()

    def _record(self, entry: Received) -> None:
        with self._lock:
            self._log.append(entry)

    def _track(self, sock: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._open.add(sock)
            else:
                self._open.discard(sock)


def _valid(path: str, fields: dict[str, Any], is_json: bool) -> bool:
    if is_json:
        return (path == MISSED_PATH and fields.get("event") in _JSON_EVENTS
                and all(k in fields for k in _REQUIRED_MISSED) and bool(fields["uniqueId"]))
    if path != API_PATH:
        return False
    cmd = fields.get("cmd", "")
    if cmd not in _REQUIRED or not all(k in fields for k in _REQUIRED[cmd]):
        return False
    if cmd == "event":
        if fields["type"] not in ("in", "out") or not fields["callid"]:
            return False
        if fields["event"] == "COMPLETED":
            if not all(k in fields for k in _REQUIRED_COMPLETED):
                return False
            return fields["duration"].isdigit() and fields["is_recorded"] in ("0", "1")
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    stub: PlanfixStub

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        self.stub._track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        self.stub._track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        pass  # a client that gave up or refused our certificate is part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection reuse is real
    # The answer goes out in two writes (headers, then body); with Nagle's algorithm on, the
    # body waits for the client's delayed ACK of the headers: 40 ms a request on Linux at
    # times, where a real server (nginx: tcp_nodelay) answers at once.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._answer(405, {}, b'{"error":"Method not allowed"}')

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        is_json = ctype == "application/json"
        try:
            if is_json:
                body = json.loads(raw.decode("utf-8") or "{}")
                fields = body if isinstance(body, dict) else {}
            else:
                fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, json.JSONDecodeError):
            fields = {}
        path = self.path.split("?")[0]
        status, headers, answer, hang = stub._decide(path, fields, is_json)
        stub._record(Received("POST", path, fields, is_json, status, time.monotonic(),
                              self.client_address[1]))
        if hang and stub._down.wait(hang):
            self.close_connection = True
            return
        self._answer(status, headers, answer)

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout) or the stub was stopped
            self.close_connection = True


@pytest.fixture
def planfix():
    """A running `PlanfixStub` for one test."""
    with PlanfixStub() as stub:
        yield stub


# --- helpers for tests that deliver to the stub ---------------------------------------------------

def stub_config(stub: Optional[PlanfixStub] = None, state_url: str = "sqlite://",
                **sections: dict[str, Any]) -> Config:
    """A valid `Config` whose [planfix] points at `stub`; `sections` override keys per section."""
    raw: dict[str, dict[str, Any]] = {
        "source": {"url": "mysql+pymysql://cdrsync:pw@127.0.0.1/asteriskcdrdb",
                   "timezone": "Europe/Moscow"},
        "planfix": {"url": stub.url if stub else "https://example.planfix.ru/api/telephony",
                    "token": stub.token if stub else DEFAULT_TOKEN, "rate": 0, "timeout": 2},
        "state": {"url": state_url},
    }
    if stub is not None:
        raw["planfix"]["missed_url"] = stub.missed_url
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_dict(raw, env={})


def make_call(callid: str = "1700000000.1", **values: Any) -> Call:
    """An inbound answered call with every field a request uses; override what a test needs."""
    start = datetime(2024, 7, 1, 9, 30, 5, tzinfo=timezone.utc)
    base: dict[str, Any] = {
        "callid": callid, "direction": Direction.INBOUND, "status": Status.SUCCESS,
        "start": start, "end": start + timedelta(seconds=75), "phone": "+74951234567",
        "phone_raw": "84951234567", "ext": "101", "duration": 61, "did": "74957654321",
        "diversion": "+74957654321", "answered_by": "101", "final_ext": "101",
        "rung": ("101", "102"), "path": ("ring group 600", "101"), "ring_group": "600",
    }
    base.update(values)
    return Call(**base)
