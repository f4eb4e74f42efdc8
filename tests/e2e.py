"""Helpers for end-to-end tests: a config file for a throw-away PBX database and Planfix stub,
and the real `cdrsync` command line run as a child process (as the SELECT-only user)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def make_config(tmp_path: Path, source_url: str, stub, **overrides: dict[str, Any]) -> Path:
    """A config for tests: UTC PBX, no settle delays, a state store in tmp_path; sections in
    `overrides` are merged over these defaults."""
    sections: dict[str, dict[str, Any]] = {
        "source": {"url": source_url, "timezone": "UTC"},
        "planfix": {"url": stub.url, "token": stub.token, "rate": 0, "timeout": 2,
                    "backoff_max": 1},
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "schedule": {"interval": 1, "settle": 0, "cel_settle": 0},
        "pbx": {"default_country": "US"},
        "recordings": {"dir": str(tmp_path / "monitor")},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return write_config(tmp_path / "cdrsync.toml", sections)


def cdrsync(config: Optional[Path], *args: str, timeout: float = 120,
            env: Optional[dict[str, str]] = None, check: bool = False
            ) -> subprocess.CompletedProcess:
    """Run the installed command line (`python -m cdrsync`) and capture its output."""
    argv = [sys.executable, "-m", "cdrsync"]
    if config is not None:
        argv += ["--config", str(config)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CDRSYNC_")}
    full_env.update(env or {})
    proc = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"cdrsync {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def start_cdrsync(config: Path, *args: str, env: Optional[dict[str, str]] = None,
                  stderr: Any = subprocess.PIPE) -> subprocess.Popen:
    """`stderr`: a file for a long-lived process whose log nobody reads while it runs."""
    argv = [sys.executable, "-m", "cdrsync", "--config", str(config), *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CDRSYNC_")}
    full_env.update(env or {})
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=full_env, cwd=ROOT)
