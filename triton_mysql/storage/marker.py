"""The cluster marker: a small object at the storage root, written when a cluster is first bootstrapped.

Storage that cannot be reached must never look like "no snapshots": onStart
would then bootstrap a second cluster beside the real backups (issue 13
item 9).  A missing `file://` root or S3 bucket is already an error, but an
unmounted volume usually leaves an *existing empty* directory behind, so
existence proves nothing.  The marker does: `cluster.json` (`{"service",
"created", "first_node", "version"}`) is created (create-only) by the node
that wins the first bootstrap race, before it initialises.  A root without it
while discovery or the datadir shows an existing cluster is an error, never
"empty".  Clusters from before the marker get one from their primary's next
snapshot, once the storage is seen to hold the snapshot `snapshots/last` names.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from .base import NotFound, Storage, StorageError

log = logging.getLogger(__name__)

MARKER_KEY = "cluster.json"
VERSION = 1


def read_marker(storage: Storage) -> dict[str, Any] | None:
    """The marker, or None when the root has none (StorageError when storage cannot be read)."""
    try:
        raw = storage.get_bytes(MARKER_KEY)
    except NotFound:
        return None
    try:
        marker = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise StorageError(f"{storage.describe()}: {MARKER_KEY} is not valid JSON") from None
    if not isinstance(marker, dict):
        raise StorageError(f"{storage.describe()}: {MARKER_KEY} is not a JSON object")
    return marker


def write_marker(storage: Storage, service: str, node: str) -> bool:
    """Create the marker if it does not exist yet; True when this call created it."""
    now = time.time()
    marker = {"service": service, "created": now,
              "created_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "first_node": node,
              "version": VERSION}
    created = storage.create_exclusive(MARKER_KEY, json.dumps(marker, sort_keys=True, indent=2).encode() + b"\n")
    if created:
        log.info("wrote the cluster marker %s/%s (service %s, first node %s)", storage.describe(), MARKER_KEY,
                 service, node)
    return created
