"""The cluster as one immutable snapshot, read once per pass.

Like Patroni's `Cluster`: a hook reads every record under the cluster prefix
in one request (plus, for `onChange`, the healthy primary instances) and
makes all of that pass's decisions from this snapshot, never from a fresh
read in the middle of deciding.

It sits beside records.py, under ha/ and supervisor/: the HA passes, `status`
and the supervisor's routing checks (supervisor/telemetry) all read the same
view, and the supervisor does not import from ha/ to get it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .discovery import Discovery, Instance
from .keys import ClusterKeys, decode
from .records import PROMOTING, READY, BootstrapClaim, FailoverRecord, Lock, Member, SwitchoverRequest

__all__ = ["PROMOTING", "READY", "Lock", "Member", "ClusterView", "read_view"]


@dataclass(frozen=True)
class ClusterView:
    now: float
    lock: Lock | None
    members: dict[str, Member]
    nodes: dict[str, dict[str, Any]]
    bootstrap: BootstrapClaim | None
    bootstrap_index: int
    switchover: SwitchoverRequest | None
    """A request that names its target (one that does not is no request)."""
    switchover_index: int
    failover_last: FailoverRecord | None
    snapshot_last: dict[str, Any] | None
    snapshot_lock: dict[str, Any] | None
    healthy_primaries: tuple[Instance, ...] | None = None
    member_sessions: dict[str, str] = field(default_factory=dict)

    def member(self, node: str) -> Member | None:
        return self.members.get(node)

    def holder_is_live(self, ttl: float) -> bool:
        """Is the lock holder alive?  When the healthy primary instances were read (onChange),
        only they count: a frozen or crashed holder's member record stays fresh for up to
        SESSION_TTL, and following it then would leave onChange with nothing to wake it
        when the lock finally expires.  Otherwise, a fresh member record counts."""
        if self.lock is None:
            return False
        if self.healthy_primaries is not None:
            return any(i.address == self.lock.address and i.port == self.lock.port for i in self.healthy_primaries)
        member = self.members.get(self.lock.node)
        return member is not None and member.fresh(self.now, ttl)

    def backup_node(self) -> str | None:
        """The node currently running a snapshot (holder of `snapshots/lock`)."""
        if self.snapshot_lock:
            return self.snapshot_lock.get("node")
        return None


def read_view(discovery: Discovery, keys: ClusterKeys, *, primary_service: str | None = None,
              now: float | None = None) -> ClusterView:
    """One list of the cluster prefix (and the healthy primaries when a service name is given)."""
    entries = {kv.key: kv for kv in discovery.list(keys.root + "/")}

    def record(key: str) -> tuple[dict[str, Any] | None, int, str | None]:
        kv = entries.get(key)
        if kv is None:
            return None, 0, None
        return decode(kv.value), kv.index, kv.session

    lock_record, lock_index, lock_session = record(keys.primary)
    lock = None
    if lock_record is not None and lock_record.get("node"):
        lock = Lock.from_record(lock_record, lock_session, lock_index)

    members: dict[str, Member] = {}
    sessions: dict[str, str] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for key, kv in entries.items():
        if key.startswith(keys.members):
            rec = decode(kv.value)
            if rec and rec.get("node"):
                members[rec["node"]] = Member.from_record(rec, kv.session)
                if kv.session:
                    sessions[rec["node"]] = kv.session
        elif key.startswith(keys.nodes):
            rec = decode(kv.value)
            if rec and rec.get("node"):
                nodes[rec["node"]] = rec

    bootstrap, bootstrap_index, _ = record(keys.bootstrap)
    switchover, switchover_index, _ = record(keys.switchover)
    snapshot_lock, _, snapshot_lock_session = record(keys.snapshots_lock)
    healthy = None
    if primary_service is not None:
        healthy = tuple(discovery.healthy(primary_service))
    return ClusterView(
        now=time.time() if now is None else now,
        lock=lock,
        members=members,
        nodes=nodes,
        bootstrap=BootstrapClaim.from_record(bootstrap),
        bootstrap_index=bootstrap_index,
        switchover=SwitchoverRequest.from_record(switchover),
        switchover_index=switchover_index,
        failover_last=FailoverRecord.from_record(record(keys.failover_last)[0]),
        snapshot_last=record(keys.snapshots_last)[0],
        snapshot_lock=snapshot_lock if snapshot_lock_session or snapshot_lock else None,
        healthy_primaries=healthy,
        member_sessions=sessions,
    )
