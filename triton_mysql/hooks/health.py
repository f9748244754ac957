"""`triton-mysql health`: one short reconcile pass, then the verdict (SPEC §2).

Read (local server, cluster view, session) → decide (pure, ha/decide.py) →
act (ha/act.py) → publish the member record → exit 0 when the node serves
its role.  It never promotes and never waits long: elections are onChange's
work.  Order matters for fencing: if discovery cannot be read or the session
cannot be renewed, a writable node fences itself in this very pass.
"""
from __future__ import annotations

import logging
import time

from ..discovery import DiscoveryError
from ..ha import decide as d
from ..ha.act import Agent, Observed
from ..ha.sync import sync_pass
from ..ha.view import ClusterView
from ..mysql.accounts import ensure_accounts
from ..mysql.connection import DBError
from .. import node_state

log = logging.getLogger("triton_mysql.health")


def run(config, check_only: bool = False) -> int:
    agent = Agent(config)
    try:
        if check_only:
            return _pass(agent, check_only=True)
        # One pass at a time per node, and not while onChange/preStop change mysqld; a pass
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
        if not check_only and observed.server is not None:
            session = agent.ensure_session(view)
        elif view is not None:
            session = agent.my_session(view)
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
        changed = _act(agent, decision, observed, view, session)
    except (DBError, DiscoveryError) as exc:
        log.error("%s failed: %s", decision.action, exc)
        changed = True
        if decision.action == d.PRIMARY and isinstance(exc, DiscoveryError):
            agent.fence(f"discovery failed while acting as primary: {exc}")
    if changed:
        observed = agent.observe()
        local = agent.local(observed, view, session)
    healthy, why = d.verdict(decision, local, config.max_lag)
    sync = sync_pass(agent, decision, observed, local, view)  # semi-sync: decide, set, report (ha/sync.py)
    _publish(agent, decision, observed, local, session, healthy, sync)
    (log.info if changed else log.debug)("%s; verdict: %s (%s)", decision, "healthy" if healthy else "unhealthy", why)
    return 0 if healthy else 1


def _first_boot(agent: Agent, observed: Observed) -> Observed:
    """Once per datadir: seed the GTID state after a restore; create accounts on a new cluster."""
    observed = agent.seed_if_restored(observed)
    state = observed.state
    if state is not None and state.bootstrap_pending:
        done = ensure_accounts(agent.conn(), agent.flavor, agent.config, allow_read_only=True)
        if done:
            log.info("first boot of a new cluster: %s", "; ".join(done))
    return observed


def _act(agent: Agent, decision: d.Decision, observed: Observed, view: ClusterView | None,
         session: str | None) -> bool:
    """Carry the decision out.  Returns True when something changed."""
    server = observed.server
    action = decision.action
    if action in (d.STARTING, d.NO_DISCOVERY, d.WAIT_PROMOTION):
        return False
    assert server is not None
    if action == d.FENCE:
        agent.fence(decision.reason)
        return True
    if action == d.TAKE_BOOTSTRAP_LOCK:
        assert session is not None
        if not agent.acquire_lock(session, server, "ready"):
            log.info("bootstrap: the lock was taken by another node first")
            return False
        log.info("took the primary lock: this node bootstrapped the cluster")
        _primary(agent, server, "took the bootstrap lock")
        _clear_bootstrap(agent, observed)
        return True
    if action == d.FINISH_PROMOTION:
        assert session is not None
        agent.stop_replication_if_any(server, "finishing an interrupted promotion")
        agent.mark_lock_ready(session, server)
        _primary(agent, server, decision.reason)
        return True
    if action == d.PRIMARY:
        changed = _primary(agent, server, "holds the lock")
        if observed.state is not None and observed.state.bootstrap_pending:
            _clear_bootstrap(agent, observed)
        return changed
    if action == d.HANDOVER:
        return _handover_step(agent, decision, observed, view, session)
    if action == d.FOLLOW:
        assert decision.lock is not None
        before = agent.errant
        agent.follow(observed, decision.lock)
        agent.advertise(primary=False)
        return server.replica is None or agent.errant != before or not (
            server.replica.io_running and server.replica.sql_running)
    if action == d.NO_PRIMARY:
        agent.advertise(primary=False)
        return False
    raise AssertionError(f"unhandled action {action}")


def _primary(agent: Agent, server, reason: str) -> bool:
    changed = False
    if server.replica is not None:
        agent.stop_replication_if_any(server, "this node is the primary")
        changed = True
    if server.read_only:
        agent.become_writable(reason)
        changed = True
    agent.advertise(primary=True)
    return changed


def _clear_bootstrap(agent: Agent, observed: Observed) -> None:
    if observed.state is not None and observed.state.bootstrap_pending:
        node_state.save(agent.config.mysql_datadir, observed.state.update(bootstrap_pending=False))


def _handover_step(agent: Agent, decision: d.Decision, observed: Observed, view: ClusterView | None,
                   session: str | None) -> bool:
    """Switchover, one short step per pass: fence, check the target caught up, release."""
    assert view is not None and decision.lock is not None and session is not None
    server = observed.server
    request = view.switchover or {}
    target = decision.target or ""
    member = view.member(target)
    requested = float(request.get("requested") or 0.0)
    if member is None or not member.candidate or not member.fresh(view.now, agent.config.session_ttl):
        log.error("switchover to %s refused: it is not a candidate (no fresh candidate member record)", target)
        agent.discovery.delete(agent.keys.switchover, index=view.switchover_index)
        return False
    if time.time() - requested > agent.config.stop_grace:
        log.error("switchover to %s abandoned: it did not catch up within STOP_GRACE=%g s; staying primary",
                  target, agent.config.stop_grace)
        agent.discovery.delete(agent.keys.switchover, index=view.switchover_index)
        return False
    changed = False
    if not server.read_only:
        agent.fence(f"switchover to {target}")
        observed = agent.observe()
        server = observed.server
        changed = True
    position = server.executed_gtid if server else ""
    if agent.peer_applied(member.address, member.port, position, timeout=1.0):
        if agent.discovery.release(agent.keys.primary, session):
            log.info("switchover: %s has applied everything up to %s; lock released to it", target, position)
            agent.advertise(primary=False)
            return True
    return changed


def _publish(agent: Agent, decision: d.Decision, observed: Observed, local: d.Local, session: str | None,
             healthy: bool, sync: dict | None = None) -> None:
    if observed.server is None:
        role = "starting"
    elif decision.action in (d.PRIMARY, d.TAKE_BOOTSTRAP_LOCK, d.FINISH_PROMOTION) and not local.read_only:
        role = "primary"
    elif decision.action == d.FENCE or (decision.action == d.HANDOVER):
        role = "fenced"
    elif local.source is not None:
        role = "replica"
    elif observed.state is not None and observed.state.bootstrap_pending:
        role = "starting"
    else:
        role = "fenced"
    candidate = role in ("replica", "fenced") and agent.candidate(local)
    record = agent.member_record(observed, role, healthy, candidate)
    if sync is not None:
        record["sync"] = sync
    try:
        agent.publish(session, record)
    except DiscoveryError as exc:
        log.warning("could not publish the member record: %s", exc)
