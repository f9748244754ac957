"""`triton-mysql preStop`: planned hand-over when the primary is being stopped.

Only the lock holder does anything: fence (client connections killed,
read-only), name the best candidate in the `switchover` key so the others
defer to it, wait (≤ STOP_GRACE) until it has applied everything this node
wrote, then release the lock so that it wins at once.  No acknowledged write
is lost: nothing can commit after the fence, and the lock is released only
after the target has applied the fenced position (or the grace ran out,
which is logged).
"""
from __future__ import annotations

import dataclasses
import logging
import time

from ..discovery import DiscoveryError
from ..ha import decide as d
from ..ha.act import Agent
from ..records import SwitchoverRequest

log = logging.getLogger("triton_mysql.preStop")


def run(config) -> int:
    agent = Agent(config)
    try:
        return hand_over(agent)
    finally:
        agent.close()


def hand_over(agent: Agent) -> int:
    config = agent.config
    try:
        view = agent.view()
    except DiscoveryError as exc:
        log.warning("discovery unreachable (%s): fencing; the lock will expire with the session", exc)
        if agent.try_conn() is not None:
            agent.fence("stopping without discovery")
        return 0
    lock = view.lock
    if lock is None or lock.node != config.node_name or not lock.session \
            or not agent.discovery.renew_session(lock.session):
        # The health passes stopped when the supervisor began stopping: a lock of ours may have
        # lapsed meanwhile.  Nothing to hand over then, but never stop writable without the lock.
        observed = agent.observe()
        if observed.server is not None and not observed.server.read_only:
            agent.fence("stopping, writable without the lock")
        log.info("not the primary: nothing to hand over")
        return 0
    if agent.try_conn() is None:
        log.warning("mysqld is not reachable: releasing the lock without a hand-over")
        agent.store.release_lock(lock.session)
        return 0
    agent.fence("planned stop: handing over")
    observed = agent.observe()
    position = observed.server.executed_gtid if observed.server else ""
    local = agent.local(observed, view, lock.session)
    target = d.handover_target(view, local, agent.timing)
    if target is None:
        log.warning("no candidate to hand over to; releasing the lock (no primary until one appears)")
        agent.store.release_lock(lock.session)
        return 0
    request = SwitchoverRequest(to=target, requested=time.time(), source=config.node_name, kind="planned")
    agent.store.request_switchover(request)
    member = view.member(target)
    deadline = time.monotonic() + config.stop_grace
    caught_up = False
    while member is not None and not caught_up:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        # No health pass renews the session while the supervisor stops: keep the lock for the
        # hand-over (STOP_GRACE may exceed SESSION_TTL).
        agent.discovery.renew_session(lock.session)
        caught_up = agent.peers.applied(member.address, member.port, position, timeout=min(left, 2.0))
    if caught_up:
        log.info("handing over to %s: it has applied everything up to %s", target, position or "(empty)")
    else:
        log.warning("handing over to %s although it did not confirm %s within STOP_GRACE=%g s",
                    target, position, config.stop_grace)
        # The winner reports possible loss in failover/last.
        agent.store.request_switchover(dataclasses.replace(request, caught_up=False))
    agent.store.release_lock(lock.session)
    return 0
