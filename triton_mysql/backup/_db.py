"""The few server queries the snapshot code needs, over the local socket.

Kept small and private: the snapshot code asks the server for its identity
(version, server_id), its GTID position, its binary logs and where each
starts; nothing else.  Root authenticates on the socket by unix_socket (and
by MYSQL_ROOT_PASSWORD when set).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..mysql.connection import DBError, connect_local
from ..mysql.flavor import Flavor, from_version


DatabaseError = DBError


class LocalServer:
    """A short-lived root connection to the local mysqld through its socket.

    Wraps `mysql.connection.Connection` (bounded timeouts, scrubbed errors)
    with the facts the snapshot code needs.
    """

    def __init__(self, socket_path: str, password: str | None = None, timeout: float = 5.0) -> None:
        self.conn = connect_local(socket_path, password, timeout=timeout)
        self._flavor: Flavor | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statements ------------------------------------------------------------
    def query(self, text: str, args: Sequence[Any] | None = None, timeout: float | None = None) -> list[dict[str, Any]]:
        return self.conn.query(text, args, timeout=timeout)

    def scalar(self, text: str, args: Sequence[Any] | None = None) -> Any:
        return self.conn.scalar(text, args)

    def execute(self, text: str, args: Sequence[Any] | None = None, timeout: float | None = None) -> None:
        self.conn.execute(text, args, timeout=timeout)

    # -- facts -------------------------------------------------------------------
    @property
    def flavor(self) -> Flavor:
        if self._flavor is None:
            self._flavor = from_version(str(self.scalar("SELECT VERSION()")))
        return self._flavor

    def version(self) -> str:
        return str(self.scalar("SELECT VERSION()"))

    def server_id(self) -> int:
        return int(self.scalar("SELECT @@GLOBAL.server_id"))

    def datadir(self) -> str:
        return str(self.scalar("SELECT @@GLOBAL.datadir"))

    def binlog_gtid(self) -> str:
        """What a snapshot taken now would record: MariaDB @@gtid_binlog_pos, MySQL @@gtid_executed."""
        if self.flavor.is_mariadb:
            return str(self.scalar("SELECT @@GLOBAL.gtid_binlog_pos") or "")
        return str(self.scalar("SELECT @@GLOBAL.gtid_executed") or "")

    def current_binlog(self) -> str | None:
        rows = self.query(self.flavor.show_binlog_status().text)
        return str(rows[0]["File"]) if rows and rows[0].get("File") else None

    def binlogs(self) -> list[str]:
        """Binary log file names, oldest first ([] when binary logging is off)."""
        try:
            rows = self.query("SHOW BINARY LOGS")
        except DatabaseError as exc:
            if "not using binary logging" in str(exc).lower():
                return []
            raise
        return [str(row["Log_name"]) for row in rows]

    def binlog_bytes(self) -> int:
        """Total size of the binary logs (the backup tool does not copy them)."""
        try:
            rows = self.query("SHOW BINARY LOGS")
        except DatabaseError:
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
