"""Whole triton-mysql nodes on one machine, as the image runs them.

A `Node` is a real `containerbuddy` (its own copy of etc/containerbuddy.json,
as each container has) running `bin/triton-mysqld` with the real hooks, on its
own loopback address (127.0.0.x), with its own datadir, config and socket.
A `Cluster` is a set of nodes sharing a discovery service and a snapshot
location.  Used by the end-to-end tests and by `make demo`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable

import pymysql

from .mariadb import mysql_tmp_dir, next_loopback_address
from .procs import Proc, descendants, free_port, process_state, wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

REPL_USER, REPL_PASSWORD = "repl", "repl#Pass 1"
APP_USER, APP_PASSWORD, APP_DATABASE = "app", "app#Pass 2", "appdb"
ROOT_PASSWORD = "root#Pass 3"


class Node:
    def __init__(self, cluster: "Cluster", name: str, address: str, port: int) -> None:
        self.cluster = cluster
        self.name = name
        self.address = address
        self.port = port
        self.dir = cluster.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: Proc | None = None
        self.extra_env: dict[str, str] = {}
        self.wanted_down = False
        """Set while a drill keeps the node down on purpose (a restart policy leaves it alone)."""
        self.starts = 0
        self.config_path = self.dir / "containerbuddy.json"
        if not self.config_path.exists():
            shutil.copy(ROOT / "etc" / "containerbuddy.json", self.config_path)

    # -- layout -------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    @property
    def socket(self) -> str:
        return str(self.dir / "run" / "mysqld.sock")

    @property
    def log_path(self) -> Path:
        return self.dir / "node.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "CONSUL", "ETCD"))}
        env.update(self.cluster.base_env())
        env.update({
            "PATH": f"{VENV_BIN}:{ROOT / 'bin'}:/usr/sbin:/sbin:{env.get('PATH', '/usr/bin:/bin')}",
            "NODE_NAME": self.name,
            "ADVERTISE_ADDRESS": self.address,
            "MYSQL_BIND_ADDRESS": self.address,
            "MYSQL_PORT": str(self.port),
            "MYSQL_DATADIR": str(self.datadir),
            "MYSQL_CNF": str(self.dir / "my.cnf"),
            "MYSQL_CONF_DIR": str(self.dir / "conf.d"),
            "MYSQL_SOCKET": self.socket,
            "HTTP_BIND_ADDRESS": self.address,
            "CONTAINERBUDDY": f"file://{self.config_path}",
        })
        env.update(self.extra_env)
        return env

    # -- process control ----------------------------------------------------
    def start(self) -> "Node":
        (self.dir / "run").mkdir(exist_ok=True)
        if self.cluster.conf is not None:
            conf_dir = self.dir / "conf.d"
            conf_dir.mkdir(exist_ok=True)
            (conf_dir / "harness.cnf").write_text(self.cluster.conf)
        self.starts += 1
        argv = [str(VENV_BIN / "containerbuddy"), str(ROOT / "bin" / "triton-mysqld")]
        self.proc = Proc(f"node {self.name}", argv, self.log_path, env=self.env())
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def exit_code(self) -> int | None:
        """The supervisor's exit code once it has exited (None while it runs or before any start)."""
        if self.proc is None or self.proc.alive():
            return None
        return self.proc.popen.returncode

    def signal(self, sig: int) -> None:
        """Send `sig` to the supervisor (SIGUSR1 toggles maintenance, SIGHUP reloads)."""
        if self.proc is not None:
            self.proc.send(sig)

    def move_datadir_aside(self, tag: str) -> Path:
        """Move the (stopped) node's datadir away, leaving it empty: the next start clones afresh."""
        assert not self.alive(), f"{self.name} must be stopped before its datadir is moved"
        aside = self.dir / f"data.{tag}"
        if self.datadir.exists():
            self.datadir.rename(aside)
        return aside

    def pids(self) -> list[int]:
        """The supervisor and everything below it (mysqld, hooks)."""
        if self.proc is None or not self.proc.alive():
            return []
        return [self.proc.pid] + [pid for pid, _ in descendants(self.proc.pid)]

    def mysqld_pid(self) -> int | None:
        for pid, cmd in descendants(self.proc.pid) if self.proc else []:
            if "mariadbd" in cmd or "mysqld " in cmd:
                return pid
        return None

    def stop(self, timeout: float = 90.0) -> int | None:
        """SIGTERM to the supervisor (a planned stop: preStop hands over)."""
        if self.proc is None:
            return None
        code = self.proc.stop(timeout=timeout)
        self._reap_leftovers()
        return code

    def kill(self) -> None:
        """kill -9 of the supervisor, mysqld and every hook (a crash)."""
        if self.proc is None:
            return
        for pid in reversed(self.pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill_tree()
        self._reap_leftovers()

    def freeze(self, keep_mysqld: bool = False) -> list[int]:
        """SIGSTOP the supervisor, mysqld and every hook (a suspended container); `keep_mysqld`:
        all but mysqld (the node's hooks stop running while its server still answers).

        Repeated until every process of the node is stopped: a hook forked while
        the list was being read, or one that exits while the others are stopped,
        would otherwise leave part of the node running (the kernel even sends
        SIGCONT to a stopped process group that a member's exit orphans).
        """
        frozen: list[int] = []
        kept = {self.mysqld_pid()} if keep_mysqld else set()
        for _ in range(50):
            pids = [pid for pid in self.pids() if pid not in kept]
            for pid in pids:
                if pid not in frozen:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
            time.sleep(0.02)
            states = {pid: process_state(pid) for pid in self.pids() if pid not in kept}
            if all(state in ("T", "t", None) for state in states.values()) and set(states) <= set(frozen):
                return frozen
        raise RuntimeError(f"could not freeze {self.name}: {states}")

    def thaw(self, pids: Iterable[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _reap_leftovers(self) -> None:
        # Orphans of a killed supervisor are re-parented away from us; kill what is left by PID.
        pidfile = self.dir / "run" / "mysqld.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(self.dir).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc else (self.log_path.read_text() if self.log_path.exists() else "")

    # -- SQL ------------------------------------------------------------------
    def sql(self, query: str, args: Any = None, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Run a query as root over the node's socket (unix_socket authentication)."""
        conn = pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=min(timeout, 5.0),
                               read_timeout=timeout, write_timeout=timeout, autocommit=True,
                               cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def scalar(self, query: str, args: Any = None, *, timeout: float = 30.0) -> Any:
        rows = self.sql(query, args, timeout=timeout)
        return next(iter(rows[0].values())) if rows else None

    def app_connection(self, timeout: float = 3.0) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.address, port=self.port, user=APP_USER, password=APP_PASSWORD,
                               database=APP_DATABASE, connect_timeout=timeout, read_timeout=timeout,
                               write_timeout=timeout, autocommit=True)

    # -- HTTP endpoints (the supervisor's telemetry) ----------------------------------------
    @property
    def http_port(self) -> int:
        return int(self.env()["HTTP_PORT"])

    def http(self, path: str, timeout: float = 2.0) -> tuple[int | None, str]:
        """GET one of the node's endpoints: (status, body); (None, why) when it does not answer."""
        import http.client
        conn = http.client.HTTPConnection(self.address, self.http_port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
    def slave_status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """`SHOW SLAVE STATUS` as a dict ({} when the node is no replica, None when unreachable)."""
        try:
            rows = self.sql("SHOW SLAVE STATUS", timeout=timeout)
        except Exception:  # noqa: BLE001 - down, frozen or starting
            return None
        return rows[0] if rows else {}

    def read_only(self) -> bool | None:
        try:
            # Short timeout: a frozen (SIGSTOPped) server must not stall the caller.
            return bool(int(self.scalar("SELECT @@global.read_only", timeout=1.0)))
        except Exception:  # noqa: BLE001 - down or starting
            return None

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address}:{self.port}>"


class Cluster:
    """Nodes that share one discovery service and one snapshot location."""

    def __init__(self, workdir: Path, discovery_env: dict[str, str], *, backup_url: str | None = None,
                 env: dict[str, str] | None = None, service_name: str = "mysql", conf: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.discovery_env = dict(discovery_env)
        if backup_url is None:
            (self.workdir / "backups").mkdir(exist_ok=True)  # a missing storage root is an error
        self.backup_url = backup_url or f"file://{self.workdir / 'backups'}"
        self.env = dict(env or {})
        self.service_name = service_name
        self.conf = conf
        """Server settings written to every node's MYSQL_CONF_DIR (harness.cnf) before each start."""
        self.nodes: list[Node] = []
        self.http_port = free_port("0.0.0.0")
        """Every node serves its HTTP endpoints on this port of its own address (as in compose)."""

    def base_env(self) -> dict[str, str]:
        session_ttl = "10" if "CONSUL" in self.discovery_env else "5"
        env = {
            "SERVICE_NAME": self.service_name,
            "MYSQL_REPL_USER": REPL_USER, "MYSQL_REPL_PASSWORD": REPL_PASSWORD,
            "MYSQL_USER": APP_USER, "MYSQL_PASSWORD": APP_PASSWORD, "MYSQL_DATABASE": APP_DATABASE,
            "MYSQL_ROOT_PASSWORD": ROOT_PASSWORD,
            "BACKUP_URL": self.backup_url,
            "SESSION_TTL": session_ttl,
            "HEALTH_POLL": "1",
            "DISCOVERY_TIMEOUT": "0.5",
            "SNAPSHOT_POLL": "2",
            "STOP_GRACE": "5",
            "DISCOVERY_WAIT": "30",
            "BOOTSTRAP_WAIT": "120",
            "HTTP_PORT": str(self.http_port),
        }
        env.update(self.discovery_env)
        env.update(self.env)
        return env

    def add_node(self, name: str | None = None, **extra_env: str) -> Node:
        address = next_loopback_address()
        node = Node(self, name or f"node{len(self.nodes) + 1}", address, free_port(address))
        node.extra_env.update(extra_env)
        self.nodes.append(node)
        return node

    def start(self, n: int) -> list[Node]:
        new = [self.add_node() for _ in range(n)]
        for node in new:
            node.start()
        return new

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def node_at(self, host: str, port: int) -> Node | None:
        """The node listening on host:port (how SHOW SLAVE STATUS names a source)."""
        return next((n for n in self.nodes if n.address == host and n.port == int(port)), None)

    # -- discovery view -------------------------------------------------------
    def discovery(self):
        from triton_mysql.discovery import connect
        from triton_mysql.config import Config
        config = Config.from_env({**self.base_env(), "NODE_NAME": "observer",
                                  "MYSQL_CNF": str(self.workdir / "observer.cnf")})
        # The nodes' own way to connect (TLS, token, etcd user).  With etcd auth the token is
        # cached in the cluster's directory: a new authentication (bcrypt) per poll would load
        # the server enough to time the nodes' requests out.
        return connect(config.with_overrides(discovery_timeout=2.0)), config

    def lock(self) -> dict[str, Any] | None:
        from triton_mysql.keys import ClusterKeys, decode
        discovery, config = self.discovery()
        try:
            kv = discovery.get(ClusterKeys.for_config(config).primary)
            return decode(kv.value) if kv else None
        finally:
            discovery.close()

    def record(self, suffix: str) -> dict[str, Any] | None:
        from triton_mysql.keys import decode
        discovery, config = self.discovery()
        try:
            kv = discovery.get(f"{config.kv_prefix}/{suffix}")
            return decode(kv.value) if kv else None
        finally:
            discovery.close()

    def wipe_discovery(self) -> None:
        """Delete every key under the cluster's prefix, as an operator or a lost discovery volume would.

        etcd: `etcdctl del --prefix <ETCD_PREFIX>/` (member records, lock, services,
        counters: everything).  Consul: `DELETE /v1/kv/triton-mysql/?recurse` (the KV
        tree; sessions and the agent's services are not KV and stay).
        """
        env = self.base_env()
        if env.get("ETCD"):
            import subprocess
            prefix = env.get("ETCD_PREFIX") or "/triton-mysql"
            endpoints = ",".join(f"http://{e.strip()}" for e in env["ETCD"].split(","))
            subprocess.run(["etcdctl", f"--endpoints={endpoints}", "--dial-timeout=2s", "--command-timeout=5s",
                            "del", "--prefix", prefix.rstrip("/") + "/"],
                           env={**os.environ, "ETCDCTL_API": "3"}, check=True, capture_output=True, timeout=20)
            return
        import urllib.request
        request = urllib.request.Request(f"http://{env['CONSUL']}/v1/kv/triton-mysql/?recurse", method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()

    def primary(self) -> Node | None:
        """The node holding the lock and writable, as a client would find it."""
        lock = self.lock()
        if not lock or lock.get("state", "ready") != "ready":
            return None
        node = next((n for n in self.nodes if n.name == lock.get("node")), None)
        if node is not None and node.read_only() is False:
            return node
        return None

    def wait_for_primary(self, timeout: float = 60.0, exclude: Node | None = None) -> Node:
        def found() -> Node | None:
            node = self.primary()
            return node if node is not None and node is not exclude else None
        return wait_for(found, timeout, interval=0.1, what="a writable primary holding the lock")  # type: ignore[return-value]

    def wait_replicating(self, node: Node, primary: Node, timeout: float = 60.0) -> None:
        def ok() -> bool:
            rows = node.sql("SHOW SLAVE STATUS")
            return bool(rows) and rows[0]["Slave_IO_Running"] == "Yes" and rows[0]["Slave_SQL_Running"] == "Yes" \
                and rows[0]["Master_Port"] == primary.port and rows[0]["Master_Host"] == primary.address
        wait_for(ok, timeout, interval=0.2, what=f"{node.name} replicating from {primary.name}")

    def converge(self, timeout: float = 120.0) -> Node:
        """One writable primary; every other live node replicating from it and caught up."""
        primary = self.wait_for_primary(timeout)
        live = [n for n in self.nodes if n.alive() and n is not primary]
        for node in live:
            self.wait_replicating(node, primary, timeout)
        self.wait_caught_up(primary, live, timeout)
        return primary

    def wait_caught_up(self, primary: Node, nodes: Iterable[Node], timeout: float = 60.0) -> None:
        position = primary.scalar("SELECT @@gtid_binlog_pos")
        for node in nodes:
            result = node.scalar("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
            assert int(result) == 0, f"{node.name} did not reach {position}"

    def stop_all(self, timeout: float = 90.0) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(pool.map(lambda n: n.stop(timeout), self.nodes))

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def dump_logs(self, tail: int = 150) -> str:
        """The end of every node's log, without the server's [Note] chatter."""
        out = []
        for node in self.nodes:
            lines = [line for line in node.log_text().splitlines() if "[Note]" not in line][-tail:]
            out.append(f"===== {node.name} ({node.address}:{node.port}) =====\n" + "\n".join(lines))
        return "\n".join(out)


def make_cluster_fixture() -> Callable:
    import pytest

    @pytest.fixture
    def cluster_factory(tmp_path_factory, request):
        """`make(discovery_env, **kw) -> Cluster`; every node is stopped (or killed) at teardown."""
        made: list[Cluster] = []

        def make(discovery_env: dict[str, str], **kwargs: Any) -> Cluster:
            # Not below pytest's tmp dir: mysqld runs as `mysql` and must always reach its files
            # (see mariadb.mysql_workspace); a link from the test's tmp dir helps debugging.
            workdir = mysql_tmp_dir("cluster")
            link = tmp_path_factory.mktemp("cluster") / "nodes"
            link.symlink_to(workdir)
            cluster = Cluster(workdir, discovery_env, **kwargs)
            made.append(cluster)
            return cluster

        yield make
        failed = getattr(request.node, "rep_call", None)
        for cluster in made:
            if failed is not None and failed.failed:
                sys.stderr.write(cluster.dump_logs())
            try:
                cluster.stop_all(timeout=30)
            finally:
                cluster.kill_all()

    return cluster_factory


cluster_factory = make_cluster_fixture()
