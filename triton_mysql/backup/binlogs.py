"""Binary log purge (SPEC §6): only logs that no clone of the newest snapshot needs.

A binlog file holds the transactions between the GTID state at its start
(MariaDB's Gtid_list event, MySQL's Previous_gtids) and the state at the
start of the next file.  Every file *before* file j holds only transactions
within j's start state; so when j's start state is contained in the newest
complete snapshot's GTID position, everything before j is older than the
snapshot, and a clone of it (which replicates from that position on) never
asks for it.  The rule compares GTIDs only, never file names or times, so it
is right on any node: the primary that took the snapshot, a replica, or a
primary elected after a failover whose binlogs were numbered differently.

The same rule also honours other positions that must stay servable (the
live members' received GTIDs, when known): a replica that lags behind the
snapshot keeps the binlogs it still has to fetch.
"""
from __future__ import annotations

import logging
from typing import Sequence

from ..mysql import gtid as gtids

log = logging.getLogger(__name__)


def purge_target(flavor: str, logs: Sequence[tuple[str, str | None]], keep: Sequence[str]) -> str | None:
    """The binlog to `PURGE BINARY LOGS TO` (the first one kept), or None for nothing to purge.

    `logs`: (name, GTID state at its start) oldest first, the active log last
    (a None state means unknown: that file and everything after it are kept).
    `keep`: GTID positions that must stay servable (the newest snapshot's first).
    """
    if not keep:
        return None
    target: str | None = None
    for index, (name, start) in enumerate(logs):
        if start is None:
            break
        if not all(gtids.contains(flavor, position, start) for position in keep):
            break
        if index > 0:
            target = name
    return target


def purge(server, snapshot_gtid: str, extra_keep: Sequence[str] = ()) -> list[str]:
    """Purge the binlogs of `server` (a mysql.local.LocalServer) older than `snapshot_gtid`.

    Returns the names purged.  Reads each file's start state (cheap: the
    first events of each file) until the first file that must be kept.
    """
    flavor = server.flavor.name
    keep = [snapshot_gtid, *[g for g in extra_keep if g is not None]]
    names = server.binlogs()
    if len(names) < 2:
        return []
    logs: list[tuple[str, str | None]] = []
    for name in names:
        start = server.binlog_start_gtid(name)
        logs.append((name, start))
        if start is None or not all(gtids.contains(flavor, p, start) for p in keep):
            break
    target = purge_target(flavor, logs, keep)
    if target is None:
        log.info("binlog purge: nothing to purge (the oldest binlog %s is still needed by GTID %s)",
                 names[0], snapshot_gtid or "''")
        return []
    wanted = names[:names.index(target)]
    warnings = server.purge_binlogs_to(target)
    left = set(server.binlogs())
    purged = [name for name in wanted if name not in left]
    if purged:
        log.info("binlog purge: removed %d binlog(s) %s..%s, older than snapshot GTID %s", len(purged), purged[0],
                 purged[-1], snapshot_gtid)
    if len(purged) < len(wanted):
        log.info("binlog purge: the server kept %d of them for now (%s); the next purge retries",
                 len(wanted) - len(purged), "; ".join(warnings) or "no reason given")
    return purged
