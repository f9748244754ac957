"""When a scheduled snapshot is due (SPEC §6): a pure function of facts.

Due, on the primary, when
  * no snapshot exists; or
  * the GTID position moved since the last snapshot, and either
    SNAPSHOT_INTERVAL has passed since it, or the binary log rotated on this
    server since it.

"Moved" compares GTIDs, never times: a restart (which rotates the binary log)
without new transactions is not a reason for a snapshot.

"Rotated on this server since it": when the last snapshot was taken on this
very server (same node and server_id) the binlog file names tell (a later
file is in use now).  When it came from elsewhere (a replica's backup, the
previous primary) names mean nothing here, so the GTID state at the start of
the current binlog file decides: a file that began at or after the
snapshot's position was opened after the snapshot.  (At worst, a snapshot
taken exactly at the start of a file counts as rotated: one early snapshot.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..mysql import gtid as gtids
from .manifest import created_time

_BINLOG_INDEX = re.compile(r"^(?P<base>.*)\.(?P<n>\d+)$")


@dataclass(frozen=True)
class Due:
    due: bool
    reason: str

    def __bool__(self) -> bool:
        return self.due


def _binlog_order(old: str | None, new: str | None) -> int | None:
    """Compare two binlog names of one server: -1, 0, 1; None when not comparable."""
    if not old or not new:
        return None
    a, b = _BINLOG_INDEX.match(old), _BINLOG_INDEX.match(new)
    if not a or not b or a["base"] != b["base"]:
        return None
    x, y = int(a["n"]), int(b["n"])
    return (y > x) - (y < x)


def rotated_since(last: Mapping[str, Any], *, flavor: str, node: str, server_id: int | None,
                  binlog_file: str | None, binlog_start_gtid: str | None) -> bool:
    """True when the binary log in use now was opened after snapshot `last` was taken."""
    same_server = last.get("source_node") == node and server_id is not None and last.get("server_id") == server_id
    if same_server:
        order = _binlog_order(last.get("binlog_file"), binlog_file)
        if order is not None and order >= 0:
            return order > 0
        # A lower number: the binlogs were reset (a re-clone); fall back to GTIDs.
    if binlog_start_gtid is None:
        return False
    last_gtid = str(last.get("gtid") or "")
    return gtids.contains(flavor, binlog_start_gtid, last_gtid)


def snapshot_due(last: Mapping[str, Any] | None, *, now: float, interval: float, flavor: str, gtid_now: str,
                 node: str, server_id: int | None, binlog_file: str | None,
                 binlog_start_gtid: str | None) -> Due:
    """Decide whether the primary should take a snapshot now (see the module docstring).

    `last`: the newest complete snapshot's manifest (None: none exists).
    `gtid_now`: the server's position in the manifest's terms (MariaDB
    @@gtid_binlog_pos, MySQL @@gtid_executed).  `binlog_file`: the binlog in
    use; `binlog_start_gtid`: the GTID state at its start (Gtid_list /
    Previous_gtids).
    """
    if last is None:
        return Due(True, "no snapshot exists")
    last_id = last.get("id", "?")
    last_gtid = str(last.get("gtid") or "")
    if gtids.contains(flavor, last_gtid, gtid_now):
        return Due(False, f"no new transactions since snapshot {last_id}")
    age = now - created_time(last)
    if age >= interval:
        return Due(True, f"GTID moved and snapshot {last_id} is {age:.0f} s old (interval {interval:g} s)")
    if rotated_since(last, flavor=flavor, node=node, server_id=server_id, binlog_file=binlog_file,
                     binlog_start_gtid=binlog_start_gtid):
        return Due(True, f"GTID moved and the binary log rotated since snapshot {last_id}")
    return Due(False, f"snapshot {last_id} is {age:.0f} s old; next one after {interval:g} s or a binlog rotation")
