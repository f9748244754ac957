"""Other nodes, reached over SQL with the replication account: fence a peer, wait until a peer has
applied a position, read a peer's GTID state.  Every call is bounded by a short timeout: a peer
that does not answer is treated as unreachable (the caller then waits for it to fence itself).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..config import Config
from ..mysql import flavor as flavors
from ..mysql import gtid as gtids
from ..mysql import replication
from ..mysql.connection import DBError, connect_tcp
from ..mysql.fence import FenceError, kill_client_connections, set_read_only

log = logging.getLogger("triton_mysql.ha")


@dataclass
class Peers:
    config: Config
    flavor: Callable[[], flavors.Flavor]
    """The cluster's server family (this node's, read when first needed)."""

    def gtid_state(self, address: str, port: int, timeout: float) -> str:
        """A peer's GTID state, as the divergence check compares it (raises DBError when unreachable)."""
        return replication.remote_gtid_state(address, port, self.config.mysql_repl_user,
                                             self.config.mysql_repl_password, self.flavor(), timeout=timeout)

    def fence(self, record: dict[str, Any], timeout: float = 1.0) -> str | None:
        """Make another node read-only over SQL (the replication account may: READ ONLY ADMIN,
        CONNECTION ADMIN).  Its executed GTIDs once read_only is verified ON; None when it cannot be
        reached or refused (the caller then waits until it must have fenced itself)."""
        address, port = record.get("address"), record.get("port")
        if not address or not port:
            return None
        flavor = self.flavor()
        try:
            with connect_tcp(str(address), int(port), self.config.mysql_repl_user, self.config.mysql_repl_password,
                             timeout=timeout) as conn:
                set_read_only(conn, flavor, True, lock_wait_timeout=1, timeout=timeout + 1)
                killed = kill_client_connections(conn)
                executed = gtids.normalize(flavor, conn.scalar(flavor.executed_gtid()))
        except (DBError, FenceError, OSError) as exc:
            log.info("could not fence %s over SQL: %s", record.get("node"), exc)
            return None
        log.warning("fenced %s over SQL (read_only ON, %d client connection(s) killed) at %s", record.get("node"),
                    killed, executed or "(empty)")
        return executed

    def applied(self, address: str, port: int, position: str, timeout: float) -> bool:
        """Has the server at address:port applied everything up to `position`?  (waits up to `timeout`)"""
        try:
            conn = connect_tcp(address, port, self.config.mysql_repl_user, self.config.mysql_repl_password,
                               timeout=min(2.0, max(timeout, 0.5)))
        except DBError as exc:
            log.debug("cannot reach %s:%s: %s", address, port, exc)
            return False
        flavor = self.flavor()
        try:
            result = conn.scalar(flavor.wait_for_gtid(position, max(timeout, 0.0)), timeout=timeout + 2)
            return flavor.wait_succeeded(result)
        except DBError as exc:
            log.debug("waiting for %s on %s:%s failed: %s", position, address, port, exc)
            return False
        finally:
            conn.close()
