"""A dry run told for a person: a few lines on stderr after the JSON requests on stdout.

`DryRunOut` stands in for stdout: every request is counted as it is printed (`print_requests`),
or as its line passes through (`write`). The summary is made from exactly what was printed, so it
can not disagree with it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

_DIRECTIONS = {"in": "inbound", "out": "outbound"}
# `json.dumps(..., ensure_ascii=False)` builds an encoder for each request: a fifth of its cost
_ENCODER = json.JSONEncoder(ensure_ascii=False)


class DryRunOut:
    """Writes the requests of a dry run to `out` and counts what they would tell Planfix."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.calls: dict[str, tuple[str, str]] = {}  # callid -> (direction, status)
        self.linked: set[str] = set()  # callids whose recording has a link
        self.cancelled = 0  # COMPLETED/Cancelled for the other extensions of a ring group
        self.late = 0  # cmd=record: a link for a call whose COMPLETED went without one
        self.notices: Counter[str] = Counter()  # callMissedNotify per extension

    def print_requests(self, requests: Iterable[dict[str, str]]) -> int:
        """Print requests as JSON lines, counted from the very dicts printed (parsing each line
        back cost as much as writing it), in one write and flush: returns how many."""
        lines = []
        for request in requests:
            self._count(request)
            lines.append(_ENCODER.encode(request) + "\n")
        if lines:
            self.out.write("".join(lines))
            self.out.flush()
        return len(lines)

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._count(json.loads(line))
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def _count(self, request: dict[str, str]) -> None:
        callid = request.get("callid", "")
        if request.get("event") == "callMissedNotify":
            self.notices[request.get("intNum", "")] += 1
        elif request.get("cmd") == "record":
            self.late += 1
        elif request.get("event") == "COMPLETED" and callid in self.calls:
            self.cancelled += 1
        elif request.get("event") == "COMPLETED":
            direction = ("internal" if request.get("data_direction") == "internal"
                         else _DIRECTIONS.get(request.get("type", ""), request.get("type", "")))
            self.calls[callid] = (direction, request.get("status", ""))
            if request.get("record_link"):
                self.linked.add(callid)

    def summary(self) -> list[str]:
        """'dry run: 25 calls ...', a line per direction with its statuses, then recordings,
        ring-group events and missed-call notices where there are any."""
        if not self.calls and not self.notices and not self.late:
            return ["dry run: no finished call to send; nothing was sent or recorded"]
        lines = [f"dry run: {_n(len(self.calls), 'call')} would go to Planfix; nothing was sent "
                 "or recorded"]
        by_direction = Counter(direction for direction, _status in self.calls.values())
        for direction, count in sorted(by_direction.items(), key=lambda item: -item[1]):
            statuses = Counter(status for d, status in self.calls.values() if d == direction)
            told = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
            lines.append(f"  {direction}: {count} ({told})")
        unlinked = len(self.calls) - len(self.linked)
        lines.append(f"  recordings: {len(self.linked)} linked"
                     + (f", {unlinked} without a file (-v says why)" if unlinked else "")
                     + (f", {self.late} late link(s)" if self.late else ""))
        if self.cancelled:
            lines.append(f"  ring groups: {self.cancelled} Cancelled event(s) for the extensions "
                         "that rang but did not talk")
        if self.notices:
            exts = ", ".join(sorted(self.notices))
            lines.append(f"  missed-call notices: {sum(self.notices.values())}, "
                         f"to extension(s) {exts}")
        return lines


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
