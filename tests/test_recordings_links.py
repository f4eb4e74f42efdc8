"""Signed links: the format nginx's secure_link checks, expiry, no link opening another file, and
a link_ttl whose expiry no check can hold refused when the config is loaded."""

from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdrsync import config
from cdrsync.config import MAX_EXPIRES, RecordingsConfig
from cdrsync.recordings.links import make_link, token, verify
from tests.e2e import cdrsync, write_config

KEY = "s3cret-key-0123456789"
REL = "2026/11/26/in-5551000-2125551001-20261126-125734-1795697854.0.wav"
NOW = 1_800_000_000.0


def cfg(**kw) -> RecordingsConfig:
    return RecordingsConfig(base_url="https://pbx.example.com/recordings", sign_key=KEY, **kw)


def split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    assert parts.path.startswith("/recordings/")
    return unquote(parts.path[len("/recordings/"):]), parts.query


def nginx_md5(text: str) -> str:
    """What `secure_link_md5` yields: the binary MD5, base64url without padding."""
    return base64.urlsafe_b64encode(hashlib.md5(text.encode()).digest()).decode().rstrip("=")


def test_permanent_link_is_what_nginx_computes():
    url, is_temp = make_link(REL, cfg(), NOW)
    assert is_temp is False
    assert url == f"https://pbx.example.com/recordings/{REL}?s={nginx_md5('/' + REL + ' ' + KEY)}"
    rel, query = split(url)
    assert rel == REL and verify(rel, query, cfg(), NOW + 10**8)


def test_temporary_link_carries_its_expiry():
    url, is_temp = make_link(REL, cfg(link_ttl=600), NOW)
    assert is_temp is True
    rel, query = split(url)
    expires = int(NOW) + 600
    assert query == f"e={expires}&s={nginx_md5(f'{expires}/{REL} {KEY}')}"
    assert verify(rel, query, cfg(link_ttl=600), NOW + 600)
    assert not verify(rel, query, cfg(link_ttl=600), NOW + 601)


def test_with_a_link_ttl_a_permanent_link_no_longer_opens():
    rel, query = split(make_link(REL, cfg(), NOW)[0])  # signed before expiry was turned on
    assert verify(rel, query, cfg(), NOW)
    assert not verify(rel, query, cfg(link_ttl=600), NOW)
    assert not verify(rel, "e=&" + query, cfg(link_ttl=600), NOW)
    rel, query = split(make_link(REL, cfg(link_ttl=600), NOW)[0])
    assert verify(rel, query, cfg(link_ttl=600), NOW)


def test_base_url_with_trailing_slash_and_odd_names_are_quoted():
    rel = "2026/11/26/in-555 1000-#?%+&ü.wav"
    url, _ = make_link(rel, RecordingsConfig(base_url="http://h:8089/r/", sign_key=KEY), NOW)
    parts = urlsplit(url)
    assert parts.path.startswith("/r/2026/") and "//" not in parts.path
    assert unquote(parts.path[len("/r/"):]) == rel
    assert verify(rel, parts.query, cfg(), NOW)


def test_no_key_no_link():
    with pytest.raises(ValueError):
        make_link(REL, RecordingsConfig(base_url="http://h/r"), NOW)
    assert not verify(REL, "s=" + token(REL, "", ""), RecordingsConfig(), NOW)


@pytest.mark.parametrize("change", [
    lambda rel, q: (rel.replace("1795697854.0", "1795697869.2"), q),  # another call's file
    lambda rel, q: (rel, q.replace("s=", "s=A")),
    lambda rel, q: (rel, q[:-1] + ("A" if q[-1] != "A" else "B")),
    lambda rel, q: (rel, ""),
    lambda rel, q: (rel, "s="),
    lambda rel, q: (rel, q + "&s=" + q[2:]),  # the token twice
    lambda rel, q: (rel, q + "&e=" + str(int(NOW) + 10**6)),  # a permanent link made temporary
    lambda rel, q: ("x/" + rel, q),
])
def test_tampered_permanent_link_fails(change):
    rel, query = split(make_link(REL, cfg(), NOW)[0])
    rel2, query2 = change(rel, query)
    assert not verify(rel2, query2, cfg(), NOW)


@pytest.mark.parametrize("change", [
    lambda q: q.replace("e=", "e=9"),  # a later expiry
    lambda q: q.split("&", 1)[1],  # expiry removed: would become permanent
    lambda q: q.replace("e=", "e=0"),  # same number, other text
    lambda q: q.replace("e=", "e=+"),
    lambda q: q + "&e=1",
])
def test_tampered_expiry_fails(change):
    rel, query = split(make_link(REL, cfg(link_ttl=60), NOW)[0])
    assert verify(rel, query, cfg(), NOW)
    assert not verify(rel, change(query), cfg(), NOW)


def test_other_key_fails():
    rel, query = split(make_link(REL, cfg(), NOW)[0])
    assert not verify(rel, query, RecordingsConfig(sign_key=KEY + "x"), NOW)


@given(st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s),
       st.text(min_size=1, max_size=60))
def test_a_link_opens_only_its_own_path(rel, other):
    url, _ = make_link(rel, cfg(), NOW)
    query = urlsplit(url).query
    assert verify(rel, query, cfg(), NOW)
    if other != rel:
        assert not verify(other, query, cfg(), NOW)


def _config(tmp_path, link_ttl) -> dict:
    return {"source": {"url": f"sqlite:///{tmp_path / 'cdr.db'}", "timezone": "UTC"},
            "planfix": {"url": "http://127.0.0.1:9/", "token": "t"},
            "recordings": {"base_url": "http://127.0.0.1:8089/r", "sign_key": KEY,
                           "link_ttl": link_ttl}}


def test_the_longest_link_ttl_config_allows_still_gives_links_that_open(tmp_path):
    longest = MAX_EXPIRES - int(time.time()) - 60  # a minute of margin for the clock
    cfg_ = config.from_dict(_config(tmp_path, longest), {})
    url, _ = make_link(REL, cfg_.recordings, time.time())
    rel, query = split(url.replace("http://127.0.0.1:8089/r", "https://pbx.example.com/recordings"))
    assert verify(rel, query, cfg_.recordings, time.time())


@pytest.mark.parametrize("link_ttl", [MAX_EXPIRES, 10**15, 1e30])
def test_a_link_ttl_no_expiry_can_hold_is_one_line_at_config_load(tmp_path, link_ttl):
    with pytest.raises(config.ConfigError, match=r"^recordings\.link_ttl: .*at most \d+ s"):
        config.from_dict(_config(tmp_path, link_ttl), {})
    path = write_config(tmp_path / "cdrsync.toml", _config(tmp_path, link_ttl))
    proc = cdrsync(path, "serve-recordings", timeout=30)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("cdrsync: configuration: recordings.link_ttl: ")
