"""Optional mp3 copies (`[recordings] mp3 = true`): Planfix gets a small mp3 instead of a large wav.

The copy is made with ffmpeg (any input: wav, wav49, gsm, ogg, opus) or else lame (PCM wav only),
whichever is installed, into `cache_dir/cdrsync-mp3/<relpath without ext>.mp3`; the original is
only read. Links then name `cdrsync-mp3/...`: serve-recordings maps that prefix to `cache_dir`
(resolve.served_file) and the contrib nginx/Apache configs carry a matching location. When no
tool is installed or the conversion fails, the original is linked (logged once per call).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import wave
from typing import Optional

from ..config import RecordingsConfig
from .resolve import CACHE_PREFIX, served_file

log = logging.getLogger("cdrsync.recordings.convert")

TIMEOUT = 300  # s for one file; a 2-hour wav converts in well under a minute


def playable(relpath: str, cfg: RecordingsConfig) -> str:
    """The relpath to link for a found recording: its mp3 copy when enabled and possible."""
    if not cfg.mp3 or relpath.lower().endswith(".mp3"):
        return relpath
    source = served_file(relpath, cfg)
    if source is None:
        return relpath
    target_rel = CACHE_PREFIX + relpath.rsplit(".", 1)[0] + ".mp3"
    target = os.path.join(cfg.cache_dir, *target_rel.split("/"))
    if _fresh(target, source):
        return target_rel
    command = _command(source)
    if command is None:
        log.warning("mp3 wanted but neither ffmpeg nor lame can convert %s; linking the original",
                    relpath)
        return relpath
    return target_rel if _run(command, target, relpath) else relpath


def _command(source: str) -> Optional[list[str]]:
    """The conversion command with `{out}` standing for the output file, or None."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        return [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", source,
                "-vn", "-ac", "1", "-codec:a", "libmp3lame", "-b:a", "32k", "-f", "mp3", "{out}"]
    lame = shutil.which("lame")
    if lame and _pcm_wav(source):  # lame takes anything else for raw PCM and encodes noise
        return [lame, "--quiet", "-b", "32", source, "{out}"]
    return None


def _pcm_wav(path: str) -> bool:
    """A RIFF/WAVE file of PCM samples (MixMonitor's `wav`; not wav49/GSM, gsm, ogg, junk)."""
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes() > 0
    except (wave.Error, EOFError, OSError):
        return False


def _run(command: list[str], target: str, relpath: str) -> bool:
    """Convert into a temporary file beside `target`, then rename: readers never see half a file."""
    folder = os.path.dirname(target)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-", suffix=".mp3")
        os.close(fd)
    except OSError as exc:
        log.warning("mp3 cache %s unusable (%s); linking the original", folder, exc.strerror)
        return False
    try:
        done = subprocess.run([tmp if arg == "{out}" else arg for arg in command],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                              check=False)
        if done.returncode != 0 or os.path.getsize(tmp) == 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            log.warning("mp3 conversion of %s failed (%s: %s); linking the original", relpath,
                        os.path.basename(command[0]), err[-1] if err else f"exit {done.returncode}")
            return False
        os.chmod(tmp, 0o640)  # the web server reads it through the cache dir's group
        os.replace(tmp, target)
        return True
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("mp3 conversion of %s failed (%s); linking the original", relpath,
                    type(exc).__name__)
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fresh(target: str, source: str) -> bool:
    """A copy made after the source last changed can be reused."""
    try:
        made, src = os.stat(target), os.stat(source)
    except OSError:
        return False
    return made.st_size > 0 and made.st_mtime >= src.st_mtime
