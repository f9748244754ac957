"""This node's discovery session: the one its lock, member record and bootstrap claim are bound to.

Every pass that reads discovery renews it (health, onChange when it stands), passing the node's
keepalive check first; a node whose hooks stop running loses it, and with it the lock.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..discovery import Discovery
from ..view import ClusterView

log = logging.getLogger("triton_mysql.ha")


@dataclass
class NodeSession:
    node: str
    service_name: str
    ttl: float
    discovery: Discovery

    @property
    def keepalive(self) -> str:
        """This node's liveness check, which its session is bound to (Consul; see discovery/consul.py)."""
        return f"{self.service_name}-keepalive-{self.node}"

    def mine(self, view: ClusterView) -> str | None:
        """The session this node already has: the lock's (if it names us), the member record's, or
        the bootstrap claim's (onStart bound it to a session of this node that health adopts)."""
        lock = view.lock
        if lock is not None and lock.node == self.node and lock.session:
            return lock.session
        claim = view.bootstrap
        claimed = claim.session if claim is not None and claim.node == self.node and claim.session else None
        return view.member_sessions.get(self.node) or claimed

    def ensure(self, view: ClusterView) -> str:
        """Renew this node's session, or create one when it is gone.

        The renewal passes the node's keepalive check first (Consul binds the session to it, so the
        session ends SESSION_TTL after the last pass instead of up to twice that): every pass that
        reads discovery renews, whatever its verdict; a frozen or dead node stops passing, and its
        session ends.  Not the supervisor's heartbeat thread: a node whose hooks no longer run must
        lose its lock."""
        session = self.mine(view)
        if session and self.discovery.renew_session(session, keepalive=self.keepalive):
            return session
        if session:
            log.info("session %s is gone (expired or destroyed); creating a new one", session)
        return self.discovery.create_session(f"triton-mysql-{self.node}", self.ttl, keepalive=self.keepalive)
