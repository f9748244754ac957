"""Fake MariaDB servers that answer the statements the hooks send, for in-process HA tests.

A `FakeServer` keeps what the HA code reads and changes: read_only, one GTID
domain's history (server_id, seq) as executed, the relay log (received, not
applied), the replication source and threads.  `FakeNet` holds the servers
by address and stands in for `connect_local`/`connect_tcp` (monkeypatched
into the modules that import them), so the real Agent, health pass, election
and preStop run unchanged against them and against a MemoryDiscovery.

It is a model, not an emulator: replication moves only when the world calls
`FakeNet.replicate()` (IO threads copy the source's newer transactions into
the relay log; SQL threads apply up to `apply_rate` of them), and once more
per MASTER_GTID_WAIT call, unless the test holds the SQL thread back.  Every statement is
recorded in `FakeServer.log`, so a test can check the *sequence* of SQL.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from triton_mysql.mysql.connection import DBError
from triton_mysql.mysql.flavor import MARIADB, Sql

VERSION = "10.11.6-MariaDB-0+deb12u1-log"
_ids = itertools.count(100)


@dataclass
class FakeServer:
    name: str
    server_id: int
    address: str
    port: int = 3306
    socket: str = ""
    up: bool = True
    read_only: bool = True
    executed: list[tuple[int, int]] = field(default_factory=list)
    """(server_id, seq) in domain 0, in commit order."""
    relay: list[tuple[int, int]] = field(default_factory=list)
    source: tuple[str, int] | None = None
    io_running: bool = False
    sql_running: bool = False
    sql_held: bool = False
    io_blocked: bool = False
    """The IO thread runs but receives nothing (a slow or cut link)."""
    sql_error: str = ""
    apply_rate: int = 1000
    repl_can_fence: bool = True
    log: list[str] = field(default_factory=list)
    pass_time: Any = None
    """Called with the seconds a statement waited in vain (the world's clock moves)."""
    journal: list[tuple[str, str]] | None = None
    """Shared by the servers of one FakeNet: (server, statement) in the order they ran."""

    # -- the data -------------------------------------------------------------
    @property
    def seq(self) -> int:
        return self.executed[-1][1] if self.executed else 0

    def write(self, n: int = 1, *, force: bool = False) -> list[tuple[int, int]]:
        """Client writes (refused when read-only unless `force`: an admin bypassing it)."""
        if self.read_only and not force:
            raise DBError("The MariaDB server is running with the --read-only option", 1290)
        new = [(self.server_id, self.seq + i + 1) for i in range(n)]
        self.executed += new
        return new

    @staticmethod
    def _pos(gtids: list[tuple[int, int]]) -> str:
        return f"0-{gtids[-1][0]}-{gtids[-1][1]}" if gtids else ""

    def current_pos(self) -> str:
        return self._pos(self.executed)

    def binlog_state(self) -> str:
        last: dict[int, int] = {}
        for server, seq in self.executed:
            last[server] = seq
        return ",".join(f"0-{s}-{n}" for s, n in sorted(last.items(), key=lambda kv: kv[1]))

    def received_pos(self) -> str:
        return self._pos(self.executed + self.relay)

    def apply(self, limit: int) -> None:
        if not self.sql_running or self.sql_held or self.sql_error:
            return
        take, self.relay = self.relay[:limit], self.relay[limit:]
        self.executed += take

    def has(self, gtid: str) -> bool:
        match = re.fullmatch(r"0-(\d+)-(\d+)", gtid or "")
        return not gtid or (match is not None and self.seq >= int(match[2]))

    # -- statements -------------------------------------------------------------
    def answer(self, text: str, args: tuple, user: str) -> list[dict[str, Any]]:
        self.log.append(text if not args else f"{text} {args}")
        t = " ".join(text.split())
        if self.journal is not None and not t.startswith(("SELECT", "SHOW")):
            self.journal.append((self.name, f"{user}: {t}"))
        if t == "SELECT VERSION()":
            return [{"VERSION()": VERSION}]
        if t == MARIADB.state_query().text:
            return [{"version": VERSION, "server_id": self.server_id, "server_uuid": None,
                     "read_only": int(self.read_only), "super_read_only": None, "gtid": self.current_pos(),
                     "binlog_state": self.binlog_state()}]
        if t == "SHOW MASTER STATUS":
            return [{"File": "mysql-bin.000001", "Position": 100 + len(self.executed)}]
        if t == "SHOW SLAVE STATUS":
            if self.source is None:
                return []
            return [{"Master_Host": self.source[0], "Master_Port": self.source[1],
                     "Slave_IO_Running": "Yes" if self.io_running else "No",
                     "Slave_SQL_Running": "Yes" if self.sql_running else "No",
                     "Last_IO_Errno": 0, "Last_IO_Error": "", "Last_SQL_Errno": 1 if self.sql_error else 0,
                     "Last_SQL_Error": self.sql_error, "Seconds_Behind_Master": 0 if self.sql_running else None,
                     "Gtid_IO_Pos": self.received_pos()}]
        if t.startswith("SELECT @@GLOBAL.gtid_binlog_pos"):
            return [{"p": self._pos(self.executed)}]
        if t.startswith("SELECT @@GLOBAL.gtid_current_pos"):
            return [{"gtid": self.current_pos()}]
        if t.startswith("SELECT @@GLOBAL.gtid_binlog_state"):
            return [{"gtid": self.binlog_state()}]
        if t.startswith("SELECT MASTER_GTID_WAIT"):
            self.apply(self.apply_rate)
            if self.has(str(args[0])):
                return [{"result": 0}]
            if self.pass_time is not None:
                self.pass_time(float(args[1]))  # the wait timed out: that long has passed
            return [{"result": -1}]
        if t == MARIADB.gtid_waiters().text or t.startswith("SELECT ID, USER, COMMAND"):
            return []
        if t.startswith("SET SESSION lock_wait_timeout"):
            return []
        if t.startswith("SET GLOBAL read_only"):
            if user != "root" and not self.repl_can_fence:
                raise DBError("Access denied; you need (at least one of) the READ_ONLY ADMIN privilege(s)", 1227)
            self.read_only = t.endswith("ON")
            return []
        if t.startswith("SELECT @@GLOBAL.read_only"):
            return [{"read_only": int(self.read_only)}]
        if t == "STOP SLAVE":
            self.io_running = self.sql_running = False
            return []
        if t == "START SLAVE":
            if self.source is not None:
                self.io_running = self.sql_running = True
            return []
        if t == "RESET SLAVE ALL":
            self.source, self.relay = None, []
            return []
        if t.startswith("CHANGE MASTER TO"):
            self.source, self.relay = (str(args[0]), int(args[1])), []
            return []
        if t.startswith("SET GLOBAL gtid_slave_pos"):
            return []
        if t.startswith("KILL"):
            return []
        raise AssertionError(f"fake server {self.name}: unexpected statement {t!r}")


class FakeConnection:
    def __init__(self, server: FakeServer, user: str) -> None:
        self.server, self.user = server, user
        self.where = f"{user}@{server.name}"
        self.connection_id = next(_ids)
        self.server_version = None  # no handshake: flavor detection asks SELECT VERSION()

    def query(self, sql: str | Sql, args: Any = None, timeout: float | None = None) -> list[dict]:
        if not self.server.up:
            raise DBError(f"{self.where}: Lost connection to MySQL server", 2013)
        text, params = (sql.text, tuple(sql.args)) if isinstance(sql, Sql) else (sql, tuple(args or ()))
        return self.server.answer(text, params, self.user)

    def scalar(self, sql, args=None, timeout=None):
        rows = self.query(sql, args, timeout)
        return next(iter(rows[0].values())) if rows else None

    def one(self, sql, args=None, timeout=None):
        rows = self.query(sql, args, timeout)
        return rows[0] if rows else None

    def execute(self, sql, args=None, timeout=None) -> None:
        self.query(sql, args, timeout)

    def execute_all(self, statements) -> None:
        for statement in statements:
            self.execute(statement)

    def close(self) -> None:
        pass

    def __enter__(self) -> "FakeConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeNet:
    """The servers by address, and the connection functions the hooks use."""

    def __init__(self) -> None:
        self.servers: dict[str, FakeServer] = {}
        self.journal: list[tuple[str, str]] = []
        self.pass_time: Any = None

    def add(self, name: str, server_id: int, address: str, socket: str) -> FakeServer:
        server = FakeServer(name=name, server_id=server_id, address=address, socket=socket, journal=self.journal,
                            pass_time=lambda seconds: self.pass_time and self.pass_time(seconds))
        self.servers[name] = server
        return server

    def _by(self, **kw: Any) -> FakeServer:
        for server in self.servers.values():
            if all(getattr(server, k) == v for k, v in kw.items()):
                return server
        raise DBError(f"cannot connect to {kw}: no such server", 2003)

    def connect_local(self, socket_path: str, password: str | None = None, timeout: float = 2.0,
                      user: str = "root") -> FakeConnection:
        server = self._by(socket=socket_path)
        if not server.up:
            raise DBError(f"cannot connect to {socket_path}: No such file or directory", 2002)
        return FakeConnection(server, "root")

    def connect_tcp(self, host: str, port: int, user: str, password: str | None, timeout: float = 2.0,
                    database: str | None = None) -> FakeConnection:
        server = self._by(address=host, port=int(port))
        if not server.up:
            raise DBError(f"cannot connect to {host}:{port}: Connection refused", 2003)
        return FakeConnection(server, user)

    def replicate(self) -> None:
        """IO threads fetch what their source has beyond what they received (same history line)."""
        for replica in self.servers.values():
            if not (replica.up and replica.io_running and replica.source) or replica.io_blocked:
                continue
            try:
                source = self._by(address=replica.source[0], port=replica.source[1])
            except DBError:
                continue
            if not source.up:
                continue
            have = replica.executed + replica.relay
            if source.executed[:len(have)] == have:
                replica.relay += source.executed[len(have):]
        for replica in self.servers.values():
            if replica.up:
                replica.apply(replica.apply_rate)
