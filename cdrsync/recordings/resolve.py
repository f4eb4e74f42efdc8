"""Find the recording file of a call under `[recordings] dir`, without ever leaving that folder.

The PBX names the file (`cdr.recordingfile`, MixMonitor's argument) but rarely says where it is:
FreePBX writes `dir/YYYY/MM/DD/<name>` (the date of the name's `-YYYYMMDD-HHMMSS-` part, i.e. the
PBX-local day the recording started), older setups a flat `dir/<name>`, and a post-recording script
may have turned `x.wav` into `x.mp3`. So every candidate is tried in each layout and format, then
the folders are searched for `*-<uniqueid>.<fmt>` (the name always ends with the recording channel's
uniqueid).

The candidates come from the PBX database, i.e. from anyone who can set a caller id or edit the
dialplan: a name with `..`, an absolute path elsewhere, or a symlink leading out of `dir` is
refused. Containment is checked on the real path (symlinks resolved) of every file we would hand
out, and `served_file` re-checks it for each request of `serve-recordings`.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Callable, Optional, Protocol
from zoneinfo import ZoneInfo

from ..config import RecordingsConfig

# Formats a recording may have been written in or converted to, in order of preference.
FORMATS = ("wav", "gsm", "mp3", "ogg", "opus")
# File name extension (lower case) -> recording format.
_FORMAT_OF = {**{fmt: fmt for fmt in FORMATS}, "wav49": "wav"}
# A file of at most this many bytes holds no sound: a WAV header is 44 bytes (60 for wav49/GSM),
# an mp3/ogg/opus made of nothing still carries a tag or stream header of a few hundred bytes.
EMPTY_MAX = {"wav": 60, "gsm": 0, "mp3": 512, "ogg": 512, "opus": 512}
# The mp3 copies made by `convert` are served under this prefix from `cache_dir` (see convert.py).
CACHE_PREFIX = "cdrsync-mp3/"

_LAST_DAY = date.max.toordinal()
_NAME_DATE = re.compile(r"-(\d{4})(\d{2})(\d{2})-\d{6}-")


class Recorded(Protocol):
    """What the resolver needs of a call (a `model.Call`, or a late call read back from state)."""

    callid: str
    recording_candidates: tuple[str, ...]
    uniqueids: tuple[str, ...]
    start: Optional[datetime]


@dataclass(frozen=True)
class Found:
    """The outcome for one call.

    state: "ready" (relpath is a finished, non-empty file), "wait" (a file is still being written
    or converted), "none" (no usable file), "refused" (a candidate pointed outside `dir`).
    `retry` says whether looking again later may help: the file is missing or unfinished, as
    opposed to header-only, refused, or never announced by the PBX.
    """

    state: str
    relpath: Optional[str]
    reason: str
    retry: bool = False


@dataclass(frozen=True)
class _Look:
    """What one candidate turned out to be."""

    state: str  # "ready" | "wait" | "empty" | "missing" | "refused"
    detail: str
    relpath: Optional[str] = None


def find_recording(call: Recorded, cfg: RecordingsConfig, zone: ZoneInfo, now: float,
                   folders: Optional[Folders] = None) -> Found:
    """Resolve the call's recording: the first candidate that exists decides (ready or wait).

    `folders`: listings shared with the other calls of a batch resolved at the same `now`
    (a `Folders` of `cfg.dir`); by default each call reads the folders it looks at afresh."""
    root = cfg.dir
    if folders is None or folders.root != root:
        folders = Folders(root)
    if not folders.root_is_dir:
        return Found("none", None, f"recordings dir {root} not found", retry=True)
    day_dirs = _call_day_dirs(call.start, zone)
    refused: list[str] = []
    seen_empty = False
    missing: list[str] = []
    for cand in call.recording_candidates:
        look = _candidate(cand.strip(), day_dirs, folders, cfg.min_age, now)
        if look.state in ("ready", "wait"):
            return _decided(look, refused)
        if look.state == "refused":
            refused.append(look.detail)
        elif look.state == "empty":
            seen_empty = True
            missing.append(look.detail)
        else:
            missing.append(look.detail)
    # the folders a file named after a uniqueid may be in (those holding no recording at all
    # need not be searched for each uid)
    uid_dirs = [d for d in (*day_dirs, "") if call.uniqueids and folders.listing(d)]
    for uid in call.uniqueids:
        if not uid or not uid_dirs:
            continue
        look = _pick(folders, uid_dirs, lambda listing, u=uid: listing.of_uid(u), cfg.min_age,
                     now)
        if look.state in ("ready", "wait"):
            return _decided(look, refused)
        seen_empty = seen_empty or look.state == "empty"
    if refused:
        return Found("refused", None, "; ".join(refused))
    if seen_empty:
        return Found("none", None, "header-only recording: " + "; ".join(missing))
    if missing:
        return Found("none", None, "file not found: " + "; ".join(missing), retry=True)
    return Found("none", None, "the PBX named no recording and none matches the call's uniqueids")


def served_file(relpath: str, cfg: RecordingsConfig) -> Optional[str]:
    """The real path of the file a link names, or None when it is not a regular file under its root.

    `cdrsync-mp3/...` names cdrsync's own mp3 cache; anything else lives under `dir`.
    """
    if not _safe_relpath(relpath):
        return None
    root, rel = cfg.dir, relpath
    if relpath.startswith(CACHE_PREFIX):
        root, rel = cfg.cache_dir, relpath
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root, *rel.split("/")))
    if not _inside(real, real_root) or not os.path.isfile(real):
        return None
    return real


def _decided(look: _Look, refused: list[str]) -> Found:
    note = f" (also refused: {'; '.join(refused)})" if refused else ""
    if look.state == "ready":
        return Found("ready", look.relpath, look.detail + note)
    return Found("wait", None, look.detail + note, retry=True)


def _candidate(cand: str, day_dirs: tuple[str, ...], folders: Folders, min_age: int,
               now: float) -> _Look:
    """Try one PBX-given name in every place and format it may be in."""
    if not cand:
        return _Look("missing", "empty candidate")
    shown = repr(cand)
    if "\x00" in cand:
        return _Look("refused", f"{shown}: NUL byte in name")
    if os.path.isabs(cand):
        rel = _relative_to_root(cand, folders.root, folders.real_root)
        if rel is None:
            return _Look("refused", f"{shown}: absolute path outside the recordings dir")
    else:
        rel = cand
    rel = rel.replace(os.sep, "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        return _Look("refused", f"{shown}: '..' in path")
    if not parts:
        return _Look("missing", f"{shown}: no file name")
    name = parts[-1]
    dirs: list[str] = []
    if len(parts) > 1:
        dirs.append("/".join(parts[:-1]))
    named = _name_day(name)
    if named:
        dirs.append(_day_dir(named))
    dirs += day_dirs
    dirs.append("")
    dirs = _unique(dirs)
    stem = _stem(name)
    look = _pick(folders, dirs, lambda listing: listing.named(stem), min_age, now)
    if look.state == "missing":
        return _Look("missing", f"{shown}: not in {', '.join(d or '.' for d in dirs)}")
    return look if look.state != "empty" else _Look("empty", f"{shown}: {look.detail}")


def _pick(folders: Folders, dirs: list[str], wanted: Callable[[_Listing], list[str]],
          min_age: int, now: float) -> _Look:
    """The best file `wanted` finds in the first of `dirs` (no repeats) that has one; every
    variant must be settled. A folder without any recording file (most often: no such day
    folder) is passed over without a look."""
    for folder in dirs:
        listing = folders.listing(folder)
        names = wanted(listing) if listing else None
        if not names:
            continue
        names = sorted(names, key=_preference)
        real_root = folders.real_root
        refusals: list[str] = []
        usable: list[tuple[str, os.stat_result]] = []
        empty: list[str] = []
        for n in names:
            rel = f"{folder}/{n}" if folder else n
            real = os.path.realpath(os.path.join(folders.root, *rel.split("/")))
            if not _inside(real, real_root):
                refusals.append(f"{rel!r}: symlink leads outside the recordings dir")
                continue
            try:
                st = os.stat(real)
            except OSError:
                continue  # vanished between listing and stat (a post-script deleting the wav)
            if not _is_regular(st):
                continue
            if st.st_mtime > now - min_age:
                return _Look("wait", f"{rel} changed {max(0, int(now - st.st_mtime))} s ago "
                                     f"(waiting for {min_age} s of quiet)")
            if st.st_size <= EMPTY_MAX[_fmt(n)]:
                empty.append(f"{rel} ({st.st_size} bytes)")
            else:
                usable.append((rel, st))
        if usable:
            rel, st = usable[0]
            return _Look("ready", f"{rel} ({st.st_size} bytes)", rel)
        if refusals:
            return _Look("refused", "; ".join(refusals))
        if empty:
            return _Look("empty", "; ".join(empty))
    return _Look("missing", "")


class Folders:
    """Listings of the folders under the recordings dir `root`, each read at most once: those one
    resolution looks at, or those of a batch of calls resolved together (a busy office's day
    folder holds thousands of files; reading and indexing it once per call costs milliseconds)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._listings: dict[str, _Listing] = {}
        self._real_root: Optional[str] = None
        self._root_is_dir: Optional[bool] = None

    @property
    def root_is_dir(self) -> bool:
        """Whether the recordings dir is there (asked once: every call of a batch asks)."""
        if self._root_is_dir is None:
            self._root_is_dir = os.path.isdir(self.root)
        return self._root_is_dir

    @property
    def real_root(self) -> str:
        """The recordings dir with symlinks resolved (what a found file must be inside)."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        return self._real_root

    def listing(self, folder: str) -> _Listing:
        found = self._listings.get(folder)
        if found is None:
            path = os.path.join(self.root, *folder.split("/")) if folder else self.root
            try:
                with os.scandir(path) as it:
                    found = _Listing([e.name for e in it])
            except OSError:  # no such day folder, or not a folder
                found = _Listing([])
            self._listings[folder] = found
        return found


class _Listing:
    """The recording files of one folder, by the last `-` part of their stem: FreePBX names end
    with `-<uniqueid>`, so a call's files are found without going through the whole folder."""

    def __init__(self, names: list[str]) -> None:
        self._by_tail: dict[str, list[str]] = {}
        for name in names:
            if _fmt(name):
                self._by_tail.setdefault(_tail(_stem(name)), []).append(name)

    def __bool__(self) -> bool:
        """Whether the folder holds any recording file."""
        return bool(self._by_tail)

    def named(self, stem: str) -> list[str]:
        """The files of the recording called `stem` (its name without the format extension)."""
        return [n for n in self._by_tail.get(_tail(stem), ()) if _stem(n) == stem]

    def of_uid(self, uid: str) -> list[str]:
        """The files whose stem ends with `-<uid>`."""
        return [n for n in self._by_tail.get(_tail(uid), ()) if _ends_with_uid(n, uid)]


def _call_day_dirs(start: Optional[datetime], zone: ZoneInfo) -> tuple[str, ...]:
    """The folders of the PBX-local day of the call start, then of the day before and after
    (midnight, skew)."""
    if start is None:
        return ()
    try:
        day = start.astimezone(zone).date()
    except OverflowError:  # a start at the calendar's edge: its own date will do
        day = start.date()
    return _around(day)


@lru_cache(maxsize=64)
def _around(day: date) -> tuple[str, ...]:
    """The folders of `day`, the day before and the day after. Cached: the calls of a batch
    share a few days."""
    n = day.toordinal()  # days at the calendar's edges have no neighbour on that side
    return tuple(_day_dir(date.fromordinal(d)) for d in (n, n - 1, n + 1) if 1 <= d <= _LAST_DAY)


def _name_day(name: str) -> Optional[date]:
    """The date of FreePBX's `-YYYYMMDD-HHMMSS-` part (the rightmost valid one), if any."""
    for y, m, d in reversed(_NAME_DATE.findall(name)):
        try:
            return date(int(y), int(m), int(d))
        except ValueError:
            continue
    return None


def _day_dir(day: date) -> str:
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}"


def _stem(name: str) -> str:
    """The name without its recording-format extension (uniqueids hold a dot: keep other dots)."""
    return name.rsplit(".", 1)[0] if _fmt(name) else name


def _fmt(name: str) -> str:
    """The recording format of a file name ('wav' for wav/WAV/wav49), or '' for other files."""
    return _FORMAT_OF.get(name.rsplit(".", 1)[-1].lower(), "") if "." in name else ""


def _preference(name: str) -> tuple[int, str]:
    return (FORMATS.index(_fmt(name)), name)


def _ends_with_uid(name: str, uid: str) -> bool:
    return _stem(name).endswith("-" + uid)


def _tail(stem: str) -> str:
    """What follows the last `-` (all of it when there is none): the same for a stem that ends
    with `-<uid>` and for the uid itself, even when the uid holds dashes."""
    return stem.rsplit("-", 1)[-1]


def _relative_to_root(path: str, root: str, real_root: str) -> Optional[str]:
    """`path` relative to the recordings dir (as configured or as resolved), else None."""
    norm = posixpath.normpath(path)
    for base in (posixpath.normpath(os.path.abspath(root)), real_root):
        if _inside(norm, base) and norm != base:
            return posixpath.relpath(norm, base)
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _safe_relpath(relpath: str) -> bool:
    """A relative posix path of plain components: no '..', '.', empty part, backslash or NUL."""
    if not relpath or relpath.startswith("/") or "\x00" in relpath or "\\" in relpath:
        return False
    return all(p not in ("", ".", "..") for p in relpath.split("/"))


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
