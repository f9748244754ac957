"""The cluster's records and the operations on them: one place that builds and parses them.

SPEC §5 fixes the records (`primary`, `members/<node>`, `nodes/<node>`, `bootstrap`, `switchover`,
`failover/last`, `snapshots/last`, `snapshots/lock`); `keys.py` fixes where they live.  This module
is the only one that turns them into bytes and back (`to_record`/`from_record`) and the only one
that writes them: `ClusterStore` offers what the cluster needs (take the lock, mark it ready,
publish a member, request a switchover, record a failover, claim the bootstrap, hand out a
server_id, hold the snapshot lock, name the newest snapshot) on top of the generic discovery
contract, as Patroni's DCS classes do.

It sits under ha/ and above discovery/ and keys.py, so that the jobs (bootstrap.py, backup/) go
through the same store as the HA code without importing from ha/.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

from .discovery import KV, Discovery, DiscoveryError
from .keys import ClusterKeys, decode, encode

# Lock states (an extra field of the `primary` record; SPEC allows more fields).
PROMOTING = "promoting"  # the winner holds the lock but is still applying its relay log
READY = "ready"          # the holder is (or may be) writable


class ServerIdContention(DiscoveryError):
    """No server_id could be handed out: the counter kept changing under this node."""


def _known(cls: type, record: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in record.items() if k in names}


@dataclass(frozen=True)
class Lock:
    """The `primary` key: who holds the lock, bound to which session."""

    node: str
    address: str
    port: int
    server_id: int | None
    since: float
    session: str | None = None
    index: int = 0
    state: str = READY

    @classmethod
    def from_record(cls, record: Mapping[str, Any], session: str | None, index: int) -> "Lock":
        return cls(node=str(record.get("node", "")), address=str(record.get("address", "")),
                   port=int(record.get("port") or 0), server_id=record.get("server_id"),
                   since=float(record.get("since") or 0.0), session=session, index=index,
                   state=str(record.get("state") or READY))

    def to_record(self) -> dict[str, Any]:
        return {"node": self.node, "address": self.address, "port": self.port, "server_id": self.server_id,
                "since": self.since, "state": self.state}


@dataclass(frozen=True)
class Member:
    """A member record (`members/<node>`, bound to the node's session; also `nodes/<node>`)."""

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
    def from_record(cls, record: Mapping[str, Any], session: str | None = None) -> "Member":
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
class MemberRecord:
    """A member record as a node publishes it (`members/<node>` and `nodes/<node>`).

    The written form, field for field what older versions write and read: `None` stays `None`
    (mysqld down), where `Member` (the reader's interpretation) turns it into "" or a default.
    `sync` is present only when the semi-sync pass reported something."""

    node: str
    address: str | None
    port: int
    server_id: int | None
    role: str
    gtid: str | None
    received_gtid: str | None
    binlog_state: str | None
    origin: str | None
    """The server's own GTID origin (MariaDB server_id, MySQL server_uuid): errant checks tolerate it."""
    candidate: bool
    healthy: bool
    lag_seconds: float | None
    snapshot_id: str | None
    updated: float
    read_only: bool | None
    verdict: dict[str, Any] | None
    errant: str | None
    flavor: str | None
    sync: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        if record["sync"] is None:
            del record["sync"]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "MemberRecord":
        known = _known(cls, record)
        return cls(**{f.name: known.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class SwitchoverRequest:
    """`switchover`: a planned hand-over to `to` (written by `switchover`, preStop or maintenance)."""

    to: str
    requested: float
    source: str | None = None
    kind: str = "planned"
    caught_up: bool = True
    """False when preStop handed over although the target had not confirmed everything."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "SwitchoverRequest | None":
        if not record or not record.get("to"):
            return None
        return cls(to=str(record["to"]), requested=float(record.get("requested") or 0.0),
                   source=record.get("from"), kind=str(record.get("kind") or "planned"),
                   caught_up=bool(record.get("caught_up", True)))

    def to_record(self) -> dict[str, Any]:
        record = {"to": self.to, "requested": self.requested, "from": self.source, "kind": self.kind}
        if not self.caught_up:
            record["caught_up"] = False
        return record


@dataclass(frozen=True)
class FailoverRecord:
    """`failover/last` (SPEC §5, §7)."""

    source: str | None
    to: str
    at: float
    kind: str
    lost_possible: bool = False
    missing_gtids: str = ""
    missing_count: int = 0

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["from"] = record.pop("source")
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "FailoverRecord | None":
        if not record or not record.get("to"):
            return None
        return cls(source=record.get("from"), to=str(record["to"]), at=float(record.get("at") or 0.0),
                   kind=str(record.get("kind") or ""), lost_possible=bool(record.get("lost_possible")),
                   missing_gtids=str(record.get("missing_gtids") or ""),
                   missing_count=int(record.get("missing_count") or 0))


@dataclass(frozen=True)
class BootstrapClaim:
    """`bootstrap`: the node that initialises a new cluster, bound to its session (SPEC §7)."""

    node: str
    at: float
    session: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "BootstrapClaim | None":
        if not record or not record.get("node"):
            return None
        return cls(node=str(record["node"]), at=float(record.get("at") or 0.0), session=record.get("session"))

    def to_record(self) -> dict[str, Any]:
        return {"node": self.node, "at": self.at, **({"session": self.session} if self.session else {})}


@dataclass(frozen=True)
class SnapshotLockRecord:
    """`snapshots/lock`: the node taking a snapshot, its id once allocated, since when."""

    node: str
    snapshot: str | None
    started: float

    def to_record(self) -> dict[str, Any]:
        return {"node": self.node, "snapshot": self.snapshot, "started": self.started}


@dataclass
class ClusterStore:
    """The cluster's records in discovery: every write of a record goes through here."""

    discovery: Discovery
    keys: ClusterKeys
    clock: Callable[[], float] = field(default=lambda: time.time())

    # -- the lock ----------------------------------------------------------------
    def take_lock(self, session: str, lock: Lock) -> bool:
        """Create-if-absent (or rewrite our own) lock bound to `session`."""
        return self.discovery.acquire(self.keys.primary, encode(lock.to_record()), session)

    def mark_ready(self, session: str, lock: Lock) -> None:
        if not self.discovery.put(self.keys.primary, encode({**lock.to_record(), "state": READY}), session=session):
            raise DiscoveryError("could not mark the primary lock ready: another session holds it")

    def release_lock(self, session: str) -> bool:
        return self.discovery.release(self.keys.primary, session)

    def held_lock(self) -> Lock | None:
        """The `primary` record when a session holds it (None: free, or left without a session)."""
        kv = self.discovery.get(self.keys.primary)
        record = decode(kv.value) if kv is not None and kv.session else None
        if not record:
            return None
        return Lock.from_record(record, kv.session, kv.index)

    def wait_lock(self, index: int, timeout: float) -> KV | None:
        return self.discovery.wait(self.keys.primary, index, timeout)

    # -- members -------------------------------------------------------------------
    def publish_member(self, record: MemberRecord, session: str | None) -> bool:
        """The member record bound to the session (when there is one) and the durable node record.
        False when another session holds the member record."""
        ok = True
        value = encode(record.to_record())
        if session:
            ok = self.discovery.put(self.keys.member(record.node), value, session=session)
        self.discovery.put(self.keys.node(record.node), value)
        return ok

    def drop_member(self, node: str) -> None:
        self.discovery.delete(self.keys.member(node))

    def drop_node(self, node: str) -> None:
        self.discovery.delete(self.keys.node(node))

    def mark_node_stopped(self, node: str, record: Mapping[str, Any]) -> None:
        """Keep the durable node record of a node that left cleanly, saying it is down and since when."""
        self.discovery.put(self.keys.node(node), encode({**record, "healthy": False, "stopped": self.clock()}))

    def members(self) -> list[Member]:
        """Every member record as read (each with the session it is bound to)."""
        return [Member.from_record(decode(kv.value) or {}, kv.session)
                for kv in self.discovery.list(self.keys.members)]

    def member_record(self, node: str) -> MemberRecord | None:
        """`members/<node>` as the node wrote it (None: it has none, e.g. it is not running)."""
        kv = self.discovery.get(self.keys.member(node))
        record = decode(kv.value) if kv else None
        return MemberRecord.from_record(record) if record is not None else None

    def node_record(self, node: str) -> dict[str, Any] | None:
        kv = self.discovery.get(self.keys.node(node))
        return decode(kv.value) if kv else None

    def all_records(self) -> list[tuple[str, dict[str, Any]]]:
        """Every key under the cluster's root with its record ({} when it is not one): what onStart
        looks through for signs of an existing cluster before it bootstraps a new one."""
        return [(kv.key, decode(kv.value) or {}) for kv in self.discovery.list(self.keys.root + "/")]

    def forget_node(self, node: str) -> None:
        self.discovery.delete(self.keys.member(node))
        self.discovery.delete(self.keys.node(node))

    # -- planned hand-over ----------------------------------------------------------
    def request_switchover(self, request: SwitchoverRequest, *, only_if_none: bool = False) -> bool:
        """Name the hand-over target; `only_if_none`: refuse when a request already exists (the
        `switchover` command), else overwrite (the primary itself: preStop, maintenance)."""
        if only_if_none:
            return self.discovery.create(self.keys.switchover, encode(request.to_record()))
        return self.discovery.put(self.keys.switchover, encode(request.to_record()))

    def clear_switchover(self, index: int | None = None) -> bool:
        return self.discovery.delete(self.keys.switchover, index=index)

    # -- failovers -----------------------------------------------------------------
    def record_failover(self, record: FailoverRecord) -> None:
        self.discovery.put(self.keys.failover_last, encode(record.to_record()))

    # -- bootstrap ------------------------------------------------------------------
    def claim_bootstrap(self, claim: BootstrapClaim) -> bool:
        """Create-only, bound to the claimant's session so that a dead claimant's claim ends."""
        return self.discovery.create(self.keys.bootstrap, encode(claim.to_record()), session=claim.session)

    def bootstrap_claim(self) -> BootstrapClaim | None:
        kv = self.discovery.get(self.keys.bootstrap)
        return BootstrapClaim.from_record(decode(kv.value) if kv else None)

    # -- snapshots ------------------------------------------------------------------
    def take_snapshot_lock(self, session: str, record: SnapshotLockRecord) -> bool:
        """Create-if-absent (or rewrite our own) `snapshots/lock`, bound to the snapshot's own session."""
        return self.discovery.acquire(self.keys.snapshots_lock, encode(record.to_record()), session)

    def release_snapshot_lock(self, session: str) -> bool:
        return self.discovery.release(self.keys.snapshots_lock, session)

    def snapshot_running(self) -> dict[str, Any] | None:
        """The record of `snapshots/lock` while a session holds it (a snapshot is being taken)."""
        kv = self.discovery.holder(self.keys.snapshots_lock)
        return (decode(kv.value) or {}) if kv is not None else None

    def snapshot_pointer(self) -> dict[str, Any] | None:
        """The manifest `snapshots/last` names (None: none recorded)."""
        kv = self.discovery.get(self.keys.snapshots_last)
        return decode(kv.value) if kv else None

    def point_to_snapshot(self, manifest: Mapping[str, Any]) -> None:
        self.discovery.put(self.keys.snapshots_last, encode(dict(manifest)))

    # -- server ids -----------------------------------------------------------------
    def allocate_server_id(self, avoid: frozenset[int] = frozenset(), attempts: int = 1000) -> int:
        """The next free value of the cluster's server_id counter (compare-and-set, so no two
        nodes share one).  Ids in `avoid` and ids of known nodes are skipped: after the discovery
        service was wiped the counter starts again at 1, and a node with the id of a server whose
        events it replicates would silently skip them."""
        taken = set(avoid)
        for kv in self.discovery.list(self.keys.members) + self.discovery.list(self.keys.nodes):
            record = decode(kv.value) or {}
            if isinstance(record.get("server_id"), int):
                taken.add(record["server_id"])
        for _ in range(attempts):
            kv = self.discovery.get(self.keys.server_id_counter)
            current = int(kv.value.decode()) if kv is not None and kv.value.strip().isdigit() else 0
            if self.discovery.cas(self.keys.server_id_counter, str(current + 1).encode(), kv.index if kv else 0):
                if current + 1 not in taken:
                    return current + 1
                continue  # taken: the counter has moved on, try the next value
            time.sleep(0.01)
        raise ServerIdContention("could not allocate a server_id: too much contention on the counter")
