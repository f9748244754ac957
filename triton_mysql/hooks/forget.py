"""`triton-mysql forget NODE`: remove what a node that is gone for good left in discovery.

A node that stops keeps its durable `nodes/<NODE>` record, so that `status`
can show it as `down` with when it was last seen.  A node that will never
come back (scaled down, its volume deleted) would stay `down` forever: an
operator forgets it.  Removed: `nodes/<NODE>`, a member record it left
behind (stale: not rewritten within SESSION_TTL) and its session, its service
instances (`<SERVICE_NAME>-<NODE>`, `<SERVICE_NAME>-primary-<NODE>`), and a
pending switchover request naming it.

Refused while the node is alive, by the same evidence `status` uses: it holds
the lock, or its member record was rewritten within SESSION_TTL.  A node that
comes back after being forgotten simply registers again.
"""
from __future__ import annotations

import logging

import click

from ..discovery import DiscoveryError, ServiceSpec, connect
from ..errors import UserError
from ..records import ClusterStore
from ..view import read_view
from ..keys import ClusterKeys

log = logging.getLogger("triton_mysql.forget")


def run(config, node: str) -> int:
    discovery = connect(config)
    keys = ClusterKeys.for_config(config)
    store = ClusterStore(discovery, keys)
    try:
        view = read_view(discovery, keys)
        member = view.members.get(node)
        if view.lock is not None and view.lock.node == node:
            raise UserError(f"refusing to forget {node}: it holds the primary lock (stop it, or wait for a failover)")
        if member is not None and member.fresh(view.now, config.session_ttl):
            raise UserError(f"refusing to forget {node}: it is alive (member record updated "
                            f"{view.now - member.updated:.0f} s ago, within SESSION_TTL={config.session_ttl:g} s)")
        if member is None and node not in view.nodes:
            raise UserError(f"no node {node} in {discovery.describe()} (see `triton-mysql status`)")
        removed = []
        if node in view.nodes:
            store.drop_node(node)
            removed.append(f"nodes/{node}")
        if member is not None:
            store.drop_member(node)
            removed.append(f"members/{node} (stale)")
            session = view.member_sessions.get(node)
            if session:
                discovery.destroy_session(session)
                removed.append("its session")
        for name in (config.service_name, config.primary_service):
            # Deregistering an instance that is not there is not an error.
            discovery.deregister_service(ServiceSpec(id=f"{name}-{node}", name=name, address="", port=0,
                                                     ttl=config.session_ttl))
        removed.append(f"services {config.service_name}-{node}, {config.primary_service}-{node}")
        if view.switchover is not None and view.switchover.to == node:
            store.clear_switchover(view.switchover_index)
            removed.append("the switchover request naming it")
        log.info("forgot node %s: removed %s", node, ", ".join(removed))
        click.echo(f"forgot {node}: removed {', '.join(removed)}")
        return 0
    except DiscoveryError as exc:
        raise UserError(f"discovery failed: {exc}") from None
    finally:
        discovery.close()
