"""`triton-mysql onChange`: the healthy set of `<SERVICE_NAME>-primary` changed.

A loop of (read the view → decide_election → act) until this node either
follows a live primary or has become the primary itself.  Waiting is done
with blocking reads on the `primary` key, so a released or expired lock is
seen at once.  SPEC §5: the candidate whose received GTIDs contain every
other candidate's tries first, the others give it one SESSION_TTL; a
planned hand-over names its target and the others defer to it.

Promotion never turns a node writable with an unapplied relay log: the
winner keeps applying as long as its SQL thread advances and gives the lock
up only when the thread errs or stalls.  Before turning writable it makes
sure the previous primary is read-only: fenced over SQL when reachable,
otherwise by waiting until the moment it must have fenced itself.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ..discovery import DiscoveryError
from ..ha import decide as d
from ..ha.act import Agent, Observed
from ..ha.view import PROMOTING, ClusterView
from ..mysql import gtid as gtids
from ..mysql import replication
from ..mysql.connection import DBError
from ..mysql.state import read_state

log = logging.getLogger("triton_mysql.onChange")


class PromotionAborted(Exception):
    """The winner could not apply its relay log; it gave the lock up."""


def run(config) -> int:
    agent = Agent(config)
    try:
        return Election(agent).run()
    finally:
        agent.close()


class Election:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.memory: d.ElectionMemory | None = None
        self.last_holder: str | None = None
        self.last_reason: str | None = None

    def run(self) -> int:
        """Loop until settled: following a live primary, or primary ourselves."""
        while True:
            outcome = self.turn()
            if outcome is True:
                return 0
            if callable(outcome):
                outcome()

    def turn(self):
        """One read → decide → act; True when settled, a callable that waits, or None to go again."""
        try:
            view = self.agent.view(with_services=True)
        except DiscoveryError as exc:
            log.warning("discovery unreachable: %s; retrying", exc)
            return lambda: time.sleep(1.0)
        if self.memory is None:
            self.memory = d.ElectionMemory(started=view.now)
        if view.lock is not None:
            self.last_holder = view.lock.node
        # Observe, decide and act while no other hook of this node changes mysqld;
        # waiting happens outside the lock.
        with self.agent.exclusive(timeout=10.0) as alone:
            if not alone:
                return None
            observed = self.agent.seed_if_restored(self.agent.observe())
            if view.lock is None and observed.server is not None:
                previous = d.previous_primary(view, self.agent.config.node_name, self.last_holder)
                observed = self.agent.check_before_standing(observed, previous)
            local = self.agent.local(observed, view, self.agent.my_session(view))
            decision = d.decide_election(view, local, self.agent.timing, self.memory)
            if decision.reason != self.last_reason:
                log.info("%s", decision)
                self.last_reason = decision.reason
            try:
                return self.step(decision, view, observed, local)
            except (DBError, DiscoveryError, PromotionAborted) as exc:
                log.error("%s failed: %s; retrying", decision.action, exc)
                return lambda: time.sleep(1.0)

    def step(self, decision: d.Decision, view: ClusterView, observed: Observed, local: d.Local):
        """Act on the decision: True when settled, a callable to wait (outside the lock), else None."""
        action = decision.action
        agent = self.agent
        assert self.memory is not None
        if action == d.IS_PRIMARY:
            assert decision.lock is not None
            if decision.lock.state == PROMOTING and local.session:
                log.info("this node holds the lock in 'promoting': finishing the promotion")
                self.complete(local.session, view, observed, local, planned=False)
            return True
        if action == d.FOLLOW:
            if not local.mysql_up:
                return True  # health follows once mysqld is up
            assert decision.lock is not None
            agent.follow(observed, decision.lock)
            agent.advertise(primary=False)
            return True
        if action == d.WAIT_LOCK_CHANGE:
            assert decision.lock is not None
            index, wait = decision.lock.index, decision.wait
            return lambda: agent.store.wait_lock(index, wait)
        if action in (d.NOT_CANDIDATE, d.REFUSE_COOLDOWN):
            wait = decision.wait or 1.0
            return lambda: self.wait_for_lock(wait)
        if action == d.TRY_LATER:
            self.memory.remember(decision, view.now)
            wait = decision.wait
            return lambda: self.wait_for_lock(wait)
        if action == d.TRY_NOW:
            planned = d.switchover_target(view, agent.timing) == agent.config.node_name
            return self.try_promote(view, observed, local, planned=planned) or None
        raise AssertionError(f"unhandled election action {action}")

    def wait_for_lock(self, timeout: float) -> None:
        """Block until the `primary` key exists (someone won) or `timeout` passes."""
        if timeout > 0:
            self.agent.store.wait_lock(0, timeout)

    def try_promote(self, view: ClusterView, observed: Observed, local: d.Local, planned: bool) -> bool:
        agent = self.agent
        session = agent.ensure_session(view)
        if not agent.acquire_lock(session, observed.server, d.PROMOTING):
            log.info("another node took the lock first; following it")
            return False
        log.info("won election (%s): %s", "planned" if planned else "automatic", "named by the hand-over"
                 if planned else f"most advanced, {local.received_gtid or local.gtid or 'empty'}")
        self.complete(session, view, observed, local, planned)
        return True

    def complete(self, session: str, view: ClusterView, observed: Observed, local: d.Local, planned: bool) -> None:
        """Make sure the previous primary is read-only, apply the relay log (up to the previous
        primary's last transaction when it could be fenced over SQL and this node replicates from
        it), stop replication, mark the lock ready, become writable, record the failover, advertise.

        Fencing comes first: a previous primary that still takes writes (its lock vanished early)
        stops, and what it wrote until then still reaches this node instead of being lost."""
        agent = self.agent
        previous = d.previous_primary(view, agent.config.node_name, self.last_holder)
        replica = observed.server.replica if observed.server else None
        if replica is not None and (previous is None or not previous.get("address")):
            # Nothing in discovery says who was primary (wiped?): the node this one replicated from was.
            previous = {**(previous or {}), "node": (previous or {}).get("node") or
                        f"{replica.source_host}:{replica.source_port}",
                        "address": replica.source_host, "port": replica.source_port}
        final = self.ensure_previous_fenced(view, previous, planned)
        target = local.received_gtid
        if final and previous and replica is not None and \
                (replica.source_host, replica.source_port) == (previous.get("address"), previous.get("port")):
            target = gtids.merge(agent.flavor.name, target, final)
        try:
            self.apply_relay_log(observed, target)
        except PromotionAborted:
            if agent.store.release_lock(session):
                log.error("gave the lock up: this node cannot apply its relay log")
            raise
        server = agent.observe().server
        assert server is not None
        agent.stop_replication_if_any(server, "promoted")
        agent.mark_lock_ready(session, server)
        observed = agent.become_writable(Observed(server, agent.observe().state),
                                         "won the election and applied its whole relay log")
        if not local.bootstrap_pending:  # the first lock of a brand-new cluster is not a failover
            switchover = view.switchover or {}
            caught_up = planned and bool(switchover.get("caught_up", True))
            report = d.loss_report(agent.flavor.name, view, agent.config.node_name, server.executed_gtid, caught_up)
            if report["missing_gtids"]:
                log.warning("failover: transactions other nodes published are missing here: %s (%d)",
                            report["missing_gtids"], report["missing_count"])
            agent.record_failover(previous.get("node") if previous else None,
                                  "planned" if planned else "automatic", report)
        if planned:
            agent.store.clear_switchover()
        agent.advertise(primary=True)

    def apply_relay_log(self, observed: Observed, target: str) -> None:
        """Apply everything received before turning writable (SPEC §5).

        Keeps waiting as long as the SQL thread advances; raises PromotionAborted when it errs or
        makes no progress for `Timing.apply_stall` seconds."""
        agent = self.agent
        server = observed.server
        if server is None or server.replica is None:
            return
        conn = agent.conn()
        if not server.replica.sql_running:
            replication.start(conn, agent.flavor)
        bound = agent.timing.apply_stall
        if not target or replication.wait_applied(conn, agent.flavor, target, 0):
            return
        log.info("applying the relay log up to %s (giving up only if the SQL thread errs or makes no progress "
                 "for %g s)", target, bound)
        executed, progressed = server.executed_gtid, time.monotonic()
        while not replication.wait_applied(conn, agent.flavor, target, 1.0):
            state = read_state(conn, agent.flavor)
            if state.replica is not None and state.replica.last_sql_errno:
                raise PromotionAborted(f"SQL thread error while applying the relay log: "
                                       f"{state.replica.last_sql_error}")
            if state.executed_gtid != executed:
                executed, progressed = state.executed_gtid, time.monotonic()
            elif time.monotonic() - progressed > bound:
                raise PromotionAborted(f"relay log not applied: no progress for {bound:g} s at {executed} "
                                       f"(target {target})")
        log.info("relay log applied up to %s", target)

    def ensure_previous_fenced(self, view: ClusterView, previous: dict[str, Any] | None,
                               planned: bool) -> str | None:
        """The previous primary must be read-only before this node turns writable (SPEC §5).

        Each node that may still be writable — the previous primary, and any peer whose last record
        says it is writable — is fenced over SQL when reachable; otherwise this node waits until
        that node's last renewal (the `updated` time of its records) plus the fencing bound, by which
        a running node has fenced itself: already over after a normal expiry.  With no record of a
        previous primary at all (a wiped discovery service) the wait counts from the start of this
        election.  A planned hand-over fenced itself before it released the lock: no wait for it.
        Returns the previous primary's executed GTIDs when it was fenced over SQL (else None).
        """
        assert self.memory is not None
        me, timing, started = self.agent.config.node_name, self.agent.timing, self.memory.started
        records = d.writable_peers(view, me)
        if previous is not None and previous.get("node") != me:
            records = [previous] + [r for r in records if r.get("node") != previous.get("node")]
        # A record older than the fencing bound belongs to a node that has fenced itself since (a
        # running node publishes every pass) or is down: nothing to reach, nothing to wait for.
        suspects = [r for r in records if d.self_fenced_at(r, timing, started) > view.now]
        deadline = 0.0 if records or planned else d.self_fenced_at(None, timing, started)
        final: str | None = None
        for record in suspects:
            executed = self.agent.fence_peer(record)
            if executed is not None and record is previous:
                final = executed
            if executed is not None or (planned and record is previous):
                continue
            deadline = max(deadline, d.self_fenced_at(record, timing, started))
        wait = deadline - time.time()
        if wait > 0:
            who = ", ".join(str(r.get("node")) for r in suspects) or "an unknown previous primary"
            log.warning("%s cannot be fenced over SQL; waiting %.1f s until it must have fenced itself (last "
                        "renewal + %g s)", who, wait, timing.fence_bound)
            time.sleep(wait)
        return final
