"""What to do, as pure functions of (cluster view, local server state).

Nothing here talks to a server: `act.py` carries decisions out.  That split
is what lets every transition be table-tested (tests/test_ha_decide.py).

Two decisions exist, matching the two hooks that make them:

* `decide_health` — the short reconcile pass that runs every few seconds.
  It keeps a node in its role and never promotes (except that the node that
  initialised a brand-new cluster takes the free lock the first time).
* `decide_election` — what `onChange` does when the primary service changed:
  follow a live primary, wait for a dead holder's lock to expire, or take
  part in the election (SPEC §5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..mysql import gtid as gtids
from .view import PROMOTING, ClusterView, Lock

# -- health actions ---------------------------------------------------------
STARTING = "starting"            # mysqld not reachable yet: nothing to do
PRIMARY = "primary"              # hold the lock: be writable, advertise as primary
TAKE_BOOTSTRAP_LOCK = "take_bootstrap_lock"  # first primary of a new cluster
BOOTSTRAP_SNAPSHOT = "bootstrap_snapshot"  # new cluster's holder: read-only until its first snapshot exists
GIVE_WAY = "give_way"            # another node's bootstrap replaced ours: stop; the next start clones
WAIT_PROMOTION = "wait_promotion"  # a promotion is under way (ours or someone's): stay put
FINISH_PROMOTION = "finish_promotion"  # we hold a lock left in "promoting" too long: finish it
HANDOVER = "handover"            # switchover requested: fence, wait for target, release
FENCE = "fence"                  # writable without the lock (or cannot prove we hold it)
FOLLOW = "follow"                # replicate from the lock holder
NO_PRIMARY = "no_primary"        # lock free: stay read-only; the election is onChange's job
NO_DISCOVERY = "no_discovery"    # discovery unreachable and already read-only: wait

# -- election actions -------------------------------------------------------
IS_PRIMARY = "is_primary"        # we already hold the lock
WAIT_LOCK_CHANGE = "wait_lock_change"  # holder promoting, or holder gone: wait on the key
TRY_NOW = "try_now"              # we are the best candidate (or the named target)
TRY_LATER = "try_later"          # someone is better: give them one SESSION_TTL first
NOT_CANDIDATE = "not_candidate"  # we cannot be primary: wait for a winner
REFUSE_COOLDOWN = "refuse_cooldown"  # anti-flapping: an automatic failover happened too recently


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
    received_gtid: str = ""
    source: tuple[str, int] | None = None
    io_running: bool = False
    sql_running: bool = False
    sql_error: str = ""
    io_error: str = ""
    lag_seconds: float | None = None
    bootstrap_pending: bool = False
    backup_running: bool = False
    nofailover: bool = False
    errant: str = ""
    """Transactions this node has that the lock holder lacks ('' = none known)."""


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
    """The timing knobs decisions depend on (from Config and the backend)."""

    session_ttl: float
    lock_expiry_max: float
    """Latest moment after its holder's last renewal that a lock can still exist."""
    stop_grace: float
    failover_cooldown: float = 0.0
    promote_timeout: float = 60.0

    @property
    def switchover_validity(self) -> float:
        """How long a `switchover` request is honoured: hand-over wait + one lock expiry + slack."""
        return self.stop_grace + self.lock_expiry_max + 10.0


def is_candidate(local: Local) -> tuple[bool, str]:
    """SPEC §5: may this node become primary?  (and why not, when it may not)"""
    if not local.mysql_up:
        return False, "mysqld is not running"
    if local.nofailover:
        return False, "NOFAILOVER=true"
    if local.backup_running:
        return False, "a backup is running here"
    if local.sql_error:
        return False, f"replication SQL thread in error: {local.sql_error}"
    if local.errant:
        return False, f"errant transactions {local.errant}"
    if local.bootstrap_pending:
        return False, "it bootstrapped a new cluster: health takes the lock, read-only until the first snapshot"
    return True, ""


def switchover_target(view: ClusterView, timing: Timing) -> str | None:
    """The node named by a still-valid `switchover` request, else None."""
    request = view.switchover
    if not request or not request.get("to"):
        return None
    requested = float(request.get("requested") or 0.0)
    if view.now - requested > timing.switchover_validity:
        return None
    return str(request["to"])


def holds_lock(view: ClusterView, local: Local) -> bool:
    lock = view.lock
    return bool(lock and local.session and lock.node == local.node and lock.session == local.session)


def bootstrap_taken_over(view: ClusterView, local: Local) -> str:
    """For a node whose bootstrap is pending: what replaced it ('' when nothing did) — another node's
    bootstrap claim (this node's lapsed while it stalled) or another node's first snapshot."""
    if not local.bootstrap_pending:
        return ""
    claimant = (view.bootstrap or {}).get("node")
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
    if holds_lock(view, local):
        assert lock is not None
        if lock.state == PROMOTING:
            if view.now - lock.since > timing.promote_timeout:
                return Decision(FINISH_PROMOTION, f"lock has been 'promoting' for {view.now - lock.since:.0f} s", lock)
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
        bootstrap = view.bootstrap or {}
        # Its claim may have expired while it stalled (then it claims again, create-only), but never
        # once another node's snapshot exists: that node's cluster formed instead of this one.
        first = view.snapshot_last is None or view.snapshot_last.get("source_node") == local.node
        if local.bootstrap_pending and first and bootstrap.get("node") in (None, local.node):
            return Decision(TAKE_BOOTSTRAP_LOCK, "this node initialised the cluster; lock is free")
        return Decision(NO_PRIMARY, "lock is free; the election runs in onChange")
    if lock.node == local.node:
        return Decision(NO_PRIMARY, "lock names this node under a session that is gone; waiting for it to expire", lock)
    if lock.state == PROMOTING:
        return Decision(WAIT_PROMOTION, f"{lock.node} is being promoted", lock)
    return Decision(FOLLOW, f"{lock.node} holds the lock", lock, target=lock.node)


def ranking(view: ClusterView, local: Local, timing: Timing) -> list[str]:
    """Candidates, most advanced `received_gtid` first (ties: lowest node name).

    Other nodes count only with a candidate member record updated within
    SESSION_TTL; this node counts with its live position.
    """
    positions: dict[str, str] = {}
    for member in view.members.values():
        if member.node != local.node and member.candidate and member.fresh(view.now, timing.session_ttl):
            positions[member.node] = member.received_gtid
    if is_candidate(local)[0]:
        positions[local.node] = local.received_gtid or local.gtid
    return sorted(positions, key=lambda n: (-gtids.progress(local.flavor, positions[n]), n))


def cooldown_left(view: ClusterView, timing: Timing) -> float:
    """Seconds of anti-flapping cooldown left after the last automatic failover."""
    last = view.failover_last
    if timing.failover_cooldown <= 0 or not last or last.get("kind") != "automatic":
        return 0.0
    return max(0.0, float(last.get("at") or 0.0) + timing.failover_cooldown - view.now)


def decide_election(view: ClusterView, local: Local, timing: Timing) -> Decision:
    """One step of `onChange` (it loops, re-reading the view, until a primary is settled)."""
    lock = view.lock
    if lock is not None:
        if holds_lock(view, local):
            return Decision(IS_PRIMARY, "this node holds the lock", lock)
        if lock.state == PROMOTING:
            return Decision(WAIT_LOCK_CHANGE, f"{lock.node} is being promoted", lock, wait=timing.promote_timeout)
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
    order = ranking(view, local, timing)
    if order and order[0] == local.node:
        return Decision(TRY_NOW, f"most advanced candidate ({local.received_gtid or local.gtid or 'empty'})",
                        target=local.node)
    best = order[0] if order else "?"
    return Decision(TRY_LATER, f"{best} is more advanced; trying only if it has not won within "
                    f"{timing.session_ttl:g} s", target=best, wait=timing.session_ttl)


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
