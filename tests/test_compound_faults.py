"""Compound faults (issue 13) made real: three nodes under containerbuddy with the real hooks,
MariaDB and etcd (or the Consul double), a writer and a sampler of every node's read_only.

Each test is one sequence of faults that broke a promise of SPEC §5 before; the in-process
versions with every discovery write and statement checked are in test_ha_hooks.py.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pymysql
import pytest

from tests.harness.chaos import Sampler, Writer
from tests.harness.cluster import APP_DATABASE, REPL_USER, Node
from tests.harness.procs import wait_for
from tests.test_failover import TRITON, converged, start_cluster, ttl

pytestmark = pytest.mark.slow


def slave_status(node: Node) -> dict:
    rows = node.sql("SHOW SLAVE STATUS")
    return rows[0] if rows else {}


def cut_off_replicas(primary: Node) -> None:
    """Keep the replicas from receiving what `primary` writes next, in a way their health passes
    cannot undo (a pass restarts a stopped IO thread at once; warm-started passes come within a
    poll): the replication account is locked on the primary alone (not binlogged) and the binlog
    dump threads are killed, so the IO threads keep retrying a source that refuses them."""
    conn = pymysql.connect(unix_socket=primary.socket, user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"ALTER USER '{REPL_USER}'@'%' ACCOUNT LOCK")
            cur.execute("SHOW PROCESSLIST")
            for row in cur.fetchall():
                if row[4] == "Binlog Dump":
                    cur.execute(f"KILL {int(row[0])}")
    finally:
        conn.close()


def no_two_writable(sampler: Sampler) -> None:
    """No moment at which two nodes were proven writable together (`Sampler.overlaps`, as the drill checks).

    Not the looser `two_writable_moments()`: it pairs writable reads of two nodes that completed within
    150 ms of each other, so a hand-over in which the winner fences the old primary over SQL and turns
    writable 13 ms later (seen in CI: fenced at .436, writable at .449) counts as two writable nodes
    although the old primary's last writable read was answered before the fence."""
    overlaps = sampler.overlaps()
    assert overlaps == [], f"two nodes writable at the same time: {overlaps[:5]}"


def test_an_errant_former_primary_never_wins_the_next_election(cluster_factory, etcd_server):
    """A writes transactions that never replicate and dies; B is promoted and writes; A comes back
    (refused: its tail is lost writes); then B dies.  C, which has B's writes, must win — not A.
    Asynchronous replication (SYNC_REPLICATION=off) is what leaves such a tail on a crashed primary;
    with semi-sync it takes a fallback first (A's commits would wait SYNC_TIMEOUT for an ACK)."""
    cluster, a, (b, c) = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint, "SYNC_REPLICATION": "off"})
    writer = Writer(cluster).start()
    time.sleep(1)
    writer.stop()
    cluster.wait_caught_up(a, [b, c])
    cut_off_replicas(a)  # what A writes now never leaves it
    with a.app_connection() as conn, conn.cursor() as cur:
        for i in range(50):
            cur.execute(f"INSERT INTO {APP_DATABASE}.drill VALUES (%s, 'a-tail', 0)", (900000 + i,))
    a.kill()  # (the replicas' health passes restart their IO threads towards the new primary)
    new = cluster.wait_for_primary(4 * ttl(cluster) + 30, exclude=a)
    survivor = c if new is b else b
    writer = Writer(cluster).start()
    time.sleep(2)
    writer.stop()
    cluster.wait_caught_up(new, [survivor])
    a.start()
    wait_for(lambda: "written here as the primary never reached" in a.log_text(), 60,
             what="the old primary naming its lost tail")
    member = wait_for(lambda: cluster.record(f"members/{a.name}"), 30, what="A's member record")
    assert member["candidate"] is False and member["verdict"]["kind"] == "tail"
    new.kill()
    final = cluster.wait_for_primary(4 * ttl(cluster) + 30, exclude=new)
    assert final is survivor, f"{final.name} won; it must be {survivor.name}, which holds {new.name}'s writes"
    assert writer.missing_on(final) == set()
    assert a.read_only() is True


def test_a_lagging_replica_wins_only_after_applying_its_whole_relay_log(cluster_factory, etcd_server):
    """B received everything but its SQL thread is held back (a table lock); C stopped receiving
    early.  B is the best candidate: it must apply its relay log before turning writable, and no
    acknowledged row may be lost (before: "promoting anyway" after 5 s, thousands of rows gone)."""
    cluster, a, (b, c) = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    writer = Writer(cluster, interval=0.0).start()
    time.sleep(1)
    # C stops receiving in a way its own health passes cannot undo (a stopped IO thread is restarted
    # within a poll, and C would then tie with B): its supervisor and hooks are suspended until A is
    # dead, then its IO thread is stopped.  (Suspending its mysqld too is not enough: the kernel keeps
    # buffering what A's dump thread sends it, C read it all on waking, tied with B on what it had
    # received, had applied more, and rightly won — seen in CI.)
    frozen = c.freeze(keep_mysqld=True)
    c.sql("STOP SLAVE IO_THREAD")
    hold = pymysql.connect(unix_socket=b.socket, user="root", autocommit=True)
    with hold.cursor() as cur:
        cur.execute(f"LOCK TABLES {APP_DATABASE}.drill WRITE")  # b's SQL thread waits on it
    time.sleep(3)
    writer.stop()
    position = a.scalar("SELECT @@gtid_binlog_pos")
    wait_for(lambda: slave_status(b).get("Gtid_IO_Pos") == position, 30, what="B received everything")
    acked = len(writer.acked_rows())
    killed = time.time()
    a.kill()
    c.thaw(frozen)  # C comes back behind B, with A gone

    def release() -> None:
        if hold.open:
            hold.close()

    releaser = threading.Timer(ttl(cluster) + 2, release)  # b's SQL thread resumes after it won
    releaser.start()
    try:
        new = cluster.wait_for_primary(4 * ttl(cluster) + 60, exclude=a)
    finally:
        releaser.cancel()
        release()
    sys.stderr.write(f"lagging winner {new.name} after {time.time() - killed:.1f} s ({acked} rows acknowledged)\n")
    assert new is b
    assert writer.missing_on(b) == set(), "acknowledged rows in B's relay log were thrown away"
    assert "promoting anyway" not in b.log_text()
    converged(cluster, [b, c])


def test_maintenance_on_the_primary_hands_over_without_two_writable_nodes(cluster_factory, etcd_server):
    cluster, a, (b, c) = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    writer = Writer(cluster).start()
    sampler = Sampler(cluster, interval=0.05).start()
    time.sleep(1.5)
    a.proc.send(signal.SIGUSR1)
    new = cluster.wait_for_primary(4 * ttl(cluster), exclude=a)
    time.sleep(3 * ttl(cluster))  # a stays in maintenance: its lock is gone, it must stay read-only
    writer.stop()
    sampler.stop()
    no_two_writable(sampler)
    assert new in (b, c) and a.read_only() is True
    assert writer.missing_on(new) == set()
    assert cluster.record("failover/last")["kind"] == "planned"
    a.proc.send(signal.SIGUSR1)
    cluster.wait_replicating(a, new, 60)


def test_a_wiped_discovery_service_never_gives_two_writable_nodes(cluster_factory, etcd_server):
    """The lock vanishes before its TTL while the primary is writable (issue 13, item 13)."""
    cluster, a, replicas = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    writer = Writer(cluster).start()
    sampler = Sampler(cluster, interval=0.05).start()
    time.sleep(1.5)
    etcd_server.wipe()
    final = wait_for(lambda: cluster.primary(), 6 * ttl(cluster) + 30, interval=0.2, what="a primary after the wipe")
    time.sleep(2)
    writer.stop()
    sampler.stop()
    no_two_writable(sampler)
    converged(cluster, [a] + replicas, timeout=90)
    lost = writer.missing_on(final)
    sys.stderr.write(f"discovery wipe: primary {final.name}, {len(lost)} acknowledged row(s) missing\n")
    assert len(lost) <= 5, lost


def test_failing_serf_health_never_frees_the_lock(cluster_factory, tmp_path_factory):
    """Consul sessions used to carry the agent's serfHealth check: a gossip flap freed the lock at
    once, before the primary could fence itself.  Sessions are now bound only to the node's own
    keepalive check (issue 13 item 4, issue 19): a critical serfHealth for 1.5 x SESSION_TTL (past
    the session's own TTL) leaves the lock where it is."""
    from tests.harness.consul_double import ConsulDouble
    double = ConsulDouble(tmp_path_factory.mktemp("consul")).start()
    try:
        cluster, a, replicas = start_cluster(cluster_factory, double.env())
        writer = Writer(cluster).start()
        sampler = Sampler(cluster, interval=0.05).start()
        time.sleep(1.5)
        double.set_serf_health("critical")
        time.sleep(1.5 * ttl(cluster))
        double.set_serf_health("passing")
        time.sleep(2)
        writer.stop()
        sampler.stop()
        no_two_writable(sampler)
        assert cluster.lock()["node"] == a.name
        assert writer.missing_on(a) == set()
    finally:
        double.stop()


def test_a_replica_stranded_by_purged_binlogs_re_clones_itself(cluster_factory, etcd_server):
    """A replica that was down while the binlogs it needs were purged gets error 1236 forever;
    with AUTO_RECLONE it re-clones, without it it says why (issue 13, item 11)."""
    cluster, a, (b, c) = start_cluster(cluster_factory, {"ETCD": etcd_server.endpoint})
    c.stop()
    writer = Writer(cluster).start()
    time.sleep(1)
    writer.stop()
    a.sql("FLUSH BINARY LOGS")

    def purged() -> bool:
        # A file a dump thread still reads (B's, until it follows the rotation) is skipped with a
        # warning, not purged: repeat until only the current binlog is left.
        a.sql(f"PURGE BINARY LOGS TO '{a.sql('SHOW BINARY LOGS')[-1]['Log_name']}'")
        return len(a.sql("SHOW BINARY LOGS")) == 1

    wait_for(purged, 30, what="every binlog but the current one purged on A")
    c.start()
    wait_for(lambda: "purged binary logs this replica still needs" in c.log_text(), 60,
             what="the stranded replica saying why")
    c.stop()
    c.extra_env["AUTO_RECLONE"] = "true"
    # it clones from the newest snapshot: make one that has the purged history
    done = subprocess.run([TRITON, "backup"], env=a.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    c.start()
    wait_for(lambda: not c.alive(), 90, what="mysqld stopped for the re-clone")
    c.start()
    cluster.wait_replicating(c, a, 120)
    converged(cluster, [b, c])
