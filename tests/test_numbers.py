from __future__ import annotations

import pytest

from cdrsync.numbers import looks_outside, normalise


@pytest.mark.parametrize("raw, country, expected", [
    ("89161234567", "RU", "+79161234567"),
    ("+79161234567", "RU", "+79161234567"),
    ("0079161234567", "RU", "+79161234567"),
    ("9161234567", "RU", "+79161234567"),
    ("8 (916) 123-45-67", "RU", "+79161234567"),
    ("2125551001", "US", "+12125551001"),
    ("00493012345678", "US", "+493012345678"),
    ("101", "RU", "101"),  # an extension
    ("*60", "RU", "*60"),
    ("anonymous", "RU", "anonymous"),
    (" unknown ", "RU", "unknown"),
    ("", "RU", ""),
])
def test_normalise(raw, country, expected):
    assert normalise(raw, country) == expected


def test_looks_outside():
    assert looks_outside("89161234567", r"^\d{2,6}$")
    assert not looks_outside("101", r"^\d{2,6}$")
    assert not looks_outside("*98", r"^\d{2,6}$")
