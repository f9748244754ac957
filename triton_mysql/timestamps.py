"""The one time format of the records (snapshot manifests' `created`/`completed`): written and read here.

A ground module of its own so that readers of a snapshot's times (`status`, the supervisor's
metrics) need not import the backup package (and the storage contract behind it) to parse a date.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def iso(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2025-01-31T12:00:00.123Z."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: Any) -> float | None:
    """Epoch seconds of a time as `iso` writes it (None for anything else)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
