"""The `bootstrap` claim of a new cluster, bound to a session of its winner (SPEC §5, §7).

A node that finds no snapshot anywhere creates the `bootstrap` key, create-only,
bound to a session of its own (`{"node", "at", "session"}`).  The winner keeps
that session renewed while it initialises (a renewer thread, as the snapshot
lock does); onStart then ends, and the node's first `health` passes adopt the
same session (ha/session.py `NodeSession.mine` returns it while the record names
the node): they renew it while mysqld starts, and take the primary lock and
publish the member record with it.  So the claim lives exactly as long as its
winner does: if the winner dies before the cluster's first snapshot, the key
disappears with its session and a waiting node enters the race again, instead
of every node waiting for a snapshot that never comes (issue 13 item 5).

Also here: what discovery shows of an existing cluster, which onStart checks
before bootstrapping into storage that has no cluster marker (item 9).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .discovery import DiscoveryError
from .records import BootstrapClaim, ClusterStore

log = logging.getLogger(__name__)


@dataclass
class Claim:
    """This node's live bootstrap claim, renewed in the background while `renewing()` runs."""

    store: ClusterStore
    session: str
    ttl: float
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="bootstrap-claim-renew", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=float(getattr(self.store.discovery, "timeout", 2.0) or 2.0) + 1)
            self._thread = None

    def renew(self) -> bool:
        """One renewal now; False (and `lost` set) when the session is gone."""
        try:
            alive = self.store.discovery.renew_session(self.session)
        except DiscoveryError as exc:
            log.warning("renewing the bootstrap claim failed, will retry: %s", exc)
            return not self.lost.is_set()
        if not alive:
            self.lost.set()
        return alive

    def holds(self) -> bool:
        """Does the `bootstrap` key still name this claim's session?"""
        claim = self.store.bootstrap_claim()
        return claim is not None and claim.session == self.session and not self.lost.is_set()

    def give_up(self) -> None:
        """End the session now (deleting the key), so another node can take over at once."""
        self.stop_renewing()
        try:
            self.store.discovery.destroy_session(self.session)
        except DiscoveryError as exc:
            log.warning("ending the bootstrap claim's session failed (%s); it expires within %g s", exc, self.ttl)

    def _renew_loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(max(0.5, self.ttl / 3.0)):
            if self.renew():
                last = time.monotonic()
            elif self.lost.is_set() or time.monotonic() - last > self.ttl:
                self.lost.set()
                log.error("the bootstrap claim's session expired: another node may bootstrap instead")
                return


def owner(store: ClusterStore) -> str | None:
    """The node the `bootstrap` key names, or None when there is no claim."""
    claim = store.bootstrap_claim()
    return claim.node if claim is not None else None


def take(store: ClusterStore, node: str, ttl: float) -> Claim | None:
    """Claim the bootstrap for `node` bound to a new session, or re-adopt this node's claim whose
    session is still alive (onStart run again right after a crash).  None: another claim exists
    (an unreadable `bootstrap` record counts as one: the create-only write below refuses it)."""
    existing = store.bootstrap_claim()
    if existing is not None:
        if existing.node != node:
            return None
        if existing.session and store.discovery.renew_session(existing.session):
            log.info("the bootstrap claim of this node is still alive (session %s): continuing with it",
                     existing.session)
            return Claim(store, existing.session, ttl)
        return None  # ours, from a session that ended: the key goes with it
    session = store.discovery.create_session(f"triton-mysql-bootstrap-{node}", ttl)
    try:
        won = store.claim_bootstrap(BootstrapClaim(node=node, at=time.time(), session=session))
    except BaseException:
        _destroy(store, session)
        raise
    if won:
        return Claim(store, session, ttl)
    _destroy(store, session)
    return None


def _destroy(store: ClusterStore, session: str) -> None:
    try:
        store.discovery.destroy_session(session)
    except DiscoveryError:
        pass  # it expires by itself


#: A claimant whose durable node record was updated within ALIVE_FACTOR × SESSION_TTL is alive (slow, not
#: dead): waiting nodes do not take its lapsed claim over.  A dead winner's record stops at its death, so
#: the cluster still forms within 2 × SESSION_TTL + a minute of it.
ALIVE_FACTOR = 2.0


def seen_ago(store: ClusterStore, node: str, now: float | None = None) -> float | None:
    """Seconds since `node` last published its durable node record (None: it never did)."""
    record = store.node_record(node)
    if not record or not isinstance(record.get("updated"), (int, float)):
        return None
    return max(0.0, (time.time() if now is None else now) - float(record["updated"]))


def cluster_evidence(store: ClusterStore) -> list[str]:
    """What in discovery shows that a cluster already exists (empty for a new cluster).

    The `bootstrap` claim and the server_id counter do not count: a new
    cluster's own start writes them.
    """
    keys = store.keys
    found: list[str] = []
    nodes: set[str] = set()
    for key, record in store.all_records():
        if key == keys.snapshots_last:
            found.append(f"discovery names snapshot {record.get('id', '?')} in snapshots/last")
        elif key == keys.primary:
            found.append(f"{record.get('node', '?')} holds the primary lock")
        elif key == keys.failover_last:
            found.append("discovery has a failover record")
        elif key.startswith((keys.nodes, keys.members)):
            nodes.add(str(record.get("node") or keys.name_of(key)))
    if nodes:
        found.append(f"discovery has records of node(s) {', '.join(sorted(nodes))}")
    return found
