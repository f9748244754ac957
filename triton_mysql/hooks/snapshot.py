"""`triton-mysql snapshot`: the scheduled snapshot task (SPEC §6).

Runs every few seconds as a supervisor task, so the common case must be
cheap: one discovery read tells whether this node holds the primary lock
(a replica stops there), one more whether a snapshot is already running,
then three small queries and `snapshots/last` decide whether one is due.
Storage clients (boto3, the manta SDK) are imported only when a snapshot is
actually taken, or when discovery names no snapshot and storage must be
asked.

Exit 0 when a snapshot was taken or none was due; 1 when taking it failed.
"""
from __future__ import annotations

import logging

from ..keys import ClusterKeys

log = logging.getLogger(__name__)


def run(config) -> int:
    from ..errors import UserError
    from ..discovery import connect
    from ..records import ClusterStore

    keys = ClusterKeys.for_config(config)
    discovery = connect(config)
    store = ClusterStore(discovery, keys)
    try:
        holder = store.held_lock()
        if holder is None or holder.node != config.node_name:
            log.debug("snapshot: not the primary (lock held by %s): nothing to do",
                      holder.node if holder else "nobody")
            return 0
        running = store.snapshot_running()
        if running is not None:
            log.debug("snapshot: one is already running on %s", running.get("node", "?"))
            return 0
        from ..mysql.local import DBError, LocalServer
        from ..backup.snapshot import (LockBusy, NotDue, SnapshotError, Terminated, due_now, take_snapshot,
                                       terminate_on_sigterm)
        try:
            with LocalServer(config.mysql_socket, config.mysql_root_password) as server:
                decision = due_now(config, discovery, server)
        except DBError as exc:
            raise UserError(f"cannot decide whether a snapshot is due: {exc}") from None
        if not decision:
            log.debug("snapshot: not due: %s", decision.reason)
            return 0
        log.info("snapshot due: %s", decision.reason)
        try:
            with terminate_on_sigterm():
                take_snapshot(config, discovery=discovery, reason=decision.reason,
                              still_due=lambda server: due_now(config, discovery, server))
        except (LockBusy, NotDue) as exc:
            log.info("snapshot not taken: %s", exc)
            return 0
        except SnapshotError as exc:
            raise UserError(f"snapshot failed: {exc}") from None
        except Terminated:
            raise UserError("snapshot interrupted by SIGTERM; nothing was recorded") from None
        return 0
    finally:
        discovery.close()
