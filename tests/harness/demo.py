"""`make demo`: a real 3-node cluster on this machine, narrated.

etcd plus three nodes, each a real `containerbuddy` running mysqld and the
real hooks on its own 127.0.0.x address, snapshots in a local directory.
It shows the bootstrap and election, the first snapshot, replicas cloned
from it, a write read back on every replica, a planned stop of the primary
and the failover, the old primary rejoining, and the final status table.
Ctrl-C (or the end) stops everything it started.  Node logs are copied to
.demo/logs/ for reading afterwards.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .cluster import APP_DATABASE, Cluster, Node
from .etcd import EtcdServer
from .mariadb import mysql_tmp_dir
from .procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".demo"
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def status(node: Node) -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "triton-mysql"), "status"], env=node.env(),
                            capture_output=True, text=True, timeout=30)
    print(result.stdout.rstrip() or result.stderr.rstrip(), flush=True)


def member(cluster: Cluster, node: Node) -> dict:
    return cluster.record(f"members/{node.name}") or {}


def demo(cluster: Cluster) -> None:
    say("starting 3 identical nodes at the same moment (etcd for discovery, snapshots in a directory)")
    nodes = cluster.start(3)
    for node in nodes:
        say(f"  {node.name}: containerbuddy + mysqld on {node.address}:{node.port}")

    primary = cluster.wait_for_primary(120)
    bootstrap = cluster.record("bootstrap") or {}
    say(f"{bootstrap.get('node')} won the create-only bootstrap race, initialised a new datadir and took the "
        f"primary lock; {primary.name} is writable")
    snapshot = wait_for(lambda: cluster.record("snapshots/last"), 120, what="the first snapshot")
    say(f"first snapshot {snapshot['id']}: {snapshot['size'] / 1e6:.1f} MB, GTID {snapshot['gtid']}")

    replicas = [n for n in nodes if n is not primary]
    for node in replicas:
        cluster.wait_replicating(node, primary, 120)
        cloned = wait_for(lambda n=node: member(cluster, n).get("snapshot_id"), 60, what="member record")
        say(f"{node.name} restored snapshot {cloned}, then started replicating from {primary.name} "
            f"(GTID auto-positioning), read-only")

    conn = primary.app_connection()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS demo (id INT PRIMARY KEY, note VARCHAR(100))")
        cur.execute("INSERT INTO demo VALUES (1, 'written on the primary')")
    conn.close()
    cluster.wait_caught_up(primary, replicas)
    for node in replicas:
        note = node.scalar(f"SELECT note FROM {APP_DATABASE}.demo WHERE id = 1")
        say(f"read back on {node.name}: {note!r}")
    try:
        conn = replicas[0].app_connection()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO demo VALUES (2, 'on a replica')")
    except Exception as exc:  # noqa: BLE001 - the point of the demonstration
        say(f"the application account is refused on a replica: {exc}")

    say(f"planned stop of the primary {primary.name} (SIGTERM to its supervisor: preStop hands over)")
    stopped = time.monotonic()
    primary.proc.send(signal.SIGTERM)
    new = cluster.wait_for_primary(60, exclude=primary)
    say(f"{new.name} is the new writable primary {time.monotonic() - stopped:.1f} s after the SIGTERM "
        f"(failover/last: {cluster.record('failover/last')})")
    primary.stop()
    conn = new.app_connection()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO demo VALUES (3, 'written after the failover')")
    conn.close()

    say(f"restarting {primary.name} with its datadir: it rejoins as a replica of {new.name}")
    primary.start()
    cluster.wait_replicating(primary, new, 120)
    cluster.wait_caught_up(new, [n for n in nodes if n is not new])
    rows = {n.name: int(n.scalar(f"SELECT COUNT(*) FROM {APP_DATABASE}.demo")) for n in nodes}
    say(f"rows on every node: {rows}")
    say("final status (triton-mysql status, read from discovery alone):")
    time.sleep(2)
    status(new)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    work = mysql_tmp_dir("demo")
    etcd = EtcdServer(work / "etcd")
    (work / "backups").mkdir(parents=True, exist_ok=True)  # a missing storage root is an error
    cluster = Cluster(work / "cluster", {}, backup_url=f"file://{work / 'backups'}")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    code = 0
    try:
        etcd.start()
        cluster.discovery_env = {"ETCD": etcd.endpoint}
        say(f"etcd at {etcd.endpoint}")
        demo(cluster)
        say("demo finished")
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, fail
        say(f"demo failed: {exc!r}")
        code = 1
    finally:
        say("stopping every node and etcd")
        try:
            cluster.stop_all(timeout=60)
        finally:
            cluster.kill_all()
            etcd.stop()
            logs = OUT / "logs"
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir(parents=True)
            for node in cluster.nodes:
                if node.log_path.exists():
                    shutil.copy(node.log_path, logs / f"{node.name}.log")
            say(f"node logs kept in {logs.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
