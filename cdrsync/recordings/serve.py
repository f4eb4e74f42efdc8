"""`cdrsync serve-recordings`: a tiny read-only file server for signed recording links.

For boxes with no web server to configure. It answers GET/HEAD for `<base_url path>/<relpath>`
only with a valid token (links.verify), only for regular files whose real path lies under
`[recordings] dir` (or the mp3 cache, `cdrsync-mp3/...`), with Range support so a player can seek.
Errors carry a bare status line: no path, no reason, no version (the caller may be anyone).
The access log never holds the query string (a permanent link is a credential), and control
characters of a request are escaped in it (a request line must not forge log lines or drive the
admin's terminal).

Bounded under load, because the address may face the internet: one thread (the loop) accepts
connections and reads their request heads without blocking; only a complete head goes to one of
a fixed pool of workers, which checks the link and sends the file. So an idle or slowloris client
costs a socket, never a thread, and the thread count is fixed. At most `max_open` connections are
open at once (reading, waiting for a worker or being served); one more gets `503` with
`Retry-After` at once. A head not complete `head_timeout` after the connection opened gets `408`;
a client that does not take a chunk of the file within `io_timeout` is dropped. One request per
connection (`Connection: close`): the loop reads heads, workers only write. Refusals and timeouts
are counted and logged once a minute, not once per connection (a flood must not flood the log).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import re
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Optional, Union
from urllib.parse import unquote, urlsplit

from ..config import RecordingsConfig
from .links import verify
from .resolve import served_file

log = logging.getLogger("cdrsync.recordings.serve")

CONTENT_TYPES = {
    "wav": "audio/wav",
    "wav49": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "gsm": "audio/x-gsm",
}
WORKERS = 16  # threads sending files: disk and network bound, a few are plenty
MAX_OPEN = 512  # connections at once; well under the usual 1024 open files
HEAD_TIMEOUT = 10.0  # s for the request line and headers, from the connection's start
IO_TIMEOUT = 15.0  # s a client may take to accept one chunk of the file
MAX_HEAD = 32 * 1024  # request line and headers; a link is a few hundred bytes, cookies more
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
REPORT_EVERY = 60.0  # s between log lines about refused and timed-out connections
_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_QUERY = re.compile(r"\?[^\s\"]*")
_BEYOND_ANY_FILE = 10**19  # a byte position no file reaches (> 2**63)
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL[ord("\\")] = "\\\\"  # so an escape in the log is never the client's own text
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


def make_server(cfg: RecordingsConfig, **limits: float) -> RecordingServer:
    """A server bound to `cfg.listen` ("host:port", "[v6]:port"); call serve_forever() on it.

    Requests are expected under the path of `base_url` (so base_url may point straight at it).
    `limits` override the module's WORKERS, MAX_OPEN, HEAD_TIMEOUT and IO_TIMEOUT (tests).
    Raises ValueError (one line) without a sign_key, OSError when the address cannot be bound.
    """
    if not cfg.sign_key:
        raise ValueError("recordings.sign_key is empty: serve-recordings would open nothing")
    return RecordingServer(cfg, **limits)


def parse_listen(listen: str) -> tuple[str, int]:
    """("127.0.0.1", 8089) from "127.0.0.1:8089"; ("::1", 8089) from "[::1]:8089"."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\s]*):(\d+)", listen.strip())
    if not match:
        raise ValueError(f"recordings.listen: expected HOST:PORT, not {listen!r}")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    return host, int(match.group(2) or match.group(4))


@dataclass
class _Reading:
    """A connection whose request head is still arriving."""

    address: tuple
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class RecordingServer:
    """The listening socket, the loop that reads request heads, and the pool that answers them.

    Used like socketserver's servers: serve_forever() in a thread, shutdown() from another,
    then server_close().
    """

    def __init__(self, cfg: RecordingsConfig, *, workers: int = WORKERS,
                 max_open: int = MAX_OPEN, head_timeout: float = HEAD_TIMEOUT,
                 io_timeout: float = IO_TIMEOUT) -> None:
        host, port = parse_listen(cfg.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server(
            (host, port), family=family, backlog=BACKLOG,
            dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6())
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        prefix = urlsplit(cfg.base_url).path.rstrip("/") + "/" if cfg.base_url else "/"
        self.handler = type("Handler", (_RecordingHandler,), {
            "config": cfg, "url_prefix": prefix, "timeout": io_timeout})
        self.workers = int(workers)
        self.head_timeout = float(head_timeout)
        self._slots = threading.BoundedSemaphore(int(max_open))
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._turned_away = {408: 0, 431: 0, 503: 0}
        self._reported_at = float("-inf")

    # ---- the loop -------------------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept and read request heads until shutdown(); the workers live as long."""
        self._stopping.clear()
        self._stopped.clear()
        pool = [threading.Thread(target=self._work, name=f"cdrsync-recordings-{i}", daemon=True)
                for i in range(self.workers)]
        for thread in pool:
            thread.start()
        reading: dict[socket.socket, _Reading] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    wait = min([poll_interval] + [r.deadline - now for r in reading.values()])
                    for key, _ in selector.select(max(0.0, wait)):
                        if key.fileobj is self.socket:
                            self._accept(selector, reading)
                        else:
                            self._read(selector, reading, key.fileobj)
                    self._expire(selector, reading, time.monotonic())
                    self._report(time.monotonic())
            finally:
                self._report(float("inf"))
                for conn in list(reading):
                    self._close(conn)
                for _ in pool:
                    self._ready.put(None)
                deadline = time.monotonic() + 5  # a file in flight to a slow client may not wait
                for thread in pool:
                    thread.join(max(0.0, deadline - time.monotonic()))
                self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever() and wait until it has (as socketserver's shutdown does)."""
        self._stopping.set()
        self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()

    def _accept(self, selector: selectors.BaseSelector,
                reading: dict[socket.socket, _Reading]) -> None:
        for _ in range(64):  # a burst is taken in slices, so heads already here are read too
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: the next round tries again
                log.warning("serve-recordings: cannot accept a connection: %s", exc)
                return
            conn.setblocking(False)
            if not self._slots.acquire(blocking=False):
                self._turn_away(conn, 503, read_first=True)
                continue
            reading[conn] = _Reading(address, time.monotonic() + self.head_timeout)
            selector.register(conn, selectors.EVENT_READ)

    def _read(self, selector: selectors.BaseSelector, reading: dict[socket.socket, _Reading],
              conn: socket.socket) -> None:
        state = reading[conn]
        try:
            data = conn.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client gave up
            selector.unregister(conn)
            del reading[conn]
            self._release(conn)
            return
        start = max(0, len(state.head) - 3)  # a head end may straddle two reads
        state.head += data
        if _HEAD_END.search(state.head, start):
            selector.unregister(conn)
            del reading[conn]
            self._ready.put((conn, state.address, bytes(state.head)))
        elif len(state.head) > MAX_HEAD:
            selector.unregister(conn)
            del reading[conn]
            self._turn_away(conn, 431)
            self._slots.release()

    def _expire(self, selector: selectors.BaseSelector, reading: dict[socket.socket, _Reading],
                now: float) -> None:
        for conn in [c for c, r in reading.items() if r.deadline <= now]:
            selector.unregister(conn)
            del reading[conn]
            self._turn_away(conn, 408)
            self._slots.release()

    def _turn_away(self, conn: socket.socket, code: int, read_first: bool = False) -> None:
        """Answer `code` without a thread: a few bytes a fresh socket always takes at once.

        What the client already sent is read first, so closing does not reset the connection
        (a reset may destroy the answer before the client reads it)."""
        self._turned_away[code] += 1
        if read_first:
            with contextlib.suppress(OSError):
                conn.recv(MAX_HEAD)
        retry = "Retry-After: 5\r\n" if code == 503 else ""
        body = f"{code} {_REASONS[code]}\n"
        with contextlib.suppress(OSError):
            conn.send(f"HTTP/1.1 {code} {_REASONS[code]}\r\nServer: cdrsync\r\n{retry}"
                      f"Content-Type: text/plain; charset=utf-8\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
        self._close(conn)

    def _report(self, now: float) -> None:
        if now - self._reported_at < REPORT_EVERY or not any(self._turned_away.values()):
            return
        self._reported_at = now
        counts = self._turned_away
        log.warning("serve-recordings turned connections away: %d busy (503), %d too slow to "
                    "send their request (408), %d with oversized headers (431)",
                    counts[503], counts[408], counts[431])
        self._turned_away = dict.fromkeys(counts, 0)

    # ---- the workers ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._ready.get()
            if item is None:
                return
            conn, address, head = item
            try:
                if self._stopping.is_set():
                    continue
                conn.setblocking(True)
                self.handler((conn, head), address, self)
            except OSError as exc:  # the client went away mid-answer: a player seeking does
                log.debug("%s: connection ended: %s", address[0], exc)
            except Exception as exc:  # never a traceback, never a dead worker
                log.warning("%s: request failed: %s: %s", address[0], type(exc).__name__, exc)
            finally:
                self._release(conn)

    def _release(self, conn: socket.socket) -> None:
        self._close(conn)
        self._slots.release()

    @staticmethod
    def _close(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        conn.close()


class _SocketWriter(io.RawIOBase):
    """Writes all of each chunk (sendall), so the socket timeout bounds a chunk's delivery."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._conn.sendall(data)
        return len(data)


class _RecordingHandler(BaseHTTPRequestHandler):
    config: RecordingsConfig
    url_prefix: str
    server_version = "cdrsync"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """The request is (socket, head): the server's loop read the head, so nothing here
        waits for the client to send; the socket's timeout bounds every write."""
        self.connection, head = self.request
        self.connection.settimeout(self.timeout)
        self.rfile = io.BytesIO(head)
        self.wfile = _SocketWriter(self.connection)

    def handle(self) -> None:
        self.handle_one_request()

    def end_headers(self) -> None:
        self.send_header("Connection", "close")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        parts = urlsplit(self.path)
        raw = parts.path
        if not raw.startswith(self.url_prefix):
            return self._status(404)
        try:
            relpath = unquote(raw[len(self.url_prefix):], errors="strict")
        except UnicodeDecodeError:
            return self._status(404)
        if not relpath or any(p in ("", ".", "..") for p in relpath.split("/")):
            return self._status(404)
        if not verify(relpath, parts.query, self.config, time.time()):
            return self._status(403)
        real = served_file(relpath, self.config)
        if real is None:
            return self._status(404)
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return self._status(404)
        with os.fdopen(fd, "rb") as fh:
            self._send_file(fh, relpath, with_body)

    def _send_file(self, fh, relpath: str, with_body: bool) -> None:
        st = os.fstat(fh.fileno())
        size = st.st_size
        span = _byte_range(self.headers.get("Range"), size)
        if span == "unsatisfiable":
            return self._status(416, {"Content-Range": f"bytes */{size}"})
        start, end = span if span else (0, size - 1)
        length = max(0, end - start + 1)
        self.send_response(206 if span else 200)
        ext = relpath.rsplit(".", 1)[-1].lower() if "." in relpath else ""
        self.send_header("Content-Type", CONTENT_TYPES.get(ext, "application/octet-stream"))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        self.send_header("Cache-Control", "private, max-age=3600")
        self.send_header("X-Content-Type-Options", "nosniff")
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not with_body:
            return
        fh.seek(start)
        left = length
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break  # the file shrank under us; the client sees a short body
            self.wfile.write(chunk)
            left -= len(chunk)

    def _status(self, code: int, headers: Optional[dict[str, str]] = None) -> None:
        body = f"{code} {self.responses.get(code, ('',))[0]}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        """http.server's own errors (bad request line, unknown method) without its HTML echo."""
        self._status(code)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        """Requests go to our log, escaped and without the query string."""
        log.info("%s %s", self.address_string(), _QUERY.sub("", escape(format % args)))


def escape(text: str) -> str:
    """`text` with control characters (C0, DEL, C1) as \\xNN and backslashes doubled."""
    return text.translate(_CONTROL)


def _position(digits: str) -> int:
    """A byte position from its digits, however many (int() refuses over 4300 of them)."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 19 else _BEYOND_ANY_FILE


def _byte_range(header: Optional[str], size: int) -> Union[tuple[int, int], str, None]:
    """(start, end) of a single satisfiable `bytes=` range, "unsatisfiable", or None (send all).

    A header we do not understand, or several ranges, is ignored (RFC 9110 allows it). Positions
    past the end are what RFC 9110 says: a first byte there is unsatisfiable (416), a last byte
    there means the end of the file, a suffix longer than the file means all of it.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid syntax per RFC: ignore the header
    if start >= size:
        return "unsatisfiable"
    end = min(_position(last), size - 1) if last else size - 1
    return start, end
