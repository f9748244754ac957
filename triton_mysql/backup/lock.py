"""The snapshot lock (`snapshots/lock`): one snapshot at a time in the cluster.

The lock is held with its own session/lease of SESSION_TTL (not the node's
member session: a backup must not extend, or die with, the health loop's
session) and renewed by a background thread while the backup runs.  It is
released, and its session destroyed, on every exit path: the context manager
does it in `finally`, and the hooks turn SIGTERM into an exception so that
`finally` runs.  A holder killed with SIGKILL stops renewing, so the lock
expires with its lease and the next backup can start.

While the lock names a node, the HA code does not count that node as a
failover candidate (SPEC §5: "not running a backup").

If renewing fails for longer than the TTL (or the session is gone), the lock
may already belong to someone else: `lost` is set, and the pipeline aborts
rather than run a second snapshot concurrently.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from ..discovery import DiscoveryError
from ..records import ClusterStore, SnapshotLockRecord

log = logging.getLogger(__name__)


class LockBusy(Exception):
    """Another node (or process) holds the snapshot lock."""

    def __init__(self, holder: dict[str, Any] | None) -> None:
        self.holder = holder or {}
        node = self.holder.get("node", "another node")
        snap = self.holder.get("snapshot")
        started = self.holder.get("started")
        since = f" for {time.time() - float(started):.0f} s" if isinstance(started, (int, float)) else ""
        super().__init__(f"a snapshot is already running on {node}{since}" + (f" ({snap})" if snap else ""))


class SnapshotLock:
    """Hold `snapshots/lock` bound to a private session, renewed in the background."""

    def __init__(self, store: ClusterStore, *, node: str, snapshot: str | None, ttl: float) -> None:
        self.store = store
        self.discovery = store.discovery  # the lock's own session lives in the discovery contract
        self.node = node
        self.ttl = ttl
        self.record = SnapshotLockRecord(node=node, snapshot=snapshot, started=time.time())
        self.session: str | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewal = 0.0

    # -- acquire / release ---------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise LockBusy (DiscoveryError when discovery fails)."""
        self.session = self.discovery.create_session(f"triton-mysql-snapshot-{self.node}", self.ttl)
        try:
            won = self.store.take_snapshot_lock(self.session, self.record)
        except BaseException:
            self._destroy_session()
            raise
        if not won:
            holder = None
            try:
                holder = self.store.snapshot_running()
            except DiscoveryError:
                pass
            self._destroy_session()
            raise LockBusy(holder)
        self._last_renewal = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name="snapshot-lock-renew", daemon=True)
        self._thread.start()
        log.info("snapshot lock taken (session ttl %g s)", self.ttl)

    def update(self, **fields: Any) -> None:
        """Rewrite the lock's value (e.g. the final snapshot id); best effort."""
        self.record = dataclasses.replace(self.record, **fields)
        if self.session is None:
            return
        try:
            self.store.take_snapshot_lock(self.session, self.record)
        except DiscoveryError as exc:
            log.warning("could not update the snapshot lock record: %s", exc)

    def release(self) -> None:
        """Stop renewing, delete the key and end the session.  Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.discovery_timeout() + 1)
            self._thread = None
        if self.session is None:
            return
        try:
            self.store.release_snapshot_lock(self.session)
        except Exception as exc:  # noqa: BLE001 - destroying the session below deletes the key too
            log.warning("releasing the snapshot lock failed (%s); ending its session instead", exc)
        self._destroy_session()
        log.info("snapshot lock released")

    def _destroy_session(self) -> None:
        if self.session is None:
            return
        try:
            self.discovery.destroy_session(self.session)
        except Exception as exc:  # noqa: BLE001 - it expires by itself within the TTL
            log.warning("ending the snapshot lock's session failed (%s); it expires within %g s", exc, self.ttl)
        self.session = None

    def discovery_timeout(self) -> float:
        return float(getattr(self.discovery, "timeout", 2.0) or 2.0)

    # -- renewal ------------------------------------------------------------------
    def _renew_loop(self) -> None:
        interval = max(0.5, self.ttl / 3.0)
        while not self._stop.wait(interval):
            session = self.session
            if session is None:
                return
            try:
                alive = self.discovery.renew_session(session)
            except DiscoveryError as exc:
                if time.monotonic() - self._last_renewal > self.ttl:
                    self._lose(f"could not renew for {self.ttl:g} s ({exc})")
                    return
                log.warning("renewing the snapshot lock failed, will retry: %s", exc)
                continue
            except Exception as exc:  # noqa: BLE001 - never die silently
                self._lose(f"renewal error: {exc}")
                return
            if not alive:
                self._lose("its session expired")
                return
            self._last_renewal = time.monotonic()

    def _lose(self, why: str) -> None:
        log.error("snapshot lock lost: %s; the snapshot will be abandoned", why)
        self.lost.set()

    # -- context manager --------------------------------------------------------------
    def __enter__(self) -> "SnapshotLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
