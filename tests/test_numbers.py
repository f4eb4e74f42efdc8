from __future__ import annotations

import pytest

from cdrsync.numbers import is_digits, looks_outside, normalise


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


@pytest.mark.parametrize("text, digits", [
    ("101", True), ("6871322562", True), ("", False), ("s", False), ("*97", False),
    # superscript, Arabic-Indic, fullwidth: str.isdigit() says True to each
    ("²", False), ("١٠١", False), ("１０１", False), ("10²", False),
])
def test_only_ascii_digits_are_digits(text, digits):
    assert is_digits(text) is digits


@pytest.mark.parametrize("raw", ["٨٩١٦١٢٣٤٥٦٧", "８９１６１２３４５６７", "+٧٩١٦١٢٣٤٥٦٧"])
def test_digits_of_other_scripts_are_no_phone_number(raw):
    """phonenumbers itself would read Arabic-Indic and fullwidth digits as a number; no PBX
    writes them, so they are kept as written (a CRM must not match them to a contact)."""
    assert normalise(raw, "RU") == raw
    assert not looks_outside(raw, r"^\d{2,6}$")
