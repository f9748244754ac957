"""The local server over its socket, as root: its identity and its binary logs.

What the snapshot code asks the server (version, server_id, datadir, the GTID
position a snapshot records, the binlogs and where each starts, purging them)
on top of `connection.Connection` (bounded timeouts, scrubbed `DBError`s):
`LocalServer` *is* such a connection, so plain statements go through it too.
Root authenticates on the socket by unix_socket (and by MYSQL_ROOT_PASSWORD
when set).  The SQL that differs by family comes from `flavor`.
"""
from __future__ import annotations

from .connection import Connection, DBError, connect_local
from .flavor import Flavor, of_connection


class LocalServer(Connection):
    """A short-lived root connection to the local mysqld through its socket."""

    def __init__(self, socket_path: str, password: str | None = None, timeout: float = 5.0) -> None:
        opened = connect_local(socket_path, password, timeout=timeout)
        super().__init__(opened.raw, opened.where, password)
        self._flavor: Flavor | None = None

    def __enter__(self) -> "LocalServer":
        return self

    # -- facts -------------------------------------------------------------------
    @property
    def flavor(self) -> Flavor:
        if self._flavor is None:
            self._flavor = of_connection(self)
        return self._flavor

    def version(self) -> str:
        return str(self.scalar("SELECT VERSION()"))

    def server_id(self) -> int:
        return int(self.scalar("SELECT @@GLOBAL.server_id"))

    def datadir(self) -> str:
        return str(self.scalar("SELECT @@GLOBAL.datadir"))

    def binlog_gtid(self) -> str:
        """What a snapshot taken now would record: MariaDB @@gtid_binlog_pos, MySQL @@gtid_executed."""
        return str(self.scalar(self.flavor.binlog_gtid()) or "")

    def current_binlog(self) -> str | None:
        rows = self.query(self.flavor.show_binlog_status())
        return str(rows[0]["File"]) if rows and rows[0].get("File") else None

    def binlogs(self) -> list[str]:
        """Binary log file names, oldest first ([] when binary logging is off)."""
        try:
            rows = self.query("SHOW BINARY LOGS")
        except DBError as exc:
            if "not using binary logging" in str(exc).lower():
                return []
            raise
        return [str(row["Log_name"]) for row in rows]

    def binlog_bytes(self) -> int:
        """Total size of the binary logs (the backup tool does not copy them)."""
        try:
            rows = self.query("SHOW BINARY LOGS")
        except DBError:
            return 0
        return sum(int(row.get("File_size") or 0) for row in rows)

    def binlog_start_gtid(self, name: str) -> str | None:
        """The GTID state at the start of binlog `name` (MariaDB Gtid_list, MySQL Previous_gtids)."""
        rows = self.query("SHOW BINLOG EVENTS IN %s LIMIT 4", (name,))
        for row in rows:
            if row.get("Event_type") in ("Gtid_list", "Previous_gtids"):
                info = str(row.get("Info") or "").strip()
                if info.startswith("[") and info.endswith("]"):
                    info = info[1:-1]
                return info.strip()
        return None

    def purge_binlogs_to(self, name: str) -> list[str]:
        """PURGE BINARY LOGS TO `name`; returns the server's warnings (why it kept some)."""
        self.execute("PURGE BINARY LOGS TO %s", (name,), timeout=60.0)
        return [str(row.get("Message", "")) for row in self.query("SHOW WARNINGS")]
