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
        target = switchover_target(view, timing)
        if target and target != local.node:
            return Decision(HANDOVER, f"switchover to {target} requested", lock, target=target)
        return Decision(PRIMARY, "holds the lock", lock)
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
        if local.bootstrap_pending and bootstrap.get("node") == local.node:
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
