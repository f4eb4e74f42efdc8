"""What a linkedid / uniqueid (`[system-]<epoch>.<counter>`) says: its order and the UTC second
its channel was created. Pure, and below both time conversion and grouping, which ask it."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

# `[system-]<epoch>.<counter>`; the system name may itself contain dashes. At most 18 digits
# each: a longer run is no number Asterisk wrote (and would cost a bignum, or fail to convert).
_LINKEDID = re.compile(r"^(?:.*-)?(\d{1,18})\.(\d{1,18})$")
# 9999-01-01 UTC: an epoch from here on names no time a clock can hold with room for the
# arithmetic done on it (zone offsets, slack); such a linkedid carries no time, like a UUID
MAX_EPOCH = 253370764800


def _numbers(linkedid: str) -> Optional[tuple[str, str]]:
    """The (epoch, counter) digits of a `[system-]<epoch>.<counter>` id, None if it is not one.

    The common shape, no system name, is told apart without `_LINKEDID`, whose optional prefix
    makes it backtrack over the whole id: `str.isdecimal` is what `\\d` matches, character by
    character, so both ways accept the same ids."""
    text = linkedid.strip()
    epoch, _, counter = text.partition(".")
    if epoch.isdecimal() and counter.isdecimal() and len(epoch) <= 18 and len(counter) <= 18:
        return epoch, counter
    m = _LINKEDID.match(text)
    return (m.group(1), m.group(2)) if m else None


@lru_cache(maxsize=4096)
def linkedid_key(linkedid: str) -> tuple[int, int, int, str]:
    """Sort key of a linkedid/uniqueid: numerically by (epoch, counter), never as a string
    (`...858.10` comes after `...858.9`); ids that are not `[system-]epoch.n` (ARI UUIDs) after
    all others, by string. Cached: interpretation sorts a call's few ids again and again."""
    numbers = _numbers(linkedid)
    if numbers:
        return (0, int(numbers[0]), int(numbers[1]), linkedid)
    return (1, 0, 0, linkedid)


def linkedid_epoch(linkedid: str) -> Optional[int]:
    """UTC epoch second at which the channel named by a uniqueid/linkedid was created; None
    when it names none (a UUID, or `99999999999999.1`: past the end of the calendar)."""
    numbers = _numbers(linkedid)
    if not numbers:
        return None
    epoch = int(numbers[0])
    return epoch if epoch < MAX_EPOCH else None
