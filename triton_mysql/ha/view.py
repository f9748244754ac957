"""The cluster as one immutable snapshot, read once per pass.

Like Patroni's `Cluster`: a hook reads every record under the cluster prefix
in one request (plus, for `onChange`, the healthy primary instances) and
makes all of that pass's decisions from this snapshot, never from a fresh
read in the middle of deciding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..discovery import Discovery, Instance
from ..keys import ClusterKeys, decode

# Lock states (an extra field of the `primary` record; SPEC allows more fields).
PROMOTING = "promoting"  # the winner holds the lock but is still applying its relay log
READY = "ready"          # the holder is (or may be) writable


@dataclass(frozen=True)
class Lock:
    """The `primary` key: who holds the lock, bound to which session."""

    node: str
    address: str
    port: int
    server_id: int | None
    since: float
    session: str | None
    index: int
    state: str = READY

    @classmethod
    def from_record(cls, record: dict[str, Any], session: str | None, index: int) -> "Lock":
        return cls(
            node=str(record.get("node", "")),
            address=str(record.get("address", "")),
            port=int(record.get("port") or 0),
            server_id=record.get("server_id"),
            since=float(record.get("since") or 0.0),
            session=session,
            index=index,
            state=str(record.get("state") or READY),
        )


@dataclass(frozen=True)
class Member:
    """A member record (`members/<node>`, bound to the node's session)."""

    node: str
    address: str
    port: int
    server_id: int | None
    role: str
    gtid: str
    received_gtid: str
    candidate: bool
    healthy: bool
    lag_seconds: float | None
    snapshot_id: str | None
    updated: float
    session: str | None = None
    backup_running: bool = False
    binlog_state: str = ""
    """What the errant check compares (MariaDB @@gtid_binlog_state, MySQL @@gtid_executed)."""
    verdict: dict[str, Any] | None = None
    """The node's own divergence verdict, when it has one (errant, tail, ahead, stranded)."""
    flavor: str = ""
    read_only: bool | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any], session: str | None = None) -> "Member":
        return cls(
            node=str(record.get("node", "")),
            address=str(record.get("address", "")),
            port=int(record.get("port") or 0),
            server_id=record.get("server_id"),
            role=str(record.get("role", "starting")),
            gtid=str(record.get("gtid") or ""),
            received_gtid=str(record.get("received_gtid") or record.get("gtid") or ""),
            candidate=bool(record.get("candidate")),
            healthy=bool(record.get("healthy")),
            lag_seconds=record.get("lag_seconds"),
            snapshot_id=record.get("snapshot_id"),
            updated=float(record.get("updated") or 0.0),
            session=session,
            backup_running=bool(record.get("backup_running")),
            binlog_state=str(record.get("binlog_state") or record.get("gtid") or ""),
            verdict=record.get("verdict") if isinstance(record.get("verdict"), dict) else None,
            flavor=str(record.get("flavor") or ""),
            read_only=record.get("read_only") if isinstance(record.get("read_only"), bool) else None,
        )

    def fresh(self, now: float, ttl: float) -> bool:
        """Updated within `ttl` seconds (SPEC §5: a candidate's record must be)."""
        return now - self.updated <= ttl


@dataclass(frozen=True)
class ClusterView:
    now: float
    lock: Lock | None
    members: dict[str, Member]
    nodes: dict[str, dict[str, Any]]
    bootstrap: dict[str, Any] | None
    bootstrap_index: int
    switchover: dict[str, Any] | None
    switchover_index: int
    failover_last: dict[str, Any] | None
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
        bootstrap=bootstrap,
        bootstrap_index=bootstrap_index,
        switchover=switchover,
        switchover_index=switchover_index,
        failover_last=record(keys.failover_last)[0],
        snapshot_last=record(keys.snapshots_last)[0],
        snapshot_lock=snapshot_lock if snapshot_lock_session or snapshot_lock else None,
        healthy_primaries=healthy,
        member_sessions=sessions,
    )
