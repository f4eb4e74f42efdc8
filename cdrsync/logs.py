"""Logging set-up: stderr only (stdout carries command output), text or JSON lines, no secrets.

A filter on the handler rewrites every record through `config.redact`, so a password in a
database URL or the Planfix token can not reach the log even from a third-party message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Optional

from .config import Config, redact


class _Redact(logging.Filter):
    def __init__(self, cfg: Optional[Config]) -> None:
        super().__init__()
        self.cfg = cfg

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.cfg)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            # keep the one line, drop the traceback: errors are reported, not dumped
            record.msg = f"{record.msg}: {redact(str(record.exc_info[1]), self.cfg)}"
            record.exc_info = None
        return True


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        return json.dumps(entry, ensure_ascii=False)


def setup(cfg: Optional[Config], verbose: int = 0, fmt: Optional[str] = None) -> None:
    """Send cdrsync's log to stderr in the configured format; `-v` shows the reasoning."""
    fmt = fmt or (cfg.log.format if cfg else "text")
    name = (cfg.log.level if cfg else "INFO").upper()
    level = logging.DEBUG if verbose else getattr(logging, name, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Redact(cfg))
    if fmt == "json":
        handler.setFormatter(_Json())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("cdrsync").setLevel(level)
