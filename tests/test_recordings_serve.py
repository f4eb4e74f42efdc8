"""serve-recordings over real HTTP on 127.0.0.1: signed links open, nothing else does."""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from cdrsync.config import RecordingsConfig
from cdrsync.recordings.links import make_link
from cdrsync.recordings.serve import make_server, parse_listen

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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
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
    cfg = RecordingsConfig(dir=str(root), cache_dir=str(cache), sign_key=KEY,
                           base_url="http://127.0.0.1/rec", listen="127.0.0.1:0")
    server = make_server(cfg)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Served(cfg, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
])
def test_range_gives_the_exact_slice(served, rng, start, end):
    status, headers, body = served.get(served.link(REL), headers={"Range": rng})
    assert status == 206
    assert body == DATA[start:end + 1]
    assert headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("rng", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
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


def test_listens_on_the_configured_address(tmp_path):
    server = make_server(RecordingsConfig(dir=str(tmp_path), sign_key=KEY, listen="127.0.0.1:0"))
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
