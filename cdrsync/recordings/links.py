"""Signed, unguessable links to recordings, in the one format nginx, Apache and cdrsync all check.

Link: `<base_url>/<relpath, percent-encoded>?s=<token>` (permanent) or `...?e=<expires>&s=<token>`
(with `[recordings] link_ttl`), where

    token = base64url_nopad(MD5("<expires>/<relpath> <sign_key>"))      (<expires> "" if permanent)

and `<relpath>` is the decoded path relative to the recordings root (what the web server sees after
its location prefix). This is exactly what nginx's stock `secure_link` module computes with
`secure_link_md5 "$secure_link_expires/$rel <key>"`: nginx offers MD5 only, and an HMAC-SHA256
token cannot be checked there at all. A second, stronger token in the same link would not help:
whoever strips it still passes nginx. So there is ONE scheme; Apache checks it with mod_lua
(contrib/cdrsync-recordings.lua) and `serve-recordings` with `verify` below.

Why MD5 with a secret suffix is acceptable here: forging a token for another file needs a second
preimage of MD5 or the key, both out of reach; the secret *suffix* defeats length extension; MD5's
collision weakness needs the attacker to have us sign a crafted binary message, while cdrsync only
signs paths of files the PBX wrote. The `<expires>/` prefix is digits then `/`, so an expiry cannot
be moved into the path. Keep `sign_key` long and random (config demands >= 16 characters).

With `link_ttl` > 0 every link must expire: a link without `e=` is refused by all three checks
(here from the config; nginx from `$cdrsync_link_ttl`, Apache from the `Require cdrsync-link`
line, both set to the same link_ttl), so the permanent links sent before expiry was turned on
stop opening. A sign_key change is the other way to end old links: it ends all of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from urllib.parse import parse_qs, quote, unquote

from ..config import RecordingsConfig

_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")


def token(relpath: str, expires: str, key: str) -> str:
    """The URL-safe token for `relpath` (decoded, relative) and `expires` ("" = never)."""
    digest = hashlib.md5(f"{expires}/{relpath} {key}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_link(relpath: str, cfg: RecordingsConfig, now: float) -> tuple[str, bool]:
    """(url, is_temp) for a file under the served root; is_temp when `link_ttl` limits its life."""
    if not cfg.sign_key:
        raise ValueError("recordings.sign_key is empty: refusing to make an unsigned link")
    expires = str(int(now) + cfg.link_ttl) if cfg.link_ttl > 0 else ""
    query = f"s={token(relpath, expires, cfg.sign_key)}"
    if expires:
        query = f"e={expires}&{query}"
    return f"{cfg.base_url.rstrip('/')}/{quote(relpath, safe='/')}?{query}", bool(expires)


def signed_again(link: str, cfg: RecordingsConfig, now: float) -> str:
    """An expiring link of ours, signed again to expire `link_ttl` after `now`; anything else
    as it is. The deliverer calls it as it sends: a request may wait in the outbox for days (a
    backfill's history, an outage), and a link signed when the call was recorded would have
    expired by the time Planfix gets it."""
    prefix = cfg.base_url.rstrip("/") + "/"
    if cfg.link_ttl <= 0 or not cfg.sign_key or not link.startswith(prefix):
        return link
    path, _, query = link[len(prefix):].partition("?")
    if "e" not in parse_qs(query):
        return link
    return make_link(unquote(path), cfg, now)[0]


def verify(relpath: str, query: str, cfg: RecordingsConfig, now: float) -> bool:
    """True when `query` (the raw query string) holds a valid, unexpired token for `relpath`.

    With `link_ttl` > 0 a link without an expiry is refused, even one signed before expiry was
    turned on: whoever turns it on wants no link to open forever (see README, Recordings)."""
    if not cfg.sign_key:
        return False
    args = parse_qs(query, keep_blank_values=True)
    given, expires = args.get("s", []), args.get("e", [])
    if len(given) != 1 or len(expires) > 1:
        return False
    exp = expires[0] if expires else ""
    if not exp and cfg.link_ttl > 0:
        return False
    if exp and (not _EXPIRES.fullmatch(exp) or int(exp) < int(now)):
        return False  # nginx: an expiry in the past (or unparsable) fails
    expected = token(relpath, exp, cfg.sign_key)
    return hmac.compare_digest(expected.encode("ascii"), given[0].encode("utf-8", "replace"))
