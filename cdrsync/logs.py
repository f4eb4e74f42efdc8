"""Logging set-up: stderr only (stdout carries command output), text or JSON lines, no secrets.

A filter on the handler rewrites every record through `config.redact`, so a password in a
database URL or the Planfix token can not reach the log even from a third-party message.

Tracebacks: an expected failure is logged as one line, without one; a record that carries an
exception (`exc_info`, `stack_info`) keeps its traceback, redacted like the message, and shows
it at that record's own level. cdrsync attaches them to unexpected errors at DEBUG, beside the
one line at ERROR that reports them, so `-v` shows the traceback of a bug (the backfill's
delivery process dying, say) and the default log stays one line per event. In JSON the message
stays one line and the traceback goes in a `traceback` field.
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
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = _FORMAT.formatException(record.exc_info)
        record.exc_info = None  # the text below is all that is shown: formatted once, redacted
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.cfg)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.cfg)
        return True


_FORMAT = logging.Formatter()


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        trace = "\n".join(text for text in (record.exc_text, record.stack_info) if text)
        if trace:
            entry["traceback"] = trace
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
