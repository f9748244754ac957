"""The chaos drill (issue 8): real etcd (and the Consul double), three nodes under
`containerbuddy`, the real hooks, a writer that finds the primary through
discovery and a sampler of every node's read_only.

Assertions are about correctness with loose time bounds (a busy 2-core
machine must not make them flake); precise timings are for `make bench`.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.chaos import Sampler, Writer
from tests.harness.cluster import APP_DATABASE, Cluster, Node
from tests.harness.mariadb import mariadbd_binary
from tests.harness.procs import wait_for

pytestmark = pytest.mark.slow
TRITON = str(Path(sys.executable).parent / "triton-mysql")


def start_cluster(cluster_factory, discovery_env: dict[str, str], **env: str) -> tuple[Cluster, Node, list[Node]]:
    cluster = cluster_factory(discovery_env, env=env)
    nodes = cluster.start(3)
    primary = cluster.wait_for_primary(90)
    replicas = [n for n in nodes if n is not primary]
    for node in replicas:
        cluster.wait_replicating(node, primary, 90)
    return cluster, primary, replicas


def converged(cluster: Cluster, live: list[Node], timeout: float = 60) -> Node:
    """One writable primary, every other live node replicating from it, same rows everywhere."""
    primary = cluster.wait_for_primary(timeout)
    for node in live:
        if node is not primary:
            cluster.wait_replicating(node, primary, timeout)
    cluster.wait_caught_up(primary, [n for n in live if n is not primary])
    counts = {n.name: int(n.scalar(f"SELECT COUNT(*) FROM {APP_DATABASE}.drill")) for n in live}
    assert len(set(counts.values())) == 1, counts
    return primary


def ttl(cluster: Cluster) -> float:
    return float(cluster.base_env()["SESSION_TTL"])


@pytest.fixture(params=["etcd", "consul"])
def backend(request, etcd_server, tmp_path_factory):
    if request.param == "etcd":
        yield {"ETCD": etcd_server.endpoint}
        return
    from tests.harness.consul_double import ConsulDouble
    double = ConsulDouble(tmp_path_factory.mktemp("consul")).start()
    try:
        yield double.env()
    finally:
        double.stop()


def test_planned_stop_loses_no_acknowledged_write(cluster_factory, backend):
    cluster, primary, replicas = start_cluster(cluster_factory, backend)
    writer = Writer(cluster).start()
    sampler = Sampler(cluster, interval=0.05).start()
    time.sleep(2)
    stopped_at = time.time()
    assert primary.stop() == 0
    new = cluster.wait_for_primary(30, exclude=primary)
    time.sleep(1.5)
    writer.stop()
    sampler.stop()
    assert sampler.overlaps() == [], "two nodes writable at once during a planned stop"
    assert new in replicas
    assert writer.missing_on(new) == set(), "acknowledged rows lost on a planned stop"
    first = writer.first_ack_after(stopped_at, exclude_node=primary.name)
    assert first is not None and first.node == new.name
    assert cluster.record("failover/last")["kind"] == "planned"
    converged(cluster, replicas)


def test_crash_of_the_primary(cluster_factory, backend):
    cluster, primary, replicas = start_cluster(cluster_factory, backend)
    writer = Writer(cluster).start()
    time.sleep(2)
    killed_at = time.time()
    primary.kill()
    # The lock is free SESSION_TTL after the last renewal with etcd and with Consul (its session is
    # bound to a TTL check of the node's own); a Consul session left to its own TTL would take up to
    # twice that (>= 20 s here), which the margin below does not cover.
    bound = ttl(cluster) + 0.5
    new = cluster.wait_for_primary(bound + 20, exclude=primary)
    elected_after = time.time() - killed_at
    time.sleep(1)
    writer.stop()
    missing = writer.missing_on(new)
    sys.stderr.write(f"crash: new primary {new.name} after {elected_after:.1f} s (lock bound {bound:g} s); "
                     f"{len(missing)} acknowledged row(s) missing (asynchronous replication)\n")
    assert elected_after < bound + 8
    assert len(missing) <= 5, missing  # async replication may lose the last few, not more
    assert cluster.record("failover/last")["kind"] == "automatic"
    converged(cluster, replicas)


def test_frozen_primary_fences_itself_on_waking(cluster_factory, etcd_server):
    cluster, primary, replicas = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    writer = Writer(cluster).start()
    sampler = Sampler(cluster).start()
    time.sleep(1.5)
    pids = primary.freeze()
    frozen_at = time.time()
    new = cluster.wait_for_primary(4 * ttl(cluster), exclude=primary)
    remaining = 2 * ttl(cluster) - (time.time() - frozen_at)
    if remaining > 0:
        time.sleep(remaining)
    thawed_at = time.time()
    primary.thaw(pids)
    # Fenced: read-only, or (semi-sync) mysqld stopped with SIGKILL because a commit in flight when it froze
    # waits for an acknowledgement no replica will send (fencing never kills such a commit; the restart cuts it).
    wait_for(lambda: primary.read_only() is True or primary.mysqld_pid() is None, 30,
             what="the old primary fencing itself")
    time.sleep(2 * float(cluster.base_env()["HEALTH_POLL"]) + 1)
    writer.stop()
    sampler.stop()
    old_writable = sampler.writable_at(thawed_at, time.time()).get(primary.name, [])
    overlap = (max(old_writable) - thawed_at) if old_writable else 0.0
    sys.stderr.write(f"frozen primary: writable for {overlap:.2f} s after SIGCONT\n")
    assert overlap < 5.0
    doubles = [(at, nodes) for at, nodes in sampler.two_writable_moments()
               if not (thawed_at - 0.2 <= at <= thawed_at + overlap + 0.2)]
    assert doubles == [], (f"two writable nodes outside the wake-up window (thawed at {thawed_at:.2f}, old "
                           f"primary writable until {thawed_at + overlap:.2f}): {doubles[:3]}; samples: "
                           f"{[(round(x.at, 2), x.node, x.read_only) for x in sampler.samples if abs(x.at - thawed_at) < 2]}")
    assert not any(w.node == primary.name and w.at > frozen_at + 0.5 for w in writer.acked), \
        "the writer wrote to the frozen primary after it lost its lock"
    assert cluster.lock()["node"] == new.name
    time.sleep(2)
    discovery, config = cluster.discovery()
    try:
        listed = {i.address for i in discovery.healthy("mysql-primary")}
    finally:
        discovery.close()
    assert listed == {new.address}


def test_discovery_outage_fences_the_primary(cluster_factory, etcd_server):
    cluster, primary, replicas = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    writer = Writer(cluster).start()
    time.sleep(1.5)
    etcd_server.stop()
    stopped_at = time.time()
    wait_for(lambda: primary.read_only() is True, ttl(cluster) + 2, interval=0.1,
             what="the primary turning read-only while discovery is down")
    fenced_after = time.time() - stopped_at
    time.sleep(max(0.0, 2 * ttl(cluster) - (time.time() - stopped_at)))
    etcd_server.start()
    sys.stderr.write(f"discovery outage: primary read-only after {fenced_after:.1f} s\n")
    assert fenced_after < ttl(cluster)
    time.sleep(3)
    writer.stop()
    final = converged(cluster, [primary] + replicas, timeout=90)
    assert writer.missing_on(final) == set()


def test_old_primary_rejoins_errant_refused_and_recloned(cluster_factory, etcd_server):
    cluster, primary, replicas = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    writer = Writer(cluster).start()
    time.sleep(1.5)
    writer.stop()
    cluster.wait_caught_up(primary, replicas)
    primary.kill()
    new = cluster.wait_for_primary(4 * ttl(cluster), exclude=primary)

    # 1. No errant transactions: it rejoins as a replica of the new primary.
    primary.start()
    cluster.wait_replicating(primary, new, 60)
    assert primary.read_only() is True

    # 2. An errant write made while it was alone: it refuses to replicate and names the GTID.
    primary.stop()
    old = primary
    alone = old.dir / "alone.cnf"
    # Start its server by hand, read-only off, write a row nobody else has, stop it.
    server = subprocess.Popen([mariadbd_binary(), f"--defaults-file={old.dir / 'my.cnf'}", "--skip-slave-start"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: old.read_only() is not None, 30, what="the old primary's server alone")
        old.sql("SET GLOBAL read_only=OFF")
        old.sql(f"INSERT INTO {APP_DATABASE}.drill VALUES (999999, 'errant', 0)")
        errant = old.scalar("SELECT @@gtid_binlog_pos")
    finally:
        server.terminate()
        server.wait(60)
    del alone
    old.start()
    wait_for(lambda: "errant transactions" in old.log_text(), 60, what="the errant refusal in the log")
    assert errant.split(",")[0] in old.log_text()
    rows = old.sql("SHOW SLAVE STATUS")
    assert not rows or rows[0]["Master_Host"] != new.address or rows[0]["Slave_SQL_Running"] != "Yes"
    assert old.read_only() is True
    record = wait_for(lambda: (cluster.record(f"members/{old.name}") or {}).get("errant"), 30,
                      what="the errant GTIDs in the member record")
    assert record
    member = cluster.record(f"members/{old.name}")
    assert member["healthy"] is False and member["candidate"] is False

    # 3. AUTO_RECLONE: it re-clones (its old data kept aside) and rejoins.
    old.stop()
    old.extra_env["AUTO_RECLONE"] = "true"
    old.start()
    wait_for(lambda: not old.alive(), 60, what="mysqld stopped for the re-clone (the container exits)")
    old.start()  # the restart policy
    cluster.wait_replicating(old, new, 90)
    aside = list(old.dir.glob("data.errant-*"))
    assert aside and any(aside[0].iterdir()), "the old data must be kept aside"
    assert int(old.scalar(f"SELECT COUNT(*) FROM {APP_DATABASE}.drill WHERE id = 999999")) == 0


def test_switchover_under_load_loses_nothing(cluster_factory, etcd_server):
    cluster, primary, replicas = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    target = replicas[1]
    writer = Writer(cluster).start()
    sampler = Sampler(cluster, interval=0.05).start()
    time.sleep(1.5)
    result = subprocess.run([TRITON, "switchover", "--to", target.name], env=target.env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "switchover done" in result.stdout
    time.sleep(1.5)
    writer.stop()
    sampler.stop()
    assert sampler.overlaps() == [], "two nodes writable at once during a switchover"
    assert cluster.wait_for_primary(10) is target
    assert writer.missing_on(target) == set()
    assert cluster.record("failover/last")["kind"] == "planned"
    converged(cluster, [primary] + replicas)
    refused = subprocess.run([TRITON, "switchover", "--to", "no-such-node"], env=target.env(), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0 and "no-such-node" in refused.stderr
