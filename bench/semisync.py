"""What semi-synchronous replication costs and gains.  `python -m bench.semisync [--runs 5]`

Everything below runs in one process, side by side, so every figure has its
baselines measured under the same load (the machine is shared):

* two triton-mysql clusters of 3 nodes on one etcd, one with
  SYNC_REPLICATION=semi (the default), one with `off`;
* the same servers by hand ("raw"): 3 mariadbd started from the config the tool
  generates (tests/harness: server_config.render_cnf, so every setting is the
  same), replication and semi-sync (AFTER_SYNC) set up with plain SQL, measured
  with the source side on (raw semi-sync) and off (raw async);
* a 3-node Galera cluster (galera-4, the same mariadbd) on loopback, the system
  a user picks instead for zero loss on MariaDB.

Figures:

1. throughput and commit latency of a single-row INSERT loop (autocommit,
   PyMySQL over TCP, one process per client) with 1 and 4 clients, every target
   measured in turn, in a rotated order, `--runs` times;
2. crash failover time (kill -9 of the primary's whole node, etcd, SESSION_TTL
   10 s) with `semi` and `off`, alternating, and the acknowledged rows missing;
3. Galera: kill -9 of the node being written → first acknowledged write on
   another node (the client reconnects to the next node, as behind HAProxy),
   and acknowledged rows missing.

Goals (issue 16): the cluster's `semi` throughput ≥ 95 % of the raw semi-sync
servers'; crash failover with `semi` ≤ SESSION_TTL + 2 s, like `off`.

Every server's files (datadirs, logs) live on tmpfs (/dev/shm) unless
`--on-disk`: on this shared machine other agents' test suites keep the disk
busy, and an fsync then takes anything from 0.1 to 50 ms, which drowned every
difference (measured: the same async server at 69 to 1,096 inserts/s from one
run to the next).  On tmpfs an fsync costs nothing, so the figures show what
replication and the tool add (CPU, one loopback round trip), not the disk.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pymysql

from bench.common import emit, stats, stop_on_sigterm
from tests.harness.cluster import APP_DATABASE, APP_PASSWORD, APP_USER, Cluster, Node
from tests.harness.mariadb import chown_mysql, mariadbd_binary, mysql_tmp_dir, next_loopback_address
from tests.harness.procs import Proc, free_port, wait_for

GOAL_RATIO = 0.95
# 10 s, not the harness's 5: two clusters, three raw servers and Galera share this machine's 2 cores, and a
# health pass must not overrun its timeout (= SESSION_TTL).  Both modes use the same, which is what compares.
SESSION_TTL = 10.0
# The default poll (the harness uses 1 s): six nodes' hooks are processes, and on 2 cores they compete
# with the servers being measured.
HEALTH_POLL = 2.0
CRASH_MARGIN = 2.0
GALERA_LIB = "/usr/lib/galera/libgalera_smm.so"
TABLE = "bench_insert"


def log(message: str) -> None:
    print(message, flush=True)


# -- a target: somewhere to insert rows -------------------------------------------------------

@dataclass
class Target:
    name: str
    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self, timeout: float = 10.0) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               database=self.database, connect_timeout=timeout, read_timeout=60,
                               write_timeout=60, autocommit=True)

    def prepare(self) -> None:
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                        f"client INT, v VARCHAR(32))")
        conn.close()


def _client(target: Target, client: int, start_at: float, seconds: float, out: Any) -> None:
    """One client process: INSERT one row at a time until `seconds` after `start_at`; latencies in ms."""
    try:
        conn = target.connect()
        cur = conn.cursor()
        latencies: list[float] = []
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while True:
            t0 = time.perf_counter()
            cur.execute(f"INSERT INTO {TABLE} (client, v) VALUES (%s, 'x')", (client,))
            latencies.append((time.perf_counter() - t0) * 1000)
            if time.time() >= end:
                break
        conn.close()
        out.put((client, latencies, None))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        out.put((client, [], repr(exc)))


def insert_loop(target: Target, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` processes inserting for `seconds`: inserts/s and latency percentiles (ms)."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=_client, args=(target, i, start_at, seconds, queue), daemon=True)
             for i in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [e for _, _, e in results if e]
    if errors:
        raise RuntimeError(f"{target.name}: {errors[0]}")
    latencies = sorted(x for _, lat, _ in results for x in lat)
    return {"inserts_s": round(len(latencies) / seconds, 1), "p50_ms": round(_pct(latencies, 0.5), 3),
            "p90_ms": round(_pct(latencies, 0.9), 3), "p99_ms": round(_pct(latencies, 0.99), 3),
            "mean_ms": round(statistics.fmean(latencies), 3)}


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


# -- the clusters ------------------------------------------------------------------------------

@contextlib.contextmanager
def etcd() -> Iterator[str]:
    from tests.harness.etcd import EtcdServer
    workdir = Path(tempfile.mkdtemp(prefix="bench-sync-etcd-"))
    server = EtcdServer(workdir).start()
    try:
        yield server.endpoint
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def cluster(endpoint: str, mode: str) -> Iterator[Cluster]:
    workdir = mysql_tmp_dir(f"bench-sync-{mode}")
    c = Cluster(workdir, {"ETCD": endpoint}, env={"SYNC_REPLICATION": mode, "SESSION_TTL": f"{SESSION_TTL:g}",
                                                  "HEALTH_POLL": f"{HEALTH_POLL:g}", "SNAPSHOT_POLL": "30"},
                service_name=f"sync-{mode}")
    try:
        for _ in range(3):
            node = c.add_node()
            private_tmpdir(node.dir, node.dir / "conf.d")
            node.start()
        try:
            converge(c, 180)
        except Exception:
            log(c.dump_logs(tail=60))
            raise
        yield c
    finally:
        try:
            c.stop_all(timeout=30)
        finally:
            c.kill_all()
            shutil.rmtree(workdir, ignore_errors=True)


def private_tmpdir(base: Path, conf_dir: Path) -> None:
    """A temp dir of the server's own, in a user config file: bootstraps side by side must not share /tmp
    (seen here: mariadb-install-db failing on "Error on delete of '/tmp/#sql-temptable-…'")."""
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-tmpdir.cnf").write_text(f"[mysqld]\ntmpdir={base}/tmp\n")
    chown_mysql(base / "tmp")


def converge(c: Cluster, timeout: float = 120) -> Node:
    return c.converge(timeout)


def wait_sync_on(c: Cluster, timeout: float = 60) -> None:
    def on() -> bool:
        primary = c.primary()
        record = c.record(f"members/{primary.name}") if primary else None
        return bool(record and (record.get("sync") or {}).get("status") == "on")
    wait_for(on, timeout, interval=0.2, what="semi-sync on in the cluster")


def cluster_target(c: Cluster, name: str) -> Target:
    primary = converge(c)
    return Target(name, primary.address, primary.port, APP_USER, APP_PASSWORD, APP_DATABASE)


# -- the same servers by hand --------------------------------------------------------------------

class RawServers:
    """3 mariadbd from the tool's generated config, replication and semi-sync set up by hand."""

    def __init__(self) -> None:
        from triton_mysql.config import Config
        self.base = mysql_tmp_dir("bench-sync-raw")
        self.procs: list[Proc] = []
        self.nodes: list[dict[str, Any]] = []
        for i in range(3):
            address = next_loopback_address()
            d = self.base / f"raw{i + 1}"
            config = Config(mysql_datadir=str(d / "data"), mysql_socket=str(d / "run" / "mysqld.sock"),
                            mysql_port=free_port(address), mysql_bind_address=address,
                            mysql_conf_dir=str(d / "conf.d"), mysql_cnf=str(d / "my.cnf"), sync_replication="semi")
            self.nodes.append({"config": config, "address": address, "dir": d})

    def start(self) -> "RawServers":
        from triton_mysql.mysql import datadir, server_config
        from triton_mysql.mysql.flavor import MARIADB
        for i, node in enumerate(self.nodes, 1):
            server_config.write_cnf(node["config"], MARIADB, 900 + i)
            private_tmpdir(node["dir"], Path(node["config"].mysql_conf_dir))
            chown_mysql(node["dir"])
            datadir.initialize(node["config"], MARIADB)
        chown_mysql(self.base)
        for node in self.nodes:
            cnf = node["config"].mysql_cnf
            self.procs.append(Proc(f"raw-{node['address']}", [mariadbd_binary(), f"--defaults-file={cnf}"],
                                   node["dir"] / "mysqld.log"))
        for node in self.nodes:
            wait_for(lambda n=node: self.sql(n, "SELECT 1"), 60, what="a raw server")
        primary = self.nodes[0]
        self.sql(primary, "SET GLOBAL read_only = OFF")
        self.sql(primary, f"CREATE DATABASE {APP_DATABASE}")
        self.sql(primary, f"CREATE USER '{APP_USER}'@'%%' IDENTIFIED BY %s", (APP_PASSWORD,))
        self.sql(primary, f"GRANT ALL ON {APP_DATABASE}.* TO '{APP_USER}'@'%'")
        self.sql(primary, "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl'")
        self.sql(primary, "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'")
        for node in self.nodes[1:]:
            self.sql(node, "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER='repl', "
                           "MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos",
                     (primary["address"], primary["config"].mysql_port))
            self.sql(node, "START SLAVE")
        self.semi(True)
        return self

    def sql(self, node: dict[str, Any], text: str, args: Any = None) -> list[dict]:
        conn = pymysql.connect(unix_socket=node["config"].mysql_socket, user="root", autocommit=True,
                               connect_timeout=5, cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(text, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def semi(self, on: bool) -> None:
        """Raw semi-sync (AFTER_SYNC, as the generated config sets it) on or off on the primary."""
        primary = self.nodes[0]
        self.sql(primary, f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if on else 'OFF'}")
        if on:
            def acknowledging() -> bool:
                rows = self.sql(primary, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                                         "('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients')")
                status = {r["Variable_name"]: r["Value"] for r in rows}
                return status["Rpl_semi_sync_master_status"] == "ON" and int(status["Rpl_semi_sync_master_clients"]) >= 1
            wait_for(acknowledging, 30, what="raw semi-sync acknowledging")

    def target(self, name: str) -> Target:
        primary = self.nodes[0]
        return Target(name, primary["address"], primary["config"].mysql_port, APP_USER, APP_PASSWORD, APP_DATABASE)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


# -- Galera ----------------------------------------------------------------------------------------

class Galera:
    """A 3-node Galera cluster (galera-4) on loopback with the same mariadbd; rsync SST."""

    def __init__(self) -> None:
        self.base = mysql_tmp_dir("bench-galera")
        self.nodes: list[dict[str, Any]] = []
        for i in range(3):
            address = next_loopback_address()
            self.nodes.append({"name": f"galera{i + 1}", "address": address, "port": free_port(address),
                               "gcomm": free_port(address), "ist": free_port(address), "sst": free_port(address),
                               "dir": self.base / f"galera{i + 1}", "proc": None})
        members = ",".join(f"{n['address']}:{n['gcomm']}" for n in self.nodes)
        for n in self.nodes:
            d = n["dir"]
            for sub in ("data", "run", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            (d / "my.cnf").write_text("\n".join([
                "[client]", f"socket={d}/run/mysqld.sock", "", "[mysqld]",
                *(["user=mysql"] if os.geteuid() == 0 else []),
                f"datadir={d}/data", f"socket={d}/run/mysqld.sock", f"pid-file={d}/run/mysqld.pid",
                f"tmpdir={d}/tmp", f"port={n['port']}", f"bind-address={n['address']}", "skip_name_resolve=ON",
                "binlog_format=ROW", "innodb_autoinc_lock_mode=2", "wsrep_on=ON", f"wsrep_provider={GALERA_LIB}",
                "wsrep_cluster_name=bench", f"wsrep_cluster_address=gcomm://{members}",
                f"wsrep_node_address={n['address']}", f"wsrep_node_name={n['name']}", "wsrep_sst_method=rsync",
                f"wsrep_sst_receive_address={n['address']}:{n['sst']}",
                f"wsrep_provider_options=\"gmcast.listen_addr=tcp://{n['address']}:{n['gcomm']};"
                f"ist.recv_addr={n['address']}:{n['ist']}\"", ""]))

    def start(self) -> "Galera":
        first = self.nodes[0]
        chown_mysql(self.base)
        result = subprocess.run(["mariadb-install-db", f"--defaults-file={first['dir']}/my.cnf",
                                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                                capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db: {result.stdout[-500:]}{result.stderr[-500:]}")
        chown_mysql(self.base)
        self.start_node(first, new_cluster=True)
        self.sql(first, f"CREATE DATABASE {APP_DATABASE}")
        self.sql(first, f"CREATE USER '{APP_USER}'@'%%' IDENTIFIED BY %s", (APP_PASSWORD,))
        self.sql(first, f"GRANT ALL ON {APP_DATABASE}.* TO '{APP_USER}'@'%'")
        for n in self.nodes[1:]:
            self.start_node(n)
        return self

    def start_node(self, n: dict[str, Any], new_cluster: bool = False) -> None:
        argv = [mariadbd_binary(), f"--defaults-file={n['dir']}/my.cnf"] + (["--wsrep-new-cluster"] if new_cluster
                                                                             else [])
        n["proc"] = Proc(n["name"], argv, n["dir"] / "mysqld.log")
        wait_for(lambda: self.synced(n), 300, interval=0.2, what=f"{n['name']} joining the Galera cluster")

    def synced(self, n: dict[str, Any]) -> bool:
        if n["proc"] is None or not n["proc"].alive():
            raise RuntimeError(f"{n['name']} exited:\n{(n['dir'] / 'mysqld.log').read_text()[-3000:]}")
        rows = self.sql(n, "SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_ready')")
        status = {r["Variable_name"]: r["Value"] for r in rows}
        return status.get("wsrep_local_state_comment") == "Synced" and status.get("wsrep_ready") == "ON"

    def sql(self, n: dict[str, Any], text: str, args: Any = None) -> list[dict]:
        conn = pymysql.connect(unix_socket=f"{n['dir']}/run/mysqld.sock", user="root", autocommit=True,
                               connect_timeout=3, read_timeout=30, cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(text, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def target(self, index: int, name: str = "galera") -> Target:
        n = self.nodes[index]
        return Target(name, n["address"], n["port"], APP_USER, APP_PASSWORD, APP_DATABASE)

    def kill(self, index: int) -> None:
        n = self.nodes[index]
        n["proc"].send(signal.SIGKILL)
        n["proc"].stop(timeout=10)
        n["proc"] = None

    def stop(self) -> None:
        for n in reversed(self.nodes):
            if n["proc"] is not None:
                n["proc"].stop(timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


class FailoverWriter:
    """Writes numbered rows to a list of nodes, moving to the next one on any error (like HAProxy's backup
    servers), and records every acknowledged row with its time and node."""

    def __init__(self, targets: list[Target], table: str) -> None:
        self.targets = targets
        self.table = table
        self.acked: list[tuple[int, float, str]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> "FailoverWriter":
        conn = self.targets[0].connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id INT PRIMARY KEY, at DOUBLE)")
        conn.close()
        self.thread.start()
        return self

    def run(self) -> None:
        row, index, conn = 1, 0, None
        while not self.stop_event.is_set():
            target = self.targets[index % len(self.targets)]
            try:
                if conn is None:
                    conn = pymysql.connect(host=target.host, port=target.port, user=target.user,
                                           password=target.password, database=target.database, connect_timeout=1,
                                           read_timeout=5, write_timeout=5, autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (row, time.time()))
                self.acked.append((row, time.time(), target.name))
                row += 1
            except pymysql.err.IntegrityError:
                row += 1
            except pymysql.err.MySQLError:
                with contextlib.suppress(Exception):
                    conn.close()
                conn, index = None, index + 1
                time.sleep(0.01)
            time.sleep(0.01)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)


def galera_kill_run(galera: Galera, victim: int, index: int) -> dict[str, Any]:
    order = [victim] + [i for i in range(3) if i != victim]
    targets = [galera.target(i, galera.nodes[i]["name"]) for i in order]
    writer = FailoverWriter(targets, f"kill_{index}").start()
    try:
        wait_for(lambda: len(writer.acked) >= 50, 30, what="the writer on the Galera node")
        killed_at = time.time()
        galera.kill(victim)
        first = wait_for(lambda: next((a for a in writer.acked if a[1] > killed_at
                                       and a[2] != targets[0].name), None), 120, interval=0.02,
                         what="the first acknowledged write on another Galera node")
        time.sleep(1.0)
    finally:
        writer.stop()
    survivor = galera.nodes[order[1]]
    have = {int(r["id"]) for r in galera.sql(survivor, f"SELECT id FROM {APP_DATABASE}.kill_{index}")}
    missing = {row for row, _, _ in writer.acked} - have
    galera.start_node(galera.nodes[victim])  # rejoins (IST/SST) for the next run
    return {"seconds": round(first[1] - killed_at, 3), "from": targets[0].name, "to": first[2],
            "acked": len(writer.acked), "missing": len(missing)}


# -- driver ------------------------------------------------------------------------------------------

def measure_throughput(targets: dict[str, Any], runs: int, seconds: float) -> dict[str, Any]:
    """Every target in turn (rotated order), `runs` times, with 1 and 4 clients.

    `targets` maps a name to a callable giving the Target for the next run (a cluster's primary is
    found again each time: on a busy machine a health pass can overrun and the lock move).  A run that
    fails is retried once with the target found again.
    """
    out: dict[str, Any] = {}
    names = list(targets)
    for clients in (1, 4):
        samples: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for run in range(runs):
            order = names[run % len(names):] + names[:run % len(names)]
            for name in order:
                try:
                    result = insert_loop(targets[name](), clients, seconds)
                except Exception as exc:  # noqa: BLE001 - once more, with the primary found again
                    log(f"   {name}: {exc!r}; trying once more")
                    result = insert_loop(targets[name](), clients, seconds)
                samples[name].append(result)
                log(f"   {clients} client(s) run {run + 1}: {name:<12} {result['inserts_s']:>8.1f} inserts/s, "
                    f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")
        out[str(clients)] = {name: {
            "inserts_s": stats([s["inserts_s"] for s in samples[name]], 1),
            "p50_ms": stats([s["p50_ms"] for s in samples[name]], 3),
            "p99_ms": stats([s["p99_ms"] for s in samples[name]], 3),
            "runs": samples[name]} for name in names}
    return out


PAIRS = {"cluster_semi_vs_raw_semi": ("cluster-semi", "raw-semi"),
         "cluster_semi_vs_cluster_off": ("cluster-semi", "cluster-off"),
         "raw_semi_vs_raw_async": ("raw-semi", "raw-async"),
         "cluster_off_vs_raw_async": ("cluster-off", "raw-async"),
         "galera_vs_cluster_semi": ("galera", "cluster-semi")}


def ratios(throughput: dict[str, Any]) -> dict[str, Any]:
    """Per pair of targets: the median over rounds of (a / b) within the same round.

    Both runs of a round are seconds apart, so they saw nearly the same load from the rest of the
    machine; a ratio of medians taken over the whole run would mix quiet and busy minutes.
    """
    out: dict[str, Any] = {}
    for clients, by in throughput.items():
        out[clients] = {}
        for key, (a, b) in PAIRS.items():
            if a not in by or b not in by:
                continue
            per_round = [x["inserts_s"] / y["inserts_s"] for x, y in zip(by[a]["runs"], by[b]["runs"])
                         if y["inserts_s"] > 0]
            out[clients][key] = round(statistics.median(per_round), 3) if per_round else 0.0
            out[clients][key + "_rounds"] = [round(r, 3) for r in per_round]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="insert-loop rounds (every target once) per client count")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per insert-loop run")
    parser.add_argument("--crash-runs", type=int, default=3, help="crash failovers per mode")
    parser.add_argument("--galera-kills", type=int, default=3, help="kill -9 runs on the Galera cluster")
    parser.add_argument("--no-galera", action="store_true")
    parser.add_argument("--on-disk", action="store_true",
                        help="keep the servers' files on the disk (default: tmpfs, see the module docstring)")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    storage = "disk" if args.on_disk or not os.path.isdir("/dev/shm") else "tmpfs"
    if storage == "tmpfs":
        tempfile.tempdir = tempfile.mkdtemp(prefix="bench-sync-", dir="/dev/shm")
        os.chmod(tempfile.tempdir, 0o711)
        atexit.register(shutil.rmtree, tempfile.tempdir, True)
    from bench import failover as fo
    figures: dict[str, Any] = {}
    errors: list[str] = []
    settings = {"storage": storage, "SESSION_TTL": SESSION_TTL, "HEALTH_POLL": HEALTH_POLL, "runs": args.runs, "seconds": args.seconds,
                "crash_runs": args.crash_runs}
    raw = RawServers()
    galera = None if args.no_galera else Galera()
    try:
        with etcd() as endpoint, cluster(endpoint, "semi") as semi, cluster(endpoint, "off") as off:
            log("== servers: two clusters (semi, off), 3 raw servers, " + ("no Galera" if galera is None else
                                                                           "3 Galera nodes"))
            raw.start()
            if galera is not None:
                galera.start()
            wait_sync_on(semi)

            def semi_target() -> Target:
                wait_sync_on(semi)
                return cluster_target(semi, "cluster-semi")

            def raw_target(on: bool) -> Target:
                raw.semi(on)
                return raw.target("raw-semi" if on else "raw-async")

            targets: dict[str, Any] = {"cluster-semi": semi_target,
                                       "cluster-off": lambda: cluster_target(off, "cluster-off"),
                                       "raw-semi": lambda: raw_target(True), "raw-async": lambda: raw_target(False)}
            if galera is not None:
                targets["galera"] = lambda: galera.target(0)
            for target in targets.values():
                target().prepare()
            log("\n== insert loop")
            try:
                throughput = measure_throughput(targets, args.runs, args.seconds)
                figures["throughput"] = throughput
                figures["ratios"] = ratios(throughput)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"throughput: {exc!r}")
                log(f"   FAILED: {exc!r}")
            log("\n== crash failover, semi and off alternating")
            crash: dict[str, list[dict[str, Any]]] = {"semi": [], "off": []}
            try:
                for i in range(args.crash_runs):
                    for mode, c in (("semi", semi), ("off", off)):
                        if mode == "semi":
                            converge(c)
                            wait_sync_on(c)
                        run = fo.failover_run(c, "crash", 100 + i)
                        crash[mode].append(run)
                        log(f"   {mode} #{i + 1}: {run['seconds']:.2f} s ({run['from']} -> {run['to']}), "
                            f"{run['missing']} of {run['acked']} acknowledged rows missing, old primary "
                            f"{run['old_primary']}")
                goal = settings["SESSION_TTL"] + CRASH_MARGIN
                figures["crash"] = {mode: fo.summarize(runs, goal, inclusive=True) for mode, runs in crash.items()}
            except Exception as exc:  # noqa: BLE001
                errors.append(f"crash: {exc!r}")
                log(f"   FAILED: {exc!r}")
                log(semi.dump_logs(tail=30))
            if galera is not None:
                log("\n== Galera: kill -9 of the node being written")
                kills = []
                try:
                    for i in range(args.galera_kills):
                        run = galera_kill_run(galera, i % 3, i)
                        kills.append(run)
                        log(f"   kill #{i + 1}: {run['seconds']:.2f} s ({run['from']} -> {run['to']}), "
                            f"{run['missing']} of {run['acked']} acknowledged rows missing")
                    figures["galera_kill"] = {"seconds": stats([k["seconds"] for k in kills]), "runs": kills,
                                              "missing_total": sum(k["missing"] for k in kills)}
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"galera kill: {exc!r}")
                    log(f"   FAILED: {exc!r}")
    except Exception as exc:  # noqa: BLE001 - setup failed
        import traceback
        errors.append(f"setup: {exc!r}")
        log(f"setup FAILED: {exc!r}\n{traceback.format_exc()}")
    finally:
        raw.stop()
        if galera is not None:
            galera.stop()
    if "ratios" in figures:
        for clients, r in figures["ratios"].items():
            log(f"\n{clients} client(s): cluster semi = {r['cluster_semi_vs_raw_semi'] * 100:.0f} % of raw semi-sync "
                f"(goal ≥ {GOAL_RATIO * 100:.0f} %), {r['cluster_semi_vs_cluster_off'] * 100:.0f} % of cluster off; "
                f"raw semi = {r['raw_semi_vs_raw_async'] * 100:.0f} % of raw async")
    emit("semisync", figures, ok=not errors and "throughput" in figures, error="; ".join(errors) or None,
         settings=settings)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
