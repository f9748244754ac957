"""End to end: identical nodes under the real supervisor build a cluster with no human step (issue 6).

Real processes only: etcd (or the Consul double), `containerbuddy` running
mysqld and the real hooks with the shipped etc/containerbuddy.json, snapshots
in a directory or in the S3 server.
"""
from __future__ import annotations

import subprocess
import time

import pymysql
import pytest

from tests.harness.cluster import APP_DATABASE, REPL_PASSWORD, REPL_USER, ROOT_PASSWORD, Cluster, Node
from tests.harness.mariadb import MariaDBServer, chown_mysql
from tests.harness.procs import wait_for

pytestmark = pytest.mark.slow


def write_rows(primary: Node, first: int, count: int, table: str = "t") -> None:
    conn = primary.app_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, payload VARCHAR(100))")
            for start in range(first, first + count, 500):
                values = ",".join(f"({i}, 'row {i}')" for i in range(start, min(first + count, start + 500)))
                cur.execute(f"INSERT INTO {table} VALUES {values}")
    finally:
        conn.close()


def count_rows(node: Node, table: str = "t") -> int:
    return int(node.scalar(f"SELECT COUNT(*) FROM {APP_DATABASE}.{table}"))


def services(cluster: Cluster, name: str) -> set[str]:
    discovery, _ = cluster.discovery()
    try:
        return {i.address_port for i in discovery.healthy(name)}
    finally:
        discovery.close()


def member(cluster: Cluster, node: Node) -> dict:
    return cluster.record(f"members/{node.name}") or {}


def wait_cluster(cluster: Cluster, nodes: list[Node], timeout: float = 90.0) -> Node:
    primary = cluster.wait_for_primary(timeout)
    for node in nodes:
        if node is not primary:
            cluster.wait_replicating(node, primary, timeout)
    return primary


def check_roles_and_services(cluster: Cluster, primary: Node, replicas: list[Node]) -> None:
    assert primary.read_only() is False
    for node in replicas:
        assert node.read_only() is True
    wait_for(lambda: services(cluster, "mysql-primary") == {f"{primary.address}:{primary.port}"}, 30,
             what="the primary registered as mysql-primary")
    wanted = {f"{n.address}:{n.port}" for n in replicas}
    wait_for(lambda: services(cluster, "mysql") == wanted, 30, what="the replicas registered as mysql")


@pytest.mark.parametrize("storage", ["file", "s3"])
def test_cluster_builds_itself_and_clones_replicas(cluster_factory, etcd_server, s3_server, storage, tmp_path):
    env = {}
    backup_url = None
    if storage == "s3":
        bucket = f"lifecycle-{int(time.time() * 1000) % 10**9}"
        backup_url = f"s3://{bucket}/snapshots"
        env = {**s3_server.env(), "S3_CREATE_BUCKET": "true"}
    cluster = cluster_factory({"ETCD": etcd_server.endpoint}, backup_url=backup_url, env=env)
    nodes = cluster.start(3)

    # Three identical nodes started at the same moment: one primary, two replicas of it.
    primary = wait_cluster(cluster, nodes, timeout=90)
    replicas = [n for n in nodes if n is not primary]
    check_roles_and_services(cluster, primary, replicas)
    lock = cluster.lock()
    assert lock["node"] == primary.name and lock["address"] == primary.address and lock["port"] == primary.port

    # The application account writes on the primary and is refused on a replica (1290).
    write_rows(primary, 1, 2000)
    cluster.wait_caught_up(primary, [replicas[0]])  # the table must exist there: 1290, not 1146
    with pytest.raises(pymysql.err.OperationalError) as refused:
        write_rows(replicas[0], 5000, 1)
    assert refused.value.args[0] == 1290
    # So is root over TCP (MYSQL_ROOT_PASSWORD): root@'%' lacks READ ONLY ADMIN (issue 13 item 7).
    root = pymysql.connect(host=replicas[0].address, port=replicas[0].port, user="root", password=ROOT_PASSWORD,
                           connect_timeout=3, autocommit=True)
    try:
        with root.cursor() as cur, pytest.raises(pymysql.err.OperationalError) as refused:
            cur.execute(f"INSERT INTO {APP_DATABASE}.t VALUES (5001, 'root')")
        assert refused.value.args[0] == 1290
    finally:
        root.close()

    # A fourth node restores from the newest snapshot, then catches up.
    snapshot = wait_for(lambda: cluster.record("snapshots/last"), 60, what="a first snapshot")
    fourth = cluster.add_node()
    fourth.start()
    cluster.wait_replicating(fourth, primary, timeout=90)
    cluster.wait_caught_up(primary, replicas + [fourth])
    for node in replicas + [fourth]:
        assert count_rows(node) == 2000
    recorded = wait_for(lambda: member(cluster, fourth).get("snapshot_id"), 30, what="node4's member record")
    assert recorded == snapshot["id"]
    assert f"restored snapshot {snapshot['id']}" in fourth.log_text()
    if storage == "s3":
        return

    # A node restored from a snapshot serves as a source too: a server restored from the same
    # snapshot and pointed at the fourth node replicates without error 1236 and misses nothing.
    restored = tmp_path / "restored"
    # A server_id no cluster node has (they get 1, 2, 3… from the counter): a replica silently
    # skips events carrying its own server_id.
    server = MariaDBServer(restored, server_id=4000)
    result = subprocess.run(
        [str(cluster.nodes[0].env()["PATH"].split(":")[0] + "/triton-mysql"), "restore", "--snapshot",
         snapshot["id"], "--datadir", str(server.datadir)],
        env=cluster.nodes[0].env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        server.tmpdir.mkdir(parents=True, exist_ok=True)
        chown_mysql(server.workdir)
        server.start()
        server.sql("SET GLOBAL gtid_slave_pos = %s", (snapshot["gtid"],))
        server.sql(f"CHANGE MASTER TO MASTER_HOST='{fourth.address}', MASTER_PORT={fourth.port}, "
                   f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, "
                   f"MASTER_CONNECT_RETRY=1")
        server.sql("START SLAVE")
        write_rows(primary, 2001, 100)
        position = primary.scalar("SELECT @@gtid_binlog_pos")
        assert int(server.scalar("SELECT MASTER_GTID_WAIT(%s, 60)", (position,))) == 0, \
            server.sql("SHOW SLAVE STATUS")
        assert int(server.scalar(f"SELECT COUNT(*) FROM {APP_DATABASE}.t")) == 2100
        status = server.sql("SHOW SLAVE STATUS")[0]
        assert status["Last_IO_Errno"] == 0 and status["Last_SQL_Errno"] == 0
    finally:
        server.stop()

    # Restarting a replica keeps its data and it resumes replication.
    replica = replicas[0]
    assert replica.stop() == 0
    replica.start()
    cluster.wait_replicating(replica, primary, timeout=60)
    write_rows(primary, 3000, 50)
    cluster.wait_caught_up(primary, [replica])
    assert count_rows(replica) == 2150
    assert "keeping the existing datadir" in replica.log_text()

    # A wiped discovery service (no snapshots/last) does not start a second cluster:
    # a new node still clones from the newest snapshot in storage.
    discovery, config = cluster.discovery()
    try:
        discovery.delete(f"{config.kv_prefix}/snapshots/last")
    finally:
        discovery.close()
    fifth = cluster.add_node()
    fifth.start()
    cluster.wait_replicating(fifth, primary, timeout=90)
    cluster.wait_caught_up(primary, [fifth])
    assert count_rows(fifth) == 2150
    assert cluster.lock()["node"] == primary.name
