"""PlanfixClient against the loopback stub: what goes on the wire, and how each answer is sorted."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace

import pytest
import requests

from cdrsync.model import Status
from cdrsync.planfix.client import OK, REJECT, RETRY, UNAUTHORIZED, PlanfixClient
from cdrsync.planfix.requests import (
    MISSED,
    Request,
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


class _Wire(requests.adapters.BaseAdapter):
    """Keeps each request as it would go on the wire and answers 200 `{}`."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, dict[str, str], bytes]] = []

    def send(self, request, **_kwargs):  # type: ignore[no-untyped-def]
        body = request.body.encode() if isinstance(request.body, str) else request.body
        self.sent.append((request.method, request.url, dict(request.headers), body or b""))
        answer = requests.Response()
        answer.status_code, answer._content, answer.encoding = 200, b"{}", "utf-8"
        answer.request, answer.url = request, request.url
        return answer

    def close(self) -> None:
        pass


def test_requests_go_out_exactly_as_session_post_would_send_them():
    """The client prepares its requests itself (for speed): same bytes as `session.post`."""
    cfg = stub_config(planfix={"url": "https://cdrsync:secret@example.planfix.ru/api/telephony",
                               "missed_url": "https://example.planfix.ru/freepbx"})
    client = PlanfixClient(cfg.planfix)
    ours, theirs = _Wire(), _Wire()
    client.session.mount("https://", ours)
    reference = requests.Session()
    reference.headers["User-Agent"] = client.session.headers["User-Agent"]
    reference.mount("https://", theirs)
    call = make_call(status=Status.MISSED, answered_by="", final_ext="", rung=("101",))
    odd = Request("1.1|record", "1.1", "api", {"cmd": "record", "callid": "1.1", "empty": "",
                                               "record_link": "https://pbx/r?a=1&b=два + три~"})
    wanted = completed_requests(make_call(), cfg) + missed_requests(call, cfg) + [odd]
    for round_ in ("no cookies", "a cookie Planfix set"):
        if round_ != "no cookies":
            for session in (client.session, reference):
                session.cookies.set("lb", "node-2", domain="example.planfix.ru", path="/")
        for req in wanted:
            assert client.send(req).kind == OK
            fields = dict(req.fields, planfix_token=cfg.planfix.token)
            if req.target == MISSED:
                reference.post(cfg.planfix.missed_url, json=fields, allow_redirects=False)
            else:
                reference.post(cfg.planfix.url, data=fields, allow_redirects=False)
    assert ours.sent == theirs.sent and len(ours.sent) == 2 * len(wanted)
    assert ours.sent[0][2]["Authorization"].startswith("Basic ")
    cookies = [headers.get("Cookie") for _m, _u, headers, _b in ours.sent]
    assert not any(cookies[:len(wanted)]) and "lb=node-2" in cookies[len(wanted):]


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
    import requests

    post = requests.Session().post
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
    assert post(planfix.missed_url, json={**notice, **token}).status_code == 200
    assert post(planfix.missed_url, json=notice).status_code == 401
    del notice["intNum"]
    assert post(planfix.missed_url, json={**notice, **token}).status_code == 400
    assert planfix.callids() == ["1.1"] and planfix.callids("callMissedNotify") == ["1.1"]
