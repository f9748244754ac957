"""Snapshot layout and manifests (SPEC §6).

    <BACKUP_URL>/<snapshot-id>/backup.xbstream.zst   the data (xbstream, zstd)
    <BACKUP_URL>/<snapshot-id>/manifest.json         written last: marks the snapshot complete
    <BACKUP_URL>/<snapshot-id>/claim.json            create-only marker that reserves the id

`snapshot-id` is `<SERVICE_NAME>-<UTC %Y%m%dT%H%M%SZ>`, with `-2`, `-3`…
appended when that id is taken.  Ids are reserved with the storage's
create-only write of `claim.json` (link(2) on file://, `If-None-Match: *` on
S3 and Manta), so two backups starting in the same second get distinct ids
even without the snapshot lock.

A snapshot without a manifest is incomplete and never used; a manifest
whose data object is missing or has another size than the manifest says is
treated the same way.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from typing import Any, Iterable

from ..storage import NotFound, ObjectInfo, Storage, StorageError
from ..timestamps import parse_time

log = logging.getLogger(__name__)

DATA_NAME = "backup.xbstream.zst"
MANIFEST_NAME = "manifest.json"
CLAIM_NAME = "claim.json"

#: The manifest fields SPEC §6 fixes (more may be present).
FIELDS = ("id", "created", "source_node", "server_id", "flavor", "server_version", "tool", "gtid",
          "binlog_file", "binlog_pos", "size", "sha256")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "created": str, "source_node": str, "server_id": int, "flavor": str, "server_version": str,
    "tool": str, "gtid": str, "binlog_file": (str, type(None)), "binlog_pos": (int, type(None)), "size": int,
    "sha256": str,
}

ID_RE = re.compile(r"^(?P<service>[A-Za-z0-9][A-Za-z0-9_.-]*)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?$")
MAX_SUFFIX = 1000


class ManifestError(ValueError):
    """A manifest that is not valid JSON or lacks a field SPEC §6 requires."""


def data_key(snapshot_id: str) -> str:
    return f"{snapshot_id}/{DATA_NAME}"


def manifest_key(snapshot_id: str) -> str:
    return f"{snapshot_id}/{MANIFEST_NAME}"


def claim_key(snapshot_id: str) -> str:
    return f"{snapshot_id}/{CLAIM_NAME}"


# -- ids and times --------------------------------------------------------------

def stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def make_id(service: str, when: datetime, n: int = 1) -> str:
    """`<service>-<stamp>` for n == 1, else `<service>-<stamp>-<n>`."""
    base = f"{service}-{stamp(when)}"
    return base if n <= 1 else f"{base}-{n}"


def id_time(snapshot_id: str) -> float | None:
    """The UTC time in a snapshot id (epoch seconds), None if it is not an id."""
    match = ID_RE.match(snapshot_id)
    if not match:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()


def id_suffix(snapshot_id: str) -> int:
    match = ID_RE.match(snapshot_id)
    return int(match["n"]) if match and match["n"] else 1


def created_time(manifest: dict[str, Any]) -> float:
    """`created` as epoch seconds (0.0 when unreadable, which sorts it oldest)."""
    return parse_time(str(manifest.get("created", ""))) or 0.0


def newest_first_key(manifest: dict[str, Any]) -> tuple[float, int, str]:
    """Sort key: by creation time, then by the id's -N suffix (same second), then the id."""
    return (created_time(manifest), id_suffix(str(manifest.get("id", ""))), str(manifest.get("id", "")))


# -- encoding ---------------------------------------------------------------------

def encode(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def validate(manifest: Any) -> dict[str, Any]:
    """The manifest if it has every SPEC §6 field with the right type; else ManifestError."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest is not a JSON object")
    for name in FIELDS:
        if name not in manifest:
            raise ManifestError(f"manifest lacks {name!r}")
        if isinstance(manifest[name], bool) or not isinstance(manifest[name], _TYPES[name]):
            raise ManifestError(f"manifest field {name!r} has the wrong type")
    if not re.fullmatch(r"[0-9a-f]{64}", manifest["sha256"]):
        raise ManifestError("manifest sha256 is not 64 hex digits")
    if manifest["size"] < 0:
        raise ManifestError("manifest size is negative")
    return manifest


def decode(data: bytes) -> dict[str, Any]:
    try:
        return validate(json.loads(data.decode()))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None


# -- reading snapshots from storage --------------------------------------------------

def read_manifest(storage: Storage, snapshot_id: str) -> dict[str, Any] | None:
    """The snapshot's manifest, None when it has none (incomplete or unknown)."""
    try:
        manifest = decode(storage.get_bytes(manifest_key(snapshot_id)))
    except NotFound:
        return None
    except ManifestError as exc:
        log.warning("snapshot %s: ignoring its manifest: %s", snapshot_id, exc)
        return None
    if manifest["id"] != snapshot_id:
        log.warning("snapshot %s: ignoring its manifest: it names %s", snapshot_id, manifest["id"])
        return None
    return manifest


def group_by_snapshot(objects: Iterable[ObjectInfo]) -> dict[str, dict[str, ObjectInfo]]:
    """{snapshot id: {object name: info}} for keys `<id>/<name>`."""
    out: dict[str, dict[str, ObjectInfo]] = {}
    for info in objects:
        if "/" not in info.key:
            continue
        snapshot_id, name = info.key.split("/", 1)
        out.setdefault(snapshot_id, {})[name] = info
    return out


def list_complete(storage: Storage, objects: list[ObjectInfo] | None = None) -> list[dict[str, Any]]:
    """Every complete snapshot's manifest, newest first.

    Complete: a valid manifest naming its own id, and a data object of exactly
    the manifest's size (a cheap check from the listing; restore verifies the
    sha256 as well).
    """
    groups = group_by_snapshot(storage.list() if objects is None else objects)
    out = []
    for snapshot_id, files in groups.items():
        if MANIFEST_NAME not in files:
            continue
        manifest = read_manifest(storage, snapshot_id)
        if manifest is None:
            continue
        data = files.get(DATA_NAME)
        if data is None or data.size != manifest["size"]:
            log.warning("snapshot %s: ignored: its data object is %s", snapshot_id,
                        "missing" if data is None else f"{data.size} bytes, the manifest says {manifest['size']}")
            continue
        out.append(manifest)
    out.sort(key=newest_first_key, reverse=True)
    return out


def newest_complete(storage: Storage) -> dict[str, Any] | None:
    """The newest complete snapshot's manifest, or None."""
    complete = list_complete(storage)
    return complete[0] if complete else None


def is_complete(storage: Storage, manifest: dict[str, Any]) -> bool:
    """True when `manifest` (e.g. from snapshots/last) names a snapshot complete in `storage`."""
    try:
        stored = read_manifest(storage, str(manifest.get("id", "")))
    except StorageError:
        raise
    if stored is None or stored.get("sha256") != manifest.get("sha256"):
        return False
    return any(info.key == data_key(stored["id"]) and info.size == stored["size"]
               for info in storage.list(f"{stored['id']}/"))
