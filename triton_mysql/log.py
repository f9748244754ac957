"""Logging: one line per decision, text or JSON, never a password.

`setup()` is called once per process (each hook is its own process).  Every
record passes through `_Scrub`, which replaces any configured secret value
with `***`: a password that slips into an exception message or a SQL error
still never reaches the log.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Iterable

_SECRETS: list[str] = []


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            message = record.getMessage()
            scrubbed = scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


def add_secret(value: str) -> None:
    """Scrub `value` from every later log line too (e.g. a token obtained at run time)."""
    if value and value not in _SECRETS:
        _SECRETS.append(value)
        _SECRETS.sort(key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in _SECRETS:
        if secret:
            text = text.replace(secret, "***")
    return text


class _TextFormatter(logging.Formatter):
    def __init__(self, component: str, node: str) -> None:
        super().__init__()
        self.prefix = f"{component}[{node}]" if node else component

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname:<7} {self.prefix}: {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


class _JsonFormatter(logging.Formatter):
    def __init__(self, component: str, node: str) -> None:
        super().__init__()
        self.component, self.node = component, node

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "node": self.node,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("event", "reason"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, separators=(",", ":"))


def setup(component: str, *, level: str = "INFO", fmt: str = "text", node: str = "",
          secrets: Iterable[str] = (), stream=None) -> None:
    """Configure the root logger for this process (idempotent)."""
    _SECRETS[:] = sorted({s for s in secrets if s}, key=len, reverse=True)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter(component, node) if fmt == "json" else _TextFormatter(component, node))
    handler.addFilter(_Scrub())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Client libraries log every request at DEBUG/INFO; keep them quiet.
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer", "requests", "consul", "etcd3gw"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
