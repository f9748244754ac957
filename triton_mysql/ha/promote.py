"""Promotion: what the election's winner does between taking the lock and serving writes (SPEC §5).

The winner holds the lock in state 'promoting'.  It makes sure the previous primary is read-only
(fenced over SQL when reachable, otherwise by waiting until the moment it must have fenced
itself), applies its whole relay log (as long as the SQL thread advances), stops replication,
marks the lock ready, turns writable, records the failover and advertises.  onChange decides
*that* this node promotes (ha/decide.py); this module is *how*.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ..mysql import replication
from ..mysql.state import read_state
from . import decide as d
from .act import Agent, Observed
from ..view import ClusterView

log = logging.getLogger("triton_mysql.onChange")


class PromotionAborted(Exception):
    """The winner could not apply its relay log; it gave the lock up."""


@dataclass
class Promotion:
    """One promotion of this node, under the lock `session` holds."""

    agent: Agent
    session: str
    started: float
    """When this election began (the view's clock): the wait for an unknown previous primary counts from it."""
    last_holder: str | None = None
    """The lock holder this onChange saw last (the previous primary, when discovery still knew it)."""

    def complete(self, view: ClusterView, observed: Observed, local: d.Local, planned: bool) -> None:
        """Make sure the previous primary is read-only, apply the relay log (up to the previous
        primary's last transaction when it could be fenced over SQL and this node replicates from
        it), stop replication, mark the lock ready, become writable, record the failover, advertise.

        Fencing comes first: a previous primary that still takes writes (its lock vanished early)
        stops, and what it wrote until then still reaches this node instead of being lost."""
        agent = self.agent
        previous = d.previous_primary(view, agent.config.node_name, self.last_holder)
        replica = observed.server.replica if observed.server else None
        source = (replica.source_host, replica.source_port) if replica is not None else None
        previous = d.previous_or_source(previous, source)
        final = self.ensure_previous_fenced(view, previous, planned)
        target = d.apply_target(agent.flavor.name, local.received_gtid, final, previous, source)
        try:
            self.apply_relay_log(observed, target)
        except PromotionAborted:
            if agent.store.release_lock(self.session):
                log.error("gave the lock up: this node cannot apply its relay log")
            raise
        server = agent.observe().server
        assert server is not None
        agent.stop_replication_if_any(server, "promoted")
        agent.mark_lock_ready(self.session, server)
        observed = agent.become_writable(Observed(server, agent.observe().state),
                                         "won the election and applied its whole relay log")
        if not local.bootstrap_pending:  # the first lock of a brand-new cluster is not a failover
            report = d.loss_report(agent.flavor.name, view, agent.config.node_name, server.executed_gtid,
                                   d.failover_caught_up(view, planned))
            if report["missing_gtids"]:
                log.warning("failover: transactions other nodes published are missing here: %s (%d)",
                            report["missing_gtids"], report["missing_count"])
            agent.record_failover(previous.get("node") if previous else None,
                                  "planned" if planned else "automatic", report)
        if planned:
            agent.store.clear_switchover()
        agent.advertiser.advertise(primary=True)

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
        me, timing, started = self.agent.config.node_name, self.agent.timing, self.started
        records = d.writable_peers(view, me)
        if previous is not None and previous.get("node") != me:
            records = [previous] + [r for r in records if r.get("node") != previous.get("node")]
        # A record older than the fencing bound belongs to a node that has fenced itself since (a
        # running node publishes every pass) or is down: nothing to reach, nothing to wait for.
        suspects = [r for r in records if d.self_fenced_at(r, timing, started) > view.now]
        deadline = 0.0 if records or planned else d.self_fenced_at(None, timing, started)
        final: str | None = None
        for record in suspects:
            executed = self.agent.peers.fence(record)
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
