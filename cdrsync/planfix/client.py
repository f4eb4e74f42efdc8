"""The HTTP side of Planfix: one keep-alive requests session per address, and every answer sorted
into what to do next.

The token is added here, at send time, and scrubbed from every text this module produces.

How answers are sorted (`Outcome.kind`):
- "ok": any 2xx.
- "retry": network errors, timeouts, 408, 429 (with its `Retry-After`), 5xx, and anything else
  unexpected (3xx, 404, ...): those point at the address or an outage, not at the call, so the
  request stays queued and delivery stalls until the cause is fixed.
- "reject": 400 / 413 / 422, Planfix refused *this* request; its answer is kept.
- "unauthorized": 401 / 403, the token is wrong; nothing must be sent until it is fixed.

Whatever the kind, Planfix's rate signals travel with the outcome (`rate_remaining`,
`rate_reset`), so the deliverer can pause before Planfix has to answer 429.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Optional

import requests
from requests.adapters import HTTPAdapter

from cdrsync import __version__
from cdrsync.config import PlanfixConfig, redact
from cdrsync.planfix.messages import MISSED, RESPONSIBLE, Request, lookup_body

OK, RETRY, REJECT, UNAUTHORIZED = "ok", "retry", "reject", "unauthorized"
_REJECT = {400, 413, 422}
_UNAUTHORIZED = {401, 403}
_ANSWER_MAX = 300  # characters of Planfix's answer kept for the log and `status`
# The header names of the rate signals: the de facto `X-RateLimit-*` pair, then the IETF draft's.
_REMAINING = ("X-RateLimit-Remaining", "RateLimit-Remaining")
_RESET = ("X-RateLimit-Reset", "RateLimit-Reset")
_EPOCH = 1_000_000_000  # a reset above this is a moment (Unix time), below it a number of seconds
_LEADING_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)")
NO_PERSONS = "no persons responsible"  # Planfix's answer to callInfoRespNum when nobody is


@dataclass(frozen=True)
class Outcome:
    kind: str  # OK | RETRY | REJECT | UNAUTHORIZED
    detail: str = ""  # one line, token-free: why (Planfix's answer, the network error)
    status: Optional[int] = None  # HTTP status, None when no answer came
    retry_after: Optional[float] = None  # seconds, from a 429/503 Retry-After
    connection: bool = False  # no HTTP answer at all (refused, timeout, TLS)
    timed_out: bool = False  # connected, but no answer came within the timeout
    rate_remaining: Optional[int] = None  # requests Planfix still allows (X-RateLimit-Remaining)
    rate_reset: Optional[float] = None  # seconds until that allowance refills (X-RateLimit-Reset)


class PlanfixClient:
    """Sends `Request`s to Planfix: one `requests.Session` per address (the telephony `url`, the
    FreePBX-integration `missed_url`), each with one keep-alive connection.

    What HTTP needs is requests' to do, the way it does it for everyone: the environment's proxy
    (`https_proxy`, `no_proxy`) and CA bundle (`REQUESTS_CA_BUNDLE`; `[planfix] ca_bundle` wins
    over it), certificates always checked, Basic auth from a `user:password@` address, form and
    JSON encoding, the answer's charset. cdrsync adds only what is its own: one request in flight
    (a pool of one connection), no retries by the adapter (the outbox retries, and a POST that
    reached Planfix must not go twice behind its back), no redirects followed (a moved address is
    an admin's to fix), one timeout for connecting and for each read.
    """

    def __init__(self, cfg: PlanfixConfig) -> None:
        self.cfg = cfg
        # None: requests' own choice (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, then certifi's bundle);
        # a path given per request is taken as it is, ahead of the environment.
        self.verify: Optional[str] = cfg.ca_bundle or None
        self._sessions = {url: _session() for url in (cfg.url, cfg.missed_url) if url}

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()

    def send(self, request: Request) -> Outcome:
        """POST `request` (its fields plus the token) where its target says."""
        return self._send(request, self.cfg.timeout)[0]

    def responsible(self, request: Request, timeout: float
                    ) -> tuple[Outcome, Optional[tuple[str, ...]]]:
        """Ask Planfix who is responsible for a caller (a `RESPONSIBLE` request, callInfoRespNum),
        waiting `timeout` seconds at most: the outcome, and the extensions Planfix named — () for
        "no persons responsible", None when the answer says neither (none came, an error)."""
        outcome, text = self._send(request, timeout)
        return outcome, _responsible_numbers(outcome, text)

    def ping(self) -> tuple[bool, str]:
        """Check address and token with `cmd=ping`; (ok, one token-free line)."""
        outcome, body = self._exchange(self.cfg.url, {"data": {
            "cmd": "ping", "planfix_token": self.cfg.token}})
        if outcome.kind != OK:
            if outcome.kind == UNAUTHORIZED:
                return False, (f"Planfix rejected the token ({outcome.status}): "
                               "check [planfix] token")
            return False, outcome.detail
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        pbx_url = answer.get("pbxUrl") if isinstance(answer, dict) else None
        shown = f" (pbxUrl {self._clean(pbx_url)})" if pbx_url else ""
        return True, "Planfix answered ping" + shown

    def _send(self, request: Request, timeout: float) -> tuple[Outcome, str]:
        if request.target in (MISSED, RESPONSIBLE):
            if not self.cfg.missed_url:
                return Outcome(REJECT, "[planfix] missed_url is not set; cannot send a missed-call "
                                       "notice (skip it or set missed_url)"), ""
            fields = lookup_body(request) if request.target == RESPONSIBLE else request.fields
            return self._exchange(self.cfg.missed_url, {
                "json": dict(fields, planfix_token=self.cfg.token)}, timeout)
        return self._exchange(self.cfg.url, {
            "data": dict(request.fields, planfix_token=self.cfg.token)}, timeout)

    def _exchange(self, url: str, body: dict[str, Any], timeout: Optional[float] = None
                  ) -> tuple[Outcome, str]:
        """One POST of `body` (`data=`: a form, `json=`) to `url`; (outcome, the answer's text)."""
        timeout = self.cfg.timeout if timeout is None else timeout
        try:
            resp = self._sessions[url].post(url, timeout=timeout, verify=self.verify,
                                            allow_redirects=False, **body)
        except requests.Timeout as exc:
            return Outcome(RETRY, f"no answer within {timeout:g}s", connection=True,
                           timed_out=not isinstance(exc, requests.ConnectTimeout)), ""
        except requests.exceptions.SSLError as exc:
            return Outcome(RETRY, f"TLS error: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        except requests.ConnectionError as exc:  # refused, reset, a proxy that fails
            return Outcome(RETRY, f"cannot connect: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        except (requests.RequestException, ValueError) as exc:  # a bad address, ...
            return Outcome(RETRY, f"request failed: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        status = resp.status_code
        text = resp.text
        answer = self._clean(" ".join(text.split()))[:_ANSWER_MAX]
        detail = f"HTTP {status}" + (f": {answer}" if answer else "")
        remaining, reset = _rate(resp.headers)
        if 200 <= status < 300:
            kind = OK
        elif status in _UNAUTHORIZED:
            kind = UNAUTHORIZED
        elif status in _REJECT:
            kind = REJECT
        else:
            if 300 <= status < 400:
                where = self._clean(resp.headers.get("Location", "?"))
                detail += f" (redirect to {where}: check [planfix] url)"
            elif status == 404:
                detail += " (check [planfix] url)"
            return Outcome(RETRY, detail, status, _retry_after(resp.headers.get("Retry-After")),
                           rate_remaining=remaining, rate_reset=reset), text
        return Outcome(kind, detail, status, rate_remaining=remaining, rate_reset=reset), text

    def _clean(self, text: str) -> str:
        text = redact(str(text))
        return text.replace(self.cfg.token, "***") if self.cfg.token else text


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"cdrsync/{__version__}"
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _responsible_numbers(outcome: Outcome, text: str) -> Optional[tuple[str, ...]]:
    """The extensions of a callInfoRespNum answer (`{"responsibleNumbers": [...]}`); () for
    `{"error": "no persons responsible"}` (also with a 4xx, or an empty list); None otherwise."""
    if outcome.kind not in (OK, REJECT):
        return None
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    numbers = answer.get("responsibleNumbers")
    if outcome.kind == OK and isinstance(numbers, list):
        named = (str(n).strip() for n in numbers if isinstance(n, (str, int)))
        return tuple(dict.fromkeys(n for n in named if n))
    error = answer.get("error")
    if isinstance(error, str) and NO_PERSONS in error.lower():
        return ()
    return None


def _first_cause(exc: BaseException) -> str:
    """The innermost reason of an HTTP error ("Connection refused"), on one line."""
    inner: BaseException = exc
    seen = set()
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if nxt is None:
            break
        inner = nxt
    reason = getattr(inner, "reason", None)
    text = str(reason if isinstance(reason, (str, BaseException)) else inner)
    if "] " in text and "Errno" in text:  # "[Errno 111] Connection refused" -> "Connection refused"
        text = text.split("] ", 1)[1]
    return " ".join(text.split())[:_ANSWER_MAX] or type(inner).__name__


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _rate(headers: Any) -> tuple[Optional[int], Optional[float]]:
    """(requests remaining, seconds until the allowance refills) from the rate-limit headers.

    `X-RateLimit-Reset` is written two ways in the wild: a Unix time (GitHub, Heroku) or a
    number of seconds (the IETF draft's `RateLimit-Reset`, many others); 10^9 seconds are 31
    years, so a value that large can only be a Unix time.
    """
    remaining = _header_number(headers, _REMAINING)
    reset = _header_number(headers, _RESET)
    if reset is not None and reset >= _EPOCH:
        reset = max(0.0, reset - time.time())
    return (None if remaining is None else int(remaining)), reset


def _header_number(headers: Any, names: tuple[str, ...]) -> Optional[float]:
    for name in names:
        value = headers.get(name)
        found = _LEADING_NUMBER.match(value) if value else None
        if found:
            return float(found.group(1))
    return None
