"""`triton-mysql onChange`: the healthy set of `<SERVICE_NAME>-primary` changed.

A loop of (read the view → decide_election → act) until this node either
follows a live primary or has become the primary itself, bounded in time.
Waiting is done with blocking reads on the `primary` key, so a released or
expired lock is seen at once.  SPEC §5: the most advanced candidate tries
first, the others give it one SESSION_TTL; a planned hand-over names its
target and the others defer to it.
"""
from __future__ import annotations

import logging
import time

from ..discovery import DiscoveryError
from ..ha import decide as d
from ..ha.act import Agent
from ..ha.view import PROMOTING, ClusterView
from ..mysql import replication
from ..mysql.connection import DBError

log = logging.getLogger("triton_mysql.onChange")


def run(config) -> int:
    agent = Agent(config)
    try:
        return Election(agent).run()
    finally:
        agent.close()


class Election:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        t = agent.timing
        self.deadline = time.monotonic() + 3 * t.lock_expiry_max + 2 * t.stop_grace + t.session_ttl + 30
        self.deferred_to: set[str] = set()
        self.last_holder: str | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self) -> int:
        last_reason = None
        while self.remaining() > 0:
            try:
                view = self.agent.view(with_services=True)
            except DiscoveryError as exc:
                log.warning("discovery unreachable: %s; retrying", exc)
                time.sleep(1.0)
                continue
            if view.lock is not None:
                self.last_holder = view.lock.node
            # Observe, decide and act while no other hook of this node changes mysqld;
            # waiting happens outside the lock.
            with self.agent.exclusive(timeout=10.0) as alone:
                if not alone:
                    continue
                observed = self.agent.seed_if_restored(self.agent.observe())
                local = self.agent.local(observed, view, self.agent.my_session(view))
                decision = d.decide_election(view, local, self.agent.timing)
                if decision.reason != last_reason:
                    log.info("%s", decision)
                    last_reason = decision.reason
                try:
                    outcome = self.step(decision, view, observed, local)
                except (DBError, DiscoveryError) as exc:
                    log.error("%s failed: %s; retrying", decision.action, exc)
                    outcome = lambda: time.sleep(1.0)  # noqa: E731
            if outcome is True:
                return 0
            if callable(outcome):
                outcome()
        log.warning("onChange gave up after its time bound without settling a primary; health keeps this "
                    "node read-only and the next change of the primary service runs onChange again")
        return 0

    def step(self, decision: d.Decision, view: ClusterView, observed, local: d.Local):
        """Act on the decision: True when settled, a callable to wait (outside the lock), else None."""
        action = decision.action
        agent = self.agent
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
            index, wait = decision.lock.index, min(decision.wait, self.remaining())
            return lambda: agent.discovery.wait(agent.keys.primary, index, wait)
        if action in (d.NOT_CANDIDATE, d.REFUSE_COOLDOWN):
            wait = min(decision.wait or 1.0, self.remaining())
            return lambda: self.wait_for_lock(wait)
        if action == d.TRY_LATER:
            target = decision.target or ""
            if target not in self.deferred_to:
                self.deferred_to.add(target)
                wait = min(decision.wait, self.remaining())
                return lambda: self.wait_for_lock(wait)
            log.info("%s did not take the lock in time; trying", target)
            return self.try_promote(view, observed, local, planned=False) or None
        if action == d.TRY_NOW:
            planned = d.switchover_target(view, agent.timing) == agent.config.node_name
            return self.try_promote(view, observed, local, planned=planned) or None
        raise AssertionError(f"unhandled election action {action}")

    def wait_for_lock(self, timeout: float) -> None:
        """Block until the `primary` key exists (someone won) or `timeout` passes."""
        if timeout > 0:
            self.agent.discovery.wait(self.agent.keys.primary, 0, timeout)

    def try_promote(self, view: ClusterView, observed, local: d.Local, planned: bool) -> bool:
        agent = self.agent
        session = agent.ensure_session(view)
        if not agent.acquire_lock(session, observed.server, d.PROMOTING):
            log.info("another node took the lock first; following it")
            return False
        log.info("won election (%s): %s", "planned" if planned else "automatic", "named by the hand-over"
                 if planned else f"most advanced, {local.received_gtid or local.gtid or 'empty'}")
        self.complete(session, view, observed, local, planned)
        return True

    def complete(self, session: str, view: ClusterView, observed, local: d.Local, planned: bool) -> None:
        """Apply the relay log, stop replication, mark the lock ready, become writable, record, advertise."""
        agent = self.agent
        try:
            self.promote(session, observed, local)
        except BaseException:
            # Leave the lock in "promoting": health keeps us read-only and finishes or
            # the lock expires with our session; never writable half-way.
            log.exception("promotion failed half-way; the lock stays in 'promoting'")
            raise
        if not local.bootstrap_pending:  # the first lock of a brand-new cluster is not a failover
            agent.record_failover(self.previous_primary(view), "planned" if planned else "automatic")
        if planned:
            agent.discovery.delete(agent.keys.switchover)
        agent.advertise(primary=True)

    def promote(self, session: str, observed, local: d.Local) -> None:
        agent = self.agent
        conn = agent.conn()
        server = observed.server
        if server.replica is not None:
            if not server.replica.sql_running:
                replication.start(conn, agent.flavor)
            target = local.received_gtid
            bound = max(agent.config.stop_grace, 5.0)
            if target and not replication.wait_applied(conn, agent.flavor, target, bound):
                log.warning("relay log not fully applied within %g s (target %s); promoting anyway", bound, target)
            replication.stop_and_clear(conn, agent.flavor)
        agent.mark_lock_ready(session, server)
        agent.become_writable("won the election and applied its relay log")

    def previous_primary(self, view: ClusterView) -> str | None:
        if self.last_holder and self.last_holder != self.agent.config.node_name:
            return self.last_holder
        if view.switchover and view.switchover.get("from"):
            return str(view.switchover["from"])
        for name, record in view.nodes.items():
            if name != self.agent.config.node_name and record.get("role") == "primary":
                return name
        return None
