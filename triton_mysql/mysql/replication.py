"""Replication operations: follow a primary, stop and clear, wait for a GTID, seed a restore.

The caller (health/onChange) decides *whether* to follow and has already
checked for errant transactions (`remote_gtid_state` + `gtid.classify`); these
functions only carry it out, each logging one line.
"""
from __future__ import annotations

import logging

from . import gtid
from .connection import ER_NO_SUCH_THREAD, Connection, DBError, connect_tcp
from .flavor import Flavor, ReplicationTLS

logger = logging.getLogger(__name__)

# Slack added to the client's read timeout on top of the server-side wait.
_WAIT_SLACK = 2.0
# STOP SLAVE on a semi-sync replica first connects to the source to kill its dump thread: with a frozen or
# unreachable source that takes up to rpl_semi_sync_slave_kill_conn_timeout (1 s, server_config) + connect.
STOP_TIMEOUT = 6.0


def follow(conn: Connection, flavor: Flavor, host: str, port: int, user: str, password: str,
           tls: ReplicationTLS | None = None) -> None:
    """Replicate from host:port with GTID auto-positioning (replaces any previous source).

    MariaDB: when this server has a binlog position, `gtid_slave_pos` is set to
    it first, so that what it wrote itself (an old primary rejoining, a server
    restored from a snapshot) counts as already replicated.
    """
    conn.execute(flavor.stop_replica(), timeout=STOP_TIMEOUT)
    kill_gtid_waiters(conn, flavor)
    rejoin = flavor.prepare_rejoin()
    if rejoin and conn.scalar(flavor.binlog_gtid()):
        conn.execute_all(rejoin)
    conn.execute(flavor.change_source(host, port, user, password, tls))
    conn.execute(flavor.start_replica())
    logger.info("replicating from %s:%s with GTID auto-positioning%s", host, port, " over TLS" if tls else "")


def kill_gtid_waiters(conn: Connection, flavor: Flavor) -> int:
    """End client waits for a GTID (MASTER_GTID_WAIT) before replication is re-pointed.

    Such a wait blocks `SET GLOBAL gtid_slave_pos` until it ends (measured: the statement and
    every one after it hang, server-side timeouts notwithstanding); the application's wait
    fails with an error and it retries against the new position.
    """
    killed = 0
    for thread in flavor.gtid_waiter_ids(conn.query(flavor.gtid_waiters())):
        try:
            conn.execute("KILL QUERY %s", (thread,))
            killed += 1
        except DBError as exc:
            if exc.errno != ER_NO_SUCH_THREAD:
                raise
    if killed:
        logger.info("ended %d client wait(s) for a GTID before re-pointing replication", killed)
    return killed


def start(conn: Connection, flavor: Flavor) -> None:
    """Start the replication threads of an already configured replica (mysqld boots with them stopped)."""
    conn.execute(flavor.start_replica())
    logger.info("replication threads started")


def stop_and_clear(conn: Connection, flavor: Flavor) -> None:
    """Stop replication and forget the source (promotion: this server becomes a primary)."""
    conn.execute(flavor.stop_replica(), timeout=STOP_TIMEOUT)
    conn.execute(flavor.reset_replica_all())
    logger.info("replication stopped and cleared")


def wait_applied(conn: Connection, flavor: Flavor, target_gtid: str, timeout: float) -> bool:
    """True once this server has applied everything in `target_gtid`; False after `timeout` s.

    Checks the executed set first: MASTER_GTID_WAIT follows gtid_slave_pos only,
    so on a server that wrote `target_gtid` itself it would wait in vain.
    """
    executed = gtid.normalize(flavor, conn.scalar(flavor.executed_gtid()))
    if gtid.contains(flavor, executed, target_gtid):
        return True
    result = conn.scalar(flavor.wait_for_gtid(target_gtid, max(0.0, timeout)), timeout=timeout + _WAIT_SLACK)
    ok = flavor.wait_succeeded(result)
    logger.info("%s GTID %s within %.1f s", "applied" if ok else "did not apply", target_gtid, timeout)
    return ok


def seed_after_restore(conn: Connection, flavor: Flavor, restored_gtid: str) -> None:
    """Make a server restored from a snapshot start at `restored_gtid` (and serve as a source itself)."""
    position = flavor.restored_position(restored_gtid)
    conn.execute(flavor.stop_replica())
    kill_gtid_waiters(conn, flavor)
    conn.execute_all(flavor.seed_after_restore(position))
    logger.info("seeded the restored GTID position %s", position or "(empty)")


def remote_gtid_state(host: str, port: int, user: str, password: str, flavor: Flavor,
                      timeout: float = 2.0) -> str:
    """The primary's GTID record that `gtid.classify(flavor, mine, primary, …)` compares against.

    MariaDB: its @@gtid_binlog_state; MySQL: its @@gtid_executed.  Works with the
    replication account (global variables need no privilege).  Raises DBError.
    """
    with connect_tcp(host, port, user, password, timeout=timeout) as conn:
        return gtid.normalize(flavor, conn.scalar(flavor.binlog_state()))

