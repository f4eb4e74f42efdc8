"""serve-recordings over real HTTP on 127.0.0.1: signed links open, nothing else does, and the
server stays bounded and responsive under slow clients and bursts of connections."""

from __future__ import annotations

import http.client
import logging
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from cdrsync.config import RecordingsConfig
from cdrsync.recordings.links import make_link
from cdrsync.recordings.serve import MAX_OPEN, make_server, parse_listen

KEY = "serve-test-key-0123456789"
REL = "2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.0.wav"
DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


class Served:
    def __init__(self, cfg: RecordingsConfig, port: int) -> None:
        self.cfg = cfg
        self.port = port

    def link(self, relpath: str, now: float | None = None, **kw) -> str:
        cfg = RecordingsConfig(**{**self.cfg.__dict__, **kw})
        url = make_link(relpath, cfg, time.time() if now is None else now)[0]
        parts = urlsplit(url)
        return parts.path + "?" + parts.query

    def get(self, target: str, method: str = "GET", headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, target, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)


def _tree(tmp_path: Path) -> RecordingsConfig:
    root = tmp_path / "monitor"
    (root / "2026/11/26").mkdir(parents=True)
    (root / REL).write_bytes(DATA)
    (root / "2026/11/26/x.mp3").write_bytes(b"\xff\xfb" + b"m" * 998)
    (root / "2026/11/26/x.Opus").write_bytes(b"OggS" + b"o" * 996)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow.wav").write_bytes(b"secret" * 100)
    (root / "2026/11/26/evil.wav").symlink_to(outside / "shadow.wav")
    cache = tmp_path / "cache"
    (cache / "cdrsync-mp3/2026/11/26").mkdir(parents=True)
    (cache / "cdrsync-mp3/2026/11/26/y.mp3").write_bytes(b"\xff\xfb" + b"c" * 500)
    return RecordingsConfig(dir=str(root), cache_dir=str(cache), sign_key=KEY,
                            base_url="http://127.0.0.1/rec", listen="127.0.0.1:0")


@contextmanager
def serving(cfg: RecordingsConfig, **limits: float) -> Iterator[Served]:
    server = make_server(cfg, **limits)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Served(cfg, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(_tree(tmp_path)) as srv:
        yield srv


def test_signed_link_gives_the_exact_bytes(served):
    status, headers, body = served.get(served.link(REL))
    assert status == 200
    assert body == DATA
    assert headers["Content-Type"] == "audio/wav"
    assert headers["Content-Length"] == str(len(DATA))
    assert headers["Accept-Ranges"] == "bytes"


def test_head_has_the_headers_and_no_body(served):
    status, headers, body = served.get(served.link(REL), method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(DATA))


@pytest.mark.parametrize("rng,start,end", [
    ("bytes=100-299", 100, 299),
    ("bytes=10000-", 10000, 10239),
    ("bytes=-40", 10200, 10239),
    ("bytes=10200-99999", 10200, 10239),
    ("bytes=0-0", 0, 0),
    # int() refuses more than 4300 digits; a last byte past the end means the end, a suffix
    # longer than the file all of it
    pytest.param("bytes=0-" + "9" * 4301, 0, 10239, id="4301-digit-end"),
    pytest.param("bytes=-" + "9" * 4301, 0, 10239, id="4301-digit-suffix"),
    pytest.param("bytes=" + "0" * 4400 + "100-" + "0" * 4400 + "299", 100, 299,
                 id="4400-leading-zeros"),
])
def test_range_gives_the_exact_slice(served, rng, start, end):
    status, headers, body = served.get(served.link(REL), headers={"Range": rng})
    assert status == 206
    assert body == DATA[start:end + 1]
    assert headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("rng", ["bytes=10240-", "bytes=99999-100000", "bytes=-0",
                                 pytest.param("bytes=" + "9" * 4301 + "-", id="4301-digit-start"),
                                 pytest.param("bytes=" + "1" * 20 + "-" + "2" * 20,
                                              id="20-digit-start")])
def test_unsatisfiable_range_is_416(served, rng):
    status, headers, _ = served.get(served.link(REL), headers={"Range": rng})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("rng", ["bytes=0-1,5-6", "items=0-5", "bytes=5-1", "bytes=abc"])
def test_range_we_do_not_serve_gives_the_whole_file(served, rng):
    status, _, body = served.get(served.link(REL), headers={"Range": rng})
    assert (status, body) == (200, DATA)


@pytest.mark.parametrize("rel,ctype", [("2026/11/26/x.mp3", "audio/mpeg"),
                                       ("2026/11/26/x.Opus", "audio/ogg"),
                                       ("cdrsync-mp3/2026/11/26/y.mp3", "audio/mpeg")])
def test_content_types_and_the_mp3_cache(served, rel, ctype, tmp_path):
    status, headers, body = served.get(served.link(rel))
    assert (status, headers["Content-Type"]) == (200, ctype)
    base = tmp_path / ("cache" if rel.startswith("cdrsync-mp3/") else "monitor")
    assert body == (base / rel).read_bytes()


def test_wrong_signature_is_403(served):
    target = served.link(REL)
    tampered = target[:-2] + ("AA" if not target.endswith("AA") else "BB")
    assert served.get(tampered)[0] == 403
    assert served.get(target.split("?")[0])[0] == 403
    other = served.link("2026/11/26/x.mp3").split("?")[1]
    assert served.get(target.split("?")[0] + "?" + other)[0] == 403


def test_expired_link_is_403_and_fresh_one_200(served):
    assert served.get(served.link(REL, now=time.time() - 120, link_ttl=60))[0] == 403
    assert served.get(served.link(REL, link_ttl=60))[0] == 200


def test_missing_file_is_404(served):
    assert served.get(served.link("2026/11/26/nothing.wav"))[0] == 404


def test_symlink_out_of_dir_is_404_even_when_signed(served):
    status, _, body = served.get(served.link("2026/11/26/evil.wav"))
    assert status == 404
    assert b"secret" not in body


@pytest.mark.parametrize("path", [
    "/rec/../outside/shadow.wav", "/rec/2026/../../outside/shadow.wav",
    "/rec/%2e%2e/outside/shadow.wav", "/rec/2026//11/26/x.mp3", "/rec/./2026/11/26/x.mp3",
    "/rec/%ff.wav",
])
def test_paths_leaving_or_bending_the_dir_are_404(served, path):
    # Even with a token made for exactly that text, such a path is never served.
    rel = unquote(path[len("/rec/"):], errors="replace")
    query = served.link(rel).split("?")[1]
    status, _, body = served.get(path + "?" + query)
    assert status == 404
    assert b"secret" not in body


def test_folder_is_not_listed(served):
    for rel in ("2026/11/26", "2026"):
        assert served.get(served.link(rel))[0] == 404
    assert served.get("/rec/")[0] == 404
    assert served.get("/")[0] == 404


def test_outside_the_prefix_is_404(served):
    assert served.get("/other/" + REL + "?" + served.link(REL).split("?")[1])[0] == 404


def test_errors_leak_no_path_and_writes_are_refused(served):
    status, headers, body = served.get(served.link("2026/11/26/nothing.wav"))
    assert status == 404 and b"nothing" not in body and b"2026" not in body
    assert headers["Server"].startswith("cdrsync") and "Python" not in headers["Server"]
    for method in ("POST", "PUT", "DELETE"):
        status, _, body = served.get(served.link(REL), method=method)
        assert status in (405, 501) and DATA[:50] not in body


def test_access_log_holds_no_token(served, caplog):
    target = served.link(REL)
    with caplog.at_level(logging.INFO, logger="cdrsync.recordings.serve"):
        assert served.get(target)[0] == 200
        served.get(target + "x")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert REL in text and target.split("s=")[1] not in text


def test_listen_parsing():
    assert parse_listen("127.0.0.1:8089") == ("127.0.0.1", 8089)
    assert parse_listen("[::1]:8089") == ("::1", 8089)
    assert parse_listen(":8089") == ("0.0.0.0", 8089)
    with pytest.raises(ValueError):
        parse_listen("8089")


def test_no_key_no_server(tmp_path):
    with pytest.raises(ValueError, match="sign_key"):
        make_server(RecordingsConfig(dir=str(tmp_path), listen="127.0.0.1:0"))


def test_serves_on_ipv6_loopback(tmp_path):
    cfg = RecordingsConfig(**{**_tree(tmp_path).__dict__, "listen": "[::1]:0"})
    with serving(cfg) as srv:
        conn = http.client.HTTPConnection("::1", srv.port, timeout=5)
        try:
            conn.request("GET", srv.link(REL))
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, DATA)
        finally:
            conn.close()


def test_listens_on_the_configured_address(tmp_path):
    server = make_server(RecordingsConfig(dir=str(tmp_path), sign_key=KEY, listen="127.0.0.1:0"))
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_log_lines_escape_control_bytes_of_the_request(served, caplog):
    hostile = b"GET /rec/\x1b[2J\x07x\x85y\x7f HTTP/1.1\r\n\r\n"
    with caplog.at_level(logging.INFO, logger="cdrsync.recordings.serve"):
        for raw in (hostile, b"GET /\x00\rfake 200 line HTTP/1.1\r\n\r\n"):
            with served.connect() as conn:
                conn.sendall(raw)
                assert conn.recv(100).startswith(b"HTTP/1.1 4")
        deadline = time.monotonic() + 5
        while len(caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/rec/\\x1b[2J\\x07x\\x85y\\x7f" in text
    assert "/\\x00\\x0dfake" in text
    assert not [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0)]


# ---- load: the loop reads request heads, a fixed pool answers them -------------------------

def _requests(srv: Served, target: str, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = srv.connect()
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _answers(socks: list[socket.socket], seconds: float) -> list[bytes]:
    """Everything each socket received until the server closed it (or `seconds` passed)."""
    got = {s: bytearray() for s in socks}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    got[key.fileobj] += data
                else:
                    sel.unregister(key.fileobj)
    for s in socks:
        s.close()
    return [bytes(got[s]) for s in socks]


def _timed_fetch(srv: Served) -> tuple[int, float]:
    started = time.monotonic()
    status, _, body = srv.get(srv.link(REL))
    assert status != 200 or body == DATA
    return status, time.monotonic() - started


def _threads_once_up(srv: Served, before: int, workers: int) -> int:
    """The thread count once the server answers: the test's own, the loop and the pool."""
    assert _timed_fetch(srv)[0] == 200
    assert threading.active_count() == before + 1 + workers
    return before + 1 + workers


def test_a_burst_of_hundreds_of_connections_beside_normal_fetches(tmp_path):
    workers, before = 4, threading.active_count()
    with serving(_tree(tmp_path), workers=workers) as srv:
        threads = _threads_once_up(srv, before, workers)
        idle = [srv.connect() for _ in range(250)]  # connected, never a byte
        burst = _requests(srv, srv.link(REL), 200)  # and 200 requests at once
        assert len(idle) + len(burst) < MAX_OPEN
        fetches = [_timed_fetch(srv) for _ in range(5)]
        answers = _answers(burst, 20)
        assert threading.active_count() == threads
        for sock in idle:
            sock.close()
    assert [status for status, _ in fetches] == [200] * 5
    assert max(took for _, took in fetches) < 3, fetches
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 200
    assert {a.split(b"\r\n\r\n", 1)[1] for a in answers} == {DATA}


def test_slowloris_clients_get_408_and_cost_no_thread(tmp_path):
    before = threading.active_count()
    with serving(_tree(tmp_path), workers=2, head_timeout=1.0) as srv:
        threads = _threads_once_up(srv, before, 2)
        slow = [srv.connect() for _ in range(60)]
        for sock in slow:
            sock.sendall(b"GET /rec/" + REL.encode() + b" HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        fetches, answers = [], {s: b"" for s in slow}
        while time.monotonic() - started < 2.5:  # one more header byte every 0.1 s, each
            for sock in slow:
                with suppress(OSError):
                    sock.sendall(b"a")
            fetches.append(_timed_fetch(srv))
            assert threading.active_count() == threads
            time.sleep(0.1)
        for sock in slow:
            sock.settimeout(1)
            with suppress(OSError):
                answers[sock] = sock.recv(200)
            sock.close()
    assert {status for status, _ in fetches} == {200}
    assert max(took for _, took in fetches) < 2, fetches
    assert {a.split(b"\r\n", 1)[0] for a in answers.values()} == {b"HTTP/1.1 408 Request Timeout"}


def test_beyond_max_open_a_connection_gets_503_at_once_and_a_freed_slot_serves(tmp_path):
    with serving(_tree(tmp_path), workers=2, max_open=20, head_timeout=30) as srv:
        idle = [srv.connect() for _ in range(20)]
        time.sleep(0.3)  # the loop has taken them all
        started = time.monotonic()
        [answer] = _answers(_requests(srv, srv.link(REL), 1), 5)
        took = time.monotonic() - started
        for sock in idle[:5]:
            sock.close()
        time.sleep(0.3)
        status, _ = _timed_fetch(srv)
        for sock in idle[5:]:
            sock.close()
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 503 Service Unavailable" and b"Retry-After: 5" in head
    assert took < 1
    assert status == 200


def test_a_client_that_stops_reading_is_dropped_and_frees_its_worker(tmp_path):
    cfg = _tree(tmp_path)
    big = "2026/11/26/big.wav"
    size = 32 * 1024 * 1024  # more than the socket buffers on both sides hold
    (Path(cfg.dir) / big).write_bytes(b"\0" * size)
    with serving(cfg, workers=1, io_timeout=1.0) as srv:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", srv.port))
        stalled.sendall(f"GET {srv.link(big)} HTTP/1.1\r\n\r\n".encode())
        time.sleep(0.2)  # the only worker is now stuck writing to it
        status, took = _timed_fetch(srv)
        [rest] = _answers([stalled], 10)
    assert status == 200 and took < 4, took  # waited for the drop, about io_timeout
    assert len(rest) < size
