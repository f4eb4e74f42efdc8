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
import requests
from requests.structures import CaseInsensitiveDict

from cdrsync.model import Status
from cdrsync.planfix.client import (
    OK,
    REJECT,
    RETRY,
    UNAUTHORIZED,
    Outcome,
    PlanfixClient,
    _rate,
    _responsible_numbers,
)
from cdrsync.planfix.messages import (
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


_ANSWER_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _Capture:
    """An HTTP server on loopback that keeps the raw bytes of each request it is sent and gives
    each the raw `answer` (200 `{}`; b"": the connection is cut instead): the wire as a proxy or
    Planfix would see it. A CONNECT (a proxy's tunnel) is answered 200, then the connection cut."""

    def __init__(self, answer: bytes = _ANSWER_200) -> None:
        self.answer = answer
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
                    declared = re.search(rb"(?i)content-length: *(\d+)", head)
                    length = int(declared.group(1)) if declared else 0
                    if len(rest) < length:
                        break
                    self.requests.append(head + b"\r\n\r\n" + rest[:length])
                    buffer = rest[length:]
                    if head.startswith(b"CONNECT "):  # a tunnel opened, then cut: TLS fails
                        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        return
                    if not self.answer:
                        return
                    conn.sendall(self.answer)

    def close(self) -> None:
        self._server.close()


def _parse(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """(request line, headers by lower-case name, body) of one raw request."""
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    return lines[0], {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}, body


def test_what_goes_on_the_wire_with_credentials_in_the_address():
    wire = _Capture()
    try:
        cfg = stub_config(planfix={"url": f"http://cdrsync:secret@127.0.0.1:{wire.port}/api/x",
                                   "missed_url": f"http://127.0.0.1:{wire.port}/freepbx"})
        client = PlanfixClient(cfg.planfix)
        call = make_call(status=Status.MISSED, answered_by="", final_ext="", rung=("101",),
                         phone="+7 (495) ДВА & три")
        # what form encoding must get right: UTF-8, `&`, `+`, `=`, `~`, spaces, empty values
        odd = record_request("1.1", "https://pbx/r?a=1&b=два + три~ =")
        odd = replace(odd, fields=dict(odd.fields, empty=""))
        wanted = completed_requests(make_call(), cfg) + missed_requests(call, cfg) + [odd]
        assert [client.send(req).kind for req in wanted] == [OK] * len(wanted)
    finally:
        wire.close()
    assert len(wire.requests) == len(wanted)
    for req, raw in zip(wanted, wire.requests):
        line, headers, body = _parse(raw)
        fields = dict(req.fields, planfix_token=cfg.planfix.token)
        if req.target == MISSED:
            assert line == "POST /freepbx HTTP/1.1" and "authorization" not in headers
            assert headers["content-type"] == "application/json" and json.loads(body) == fields
        else:
            assert line == "POST /api/x HTTP/1.1"
            assert headers["authorization"] == "Basic " + base64.b64encode(b"cdrsync:secret"
                                                                          ).decode()
            assert headers["content-type"] == "application/x-www-form-urlencoded"
            assert body == urlencode(fields).encode("ascii")
            assert dict(parse_qsl(body.decode(), keep_blank_values=True)) == fields
        assert headers["user-agent"].startswith("cdrsync/")
        assert headers["host"] == f"127.0.0.1:{wire.port}"
        assert int(headers["content-length"]) == len(body)


def test_the_proxy_of_the_environment_is_used_and_no_proxy_honoured(planfix, monkeypatch):  # noqa: F811
    proxy = _Capture()
    try:
        monkeypatch.setenv("http_proxy", f"http://squid:pw@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("https_proxy", f"http://squid:pw@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "localhost")
        cfg = stub_config(planfix={"url": "http://planfix.invalid/api/telephony"})
        assert PlanfixClient(cfg.planfix).send(record_request("1.1", "https://pbx/r")).kind == OK
        # an https address goes through the proxy as a tunnel, which the capture does not
        # open: the CONNECT is what counts, and that TLS then fails is a retry
        cfg = stub_config(planfix={"url": "https://planfix.invalid/api/telephony", "timeout": 2})
        tunnel = PlanfixClient(cfg.planfix).send(record_request("1.1", "https://pbx/r"))
        assert tunnel.kind == RETRY and tunnel.connection
    finally:
        proxy.close()
    plain, connect = (_parse(raw) for raw in proxy.requests)
    credentials = "Basic " + base64.b64encode(b"squid:pw").decode()
    assert plain[0] == "POST http://planfix.invalid/api/telephony HTTP/1.1"
    assert plain[1]["proxy-authorization"] == credentials
    assert connect[0].startswith("CONNECT planfix.invalid:443 HTTP/1.")
    assert connect[1]["proxy-authorization"] == credentials
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    client, _ = _client(planfix)
    assert client.send(record_request("1.2", "https://pbx/r")).kind == OK
    assert planfix.callids("record") == ["1.2"]


def test_a_redirect_is_not_followed_and_a_cut_connection_is_not_retried(planfix):  # noqa: F811
    """Only the outbox retries: a POST that may have reached Planfix goes again only from there."""
    moved = _Capture(b"HTTP/1.1 302 Found\r\nLocation: " + planfix.url.encode()
                     + b"\r\nContent-Length: 0\r\n\r\n")
    cut = _Capture(b"")
    try:
        for wire, expected in ((moved, "HTTP 302 (redirect to " + planfix.url),
                               (cut, "cannot connect")):
            cfg = stub_config(planfix={"url": f"http://127.0.0.1:{wire.port}/api/telephony"})
            outcome = PlanfixClient(cfg.planfix).send(record_request("1.1", "https://pbx/r"))
            assert outcome.kind == RETRY and outcome.detail.startswith(expected)
            assert len(wire.requests) == 1
    finally:
        moved.close()
        cut.close()
    assert planfix.attempts() == []


def test_a_bad_address_is_a_retry_at_every_send():
    cfg = stub_config(planfix={"url": "https://example.planfix.ru:port/api/telephony"})
    client = PlanfixClient(cfg.planfix)
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


@pytest.mark.parametrize("epoch", [False, True])
def test_rate_signals_travel_with_every_outcome(planfix, epoch):  # noqa: F811
    client, _ = _client(planfix)
    planfix.allow(2, per=60, epoch=epoch)
    first, second, third = (client.send(record_request(f"{i}.1", "https://pbx/r"))
                            for i in range(3))
    assert (first.kind, first.rate_remaining, second.kind, second.rate_remaining) == (
        OK, 1, OK, 0)
    assert 58 <= first.rate_reset <= 61  # seconds, also when Planfix says when (a Unix time)
    assert (third.kind, third.status, third.rate_remaining) == (RETRY, 429, 0)
    assert 58 <= third.retry_after <= 61
    planfix.allow(None)
    quiet = client.send(record_request("4.1", "https://pbx/r"))
    assert (quiet.rate_remaining, quiet.rate_reset) == (None, None)


def test_rate_headers_in_their_spellings():
    """The de facto `X-RateLimit-*` headers, the IETF draft's `RateLimit-*`, and nonsense."""
    def rate(**headers):
        return _rate(CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()}))

    assert rate(x_ratelimit_remaining="0", x_ratelimit_reset="30") == (0, 30.0)
    assert rate(RateLimit_Remaining="7", RateLimit_Reset="2.5") == (7, 2.5)
    assert rate(x_ratelimit_remaining="12, 100;w=60") == (12, None)  # a list: the first one
    soon = rate(x_ratelimit_remaining="3", x_ratelimit_reset=str(int(time.time()) + 40))
    assert soon[0] == 3 and 38 <= soon[1] <= 41
    assert rate(x_ratelimit_reset=str(int(time.time()) - 40)) == (None, 0.0)  # already past
    assert rate(x_ratelimit_remaining="lots", x_ratelimit_reset="") == (None, None)
    assert rate() == (None, None)


def test_who_is_responsible_is_asked_as_json_without_the_fallback(planfix):  # noqa: F811
    client, cfg = _client(planfix)
    cfg = replace(cfg, missed=replace(cfg.missed, notify="responsible"))
    [question] = missed_requests(make_call(status=Status.MISSED, answered_by="", final_ext=""),
                                 cfg)
    planfix.responsible("+74951234567", "105")
    outcome, numbers = client.responsible(question, timeout=1)
    assert (outcome.kind, numbers) == (OK, ("105",))
    [got] = planfix.received("callInfoRespNum")
    assert got.is_json and got.path == "/missed" and "fallback" not in got.fields
    planfix.hang_lookups(2)
    outcome, numbers = client.responsible(question, timeout=0.2)
    assert (outcome.kind, outcome.timed_out, numbers) == (RETRY, True, None)
    assert "0.2s" in outcome.detail


@pytest.mark.parametrize("kind,answer,numbers", [
    (OK, '{"responsibleNumbers": ["101", 102, "101", " "]}', ("101", "102")),
    (OK, '{"responsibleNumbers": []}', ()),
    (OK, '{"error": "no persons responsible"}', ()),
    (REJECT, '{"error":"No persons responsible"}', ()),
    (REJECT, '{"error":"Invalid parameters"}', None),
    (OK, "", None),
    (OK, "<html>", None),
    (OK, '["101"]', None),
    (RETRY, '{"responsibleNumbers": ["101"]}', None),  # a 503's body is no answer
])
def test_what_an_answer_about_the_responsible_says(kind, answer, numbers):
    assert _responsible_numbers(Outcome(kind), answer) == numbers


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


def _certificate(folder, name):
    """A self-signed certificate for 127.0.0.1 (its own CA), made with openssl."""
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         f"/CN=cdrsync test {name}", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
         str(key), "-out", str(cert)], capture_output=True)
    if made.returncode:
        pytest.skip("openssl cannot make a test certificate here")
    return cert, key


def test_tls_is_verified_and_a_ca_bundle_makes_a_private_ca_work(tmp_path, monkeypatch):
    """A real HTTPS stub with a certificate of a private CA: refused without its bundle; trusted
    through `ca_bundle` or requests' `REQUESTS_CA_BUNDLE`, `ca_bundle` first."""
    cert, key = _certificate(tmp_path, "planfix")
    other, _ = _certificate(tmp_path, "other")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with PlanfixStub(certfile=str(cert), keyfile=str(key)) as stub:
        assert stub.url.startswith("https://")
        plain, _ = _client(stub)
        outcome = plain.send(record_request("1.1", "https://pbx/r"))
        assert outcome.kind == RETRY and "TLS" in outcome.detail and outcome.connection
        trusted, _ = _client(stub, ca_bundle=str(cert))
        assert trusted.send(record_request("1.1", "https://pbx/r")).kind == OK
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        from_env, _ = _client(stub)
        assert from_env.send(record_request("1.2", "https://pbx/r")).kind == OK
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
        assert from_env.send(record_request("1.3", "https://pbx/r")).kind == RETRY
        assert trusted.send(record_request("1.4", "https://pbx/r")).kind == OK
    assert stub.callids("record") == ["1.1", "1.2", "1.4"]


def test_stub_speaks_the_documented_protocol(planfix):  # noqa: F811
    """The stand-in must refuse what Planfix refuses, or delivery tests prove nothing."""

    def post(url, data=None, as_json=None):
        return requests.post(url, data=data, json=as_json, timeout=5)

    token = {"planfix_token": planfix.token}
    completed = {"cmd": "event", "event": "COMPLETED", "type": "in", "phone": "+7", "ext": "101",
                 "callid": "1.1", "duration": "5", "is_recorded": "0", "status": "Success"}
    assert post(planfix.url, data={**completed, **token}).status_code == 200
    for missing in ("callid", "type", "duration", "status"):
        bad = {k: v for k, v in completed.items() if k != missing}
        answer = post(planfix.url, data={**bad, **token})
        assert (answer.status_code, answer.json()) == (400, {"error": "Invalid parameters"})
    assert post(planfix.url, data={**completed, "type": "x", **token}).status_code == 400
    assert post(planfix.url, data={**completed, "planfix_token": "nope"}).status_code == 401
    notice = {"event": "callMissedNotify", "uniqueId": "1.1", "intNum": "101", "extNum": "+7"}
    assert post(planfix.missed_url, as_json={**notice, **token}).status_code == 200
    assert post(planfix.missed_url, as_json=notice).status_code == 401
    del notice["intNum"]
    assert post(planfix.missed_url, as_json={**notice, **token}).status_code == 400
    assert planfix.callids() == ["1.1"] and planfix.callids("callMissedNotify") == ["1.1"]
    # who is responsible: callInfoRespNum (JSON) and cmd=contact (form)
    planfix.responsible("+7", "105", "106", name="ООО Ромашка")
    ask = {"event": "callInfoRespNum", "uniqueId": "1.1", "intNum": "101", "extNum": "+7"}
    answer = post(planfix.missed_url, as_json={**ask, **token})
    assert answer.json() == {"responsibleNumbers": ["105", "106"]}
    nobody = post(planfix.missed_url, as_json={**ask, "extNum": "+8", **token})
    assert nobody.json() == {"error": "no persons responsible"}
    assert post(planfix.missed_url, as_json=ask).status_code == 401
    contact = post(planfix.url, data={"cmd": "contact", "phone": "+7", **token})
    assert contact.json() == {"contact_name": "ООО Ромашка", "responsible": "105"}
    assert post(planfix.url, data={"cmd": "contact", **token}).status_code == 400
