"""The local server's state, read in three queries, for one health/onChange pass.

Every decision of a pass is made on one `ServerState` (read once, never
re-read mid-decision).  The three queries: one SELECT of variables, the binlog
status, the replica status.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import gtid
from .connection import Connection
from .flavor import Flavor, of_connection


@dataclass(frozen=True)
class ReplicaStatus:
    """Replication as configured on this server (normalised across families)."""

    source_host: str
    source_port: int
    io_running: bool          # the IO thread is connected ("Yes"); "Connecting" counts as not running
    io_state: str             # raw: "Yes", "No", "Connecting"
    sql_running: bool
    last_io_errno: int
    last_io_error: str
    last_sql_errno: int
    last_sql_error: str
    seconds_behind: float | None
    received_gtid: str        # executed plus received but not yet applied

    @property
    def sql_error(self) -> bool:
        """The SQL thread stopped on an error (a node in this state is never a failover candidate)."""
        return self.last_sql_errno != 0


@dataclass(frozen=True)
class ServerState:
    flavor: Flavor
    version: str
    server_id: int
    server_uuid: str | None   # MySQL only
    read_only: bool           # MySQL: read_only (super_read_only is reported apart)
    super_read_only: bool | None
    executed_gtid: str        # MariaDB @@gtid_current_pos, MySQL @@gtid_executed (canonical text)
    binlog_state: str         # what gtid.extra/classify compare: MariaDB @@gtid_binlog_state, MySQL gtid_executed
    binlog_file: str | None
    binlog_pos: int | None
    replica: ReplicaStatus | None

    @property
    def origin(self) -> str:
        """What this server's own GTIDs carry: MariaDB its server_id, MySQL its server_uuid."""
        return self.server_uuid if self.flavor.name == "mysql" and self.server_uuid else str(self.server_id)

    @property
    def writable(self) -> bool:
        return not self.read_only

    @property
    def received_gtid(self) -> str:
        """Executed plus received (relay log) GTIDs: what election ranks by."""
        return self.replica.received_gtid if self.replica else self.executed_gtid

    def follows(self, host: str, port: int) -> bool:
        """Replication is configured towards host:port (threads may be down)."""
        return self.replica is not None and self.replica.source_host == host and self.replica.source_port == int(port)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _replica(flavor: Flavor, row: dict | None, executed: str) -> ReplicaStatus | None:
    status = flavor.replica_status(row)
    if not status or not status.get("source_host"):
        return None
    behind = status.get("seconds_behind")
    received = gtid.merge(flavor, executed, status.get("received_gtid") or "")
    io_state = str(status.get("io_running") or "No")
    return ReplicaStatus(
        source_host=str(status["source_host"]),
        source_port=_int(status.get("source_port")),
        io_running=io_state == "Yes",
        io_state=io_state,
        sql_running=str(status.get("sql_running") or "No") == "Yes",
        last_io_errno=_int(status.get("last_io_errno")),
        last_io_error=str(status.get("last_io_error") or ""),
        last_sql_errno=_int(status.get("last_sql_errno")),
        last_sql_error=str(status.get("last_sql_error") or ""),
        seconds_behind=None if behind is None else float(behind),
        received_gtid=received,
    )


def read_state(conn: Connection, flavor: Flavor | None = None) -> ServerState:
    """Read the server's state; `flavor` None: detect it from the connection (its handshake)."""
    if flavor is None:
        flavor = of_connection(conn)
    row = conn.one(flavor.state_query()) or {}
    executed = gtid.normalize(flavor, row.get("gtid"))
    binlog = conn.one(flavor.show_binlog_status()) or {}
    replica_rows = conn.query(flavor.show_replica_status())
    sro = row.get("super_read_only")
    return ServerState(
        flavor=flavor,
        version=str(row.get("version") or ""),
        server_id=_int(row.get("server_id")),
        server_uuid=str(row["server_uuid"]) if row.get("server_uuid") else None,
        read_only=bool(_int(row.get("read_only"))),
        super_read_only=None if sro is None else bool(_int(sro)),
        executed_gtid=executed,
        binlog_state=gtid.normalize(flavor, row.get("binlog_state")),
        binlog_file=binlog.get("File"),
        binlog_pos=None if binlog.get("Position") is None else _int(binlog.get("Position")),
        replica=_replica(flavor, replica_rows[0] if replica_rows else None, executed),
    )
