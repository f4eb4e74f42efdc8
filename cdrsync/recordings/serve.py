"""`cdrsync serve-recordings`: a tiny read-only file server for signed recording links.

For boxes with no web server to configure. It answers GET/HEAD for `<base_url path>/<relpath>`
only with a valid token (links.verify), only for regular files whose real path lies under
`[recordings] dir` (or the mp3 cache, `cdrsync-mp3/...`), with Range support so a player can seek.
Errors carry a bare status line: no path, no reason, no version (the caller may be anyone).
The access log never holds the query string (a permanent link is a credential).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_QUERY = re.compile(r"\?[^\s\"]*")


def make_server(cfg: RecordingsConfig) -> ThreadingHTTPServer:
    """A server bound to `cfg.listen` ("host:port", "[v6]:port"); call serve_forever() on it.

    Requests are expected under the path of `base_url` (so base_url may point straight at it).
    Raises ValueError (one line) without a sign_key, OSError when the address cannot be bound.
    """
    if not cfg.sign_key:
        raise ValueError("recordings.sign_key is empty: serve-recordings would open nothing")
    host, port = parse_listen(cfg.listen)
    prefix = urlsplit(cfg.base_url).path.rstrip("/") + "/" if cfg.base_url else "/"

    class Handler(_RecordingHandler):
        config = cfg
        url_prefix = prefix

    server_class = _Server6 if ":" in host else ThreadingHTTPServer
    server = server_class((host, port), Handler)
    server.daemon_threads = True
    return server


def parse_listen(listen: str) -> tuple[str, int]:
    """("127.0.0.1", 8089) from "127.0.0.1:8089"; ("::1", 8089) from "[::1]:8089"."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\s]*):(\d+)", listen.strip())
    if not match:
        raise ValueError(f"recordings.listen: expected HOST:PORT, not {listen!r}")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    return host, int(match.group(2) or match.group(4))


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _RecordingHandler(BaseHTTPRequestHandler):
    config: RecordingsConfig
    url_prefix: str
    server_version = "cdrsync"
    sys_version = ""
    protocol_version = "HTTP/1.1"

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
        self.close_connection = True
        self._status(code)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        """Requests go to our log, without the query string (a permanent link is a secret)."""
        log.info("%s %s", self.address_string(), _QUERY.sub("", format % args))


def _byte_range(header: Optional[str], size: int) -> Union[tuple[int, int], str, None]:
    """(start, end) of a single satisfiable `bytes=` range, "unsatisfiable", or None (send all).

    A header we do not understand, or several ranges, is ignored (RFC 9110 allows it).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid syntax per RFC: ignore the header
    if start >= size:
        return "unsatisfiable"
    return start, end
