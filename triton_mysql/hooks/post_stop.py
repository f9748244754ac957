"""`triton-mysql postStop`: leave the cluster cleanly.

Delete this node's member record and end its session (which also frees the
lock if this node still held it).  The durable `nodes/` record is kept, so
`status` can show the node as down and when it was last seen.
"""
from __future__ import annotations

import logging

from ..discovery import DiscoveryError
from ..ha.act import Agent

log = logging.getLogger("triton_mysql.postStop")


def run(config) -> int:
    agent = Agent(config)
    try:
        view = agent.view()
        session = agent.session.mine(view)
        agent.store.drop_member(config.node_name)
        if session:
            agent.discovery.destroy_session(session)
        agent.discovery.drop_keepalive(agent.session.keepalive)
        node = view.nodes.get(config.node_name)
        if node is not None:
            agent.store.mark_node_stopped(config.node_name, node)
        log.info("left the cluster: member record deleted, session ended")
    except DiscoveryError as exc:
        log.warning("could not clean up in discovery (%s); the session expires by itself", exc)
    finally:
        agent.close()
    return 0
