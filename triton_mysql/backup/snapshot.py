"""Taking a snapshot end to end: lock → id → pipeline → manifest → snapshots/last
→ retention → binlog purge.  Used by `triton-mysql snapshot` (scheduled, on the
primary) and `triton-mysql backup` (manual, anywhere).

Order matters (SPEC §6): the data object is committed first, then the
manifest (which makes the snapshot complete), then `snapshots/last`; so a
failure at any step leaves either nothing or an incomplete directory (never
used), and `snapshots/last` only ever names a complete snapshot.  On failure
the id's directory is removed (its claim, any partial object), the lock is
released, and SnapshotError carries a one-line reason.

A snapshot stored anywhere but BACKUP_URL (`backup --url`) is an export: it
gets its manifest but does not become `snapshots/last`, and neither retention
nor binlog purge follow from it.

Every complete snapshot at BACKUP_URL is a clone source (new nodes, re-clones,
a wiped discovery's fallback), so only the lock holder or a healthy replica
without errant transactions (a fresh member record saying so) may write one
there (issue 13 item 8): checked before the backup starts and again before the
manifest makes it complete.  Anything else is refused with a clear message;
`--url` exports are not restricted.  Writing there also requires the storage
root to be the cluster's (its marker, storage/marker.py).
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from ..discovery import Discovery, DiscoveryError
from ..keys import ClusterKeys
from ..mysql.local import DBError, LocalServer
from ..records import ClusterStore
from ..storage import Storage, StorageError, open_storage
from ..storage.marker import MARKER_KEY, read_marker, write_marker
from ..timestamps import iso
from . import binlogs, manifest as mf, retention
from .lock import LockBusy, SnapshotLock
from .pipeline import SnapshotError, stream_backup
from .progress import Progress, directory_size

log = logging.getLogger(__name__)

__all__ = ["SnapshotError", "LockBusy", "NotDue", "Terminated", "take_snapshot", "allocate_id",
           "terminate_on_sigterm", "last_snapshot", "due_now"]


class NotDue(Exception):
    """A scheduled snapshot is no longer due once the lock was taken (another one just finished)."""


class Terminated(BaseException):
    """SIGTERM arrived: unwind (finally blocks release the lock and kill the tools)."""


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` in the main thread for the duration of the block.

    The supervisor stops an overrunning task with SIGTERM (then SIGKILL 5 s
    later): this is what lets the lock be released and the upload aborted.
    """
    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwinding is enough
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def allocate_id(storage: Storage, service: str, when: datetime, node: str) -> str:
    """Reserve a fresh snapshot id: `<service>-<stamp>`, else `-2`, `-3`…

    The reservation is the create-only `claim.json`: of two backups that
    start in the same second, exactly one gets each id.  A directory that
    already holds other objects (left by something that did not claim) is
    skipped too.
    """
    claim = json.dumps({"node": node, "started": time.time()}).encode()
    for n in range(1, mf.MAX_SUFFIX):
        snapshot_id = mf.make_id(service, when, n)
        if not storage.create_exclusive(mf.claim_key(snapshot_id), claim):
            continue
        others = [i for i in storage.list(f"{snapshot_id}/") if i.key != mf.claim_key(snapshot_id)]
        if others:
            storage.delete(mf.claim_key(snapshot_id))
            continue
        return snapshot_id
    raise SnapshotError(f"no free snapshot id for {mf.make_id(service, when)} after {mf.MAX_SUFFIX} tries")


def last_snapshot(config: Any, discovery: Discovery | None, storage_factory: Callable[[], Storage] | None = None
                  ) -> dict[str, Any] | None:
    """The newest complete snapshot: `snapshots/last` if set, else the newest in storage."""
    if discovery is not None:
        record = ClusterStore(discovery, ClusterKeys.for_config(config)).snapshot_pointer()
        if record is not None:
            try:
                return mf.validate(record)
            except ValueError as exc:
                log.warning("snapshots/last is not a valid manifest (%s); looking in storage", exc)
    storage = storage_factory() if storage_factory else open_storage(config.backup_url, config)
    return mf.newest_complete(storage)


def _member_positions(config: Any, store: ClusterStore | None) -> list[str]:
    """Received GTIDs of the live members: binlogs they still need are kept."""
    if store is None:
        return []
    try:
        return [member.received_gtid for member in store.members()
                if member.node != config.node_name and member.role != "primary"]
    except DiscoveryError as exc:
        log.warning("binlog purge: cannot read the member records (%s); using the snapshot position only", exc)
        return []


def take_snapshot(config: Any, *, url: str | None = None, discovery: Discovery | None = None,
                  progress: bool | Progress | None = None, storage: Storage | None = None,
                  on_started: Callable[[Any], None] | None = None, reason: str = "manual",
                  still_due: Callable[[LocalServer], Any] | None = None) -> dict[str, Any]:
    """Take one snapshot now; returns its manifest.  Raises SnapshotError / LockBusy.

    `url`: store there instead of BACKUP_URL (an export unless it *is*
    BACKUP_URL).  `discovery`: when given, the snapshot lock is held and
    (for BACKUP_URL) `snapshots/last` updated; without it (no discovery
    configured) neither happens.  `progress`: True for the default reporter
    (bar on a terminal, log lines otherwise), or a Progress.  `still_due`:
    checked again once the lock is held (a scheduled snapshot); falsy raises
    NotDue, e.g. when another node's backup finished in between.
    """
    target_url = url or config.backup_url
    is_main = target_url.rstrip("/") == config.backup_url.rstrip("/")
    try:
        storage = storage or open_storage(target_url, config)
    except StorageError as exc:
        raise SnapshotError(str(exc)) from None
    store = ClusterStore(discovery, ClusterKeys.for_config(config)) if discovery is not None else None
    try:
        server = LocalServer(config.mysql_socket, config.mysql_root_password, timeout=5.0)
    except DBError as exc:
        raise SnapshotError(str(exc)) from None
    lock: SnapshotLock | None = None
    snapshot_id: str | None = None
    stored = False
    try:
        if is_main and store is not None:
            _require_clone_source(config, store)
            _require_marker(config, store, storage)
        flavor = server.flavor
        server_id = server.server_id()
        version = server.version()
        datadir = server.datadir().rstrip("/") or config.mysql_datadir
        if store is not None:
            lock = SnapshotLock(store, node=config.node_name, snapshot=None, ttl=config.session_ttl)
            lock.acquire()
            if still_due is not None:
                decision = still_due(server)
                if not decision:
                    raise NotDue(getattr(decision, "reason", "not due any more"))
        else:
            log.warning("no discovery service configured: taking the snapshot without the snapshot lock")
        waiting = commits_waiting(server)
        if waiting:  # a scheduled snapshot tries again at its next poll; `backup` says why it refuses
            raise (NotDue if still_due is not None else SnapshotError)(waiting)
        started = datetime.now(timezone.utc)
        snapshot_id = allocate_id(storage, config.service_name, started, config.node_name)
        if lock is not None:
            lock.update(snapshot=snapshot_id)
        log.info("snapshot %s: starting (%s) on %s into %s%s", snapshot_id, reason, config.node_name,
                 storage.describe(), "" if is_main else " (export)")
        reporter = progress if isinstance(progress, Progress) else (
            Progress(f"snapshot {snapshot_id}", _estimate(server, datadir)) if progress else None)
        should_stop = (lambda: "the snapshot lock was lost" if lock.lost.is_set() else None) if lock else None
        try:
            result = stream_backup(flavor=flavor, storage=storage, key=mf.data_key(snapshot_id),
                                   socket=config.mysql_socket, server_cnf=config.mysql_cnf,
                                   password=config.mysql_root_password, datadir=datadir, progress=reporter,
                                   should_stop=should_stop, on_started=on_started)
        finally:
            if reporter is not None:
                reporter.finish()
        completed = datetime.now(timezone.utc)
        manifest = {
            "id": snapshot_id,
            "created": iso(started),
            "source_node": config.node_name,
            "server_id": server_id,
            "flavor": flavor.name,
            "server_version": result.server_version or version,
            "tool": result.tool,
            "gtid": result.gtid,
            "binlog_file": result.binlog_file,
            "binlog_pos": result.binlog_pos,
            "size": result.size,
            "sha256": result.sha256,
            # Extra fields (allowed by SPEC §6):
            "completed": iso(completed),
            "tool_version": result.tool_version,
            "service": config.service_name,
            "format": "xbstream",
            "compression": "zstd",
            "source_bytes": result.source_bytes,
        }
        mf.validate(manifest)
        if is_main and store is not None:
            _require_clone_source(config, store)  # still true now that the backup is done?
        try:
            storage.put_bytes(mf.manifest_key(snapshot_id), mf.encode(manifest))
        except StorageError as exc:
            raise SnapshotError(f"storing the manifest failed: {exc}") from None
        stored = True
        log.info("snapshot %s: complete, %d bytes in %.1f s, GTID %s (%s:%s)", snapshot_id, result.size,
                 result.seconds, result.gtid or "''", result.binlog_file, result.binlog_pos)
        if is_main:
            _after_snapshot(config, store, storage, server, manifest)
        return manifest
    except StorageError as exc:
        raise SnapshotError(str(exc)) from None
    except DBError as exc:
        raise SnapshotError(str(exc)) from None
    finally:
        try:
            if snapshot_id is not None and not stored:
                _remove_partial(storage, snapshot_id)
        finally:
            if lock is not None:
                lock.release()
            server.close()


def clone_source_refusal(config: Any, store: ClusterStore, now: float | None = None) -> str | None:
    """Why this node may not write the cluster's clone source, or None when it may.

    It may when it holds the primary lock, or when its member record is fresh
    (updated within SESSION_TTL), healthy (a replica whose threads run within
    MAX_LAG) and names no errant transactions.
    """
    now = time.time() if now is None else now
    lock = store.held_lock()
    if lock is not None and lock.node == config.node_name:
        return None
    record = store.member_record(config.node_name)
    if record is None:
        return "it has no member record (not running as a cluster member)"
    age = now - float(record.updated or 0.0)
    if age > config.session_ttl:
        return f"its member record is {age:.0f} s old (more than SESSION_TTL={config.session_ttl:g} s)"
    if record.errant:
        return f"it has errant transactions {record.errant}"
    if record.verdict:
        return f"it diverged from the primary ({record.verdict.get('kind')}: {record.verdict.get('gtids')})"
    if record.role != "replica" or not record.healthy:
        return f"it is not a healthy replica (role {record.role}, healthy {bool(record.healthy)})"
    return None


def _require_clone_source(config: Any, store: ClusterStore) -> None:
    try:
        why = clone_source_refusal(config, store)
    except DiscoveryError as exc:
        raise SnapshotError(f"cannot check that this node may write the cluster's snapshots: {exc}") from None
    if why is not None:
        raise SnapshotError(f"refused: {config.node_name} is neither the primary nor a healthy replica without "
                            f"errant transactions ({why}); a snapshot at BACKUP_URL becomes the clone source of "
                            f"new nodes. Use --url URL to export one elsewhere")


def _require_marker(config: Any, store: ClusterStore, storage: Storage) -> None:
    """The storage root must be the cluster's: it has the marker, or (a cluster from before the
    marker) it holds the snapshot `snapshots/last` names, and then gets the marker now."""
    if read_marker(storage) is not None:
        return
    last = store.snapshot_pointer()
    if last and last.get("id") and not storage.exists(mf.manifest_key(str(last["id"]))):
        raise SnapshotError(f"{storage.describe()} has no cluster marker ({MARKER_KEY}) and not the snapshot "
                            f"{last['id']} that snapshots/last names: is the backup volume mounted and BACKUP_URL "
                            f"right? Not writing the cluster's snapshots there")
    write_marker(storage, config.service_name, config.node_name)


def commits_waiting(server: LocalServer) -> str | None:
    """Why a backup must not start now: commits wait (or the next one would) for a semi-sync ACK.

    mariabackup's BACKUP STAGE waits behind such a commit (for the whole
    timeout; in `strict`, for as long as no replica answers) and ignores
    SIGTERM meanwhile.  None when nothing waits.
    """
    from ..mysql import semisync
    state = semisync.read(server, server.flavor)
    if state.wait_sessions:
        return (f"{state.wait_sessions} commit(s) wait for a semi-sync acknowledgement (no replica answers); "
                f"a backup would wait behind them: deferred")
    if state.source_enabled and state.source_on and state.clients == 0:
        return ("semi-sync is on with no replica connected: the next commit waits for an acknowledgement and a "
                "backup would wait behind it: deferred")
    return None


def _estimate(server: LocalServer, datadir: str) -> int:
    """What the tool will read: the datadir without the binary logs (for the ETA)."""
    return max(0, directory_size(datadir) - server.binlog_bytes())


def _after_snapshot(config: Any, store: ClusterStore | None, storage: Storage, server: LocalServer,
                    manifest: dict[str, Any]) -> None:
    """snapshots/last, then retention and binlog purge (a failure of the last two is only logged)."""
    if store is not None:
        try:
            store.point_to_snapshot(manifest)
        except DiscoveryError as exc:
            raise SnapshotError(f"snapshot {manifest['id']} is stored, but recording it in snapshots/last "
                                f"failed: {exc}") from None
        log.info("snapshots/last now names %s", manifest["id"])
    try:
        retention.apply(storage, config.snapshot_keep, protect={manifest["id"]})
    except StorageError as exc:
        log.warning("retention failed (will retry after the next snapshot): %s", exc)
    if not manifest["binlog_file"]:
        return
    try:
        binlogs.purge(server, manifest["gtid"], extra_keep=_member_positions(config, store))
    except DBError as exc:
        log.warning("binlog purge failed (will retry after the next snapshot): %s", exc)


def _remove_partial(storage: Storage, snapshot_id: str) -> None:
    """Take an unfinished snapshot's directory away (its claim and anything partial)."""
    try:
        storage.delete_prefix(f"{snapshot_id}/")
        log.info("snapshot %s: removed what the failed attempt left", snapshot_id)
    except StorageError as exc:
        log.warning("snapshot %s: could not remove its incomplete directory (%s); retention removes it "
                    "after a day", snapshot_id, exc)


def due_now(config: Any, discovery: Discovery | None, server: LocalServer, *, now: float | None = None):
    """Gather the facts of SPEC §6's due rule from discovery/storage and the server; decide (due.snapshot_due)."""
    from .due import snapshot_due

    last = last_snapshot(config, discovery)
    binlog_file = server.current_binlog()
    start_gtid = server.binlog_start_gtid(binlog_file) if binlog_file else None
    return snapshot_due(last, now=time.time() if now is None else now, interval=config.snapshot_interval,
                        flavor=server.flavor.name, gtid_now=server.binlog_gtid(), node=config.node_name,
                        server_id=server.server_id(), binlog_file=binlog_file, binlog_start_gtid=start_gtid)
