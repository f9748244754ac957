"""`triton-mysql health`: one short reconcile pass, then the verdict (SPEC §2).

Read (local server, cluster view, session) → decide (pure, ha/decide.py) →
act (ha/act.py) → publish the member record → exit 0 when the node serves
its role.  It never promotes and never waits long: elections are onChange's
work.  Order matters for fencing: if discovery cannot be read or the session
cannot be renewed, a writable node fences itself in this very pass.

In maintenance (the supervisor sets CONTAINERBUDDY_MAINTENANCE=1) the pass
still runs: the primary hands over, and any node that finds itself writable
without the lock fences itself; nobody renews a session or advertises.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from ..discovery import DiscoveryError
from ..ha import decide as d
from ..ha.act import Agent, Observed
from ..records import BootstrapClaim, SwitchoverRequest
from ..ha.sync import sync_pass
from ..view import READY, ClusterView
from ..mysql.accounts import ACCOUNTS_VERSION, ensure_accounts, upgrade_once
from ..mysql.connection import DBError
from ..mysql.fence import stop_mysqld
from ..mysql.server_config import pid_file_for
from .. import node_state

log = logging.getLogger("triton_mysql.health")


def run(config, check_only: bool = False) -> int:
    agent = Agent(config)
    try:
        if check_only:
            return _pass(agent, check_only=True)
        # One pass at a time per node, and not while onChange changes mysqld; a pass
        # that cannot get the lock still reports (and fences: fencing is safe to repeat).
        with agent.exclusive(timeout=max(1.0, config.health_poll)) as alone:
            return _pass(agent, check_only=False, act=alone)
    finally:
        agent.close()


def _pass(agent: Agent, check_only: bool, act: bool = True) -> int:
    config = agent.config
    observed = agent.observe()
    if observed.server is not None and not check_only and act:
        observed = _first_boot(agent, observed)

    view: ClusterView | None
    session: str | None = None
    try:
        view = agent.view()
        if view is not None:
            session = agent.session.mine(view)
            if not check_only and observed.server is not None and not agent.maintenance:
                session = agent.session.ensure(view)
            elif not check_only and d.renews_bootstrap_claim(view, session, _bootstrap_pending(observed)):
                agent.discovery.renew_session(session)  # keep the bootstrap claim while mysqld starts
    except DiscoveryError as exc:
        log.warning("discovery unreachable: %s", exc)
        view = None

    local = agent.local(observed, view, session)
    decision = d.decide_health(view, local, agent.timing)
    if check_only:
        healthy, why = d.verdict(decision, local, config.max_lag)
        log.debug("check-only: %s (%s)", "healthy" if healthy else "unhealthy", why)
        return 0 if healthy else 1

    if not act and decision.action != d.FENCE:
        log.info("another hook is changing mysqld; %s deferred to the next pass", decision.action)
        return 1
    try:
        observed, changed = _act(agent, decision, observed, view, session)
    except (DBError, DiscoveryError) as exc:
        log.error("%s failed: %s", decision.action, exc)
        changed = True
        if decision.action == d.PRIMARY and isinstance(exc, DiscoveryError):
            agent.fence(f"discovery failed while acting as primary: {exc}")
    if changed:
        observed = agent.observe()
        local = agent.local(observed, view, session)
    if view is not None and not d.holds_ready_lock(view, local):
        observed = agent.close_term(observed)
    healthy, why = d.verdict(decision, local, config.max_lag)
    sync = sync_pass(agent, decision, observed, local, view)  # semi-sync: decide, set, report (ha/sync.py)
    _publish(agent, decision, observed, local, session, healthy, sync)
    (log.info if changed else log.debug)("%s; verdict: %s (%s)", decision, "healthy" if healthy else "unhealthy", why)
    return 0 if healthy else 1


def _first_boot(agent: Agent, observed: Observed) -> Observed:
    """Once per datadir: seed the GTID state after a restore; create accounts on a new cluster."""
    observed = agent.seed_if_restored(observed)
    state = observed.state
    if state is not None and state.bootstrap_pending and state.accounts_version < ACCOUNTS_VERSION:
        observed = agent.open_term(observed)  # the accounts below are this node's writes as the first primary
        state = observed.state
        assert state is not None
        done = ensure_accounts(agent.conn(), agent.flavor, agent.config, allow_read_only=True)
        if done:
            log.info("first boot of a new cluster: %s", "; ".join(done))
        state = state.update(accounts_version=ACCOUNTS_VERSION)  # once: every pass until the snapshot is costly
        node_state.save(agent.config.mysql_datadir, state)
        observed = Observed(observed.server, state)
    return observed


def _act(agent: Agent, decision: d.Decision, observed: Observed, view: ClusterView | None,
         session: str | None) -> tuple[Observed, bool]:
    """Carry the decision out.  Returns the observation (node state updated) and whether something changed."""
    server = observed.server
    action = decision.action
    if action in (d.STARTING, d.NO_DISCOVERY, d.WAIT_PROMOTION, d.MAINTENANCE, d.BOOTSTRAP_SNAPSHOT):
        return observed, False
    assert server is not None
    if action == d.FENCE:
        agent.fence(decision.reason)
        return observed, True
    if action == d.GIVE_WAY:
        log.warning("giving way: %s", decision.reason)
        stop_mysqld(pid_file_for(agent.config), timeout=60)  # never writable: nothing a client wrote is lost
        return observed, True
    if action == d.TAKE_BOOTSTRAP_LOCK:
        assert session is not None and view is not None
        if view.bootstrap is None and not _claim_again(agent, session):
            return observed, False
        if not agent.acquire_lock(session, server, READY):
            log.info("bootstrap: the lock was taken by another node first")
            return observed, False
        log.info("took the primary lock: this node bootstrapped the cluster (read-only until its first snapshot)")
        return observed, True
    if action == d.ABANDON_PROMOTION or action == d.RELEASE:
        assert session is not None
        if not server.read_only:
            agent.fence(decision.reason)
        if agent.store.release_lock(session):
            log.warning("released the primary lock: %s", decision.reason)
        agent.advertiser.advertise(primary=False)
        return observed, True
    if action == d.PRIMARY:
        changed = server.read_only or server.replica is not None
        observed = _primary(agent, observed, "holds the lock")
        if observed.state is not None and observed.state.bootstrap_pending:
            _clear_bootstrap(agent, observed)
        upgrade_once(agent.conn(), agent.flavor, agent.config)  # grants of a newer version, once per datadir
        return observed, changed
    if action == d.HANDOVER:
        return observed, _handover_step(agent, decision, observed, view, session)
    if action == d.FOLLOW:
        assert decision.lock is not None
        before = observed.verdict
        observed = agent.follow(observed, decision.lock)
        agent.advertiser.advertise(primary=False)
        return observed, server.replica is None or observed.verdict != before or not (
            server.replica.io_running and server.replica.sql_running)
    if action == d.REFUSE:
        agent.refuse(observed, decision.reason)
        agent.advertiser.advertise(primary=False)
        return observed, False
    if action == d.RECLONE:
        agent.schedule_reclone(observed, decision.reason, decision.target or "")
        return observed, True
    if action == d.NO_PRIMARY:
        agent.advertiser.advertise(primary=False)
        return observed, False
    raise AssertionError(f"unhandled action {action}")


def _primary(agent: Agent, observed: Observed, reason: str) -> Observed:
    server = observed.server
    assert server is not None
    if server.replica is not None:
        agent.stop_replication_if_any(server, "this node is the primary")
    if server.read_only:
        observed = agent.become_writable(observed, reason)
    agent.advertiser.advertise(primary=True)
    return observed


def _claim_again(agent: Agent, session: str) -> bool:
    """The bootstrap claim expired while this node stalled and nobody claimed since: claim it again."""
    claim = BootstrapClaim(node=agent.config.node_name, at=time.time(), session=session)
    if agent.store.claim_bootstrap(claim):
        log.warning("bootstrap: this node's claim had expired; claimed the new cluster again (session %s)", session)
        return True
    log.info("bootstrap: another node claimed the new cluster first")
    return False


def _bootstrap_pending(observed: Observed) -> bool:
    return observed.state is not None and observed.state.bootstrap_pending


def _clear_bootstrap(agent: Agent, observed: Observed) -> None:
    state = node_state.load(agent.config.mysql_datadir)
    if state is not None and state.bootstrap_pending:
        node_state.save(agent.config.mysql_datadir, state.update(bootstrap_pending=False))


def _handover_step(agent: Agent, decision: d.Decision, observed: Observed, view: ClusterView | None,
                   session: str | None) -> bool:
    """Switchover (or maintenance), one short step per pass: fence, check the target caught up, release."""
    assert view is not None and decision.lock is not None and session is not None
    server = observed.server
    target = decision.target or ""
    if d.names_handover_target(view, agent.maintenance, target):
        agent.store.request_switchover(SwitchoverRequest(to=target, requested=time.time(),
                                                         source=agent.config.node_name, kind="maintenance"))
        log.info("maintenance: named %s for the hand-over", target)
        view = agent.view()
    refusal = d.handover_refusal(view, target, agent.timing)
    if refusal is not None:
        log.error("%s", refusal)
        agent.store.clear_switchover(index=view.switchover_index)
        if agent.maintenance:
            agent.fence("maintenance: " + refusal)
            agent.store.release_lock(session)
            return True
        return False
    changed = False
    if server is not None and not server.read_only:
        agent.fence(f"hand-over to {target}")
        server = agent.observe().server
        changed = True
    position = server.executed_gtid if server else ""
    member = view.member(target)
    assert member is not None
    if agent.peers.applied(member.address, member.port, position, timeout=1.0):
        if agent.store.release_lock(session):
            log.info("hand-over: %s has applied everything up to %s; lock released to it", target, position)
            agent.advertiser.advertise(primary=False)
            return True
    return changed


def _publish(agent: Agent, decision: d.Decision, observed: Observed, local: d.Local, session: str | None,
             healthy: bool, sync: dict | None = None) -> None:
    role = d.member_role(decision, local, _bootstrap_pending(observed))
    record = agent.member_record(observed, role, healthy, d.publishes_candidate(role, local))
    if sync is not None:
        record = dataclasses.replace(record, sync=sync)
    try:
        if d.withdraws_member(decision, local):  # out of the cluster until SIGUSR1 again
            agent.store.drop_member(agent.config.node_name)
            agent.publish(None, record)
        else:
            agent.publish(session, record)
    except DiscoveryError as exc:
        log.warning("could not publish the member record: %s", exc)
