"""`triton-mysql onChange`: the healthy set of `<SERVICE_NAME>-primary` changed.

A loop of (read the view → decide_election → act) until this node either
follows a live primary or has become the primary itself.  Waiting is done
with blocking reads on the `primary` key, so a released or expired lock is
seen at once.  SPEC §5: the candidate whose received GTIDs contain every
other candidate's tries first, the others give it one SESSION_TTL; a
planned hand-over names its target and the others defer to it.

Promotion (ha/promote.py) never turns a node writable with an unapplied
relay log: the winner keeps applying as long as its SQL thread advances and
gives the lock up only when the thread errs or stalls.  Before turning
writable it makes sure the previous primary is read-only: fenced over SQL
when reachable, otherwise by waiting until the moment it must have fenced
itself.
"""
from __future__ import annotations

import logging
import time

from ..discovery import DiscoveryError
from ..ha import decide as d
from ..ha.act import Agent, Observed
from ..ha.promote import Promotion, PromotionAborted
from ..view import PROMOTING, ClusterView
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
            local = self.agent.local(observed, view, self.agent.session.mine(view))
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
                self.promotion(local.session).complete(view, observed, local, planned=False)
            return True
        if action == d.FOLLOW:
            if not local.mysql_up:
                return True  # health follows once mysqld is up
            assert decision.lock is not None
            agent.follow(observed, decision.lock)
            agent.advertiser.advertise(primary=False)
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
        session = agent.session.ensure(view)
        if not agent.acquire_lock(session, observed.server, d.PROMOTING):
            log.info("another node took the lock first; following it")
            return False
        log.info("won election (%s): %s", "planned" if planned else "automatic", "named by the hand-over"
                 if planned else f"most advanced, {local.received_gtid or local.gtid or 'empty'}")
        self.promotion(session).complete(view, observed, local, planned)
        return True

    def promotion(self, session: str) -> Promotion:
        """The winner's sequence (ha/promote.py), under the lock `session` holds."""
        assert self.memory is not None
        return Promotion(self.agent, session, started=self.memory.started, last_holder=self.last_holder)
