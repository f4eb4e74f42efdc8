"""The HTTP side of Planfix: keep-alive connections, checked TLS, and every answer sorted into what
to do next.

The token is added here, at send time, and scrubbed from every text this module produces.

How answers are sorted (`Outcome.kind`):
- "ok": any 2xx.
- "retry": network errors, timeouts, 408, 429 (with its `Retry-After`), 5xx, and anything else
  unexpected (3xx, 404, ...): those point at the address or an outage, not at the call, so the
  request stays queued and delivery stalls until the cause is fixed.
- "reject": 400 / 413 / 422, Planfix refused *this* request; its answer is kept.
- "unauthorized": 401 / 403, the token is wrong; nothing must be sent until it is fixed.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Optional, Union
from urllib.parse import quote_plus

import certifi
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as UrllibTimeout
from urllib3.util import make_headers, parse_url

from cdrsync import __version__
from cdrsync.config import PlanfixConfig, redact
from cdrsync.planfix.requests import MISSED, Request

OK, RETRY, REJECT, UNAUTHORIZED = "ok", "retry", "reject", "unauthorized"
_REJECT = {400, 413, 422}
_UNAUTHORIZED = {401, 403}
_ANSWER_MAX = 300  # characters of Planfix's answer kept for the log and `status`
_FORM, _JSON = "application/x-www-form-urlencoded", "application/json"
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what `quote_plus` leaves as it is
_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Outcome:
    kind: str  # OK | RETRY | REJECT | UNAUTHORIZED
    detail: str = ""  # one line, token-free: why (Planfix's answer, the network error)
    status: Optional[int] = None  # HTTP status, None when no answer came
    retry_after: Optional[float] = None  # seconds, from a 429/503 Retry-After
    connection: bool = False  # no HTTP answer at all (refused, timeout, TLS)


@dataclass(frozen=True)
class _Route:
    """How requests to one address go: through its own connection pool (`target` = the path),
    or through a proxy of the environment (`target` = the whole address)."""

    opener: Union[urllib3.HTTPConnectionPool, urllib3.ProxyManager]
    target: str
    headers: dict[str, str]  # User-Agent, and Basic auth of a `user:password@` address


class PlanfixClient:
    """Sends `Request`s to Planfix over one keep-alive connection per address.

    It speaks through urllib3 (the engine under requests) directly: requests' session layer
    (prepared requests, response objects, cookie jars, hooks) cost 40% of a request's CPU on
    loopback and gives nothing a stateless token API needs. What requests did for us is kept:
    the proxy of the environment (`https_proxy`, `no_proxy`), Basic auth from the address,
    certificates checked against certifi's bundle (or `ca_bundle`, `REQUESTS_CA_BUNDLE`), one
    timeout for connecting and for each read, no redirects followed, no retries (the outbox
    retries).
    """

    def __init__(self, cfg: PlanfixConfig) -> None:
        self.cfg = cfg
        # A private CA is trusted through a bundle; verification itself is never switched off.
        self.verify: str = (cfg.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE")
                            or os.environ.get("CURL_CA_BUNDLE") or certifi.where())
        self._timeout = urllib3.Timeout(connect=cfg.timeout, read=cfg.timeout)
        self._routes: dict[str, _Route] = {}

    def close(self) -> None:
        for route in self._routes.values():
            if isinstance(route.opener, urllib3.ProxyManager):
                route.opener.clear()
            else:
                route.opener.close()
        self._routes.clear()

    def send(self, request: Request) -> Outcome:
        if request.target == MISSED:
            if not self.cfg.missed_url:
                return Outcome(REJECT, "[planfix] missed_url is not set; cannot send a missed-call "
                                       "notice (skip it or set missed_url)")
            return self._post(self.cfg.missed_url, _JSON,
                              _json_body(dict(request.fields, planfix_token=self.cfg.token)))
        return self._post(self.cfg.url, _FORM,
                          _form_body(dict(request.fields, planfix_token=self.cfg.token)))

    def ping(self) -> tuple[bool, str]:
        """Check address and token with `cmd=ping`; (ok, one token-free line)."""
        outcome, body = self._exchange(self.cfg.url, _FORM, _form_body(
            {"cmd": "ping", "planfix_token": self.cfg.token}))
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

    def _post(self, url: str, content_type: str, body: bytes) -> Outcome:
        return self._exchange(url, content_type, body)[0]

    def _exchange(self, url: str, content_type: str, body: bytes) -> tuple[Outcome, str]:
        try:
            route = self._route(url)
            resp = route.opener.urlopen(
                "POST", route.target, body=body,
                headers={**route.headers, "Content-Type": content_type}, retries=False,
                redirect=False, timeout=self._timeout, assert_same_host=False)
        except NewConnectionError as exc:  # before timeouts: urllib3 files it under them
            return Outcome(RETRY, f"cannot connect: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        except UrllibTimeout:
            return Outcome(RETRY, f"no answer within {self.cfg.timeout:g}s", connection=True), ""
        except SSLError as exc:
            return Outcome(RETRY, f"TLS error: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        except ProtocolError as exc:
            return Outcome(RETRY, f"cannot connect: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        except (HTTPError, ValueError) as exc:  # a bad address, a proxy that fails
            return Outcome(RETRY, f"request failed: {self._clean(_first_cause(exc))}",
                           connection=True), ""
        status = resp.status
        text = _text(resp.data, resp.headers.get("Content-Type", ""))
        answer = self._clean(" ".join(text.split()))[:_ANSWER_MAX]
        detail = f"HTTP {status}" + (f": {answer}" if answer else "")
        if 200 <= status < 300:
            return Outcome(OK, detail, status), text
        if status in _UNAUTHORIZED:
            return Outcome(UNAUTHORIZED, detail, status), text
        if status in _REJECT:
            return Outcome(REJECT, detail, status), text
        if 300 <= status < 400:
            where = self._clean(resp.headers.get("Location", "?"))
            detail += f" (redirect to {where}: check [planfix] url)"
        elif status == 404:
            detail += " (check [planfix] url)"
        return Outcome(RETRY, detail, status, _retry_after(resp.headers.get("Retry-After"))), text

    def _route(self, url: str) -> _Route:
        """The route to `url`, made at its first use; a bad address raises at every send."""
        route = self._routes.get(url)
        if route is not None:
            return route
        parsed = parse_url(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"not an http(s) address: {url}")
        headers = {"User-Agent": f"cdrsync/{__version__}"}
        if parsed.auth:
            headers.update(make_headers(basic_auth=parsed.auth))
        plain = parsed._replace(auth=None)
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": self.verify}
        proxy = _environ_proxy(parsed.scheme, parsed.host)
        if proxy:
            route = _Route(urllib3.ProxyManager(proxy, num_pools=1, maxsize=1, **tls),
                           plain.url, headers)
        else:
            pool = urllib3.connection_from_url(
                plain.url, maxsize=1, **(tls if parsed.scheme == "https" else {}))
            route = _Route(pool, plain.request_uri, headers)
        self._routes[url] = route
        return route

    def _clean(self, text: str) -> str:
        return redact(str(text), self.cfg)


def _environ_proxy(scheme: str, host: str) -> str:
    """The proxy the environment names for this address ("" for none, or `no_proxy`)."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all") or ""
    if proxy and urllib.request.proxy_bypass_environment(host, proxies):
        return ""
    return proxy


def _text(data: bytes, content_type: str) -> str:
    """Planfix's answer as text: in its declared charset, else UTF-8 (JSON's), never failing."""
    found = _CHARSET.search(content_type)
    try:
        return data.decode(found.group(1) if found else "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _form_body(fields: dict[str, Any]) -> bytes:
    """`fields` form-encoded as `urlencode` does (UTF-8, `+` for spaces; None left out). Most
    keys and values (`cmd`, `callid`, digits) need no escaping, and skipping `quote_plus` for
    them makes this 1.5 times as fast as `urlencode`."""
    return "&".join([f"{_form_quote(k)}={_form_quote(v)}" for k, v in fields.items()
                     if v is not None]).encode("ascii")


def _form_quote(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if _UNRESERVED(text) else quote_plus(text)


def _json_body(fields: dict[str, Any]) -> bytes:
    """`fields` as JSON (ASCII escapes, no NaN)."""
    return json.dumps(fields, allow_nan=False).encode("utf-8")


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

