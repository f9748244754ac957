"""What to do, as pure functions of (cluster view, local server state).

Nothing here talks to a server: `act.py` carries decisions out.  That split
is what lets every transition be table-tested (tests/test_ha_decide.py).

Two decisions exist, matching the two hooks that make them:

* `decide_health` — the short reconcile pass that runs every few seconds.
  It keeps a node in its role and never promotes (the node that initialised
  a brand-new cluster takes the free lock the first time, and that is all).
* `decide_election` — what `onChange` does when the primary service changed:
  follow a live primary, wait for a dead holder's lock to expire, or take
  part in the election (SPEC §5).

And the rules both share: who is a candidate (`is_candidate`), how
candidates rank (`rank`: GTID-set containment first), when a hand-over
expires, what a failover may have lost (`loss_report`), and how long a
dead primary may stay writable (`Timing.fence_bound`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from ..config import FENCE_BUDGET, FENCE_MARGIN
from ..mysql import gtid as gtids
from ..view import PROMOTING, READY, ClusterView, Lock

# -- health actions ---------------------------------------------------------
STARTING = "starting"            # mysqld not reachable yet: nothing to do
PRIMARY = "primary"              # hold the lock: be writable, advertise as primary
TAKE_BOOTSTRAP_LOCK = "take_bootstrap_lock"  # first primary of a new cluster
BOOTSTRAP_SNAPSHOT = "bootstrap_snapshot"  # new cluster's holder: read-only until its first snapshot exists
GIVE_WAY = "give_way"            # another node's bootstrap replaced ours: stop; the next start clones
WAIT_PROMOTION = "wait_promotion"  # a promotion is under way (ours or someone's): stay put
ABANDON_PROMOTION = "abandon_promotion"  # we hold a 'promoting' lock nobody is working on: release it
HANDOVER = "handover"            # switchover requested (or maintenance): fence, wait for target, release
RELEASE = "release"              # maintenance with nobody to hand over to: fence and release the lock
FENCE = "fence"                  # writable without the lock (or cannot prove we hold it)
FOLLOW = "follow"                # replicate from the lock holder
REFUSE = "refuse"                # diverged from the lock holder (errant, lost tail, ahead): do not replicate
RECLONE = "reclone"              # AUTO_RECLONE: mark the datadir and stop mysqld; onStart clones afresh
NO_PRIMARY = "no_primary"        # lock free: stay read-only; the election is onChange's job
NO_DISCOVERY = "no_discovery"    # discovery unreachable and already read-only: wait
MAINTENANCE = "maintenance"      # SIGUSR1: no lock, no advertising, no session renewal

# -- election actions -------------------------------------------------------
IS_PRIMARY = "is_primary"        # we already hold the lock
WAIT_LOCK_CHANGE = "wait_lock_change"  # holder promoting, or holder gone: wait on the key
TRY_NOW = "try_now"              # we are the best candidate (or the named target)
TRY_LATER = "try_later"          # someone is better: give them one SESSION_TTL first
NOT_CANDIDATE = "not_candidate"  # we cannot be primary: wait for a winner
REFUSE_COOLDOWN = "refuse_cooldown"  # anti-flapping: an automatic failover happened too recently

# Verdict kinds (node state `verdict.kind`).
ERRANT, TAIL, AHEAD, STRANDED = "errant", "tail", "ahead", "stranded"
# MariaDB/MySQL error 1236 (ER_MASTER_FATAL_ERROR_READING_BINLOG): the source cannot serve the replica.
ER_SOURCE_FATAL_READING_BINLOG = 1236


@dataclass(frozen=True)
class Verdict:
    """Why this node may not replicate from (or stand against) a primary, kept in the node state."""

    kind: str
    gtids: str
    against: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "Verdict | None":
        if not record or not record.get("kind"):
            return None
        return cls(str(record["kind"]), str(record.get("gtids") or ""), str(record.get("against") or ""))

    def to_record(self, at: float) -> dict[str, Any]:
        return {"kind": self.kind, "gtids": self.gtids, "against": self.against, "at": at}

    @property
    def reclone_cures(self) -> bool:
        """Errant writes, a lost tail and purged binlogs go away with a fresh clone; being ahead does not
        call for one (those are a former primary's writes: the operator decides)."""
        return self.kind in (ERRANT, TAIL, STRANDED)

    def __str__(self) -> str:
        if self.kind == ERRANT:
            return f"errant transactions {self.gtids} (written here while not the primary)"
        if self.kind == TAIL:
            return (f"{self.gtids} written here as the primary never reached {self.against} (lost writes; "
                    f"they must be removed before this node rejoins)")
        if self.kind == AHEAD:
            return (f"holds {self.gtids} of a former primary that {self.against} lacks (ahead of the new "
                    f"primary, not errant: an operator decides)")
        return f"{self.against} has purged binary logs this replica still needs ({self.gtids})"


@dataclass(frozen=True)
class Local:
    """What this node knows about itself at the start of a pass."""

    node: str
    session: str | None = None
    """The live session this pass renewed (None: none, or renewal failed)."""
    mysql_up: bool = True
    read_only: bool = True
    flavor: str = "mariadb"
    gtid: str = ""
    """Executed (applied) GTIDs."""
    received_gtid: str = ""
    """Executed plus received into the relay log."""
    source: tuple[str, int] | None = None
    io_running: bool = False
    sql_running: bool = False
    sql_error: str = ""
    io_error: str = ""
    io_errno: int = 0
    lag_seconds: float | None = None
    bootstrap_pending: bool = False
    backup_running: bool = False
    nofailover: bool = False
    auto_reclone: bool = False
    maintenance: bool = False
    verdict: Verdict | None = None


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    lock: Optional[Lock] = None
    target: Optional[str] = None
    wait: float = 0.0

    def __str__(self) -> str:
        return f"{self.action}: {self.reason}"


@dataclass(frozen=True)
class Timing:
    """Every timing the decisions depend on, derived in one place from the config and the backend."""

    session_ttl: float
    lock_expiry_max: float
    """Latest moment after its holder's last renewal that a lock can still exist."""
    stop_grace: float
    failover_cooldown: float = 0.0
    health_poll: float = 2.0
    discovery_timeout: float = 2.0

    @classmethod
    def from_config(cls, config: Any, lock_expiry_max: float) -> "Timing":
        return cls(session_ttl=config.session_ttl, lock_expiry_max=lock_expiry_max, stop_grace=config.stop_grace,
                   failover_cooldown=config.failover_cooldown, health_poll=config.health_poll,
                   discovery_timeout=config.discovery_timeout)

    @property
    def fence_bound(self) -> float:
        """How long after its last renewal a primary that lost its lock can still be writable: its
        next health pass (HEALTH_POLL), a failed renewal and read (2 × DISCOVERY_TIMEOUT), fencing
        (FENCE_BUDGET) and a margin.  Start-up refuses a SESSION_TTL below it (config timing rule)."""
        return self.health_poll + 2 * self.discovery_timeout + FENCE_BUDGET + FENCE_MARGIN

    @property
    def apply_stall(self) -> float:
        """A winner applying its relay log gives up only after its SQL thread made no progress for this
        long (it keeps waiting as long as the thread advances)."""
        return max(self.stop_grace, 5.0)

    @property
    def promote_abandon(self) -> float:
        """A 'promoting' lock of ours that no onChange works on (health got the hook lock) is given up
        after this long: onChange was killed half-way."""
        return self.apply_stall + self.fence_bound + self.session_ttl

    @property
    def peer_publish_wait(self) -> float:
        """How long an election waits for peers' member records on an empty view (a wiped or
        restarted discovery service): two health passes and a request."""
        return 2 * self.health_poll + self.discovery_timeout

    @property
    def switchover_validity(self) -> float:
        """How long a `switchover` request is honoured: hand-over wait + one lock expiry + slack."""
        return self.stop_grace + self.lock_expiry_max + 10.0

    @property
    def switchover_wait(self) -> float:
        """How long the `switchover` command waits for its target to hold a ready lock: the primary's
        hand-over (STOP_GRACE), up to two lock expiries (the old holder's, a failed winner's) and slack."""
        return self.stop_grace + 2 * self.lock_expiry_max + 15

    @property
    def peer_read_timeout(self) -> float:
        """Reading a peer's GTID state over SQL (before following it): a discovery timeout and a second."""
        return self.discovery_timeout + 1


@dataclass
class ElectionMemory:
    """What one onChange run remembers between its steps (the view is re-read each step)."""

    started: float
    deferred: dict[str, float] = field(default_factory=dict)
    """Best candidates this node deferred to, with the view time it started deferring."""

    def expired(self, now: float, ttl: float) -> set[str]:
        return {node for node, since in self.deferred.items() if now - since >= ttl}

    def remember(self, decision: "Decision", now: float) -> None:
        """After a step: a TRY_LATER naming a better candidate starts (once) the time it is given."""
        if decision.action == TRY_LATER and decision.target:
            self.deferred.setdefault(decision.target, now)


# ---------------------------------------------------------------------------
# Shared rules

def is_candidate(local: Local) -> tuple[bool, str]:
    """SPEC §5: may this node become primary?  (and why not, when it may not)"""
    if not local.mysql_up:
        return False, "mysqld is not running"
    if local.maintenance:
        return False, "in maintenance (SIGUSR1)"
    if local.nofailover:
        return False, "NOFAILOVER=true"
    if local.backup_running:
        return False, "a backup is running here"
    if local.sql_error:
        return False, f"replication SQL thread in error: {local.sql_error}"
    if local.verdict is not None:
        return False, str(local.verdict)
    if local.bootstrap_pending:
        return False, "it bootstrapped a new cluster: health takes the lock, read-only until the first snapshot"
    return True, ""


def switchover_target(view: ClusterView, timing: Timing) -> str | None:
    """The node named by a still-valid `switchover` request, else None."""
    request = view.switchover
    if request is None or view.now - request.requested > timing.switchover_validity:
        return None
    return request.to


def handover_refusal(view: ClusterView, target: str, timing: Timing) -> str | None:
    """Why the primary must drop a hand-over to `target` now (None: carry on).

    Refused when the target is not a fresh candidate; abandoned when it has not caught up within
    STOP_GRACE of the request (the primary then stays primary)."""
    member = view.member(target)
    if member is None or not member.candidate or not member.fresh(view.now, timing.session_ttl):
        return f"switchover to {target} refused: it is not a candidate (no fresh candidate member record)"
    requested = view.switchover.requested if view.switchover is not None else 0.0
    if view.now - requested > timing.stop_grace:
        return (f"switchover to {target} abandoned: it did not catch up within STOP_GRACE="
                f"{timing.stop_grace:g} s; staying primary")
    return None


def names_handover_target(view: ClusterView, maintenance: bool, target: str) -> bool:
    """A primary in maintenance names its hand-over target in the `switchover` key (so that the
    others defer to it) unless a request already names that node."""
    return maintenance and (view.switchover is None or view.switchover.to != target)


def holds_lock(view: ClusterView, local: Local) -> bool:
    lock = view.lock
    return bool(lock and local.session and lock.node == local.node and lock.session == local.session)


def holds_ready_lock(view: ClusterView, local: Local) -> bool:
    """This node is the primary of record (its lock, marked ready): its primary term stays open."""
    return holds_lock(view, local) and view.lock is not None and view.lock.state == READY


def rank(flavor: str, contenders: Mapping[str, tuple[str, str]]) -> list[str]:
    """Candidates best first.  `contenders`: node -> (received GTIDs, applied GTIDs).

    A node is ahead of another only if its received set *contains* the other's (SPEC §5); the one
    containing every other comes first.  Ties (equal sets) go to the most applied, then the lowest
    name.  When no set contains all the others (MySQL sets with gaps, several MariaDB domains), the
    order falls back to how many others a node contains and then to progress — and the winner's
    failover record then says that writes may be lost.
    """
    def contains(a: str, b: str) -> bool:
        return gtids.contains(flavor, contenders[a][0], contenders[b][0])

    def key(node: str) -> tuple:
        others = [o for o in contenders if o != node]
        covered = sum(1 for o in others if contains(node, o))
        return (covered < len(others), -covered, -gtids.progress(flavor, contenders[node][0]),
                -gtids.progress(flavor, contenders[node][1]), node)

    return sorted(contenders, key=key)


def contenders(view: ClusterView, local: Local, timing: Timing, exclude: Iterable[str] = ()) -> dict[str, tuple[str, str]]:
    """Who competes: peers with a fresh candidate member record, plus this node if it is a candidate."""
    skip = set(exclude)
    out: dict[str, tuple[str, str]] = {}
    for member in view.members.values():
        if (member.node != local.node and member.node not in skip and member.candidate
                and member.fresh(view.now, timing.session_ttl)):
            out[member.node] = (member.received_gtid, member.gtid)
    if local.node not in skip and is_candidate(local)[0]:
        out[local.node] = (local.received_gtid or local.gtid, local.gtid)
    return out


def best_peer(view: ClusterView, local: Local, timing: Timing) -> str | None:
    """The best candidate other than this node (hand-over target of preStop and maintenance)."""
    order = rank(local.flavor, contenders(view, local, timing, exclude={local.node}))
    return order[0] if order else None


def handover_target(view: ClusterView, local: Local, timing: Timing) -> str | None:
    """Whom the primary hands over to (preStop, maintenance): the node a valid `switchover` request
    names, else the best peer; None when there is nobody."""
    target = switchover_target(view, timing)
    if target is None or target == local.node:
        target = best_peer(view, local, timing)
    return target


def cluster_flavor(view: ClusterView) -> str:
    """The cluster's server family, as its members publish it (MariaDB when none says)."""
    for member in view.members.values():
        if member.flavor:
            return member.flavor
    return "mariadb"


def switchover_candidates(view: ClusterView, timing: Timing) -> list[str]:
    """The `switchover` command's choice, best first: fresh candidate members other than the holder,
    ranked as an election ranks them."""
    holder = view.lock.node if view.lock is not None else None
    peers = {m.node: (m.received_gtid, m.gtid) for m in view.members.values()
             if m.node != holder and m.candidate and m.fresh(view.now, timing.session_ttl)}
    return rank(cluster_flavor(view), peers)


def why_not_switchover_target(view: ClusterView, node: str, timing: Timing) -> str:
    """Why `node` is not among `switchover_candidates` (for the command's refusal)."""
    member = view.member(node)
    if member is None:
        return "unknown node"
    if not member.fresh(view.now, timing.session_ttl):
        return "its member record is stale"
    return "not a candidate (lagging in error, errant, backing up or NOFAILOVER)"


def cooldown_left(view: ClusterView, timing: Timing) -> float:
    """Seconds of anti-flapping cooldown left after the last automatic failover."""
    last = view.failover_last
    if timing.failover_cooldown <= 0 or last is None or last.kind != "automatic":
        return 0.0
    return max(0.0, last.at + timing.failover_cooldown - view.now)


# ---------------------------------------------------------------------------
# health

def bootstrap_taken_over(view: ClusterView, local: Local) -> str:
    """For a node whose bootstrap is pending: what replaced it ('' when nothing did) — another node's
    bootstrap claim (this node's lapsed while it stalled) or another node's first snapshot."""
    if not local.bootstrap_pending:
        return ""
    claimant = view.bootstrap.node if view.bootstrap is not None else None
    if claimant and claimant != local.node:
        return f"the bootstrap of {claimant}"
    source = (view.snapshot_last or {}).get("source_node")
    if source and source != local.node:
        return f"the first snapshot of {source}"
    return ""


def decide_health(view: ClusterView | None, local: Local, timing: Timing) -> Decision:
    """One reconcile step for `health`.  `view` None means discovery could not be read."""
    if not local.mysql_up:
        return Decision(STARTING, "mysqld is not reachable yet")
    if view is None:
        if not local.read_only:
            return Decision(FENCE, "discovery unreachable: cannot prove this node still holds the lock")
        return Decision(NO_DISCOVERY, "discovery unreachable; staying read-only")
    lock = view.lock
    if local.maintenance:
        return _maintenance(view, local, timing)
    if holds_lock(view, local):
        assert lock is not None
        if lock.state == PROMOTING:
            if view.now - lock.since > timing.promote_abandon:
                return Decision(ABANDON_PROMOTION, f"lock has been 'promoting' for {view.now - lock.since:.0f} s "
                                f"and no onChange is working on it", lock)
            return Decision(WAIT_PROMOTION, "promotion under way (onChange is applying the relay log)", lock)
        if local.bootstrap_pending and view.snapshot_last is None and local.read_only:
            # No client write may exist that a node bootstrapping in its place (if this one dies
            # now) would not have: writable only once the cluster's first snapshot exists.
            return Decision(BOOTSTRAP_SNAPSHOT, "holds the lock of a new cluster; read-only until its first "
                            "snapshot exists", lock)
        target = switchover_target(view, timing)
        if target and target != local.node:
            return Decision(HANDOVER, f"switchover to {target} requested", lock, target=target)
        return Decision(PRIMARY, "holds the lock", lock)
    other = bootstrap_taken_over(view, local)
    if other and local.read_only:
        return Decision(GIVE_WAY, f"{other} replaced this node's bootstrap, whose data was never writable: stopping "
                        f"mysqld so that the next start moves it aside and clones", lock)
    if not local.read_only:
        if lock is None:
            why = "writable without the lock (lock is free: it expired or was released)"
        elif lock.node == local.node:
            why = "writable, but the lock names this node under a session this node no longer has"
        else:
            why = f"writable while {lock.node} holds the lock"
        return Decision(FENCE, why, lock)
    if lock is None:
        claimant = view.bootstrap.node if view.bootstrap is not None else None
        # Its claim may have expired while it stalled (then it claims again, create-only), but never
        # once another node's snapshot exists: that node's cluster formed instead of this one.
        first = view.snapshot_last is None or view.snapshot_last.get("source_node") == local.node
        if local.bootstrap_pending and first and claimant in (None, local.node):
            return Decision(TAKE_BOOTSTRAP_LOCK, "this node initialised the cluster; lock is free")
        return Decision(NO_PRIMARY, "lock is free; the election runs in onChange")
    if lock.node == local.node:
        return Decision(NO_PRIMARY, "lock names this node under a session that is gone; waiting for it to expire", lock)
    if lock.state == PROMOTING:
        return Decision(WAIT_PROMOTION, f"{lock.node} is being promoted", lock)
    return _replica(local, lock)


def _maintenance(view: ClusterView, local: Local, timing: Timing) -> Decision:
    """SIGUSR1 (SPEC §4): the primary hands over first; nobody renews the lock or advertises, but a
    node still fences itself when it is writable without the lock."""
    lock = view.lock
    if holds_lock(view, local):
        assert lock is not None
        if lock.state == PROMOTING:
            return Decision(RELEASE, "maintenance: giving up a promotion in progress", lock)
        target = handover_target(view, local, timing)
        if target is None:
            return Decision(RELEASE, "maintenance on the primary and no candidate to hand over to", lock)
        return Decision(HANDOVER, f"maintenance: handing over to {target}", lock, target=target)
    if not local.read_only:
        return Decision(FENCE, "in maintenance and writable without the lock", lock)
    return Decision(MAINTENANCE, "in maintenance (SIGUSR1): not renewing, not advertising", lock)


def _replica(local: Local, lock: Lock) -> Decision:
    """A read-only node and a ready holder: follow it, unless something this node knows forbids it."""
    verdict = local.verdict
    if verdict is not None and verdict.against == lock.node:
        if local.auto_reclone and verdict.reclone_cures:
            return Decision(RECLONE, f"AUTO_RECLONE: {verdict}", lock, target=lock.node)
        return Decision(REFUSE, f"not replicating from {lock.node}: {verdict}", lock, target=lock.node)
    if (local.io_errno == ER_SOURCE_FATAL_READING_BINLOG and local.source == (lock.address, lock.port)
            and "purged" in local.io_error.lower()):
        if local.auto_reclone:
            return Decision(RECLONE, f"AUTO_RECLONE: {lock.node} purged binary logs this replica needs", lock,
                            target=lock.node)
        return Decision(REFUSE, f"{lock.node} has purged binary logs this replica still needs (error 1236): it "
                        f"cannot catch up; re-clone it (AUTO_RECLONE=true does so by itself, or empty its "
                        f"datadir and restart it)", lock, target=lock.node)
    return Decision(FOLLOW, f"{lock.node} holds the lock", lock, target=lock.node)


# ---------------------------------------------------------------------------
# election (onChange)

def decide_election(view: ClusterView, local: Local, timing: Timing,
                    memory: ElectionMemory | None = None) -> Decision:
    """One step of `onChange` (it loops, re-reading the view, until a primary is settled).

    The caller records in `memory` when it starts deferring to a better candidate
    (`Decision.target` of TRY_LATER), so that a best candidate that does not win within one
    SESSION_TTL is passed over — by the next best only, never by everyone at once.
    """
    memory = memory or ElectionMemory(started=view.now)
    lock = view.lock
    if lock is not None:
        if holds_lock(view, local):
            return Decision(IS_PRIMARY, "this node holds the lock", lock)
        if lock.state == PROMOTING:
            return Decision(WAIT_LOCK_CHANGE, f"{lock.node} is being promoted", lock, wait=timing.lock_expiry_max)
        if view.holder_is_live(timing.session_ttl):
            return Decision(FOLLOW, f"{lock.node} holds the lock and is alive", lock, target=lock.node)
        # Re-check every second: the holder may only be slow to advertise (just promoted),
        # or its lock expires; either way the next view settles it.
        return Decision(WAIT_LOCK_CHANGE, f"{lock.node} holds the lock but does not advertise as primary; "
                        f"waiting for it to come back or for the lock to expire", lock, wait=1.0)
    candidate, why_not = is_candidate(local)
    if not candidate:
        return Decision(NOT_CANDIDATE, f"lock is free but this node is not a candidate: {why_not}",
                        wait=timing.session_ttl)
    target = switchover_target(view, timing)
    if target is not None:
        if target == local.node:
            return Decision(TRY_NOW, "planned hand-over names this node", target=target)
        return Decision(TRY_LATER, f"planned hand-over names {target}; deferring", target=target,
                        wait=timing.stop_grace + timing.session_ttl)
    left = cooldown_left(view, timing)
    if left > 0:
        return Decision(REFUSE_COOLDOWN, f"automatic failover refused: the last one was less than "
                        f"FAILOVER_COOLDOWN={timing.failover_cooldown:g} s ago ({left:.0f} s left)", wait=left)
    peers = [m for m in view.members.values() if m.node != local.node and m.fresh(view.now, timing.session_ttl)]
    waited = view.now - memory.started
    if not peers and waited < timing.peer_publish_wait:
        return Decision(TRY_LATER, "no fresh member record of any peer yet (discovery wiped or restarted?); "
                        "giving them one health pass to publish", wait=timing.peer_publish_wait - waited)
    passed_over = memory.expired(view.now, timing.session_ttl)
    order = rank(local.flavor, contenders(view, local, timing, exclude=passed_over - {local.node}))
    best = order[0] if order else local.node
    if best == local.node:
        why = f"most advanced candidate ({local.received_gtid or local.gtid or 'empty'})"
        if passed_over:
            why += f"; {', '.join(sorted(passed_over))} did not take the lock within {timing.session_ttl:g} s"
        return Decision(TRY_NOW, why, target=local.node)
    since = memory.deferred.get(best, view.now)
    return Decision(TRY_LATER, f"{best} is more advanced; trying only if it has not won within "
                    f"{timing.session_ttl:g} s", target=best, wait=max(0.1, timing.session_ttl - (view.now - since)))


# ---------------------------------------------------------------------------
# after winning

def previous_primary(view: ClusterView, me: str, last_holder: str | None) -> dict[str, Any] | None:
    """The newest record of the node that held the lock before this election (None: unknown, or
    this node itself).

    The holder this onChange saw last, else the most recent of `failover/last` (when its term
    began) and the node records that say `primary` (their last publish): a node that crashed as
    primary long ago keeps an old `primary` node record, which must not outrank the newer primary.
    """
    name: str | None = last_holder
    if not name:
        seen: list[tuple[float, str]] = []
        last = view.failover_last
        if last is not None:
            seen.append((last.at, last.to))
        seen += [(float(r.get("updated") or 0.0), n) for n, r in view.nodes.items() if r.get("role") == "primary"]
        name = max(seen)[1] if seen else None
    if not name or name == me:
        return None
    records = [r for r in (view.nodes.get(name), _member_record(view, name)) if r]
    return max(records, key=lambda r: float(r.get("updated") or 0.0)) if records else {"node": name}


def previous_or_source(previous: dict[str, Any] | None, source: tuple[str, int] | None) -> dict[str, Any] | None:
    """The previous primary to fence: when nothing in discovery gives its address (a wiped service),
    the node this one replicated from (`source`) was it."""
    if source is None or (previous is not None and previous.get("address")):
        return previous
    host, port = source
    return {**(previous or {}), "node": (previous or {}).get("node") or f"{host}:{port}", "address": host,
            "port": port}


def apply_target(flavor: str, received: str, final: str | None, previous: Mapping[str, Any] | None,
                 source: tuple[str, int] | None) -> str:
    """What the winner applies before turning writable: everything it received, plus the previous
    primary's last transactions (`final`, read when fencing it over SQL) when it replicates from it."""
    if final and previous and source is not None and source == (previous.get("address"), previous.get("port")):
        return gtids.merge(flavor, received, final)
    return received


def failover_caught_up(view: ClusterView, planned: bool) -> bool:
    """A planned hand-over whose target confirmed everything (preStop writes `caught_up: false`
    when it handed over anyway); an automatic failover never is."""
    return planned and (view.switchover is None or view.switchover.caught_up)


def writable_peers(view: ClusterView, me: str) -> list[dict[str, Any]]:
    """Other nodes whose newest record says they are (or may be) writable: role primary, or
    read_only false."""
    out = []
    for name in sorted(set(view.nodes) | set(view.members)):
        if name == me:
            continue
        records = [r for r in (view.nodes.get(name), _member_record(view, name)) if r]
        newest = max(records, key=lambda r: float(r.get("updated") or 0.0))
        if newest.get("role") == "primary" or newest.get("read_only") is False:
            out.append(newest)
    return out


def _member_record(view: ClusterView, name: str) -> dict[str, Any] | None:
    member = view.member(name)
    if member is None:
        return None
    return {"node": member.node, "address": member.address, "port": member.port, "updated": member.updated,
            "role": member.role, "read_only": member.read_only}


def self_fenced_at(previous: Mapping[str, Any] | None, timing: Timing, fallback: float) -> float:
    """The moment by which the previous primary has fenced itself (or stopped), if it runs at all:
    its last renewal (the `updated` time of its records) plus the fencing bound.  Unknown records
    count from `fallback` (when this election began)."""
    updated = float((previous or {}).get("updated") or 0.0) or fallback
    return updated + timing.fence_bound


def loss_report(flavor: str, view: ClusterView, winner: str, have: str, planned: bool) -> dict[str, Any]:
    """`lost_possible` and `missing_gtids` for `failover/last` (SPEC §7).

    Missing: what the published records of other nodes (live members and the durable node records,
    the dead primary's last one included) hold that the winner, after applying its relay log, lacks;
    nodes that refused to replicate as errant do not count.  Lost is possible whenever something is
    missing, and after any automatic failover with asynchronous replication: the old primary may
    have acknowledged writes it never sent.
    """
    wanted: list[str] = []
    for name, record in list(view.nodes.items()) + [(m.node, {"gtid": m.gtid, "received_gtid": m.received_gtid,
                                                               "verdict": m.verdict}) for m in view.members.values()]:
        if name == winner or ((record.get("verdict") or {}).get("kind") == ERRANT):
            continue
        wanted += [str(record.get("received_gtid") or ""), str(record.get("gtid") or "")]
    missing, count = gtids.missing_report(flavor, have, wanted)
    return {"lost_possible": bool(count) or not planned, "missing_gtids": missing, "missing_count": count}


# ---------------------------------------------------------------------------
# verdict

def verdict(decision: Decision, local: Local, max_lag: float) -> tuple[bool, str]:
    """SPEC §2 exit status: serving its role?"""
    if decision.action == PRIMARY:
        return (not local.read_only), ("primary, writable" if not local.read_only else "primary, still read-only")
    if decision.action == FOLLOW:
        if not (local.io_running and local.sql_running):
            errors = "; ".join(e for e in (local.io_error, local.sql_error) if e)
            return False, (f"replication not running (io={local.io_running}, sql={local.sql_running})"
                           + (f": {errors}" if errors else ""))
        if local.lag_seconds is None or local.lag_seconds > max_lag:
            return False, f"lag {local.lag_seconds} s exceeds MAX_LAG={max_lag:g}"
        return True, f"replica, lag {local.lag_seconds:g} s"
    return False, decision.reason


# ---------------------------------------------------------------------------
# the member record (health publishes it after acting)

def member_role(decision: Decision, local: Local, bootstrap_pending: bool) -> str:
    """The role a node's member record claims after this pass (`status` and peers read it).

    `bootstrap_pending`: the node state says this datadir's bootstrap is not finished yet."""
    if not local.mysql_up:
        return "starting"
    if local.maintenance:
        return "maintenance"
    if decision.action in (PRIMARY, TAKE_BOOTSTRAP_LOCK) and not local.read_only:
        return "primary"
    if decision.action in (FENCE, HANDOVER, RELEASE, ABANDON_PROMOTION):
        return "fenced"
    if local.source is not None:
        return "replica"
    if bootstrap_pending:
        return "starting"
    return "fenced"


def publishes_candidate(role: str, local: Local) -> bool:
    """Only a read-only node (replica, or fenced) may announce itself as a candidate."""
    return role in ("replica", "fenced") and is_candidate(local)[0]


def withdraws_member(decision: Decision, local: Local) -> bool:
    """In maintenance and out of the cluster (not handing over): no member record — not a candidate,
    not a peer anyone waits for; only the durable node record that `status` shows."""
    return local.maintenance and decision.action in (MAINTENANCE, FENCE)


def renews_bootstrap_claim(view: ClusterView, session: str | None, bootstrap_pending: bool) -> bool:
    """mysqld is not up yet on a bootstrap winner: its claim's session (and only that one: never a
    lock's session while mysqld is down) must be renewed until the first pass with mysqld up."""
    return bool(session and bootstrap_pending
                and view.bootstrap is not None and view.bootstrap.session == session
                and (view.lock is None or view.lock.session != session))


# -- semi-synchronous replication (SYNC_REPLICATION) -------------------------
SYNC_OFF = "off"                 # SYNC_REPLICATION=off: asynchronous
SYNC_REPLICA = "replica"         # not the primary: source side off (its own applier must not wait for ACKs)
SYNC_WAITING = "waiting"         # primary, no replica connected and caught up yet: asynchronous
SYNC_ON = "on"                   # primary, source side on (semi: falls back after SYNC_TIMEOUT)
SYNC_STRICT = "strict"           # primary, strict and a replica has acknowledged: never falls back
SYNC_HOLD = "hold"               # commits wait for an ACK: change nothing (fencing stops mysqld instead)


@dataclass(frozen=True)
class SyncFacts:
    """What the semi-sync rule looks at, read once per health pass."""

    mode: str
    """SYNC_REPLICATION: semi, strict or off."""
    primary: bool
    """This pass keeps this node the writable lock holder."""
    source_enabled: bool
    clients: int = 0
    """Semi-sync replicas connected to this server."""
    caught_up: int = 0
    """Replicas (binlog dump threads) that have been sent everything this server has."""
    wait_sessions: int = 0
    """Commits waiting for an acknowledgement right now."""
    acknowledged: bool = False
    """A replica has acknowledged a commit in this primary term (strict)."""


@dataclass(frozen=True)
class SyncPlan:
    source_enabled: bool
    timeout_ms: int
    phase: str
    reason: str


def decide_sync(facts: SyncFacts, timeout_ms: int, never_ms: int) -> SyncPlan:
    """The source side of semi-sync for this node (the replica side is always on unless `off`).

    * Only the primary has the source side on: on a replica, its own applier's
      commits would wait for acknowledgements nobody sends.
    * A primary turns it on only once a replica is connected and caught up.
      A lone primary with semi-sync on makes every commit wait for the timeout
      (and, in `strict`, forever), and the first snapshot — which every replica
      is cloned from — would wait behind it: the cluster could never form.
      After a failover the new primary starts here again.
    * Once on, the primary keeps it on: in `semi` the server falls back to
      asynchronous by itself after `timeout_ms` without an acknowledgement and
      comes back when a replica catches up; in `strict`, once a replica has
      acknowledged in this term, the timeout becomes `never_ms` (never falls back).
    * Never turned off while commits wait for an acknowledgement: that would let
      them commit and tell their clients so, with no replica holding them.
      (A fenced node in that state is stopped by fencing instead.)
    """
    keep = facts.source_enabled
    if facts.wait_sessions > 0 and (facts.mode == "off" or not facts.primary):
        return SyncPlan(keep, timeout_ms, SYNC_HOLD, f"{facts.wait_sessions} commit(s) wait for an acknowledgement; "
                        "the source side is never turned off under them")
    if facts.mode == "off":
        return SyncPlan(False, timeout_ms, SYNC_OFF, "SYNC_REPLICATION=off: asynchronous replication")
    if not facts.primary:
        return SyncPlan(False, timeout_ms, SYNC_REPLICA, "not the primary: replica side only")
    strict = facts.mode == "strict" and facts.acknowledged
    timeout = never_ms if strict else timeout_ms
    phase = SYNC_STRICT if strict else SYNC_ON
    if facts.source_enabled:
        why = ("strict: a replica has acknowledged in this term, commits never fall back to asynchronous"
               if strict else f"commits wait for a replica's acknowledgement (at most {timeout_ms / 1000:g} s)")
        return SyncPlan(True, timeout, phase, why)
    if facts.clients >= 1 and facts.caught_up >= 1:
        return SyncPlan(True, timeout, phase, f"a replica is connected and caught up ({facts.clients} semi-sync "
                        f"replica(s) connected): commits now wait for an acknowledgement")
    return SyncPlan(False, timeout_ms, SYNC_WAITING, "waiting for a replica to connect and catch up; commits are "
                    "asynchronous until then")
