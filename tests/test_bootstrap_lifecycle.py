"""End to end (issue 13 items 5 and 8): real nodes under the real supervisor, etcd, snapshots in a directory.

- The bootstrap winner is killed (kill -9 of its whole node) right after it
  initialised, before its first snapshot: the claim goes with its session, a
  waiting node bootstraps instead, and the cluster forms within 2 × SESSION_TTL
  + a minute.  The dead winner, restarted with its data, gives way and joins.
- No client write exists before the first snapshot: the winner holds the lock
  read-only until then.
- A restarted winner whose claim is still its own continues with its data.
- `backup` on a replica whose replication stopped with an error is refused.

The winner is kept from snapshotting with SNAPSHOT_POLL=600 (the supervisor runs
a task one period after it starts), so the window "initialised, no snapshot yet"
is as long as the test needs.
"""
from __future__ import annotations

import json
import subprocess
import time

import pymysql
import pytest

from tests.harness.cluster import VENV_BIN, Cluster, Node
from tests.harness.procs import wait_for
from tests.test_cluster_lifecycle import count_rows, member, wait_cluster, write_rows

pytestmark = pytest.mark.slow

# Twice the harness's etcd default: the health timeout is SESSION_TTL too, and a loaded machine must not
# make a live winner's session lapse (that is a slow node, not the dead one these tests are about).
TTL = 10.0
ENV = {"SESSION_TTL": "10"}


def holds_bootstrap_lock(cluster: Cluster, node: Node) -> bool:
    lock = cluster.lock() or {}
    return lock.get("node") == node.name


def refuses_app_writes(node: Node) -> bool:
    with pytest.raises(pymysql.err.OperationalError) as refused:
        write_rows(node, 1, 1)
    return refused.value.args[0] == 1290


def test_bootstrap_winner_killed_before_its_first_snapshot(cluster_factory, etcd_server):
    cluster = cluster_factory({"ETCD": etcd_server.endpoint}, env=ENV)
    winner = cluster.add_node("node1", SNAPSHOT_POLL="600")
    winner.start()
    wait_for(lambda: holds_bootstrap_lock(cluster, winner), 90, what="node1 to take the bootstrap lock")
    claim = cluster.record("bootstrap")
    assert claim["node"] == "node1" and claim["session"]
    # It holds the lock but no client write can exist yet: read-only until the first snapshot.
    time.sleep(2)
    assert winner.read_only() is True and refuses_app_writes(winner)
    assert (cluster.record(f"members/{winner.name}") or {}).get("role") == "starting"

    others = [cluster.add_node("node2"), cluster.add_node("node3")]
    for node in others:
        node.start()
    for node in others:
        wait_for(lambda n=node: "node1 is bootstrapping the cluster" in n.log_text(), 90,
                 what=f"{node.name} waiting for node1's first snapshot")
    winner.kill()
    killed = time.monotonic()

    primary = cluster.wait_for_primary(timeout=2 * TTL + 60, exclude=winner)
    formed = time.monotonic() - killed
    replica = next(n for n in others if n is not primary)
    cluster.wait_replicating(replica, primary, timeout=2 * TTL + 60 - formed + 30)
    print(f"\ncluster formed {formed:.1f} s after the bootstrap winner's kill -9 (SESSION_TTL {TTL:g} s); "
          f"replica replicating {time.monotonic() - killed:.1f} s after it")
    assert formed <= 2 * TTL + 60
    assert cluster.record("bootstrap")["node"] == primary.name
    assert "entering the bootstrap race again" in primary.log_text() + replica.log_text()
    write_rows(primary, 1, 100)

    # The dead winner comes back with its never-writable data: it gives way and joins the new cluster.
    winner.extra_env.pop("SNAPSHOT_POLL")
    winner.start()
    cluster.wait_replicating(winner, primary, timeout=120)
    cluster.wait_caught_up(primary, [winner, replica])
    assert count_rows(winner) == 100 and count_rows(replica) == 100
    assert "giving way" in winner.log_text()
    (aside,) = [p for p in winner.dir.iterdir() if p.name.startswith("data.gave-way-")]
    kept = json.loads((aside / "triton-mysql.json").read_text())
    assert kept["origin"] == "bootstrap" and kept["bootstrap_pending"] is True  # kept, never deleted
    assert cluster.primary() is primary


def test_restarted_bootstrap_winner_continues_with_its_data(cluster_factory, etcd_server):
    cluster = cluster_factory({"ETCD": etcd_server.endpoint}, env=ENV)
    node = cluster.add_node("node1", SNAPSHOT_POLL="600")
    node.start()
    wait_for(lambda: holds_bootstrap_lock(cluster, node), 90, what="node1 to take the bootstrap lock")
    state = json.loads((node.datadir / "triton-mysql.json").read_text())
    node.kill()

    node.extra_env.pop("SNAPSHOT_POLL")
    node.start()
    assert cluster.wait_for_primary(timeout=2 * TTL + 60) is node
    assert "claimed the bootstrap again" in node.log_text()
    after = json.loads((node.datadir / "triton-mysql.json").read_text())
    assert after["server_id"] == state["server_id"] and after["bootstrap_pending"] is False
    assert not [p for p in node.dir.iterdir() if ".gave-way-" in p.name]
    write_rows(node, 1, 10)
    assert count_rows(node) == 10


def test_backup_on_a_replica_with_broken_replication_is_refused(cluster_factory, etcd_server, tmp_path):
    cluster = cluster_factory({"ETCD": etcd_server.endpoint}, env=ENV)
    nodes = cluster.start(2)
    primary = wait_cluster(cluster, nodes)
    replica = next(n for n in nodes if n is not primary)
    write_rows(primary, 1, 10)
    cluster.wait_caught_up(primary, [replica])
    last = wait_for(lambda: cluster.record("snapshots/last"), 60, what="a first snapshot")

    # A row only the replica has (root on its socket, not binlogged), then the same key on the primary:
    # the replica's SQL thread stops with a duplicate-key error.
    conn = pymysql.connect(unix_socket=replica.socket, user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute("INSERT INTO appdb.t VALUES (11, 'replica only')")
    finally:
        conn.close()
    write_rows(primary, 11, 1)
    wait_for(lambda: member(cluster, replica).get("healthy") is False
             and member(cluster, replica).get("role") == "replica", 60, what="the replica to report unhealthy")

    refused = subprocess.run([str(VENV_BIN / "triton-mysql"), "backup"], env=replica.env(), capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 1
    assert f"refused: {replica.name} is neither the primary nor a healthy replica" in refused.stderr, refused.stderr
    assert cluster.record("snapshots/last")["id"] == last["id"]

    exported = subprocess.run([str(VENV_BIN / "triton-mysql"), "backup", "--url", f"file://{tmp_path}/export"],
                              env=replica.env(), capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    assert cluster.record("snapshots/last")["id"] == last["id"]
