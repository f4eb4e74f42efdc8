"""PlanfixClient against the loopback stub: what goes on the wire, and how each answer is sorted."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

import pytest
import urllib3

from cdrsync.model import Status
from cdrsync.planfix.client import (
    OK,
    REJECT,
    RETRY,
    UNAUTHORIZED,
    PlanfixClient,
    _form_body,
    _json_body,
)
from cdrsync.planfix.requests import (
    MISSED,
    completed_requests,
    missed_requests,
    record_request,
)
from tests.planfix_stub import PlanfixStub, make_call, planfix, stub_config  # noqa: F401


def _client(stub, **planfix_keys):
    cfg = stub_config(stub, planfix=planfix_keys)
    return PlanfixClient(cfg.planfix), cfg


def test_form_request_arrives_exactly_with_the_token_added(planfix):  # noqa: F811
    client, cfg = _client(planfix)
    [req] = completed_requests(make_call(), cfg)
    assert client.send(req).kind == OK
    [got] = planfix.received()
    assert got.fields == dict(req.fields, planfix_token=planfix.token)
    assert not got.is_json and got.path == "/api/telephony"


def test_missed_notice_is_json_to_the_missed_url(planfix):  # noqa: F811
    client, cfg = _client(planfix)
    call = make_call(status=Status.MISSED, answered_by="", final_ext="", rung=("101",))
    [req] = missed_requests(call, cfg)
    assert client.send(req).kind == OK
    [got] = planfix.received("callMissedNotify")
    assert got.is_json and got.path == "/missed"
    assert got.without_token() == {"event": "callMissedNotify", "uniqueId": call.callid,
                                   "intNum": "101", "extNum": "+74951234567"}


def test_missed_notice_without_missed_url_is_refused_locally(planfix):  # noqa: F811
    client, cfg = _client(planfix)
    call = make_call(status=Status.MISSED, answered_by="", final_ext="", rung=("101",))
    [req] = missed_requests(call, cfg)
    outcome = PlanfixClient(replace(cfg.planfix, missed_url="")).send(req)
    assert outcome.kind == REJECT and "missed_url" in outcome.detail
    assert planfix.attempts() == []


class _Capture:
    """An HTTP server on loopback that keeps the raw bytes of each request it is sent and answers
    200 `{}`: the wire as a proxy or Planfix would see it."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, rest = buffer.split(b"\r\n\r\n", 1)
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                    if len(rest) < length:
                        break
                    self.requests.append(head + b"\r\n\r\n" + rest[:length])
                    buffer = rest[length:]
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 2\r\n\r\n{}")

    def close(self) -> None:
        self._server.close()


def test_form_and_json_bodies_are_what_urlencode_and_json_make():
    fields = {"cmd": "record", "callid": "1.1", "empty": "", "gone": None, "n": 42,
              "record_link": "https://pbx/r?a=1&b=два + три~", "name": "O'Neil & Co"}
    assert _form_body(fields) == urlencode(
        {k: v for k, v in fields.items() if v is not None}).encode("ascii")
    assert json.loads(_json_body(fields)) == fields


def test_what_goes_on_the_wire_with_credentials_in_the_address():
    wire = _Capture()
    try:
        cfg = stub_config(planfix={"url": f"http://cdrsync:secret@127.0.0.1:{wire.port}/api/x",
                                   "missed_url": f"http://127.0.0.1:{wire.port}/freepbx"})
        client = PlanfixClient(cfg.planfix)
        call = make_call(status=Status.MISSED, answered_by="", final_ext="", rung=("101",))
        wanted = completed_requests(make_call(), cfg) + missed_requests(call, cfg)
        assert [client.send(req).kind for req in wanted] == [OK] * len(wanted)
    finally:
        wire.close()
    assert len(wire.requests) == len(wanted)
    for req, raw in zip(wanted, wire.requests):
        head, body = raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        fields = dict(req.fields, planfix_token=cfg.planfix.token)
        if req.target == MISSED:
            assert lines[0] == "POST /freepbx HTTP/1.1" and "authorization" not in headers
            assert headers["content-type"] == "application/json" and json.loads(body) == fields
        else:
            assert lines[0] == "POST /api/x HTTP/1.1"
            assert headers["authorization"] == "Basic " + base64.b64encode(b"cdrsync:secret"
                                                                          ).decode()
            assert headers["content-type"] == "application/x-www-form-urlencoded"
            assert dict(parse_qsl(body.decode(), keep_blank_values=True)) == {
                k: str(v) for k, v in fields.items() if v is not None}
        assert headers["user-agent"].startswith("cdrsync/")
        assert headers["host"] == f"127.0.0.1:{wire.port}"


def test_the_proxy_of_the_environment_is_used_and_no_proxy_honoured(planfix, monkeypatch):  # noqa: F811
    proxy = _Capture()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "localhost")
        cfg = stub_config(planfix={"url": "http://planfix.invalid/api/telephony"})
        assert PlanfixClient(cfg.planfix).send(record_request("1.1", "https://pbx/r")).kind == OK
    finally:
        proxy.close()
    [raw] = proxy.requests
    assert raw.startswith(b"POST http://planfix.invalid/api/telephony HTTP/1.1\r\n")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    client, _ = _client(planfix)
    assert client.send(record_request("1.2", "https://pbx/r")).kind == OK
    assert planfix.callids("record") == ["1.2"]


def test_a_bad_address_is_a_retry_at_every_send():
    # the config refuses such a port at load; the client must still survive one built by hand
    bad = replace(stub_config().planfix, url="https://example.planfix.ru:port/api/telephony")
    client = PlanfixClient(bad)
    for _ in range(2):
        outcome = client.send(record_request("1.1", "https://pbx/r"))
        assert outcome.kind == RETRY and outcome.detail.startswith("request failed")


def test_one_connection_is_reused(planfix):  # noqa: F811
    client, _ = _client(planfix)
    for i in range(6):
        assert client.send(record_request(f"{i}.1", "https://pbx/r")).kind == OK
    assert len({r.client_port for r in planfix.attempts()}) == 1


def test_ping(planfix):  # noqa: F811
    client, _ = _client(planfix)
    ok, detail = client.ping()
    assert ok and planfix.url in detail
    planfix.token = "rotated-token-abcdef"
    ok, detail = client.ping()
    assert not ok and "token" in detail and "(401)" in detail


@pytest.mark.parametrize("status,kind", [(503, RETRY), (500, RETRY), (502, RETRY), (404, RETRY),
                                         (400, REJECT), (422, REJECT), (401, UNAUTHORIZED)])
def test_answers_are_sorted(planfix, status, kind):  # noqa: F811
    client, _ = _client(planfix)
    planfix.fail_next(1, status)
    outcome = client.send(record_request("1.1", "https://pbx/r"))
    assert (outcome.kind, outcome.status, outcome.connection) == (kind, status, False)
    assert outcome.detail.startswith(f"HTTP {status}")


def test_429_hands_over_retry_after(planfix):  # noqa: F811
    client, _ = _client(planfix)
    planfix.fail_next(1, 429, retry_after=42)
    outcome = client.send(record_request("1.1", "https://pbx/r"))
    assert (outcome.kind, outcome.retry_after) == (RETRY, 42.0)


def test_400_keeps_planfix_answer(planfix):  # noqa: F811
    client, _ = _client(planfix)
    planfix.reject_callid("1.1", answer='{"error":"Invalid parameters","field":"ext"}')
    outcome = client.send(record_request("1.1", "https://pbx/r"))
    assert outcome.kind == REJECT
    assert outcome.detail == 'HTTP 400: {"error":"Invalid parameters","field":"ext"}'


def test_timeout_is_a_retry_within_the_configured_time(planfix):  # noqa: F811
    client, _ = _client(planfix, timeout=0.3)
    planfix.hang_next(1, 3)
    started = time.monotonic()
    outcome = client.send(record_request("1.1", "https://pbx/r"))
    assert time.monotonic() - started < 2.5
    assert outcome.kind == RETRY and outcome.connection and "0.3s" in outcome.detail


def test_connection_refused_is_a_retry(planfix):  # noqa: F811
    client, _ = _client(planfix)
    planfix.stop()
    outcome = client.send(record_request("1.1", "https://pbx/r"))
    assert outcome.kind == RETRY and outcome.connection
    assert "refused" in outcome.detail.lower()
    planfix.start()
    assert client.send(record_request("1.1", "https://pbx/r")).kind == OK


def test_the_token_never_appears_in_what_the_client_reports(planfix):  # noqa: F811
    client, cfg = _client(planfix)
    echo = f'{{"error":"bad token {planfix.token}"}}'
    planfix.reject_callid("1.1", answer=echo)
    outcome = client.send(record_request("1.1", "https://pbx/r"))
    assert planfix.token not in outcome.detail and "***" in outcome.detail
    secret_url = PlanfixClient(replace(cfg.planfix, url=f"http://user:{cfg.planfix.token}@"
                                                        f"127.0.0.1:1/x", timeout=0.3))
    for outcome in (secret_url.send(record_request("1.1", "https://pbx/r")),):
        assert outcome.kind == RETRY and cfg.planfix.token not in outcome.detail


def test_tls_is_verified_and_a_ca_bundle_makes_a_private_ca_work(tmp_path):
    """A real HTTPS stub with a self-signed certificate: refused without the bundle, fine with."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
         "-out", str(cert)], capture_output=True)
    if made.returncode:
        pytest.skip("openssl cannot make a test certificate here")
    with PlanfixStub(certfile=str(cert), keyfile=str(key)) as stub:
        assert stub.url.startswith("https://")
        plain, _ = _client(stub)
        outcome = plain.send(record_request("1.1", "https://pbx/r"))
        assert outcome.kind == RETRY and "TLS" in outcome.detail
        trusted, _ = _client(stub, ca_bundle=str(cert))
        assert trusted.verify == str(cert)
        assert trusted.send(record_request("1.1", "https://pbx/r")).kind == OK


def test_stub_speaks_the_documented_protocol(planfix):  # noqa: F811
    """The stand-in must refuse what Planfix refuses, or delivery tests prove nothing."""
    http = urllib3.PoolManager()

    def post(url, data=None, as_json=None):
        if as_json is not None:
            return http.request("POST", url, body=json.dumps(as_json),
                                headers={"Content-Type": "application/json"})
        return http.request("POST", url, fields=data, encode_multipart=False)

    token = {"planfix_token": planfix.token}
    completed = {"cmd": "event", "event": "COMPLETED", "type": "in", "phone": "+7", "ext": "101",
                 "callid": "1.1", "duration": "5", "is_recorded": "0", "status": "Success"}
    assert post(planfix.url, data={**completed, **token}).status == 200
    for missing in ("callid", "type", "duration", "status"):
        bad = {k: v for k, v in completed.items() if k != missing}
        answer = post(planfix.url, data={**bad, **token})
        assert (answer.status, json.loads(answer.data)) == (400, {"error": "Invalid parameters"})
    assert post(planfix.url, data={**completed, "type": "x", **token}).status == 400
    assert post(planfix.url, data={**completed, "planfix_token": "nope"}).status == 401
    notice = {"event": "callMissedNotify", "uniqueId": "1.1", "intNum": "101", "extNum": "+7"}
    assert post(planfix.missed_url, as_json={**notice, **token}).status == 200
    assert post(planfix.missed_url, as_json=notice).status == 401
    del notice["intNum"]
    assert post(planfix.missed_url, as_json={**notice, **token}).status == 400
    assert planfix.callids() == ["1.1"] and planfix.callids("callMissedNotify") == ["1.1"]
