"""Retention (SNAPSHOT_KEEP): keep the newest complete snapshots, remove the rest.

Complete snapshots beyond the newest `keep` are deleted (data first, then the
manifest last would leave a manifest without data for a moment; so the
manifest goes first: a snapshot is never "complete" while half-deleted).
Incomplete leftovers (a directory without manifest: a killed backup) are
removed only when older than a day, so that a backup still running on
another node is never touched; unfinished S3 multipart uploads of that age
are aborted too.  The snapshot `snapshots/last` names is always kept.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable

from ..storage import Storage, StorageError
from .manifest import DATA_NAME, MANIFEST_NAME, group_by_snapshot, id_time, list_complete, manifest_key

log = logging.getLogger(__name__)

LEFTOVER_AGE = 86400.0


def plan(complete_newest_first: list[dict[str, Any]], keep: int, protect: Iterable[str] = ()) -> list[str]:
    """Ids of the complete snapshots to delete: all but the newest `keep` (and the protected)."""
    protected = set(protect)
    return [m["id"] for m in complete_newest_first[max(keep, 0):] if m["id"] not in protected]


def apply(storage: Storage, keep: int, *, protect: Iterable[str] = (), now: float | None = None,
          leftover_age: float = LEFTOVER_AGE) -> list[str]:
    """Enforce retention on `storage`; returns the ids removed (complete and leftovers)."""
    now = time.time() if now is None else now
    objects = storage.list()
    complete = list_complete(storage, objects)
    complete_ids = {m["id"] for m in complete}
    removed: list[str] = []
    for snapshot_id in plan(complete, keep, protect):
        try:
            storage.delete(manifest_key(snapshot_id))  # incomplete from this moment: never restored
            storage.delete_prefix(f"{snapshot_id}/")
        except StorageError as exc:
            log.warning("retention: could not delete snapshot %s: %s", snapshot_id, exc)
            continue
        removed.append(snapshot_id)
        log.info("retention: deleted snapshot %s (keeping the newest %d)", snapshot_id, keep)
    for snapshot_id, files in group_by_snapshot(objects).items():
        if snapshot_id in complete_ids:
            continue
        newest_write = max(info.mtime for info in files.values())
        started = id_time(snapshot_id)
        age = now - max(newest_write, started or 0.0)
        if age < leftover_age:
            continue
        if MANIFEST_NAME in files and DATA_NAME in files:
            reason = "its data does not match its manifest"
        else:
            reason = "no manifest: a backup that never finished"
        try:
            storage.delete_prefix(f"{snapshot_id}/")
        except StorageError as exc:
            log.warning("retention: could not delete leftover %s: %s", snapshot_id, exc)
            continue
        removed.append(snapshot_id)
        log.info("retention: deleted incomplete snapshot %s (%s, %.0f h old)", snapshot_id, reason, age / 3600)
    _abort_stale_uploads(storage, now, leftover_age)
    return removed


def _abort_stale_uploads(storage: Storage, now: float, age: float) -> None:
    for key, upload_id, started in storage.abandoned_uploads():
        if now - started >= age:
            storage.abort_upload(key, upload_id)
            log.info("retention: aborted an unfinished upload of %s (%.0f h old)", key, (now - started) / 3600)
