"""The outside party's number, normalised the way a CRM matches contacts.

Planfix finds a contact by its phone; the PBX writes the same person as `89161234567`,
`+79161234567`, `0079161234567` or `9161234567`. All become E.164 (`+79161234567`) with the PBX's
default country. Anything that is not a plausible public number (extensions, feature codes,
`anonymous`, `unknown`, `s`) is returned unchanged: guessing would attach calls to wrong contacts.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

_SEPARATORS = re.compile(r"[\s\-().]")
_NUMBER = re.compile(r"\+?[0-9]+")
_MIN_DIGITS = 7  # shorter strings are extensions, short codes or feature codes


@lru_cache(maxsize=8192)
def normalise(raw: str, country: str = "RU") -> str:
    """E.164 for a plausible public number, else `raw` stripped of surrounding blanks.

    Cached: `phonenumbers` takes ~15 µs a number, and an office's callers call again."""
    text = raw.strip()
    compact = _SEPARATORS.sub("", text)
    if not _NUMBER.fullmatch(compact) or len(compact.lstrip("+")) < _MIN_DIGITS:
        return text
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        parsed = phonenumbers.parse(compact, None if compact.startswith("+") else country.upper())
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def looks_outside(number: str, extension_pattern: str) -> bool:
    """A dialled string that can only mean a public number (not an extension or feature code)."""
    compact = _SEPARATORS.sub("", number)
    return (bool(_NUMBER.fullmatch(compact)) and len(compact.lstrip("+")) >= _MIN_DIGITS
            and not re.match(extension_pattern, compact, re.ASCII))


def is_digits(text: str) -> bool:
    """Only ASCII digits, at least one: what a PBX's number is. `str.isdigit()` also takes
    superscripts and other scripts' digits ('²', '١٠١'), which no dialplan dials."""
    return text.isascii() and text.isdigit()
