"""A real HAProxy (Debian's package) in front of loopback nodes, with the shipped checks.

`render()` turns the shipped etc/haproxy.cfg into a config for the nodes of a
`Cluster`: each `server-template` line (Docker DNS discovery, which loopback
nodes do not have) becomes one `server` line per node, and the `resolvers`
section goes.  Nothing else changes: the `defaults` with their
`default-server` check settings, the `option httpchk` lines and the `bind`
lines are the file's own text, and the ports come in through the environment
variables the file already reads (`HTTP_PORT`, `HAPROXY_BIND_ADDRESS`,
`HAPROXY_WRITE_PORT`, `HAPROXY_READ_PORT`).  So the tests check what compose
runs.
"""
from __future__ import annotations

import csv
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pymysql

from .cluster import APP_DATABASE, APP_PASSWORD, APP_USER, ROOT, Node
from .procs import Proc, free_port, port_open, wait_for

SHIPPED = ROOT / "etc" / "haproxy.cfg"


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def render(nodes: Iterable[Node], text: str | None = None) -> str:
    """The shipped config with `server` lines for `nodes` instead of DNS `server-template` lines."""
    nodes = list(nodes)
    lines = (SHIPPED.read_text() if text is None else text).splitlines()
    out: list[str] = []
    templates = 0
    in_resolvers = False
    for line in lines:
        stripped = line.strip()
        if in_resolvers:
            if line[:1] in (" ", "\t") or not stripped or stripped.startswith("#"):
                continue
            in_resolvers = False
        if stripped.startswith("resolvers "):
            in_resolvers = True
            continue
        if stripped.startswith("server-template "):
            templates += 1
            indent = line[:len(line) - len(line.lstrip())]
            out.extend(f"{indent}server {n.name} {n.address}:{n.port}" for n in nodes)
            continue
        out.append(line)
    if templates != 2:
        raise AssertionError(f"expected 2 server-template lines in {SHIPPED}, found {templates}")
    return "\n".join(out) + "\n"


class HAProxy:
    """haproxy -db (foreground) with the rendered config; write and read ports on 127.0.0.1."""

    def __init__(self, workdir: Path, nodes: Iterable[Node], http_port: int) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes = list(nodes)
        self.http_port = http_port
        self.address = "127.0.0.1"
        self.write_port = free_port(self.address)
        self.read_port = free_port(self.address)
        self.config_path = self.dir / "haproxy.cfg"
        self.proc: Proc | None = None
        self._socket_dir: Path | None = None

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HTTP_PORT": str(self.http_port),
                "HAPROXY_BIND_ADDRESS": self.address, "HAPROXY_WRITE_PORT": str(self.write_port),
                "HAPROXY_READ_PORT": str(self.read_port)}

    def start(self) -> "HAProxy":
        """Start HAProxy and return once it has checked every server once.

        HAProxy 2.6 counts a server as UP until its first check (`check_status` INI), and spreads
        the first checks over one `inter`: until then the write port may reach a replica and the
        read port the primary.  (HAProxy 3.1's `init-state down` would avoid that; Debian 12 and the
        compose file's haproxy:2.6 do not have it.)  The tests look at routing once HAProxy knows."""
        binary = haproxy_binary()
        assert binary, "haproxy is not installed (make deps installs Debian's package)"
        self.config_path.write_text(render(self.nodes))
        # The admin socket comes in a second config file: the shipped file's text stays as it is.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="haproxy-"))  # a unix socket path must stay short
        self.stats_socket = self._socket_dir / "admin.sock"
        stats_config = self.dir / "stats.cfg"
        stats_config.write_text(f"global\n    stats socket {self.stats_socket} mode 600 level user\n")
        self.proc = Proc("haproxy", [binary, "-db", "-f", str(self.config_path), "-f", str(stats_config)],
                         self.dir / "haproxy.log", env=self.env())
        wait_for(lambda: port_open(self.address, self.write_port) and port_open(self.address, self.read_port), 15,
                 what="haproxy listening")
        wait_for(lambda: not self.unchecked(), 15, interval=0.05, what="haproxy's first check of every server")
        return self

    def servers(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(backend, server) -> (status, check_status), from `show stat` on the admin socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = list(csv.reader(data.decode().lstrip("# ").splitlines()))
        header = rows[0]
        out = {}
        for row in rows[1:]:
            fields = dict(zip(header, row))
            if fields.get("svname") and fields["svname"] not in ("FRONTEND", "BACKEND"):
                out[(fields["pxname"], fields["svname"])] = (fields["status"], fields["check_status"])
        return out

    def unchecked(self) -> list[tuple[str, str]]:
        """Servers HAProxy has not checked yet (all of them while its admin socket does not answer)."""
        try:
            servers = self.servers()
        except OSError:
            return [("?", "?")]
        return [key for key, (_status, check) in servers.items() if check.lstrip("* ") in ("", "INI")]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc else ""

    def connect(self, port: int, timeout: float = 1.0) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.address, port=port, user=APP_USER, password=APP_PASSWORD,
                               database=APP_DATABASE, connect_timeout=timeout, read_timeout=2, write_timeout=2,
                               autocommit=True)

    def backend_of(self, port: int, timeout: float = 1.0) -> int | None:
        """The MySQL port of the node a new connection to `port` reaches (None: refused or closed)."""
        try:
            conn = self.connect(port, timeout)
        except pymysql.err.MySQLError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@port")
                return int(cur.fetchone()[0])
        except pymysql.err.MySQLError:
            return None
        finally:
            conn.close()

    def route_of(self, port: int, timeout: float = 1.0) -> tuple[int, bool] | None:
        """(MySQL port, read_only) of the node a new connection to `port` reaches (None: refused or closed)."""
        try:
            conn = self.connect(port, timeout)
        except pymysql.err.MySQLError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@port, @@read_only")
                port_, read_only = cur.fetchone()
                return int(port_), bool(int(read_only))
        except pymysql.err.MySQLError:
            return None
        finally:
            conn.close()

    def wait_write_route(self, node: Node, timeout: float = 30.0) -> float:
        """Wait until the write port reaches `node`; returns when (time.time())."""
        wait_for(lambda: self.backend_of(self.write_port) == node.port, timeout, interval=0.05,
                 what=f"the write port routing to {node.name}")
        return time.time()


@dataclass
class Ack:
    row: int
    node: str
    at: float


@dataclass
class RoutedWriter:
    """Inserts numbered rows through HAProxy's write port, reconnecting on any error.

    Each connection first asks `SELECT @@port`: HAProxy (TCP mode) keeps a connection on one
    backend, so that names the node that acknowledges every insert on it."""

    proxy: HAProxy
    by_port: dict[int, str]
    table: str = "routed"
    acked: list[Ack] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _next: int = 1

    def start(self, primary: Node) -> "RoutedWriter":
        conn = primary.app_connection()
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id INT PRIMARY KEY, port INT, at DOUBLE)")
        conn.close()
        self._thread = threading.Thread(target=self._run, name="routed-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn, node = None, ""
        while not self._stop.is_set():
            if conn is None:
                try:
                    conn = self.proxy.connect(self.proxy.write_port, timeout=1)
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@port")
                        node = self.by_port.get(int(cur.fetchone()[0]), "?")
                except pymysql.err.MySQLError:
                    self.errors += 1
                    conn = None
                    time.sleep(0.02)
                    continue
            row = self._next
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, @@port, %s)", (row, time.time()))
                self.acked.append(Ack(row, node, time.time()))
                self._next += 1
            except pymysql.err.IntegrityError:
                self._next += 1  # committed, but the answer was lost: skip the number
            except pymysql.err.MySQLError:
                self.errors += 1
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.02)
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    def missing_on(self, node: Node) -> list[int]:
        """Rows acknowledged before the query started that `node` does not have.  (The writer may
        still be running: an ack that arrives while the SELECT runs is not in its result.)"""
        acked = list(self.acked)
        rows = {int(r["id"]) for r in node.sql(f"SELECT id FROM {APP_DATABASE}.{self.table}")}
        return sorted(a.row for a in acked if a.row not in rows)

    def first_on(self, name: str, after: float) -> Ack | None:
        return next((a for a in self.acked if a.node == name and a.at > after), None)
