"""Scheduling against real servers and discovery: the `snapshot` hook's due rules,
the snapshot lock (one at a time, renewed, released, expiring with a killed
holder), retention, and binlog purge that never removes what a clone needs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.harness.procs import wait_for
from tests.harness.backup import (backups_url, cli, config_for, env_for, hold_primary_lock, seed,  # noqa: F401
                                       spare, start_restored)
from triton_mysql.backup import manifest as mf
from triton_mysql.mysql.local import LocalServer
from triton_mysql.backup.binlogs import purge
from triton_mysql.backup.lock import LockBusy, SnapshotLock
from triton_mysql.backup.restore import restore
from triton_mysql.backup.snapshot import due_now, take_snapshot
from triton_mysql.hooks import snapshot as snapshot_hook
from triton_mysql.keys import ClusterKeys, decode, encode
from triton_mysql.records import ClusterStore
from triton_mysql.storage import open_storage


@pytest.fixture
def small(mariadb_factory):
    """A server with a little data (snapshots take well under a second)."""
    [server] = mariadb_factory(1)
    server.sql("CREATE DATABASE app")
    server.sql("CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))")
    server.sql("INSERT INTO app.t (v) VALUES ('first')")
    return server


def _hold(discovery, key: str, record: dict, ttl: float = 60) -> str:
    session = discovery.create_session("test-holder", ttl)
    assert discovery.acquire(key, encode(record), session)
    return session


def _complete(storage) -> list[str]:
    return [m["id"] for m in mf.list_complete(storage)]


def test_snapshot_hook_due_rules(small, discovery_server, tmp_path):
    url = backups_url(tmp_path)
    config = config_for(small, url, {**discovery_server.env(), "SNAPSHOT_INTERVAL": "3600"})
    storage = open_storage(url, config)
    discovery = discovery_server.client()
    keys = ClusterKeys.for_config(config)
    primary_session = _hold(discovery, keys.primary, {"node": "n1", "address": small.address, "port": small.port})

    def run() -> list[str]:
        assert snapshot_hook.run(config) == 0
        return _complete(storage)

    [first] = run()                                     # none exists: due
    assert decode(discovery.get(keys.snapshots_last).value)["id"] == first
    assert run() == [first]                             # nothing new
    small.sql("INSERT INTO app.t (v) VALUES ('x')")
    assert run() == [first]                             # moved, but the interval has not passed
    with LocalServer(small.socket) as server:           # ... it would be due an interval later
        assert due_now(config, discovery, server, now=time.time() + 3601)
    small.sql("FLUSH BINARY LOGS")
    second, _ = run()                                   # moved and rotated: due
    assert second != first
    small.sql("FLUSH BINARY LOGS")
    assert len(run()) == 2                              # rotated, nothing new
    small.sql("INSERT INTO app.t (v) VALUES ('y')")
    third = run()[0]                                    # rotated since the snapshot, then moved: due
    assert third not in (first, second)
    small.stop()
    small.start()                                       # a restart rotates the binlog ...
    assert len(run()) == 3                              # ... but without transactions: not due

    # Not the primary: a no-op whatever is due.
    discovery.destroy_session(primary_session)
    _hold(discovery, keys.primary, {"node": "n2"})
    small.sql("INSERT INTO app.t (v) VALUES ('z')")
    small.sql("FLUSH BINARY LOGS")
    assert len(run()) == 3


def test_a_running_snapshot_blocks_others(small, discovery_server, tmp_path):
    url = backups_url(tmp_path)
    env = env_for(small, url, discovery_server.env())
    config = config_for(small, url, discovery_server.env())
    discovery = discovery_server.client()
    keys = ClusterKeys.for_config(config)
    _hold(discovery, keys.primary, {"node": "n1"})
    other = _hold(discovery, keys.snapshots_lock, {"node": "n2", "snapshot": "mysql-x", "started": time.time()})

    assert snapshot_hook.run(config) == 0               # due (none exists), but n2 runs one
    with pytest.raises(LockBusy, match="already running on n2"):
        take_snapshot(config, discovery=discovery)
    result = cli(["backup"], env)
    assert result.returncode == 1
    assert "a snapshot is already running on n2" in result.stderr.strip().splitlines()[-1]
    assert _complete(open_storage(url, config)) == []

    discovery.destroy_session(other)
    assert snapshot_hook.run(config) == 0
    assert len(_complete(open_storage(url, config))) == 1


def test_two_nodes_at_once_take_one_snapshot(small, discovery_server, tmp_path):
    url = backups_url(tmp_path)
    discovery = discovery_server.client()
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}
    # Both may write the clone source: n1 holds the lock, n2 is a healthy replica (a fresh member record).
    keys = ClusterKeys(discovery_server.kv_root("mysql"))
    hold_primary_lock(discovery, keys, "n1")
    discovery.put(keys.member("n2"), encode({"node": "n2", "role": "replica", "healthy": True,
                                            "updated": time.time()}))

    def node(name: str) -> None:
        config = config_for(small, url, {**discovery_server.env(), "SESSION_TTL": "60"}, node=name)
        barrier.wait()
        try:
            outcome[name] = take_snapshot(config, discovery=discovery)["id"]
        except LockBusy as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=node, args=(n,)) for n in ("n1", "n2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    busy = [v for v in outcome.values() if isinstance(v, LockBusy)]
    taken = [v for v in outcome.values() if isinstance(v, str)]
    assert len(busy) == 1 and len(taken) == 1, outcome
    assert _complete(open_storage(url, config_for(small, url))) == taken


def test_same_second_backups_get_distinct_ids(small, tmp_path):
    url = backups_url(tmp_path)
    config = config_for(small, url)
    when = datetime.now(timezone.utc)
    storage = open_storage(url, config)
    from triton_mysql.backup.snapshot import allocate_id
    taken = allocate_id(storage, "mysql", when, "other-node")   # another backup holds this second
    manifest = take_snapshot(config)
    if mf.stamp(datetime.now(timezone.utc)) == mf.stamp(when):  # (the usual case: still that second)
        assert manifest["id"] == f"{taken}-2"
    assert manifest["id"] != taken


# -- the lock ---------------------------------------------------------------------------

def test_lock_is_renewed_while_held_and_released(discovery_server):
    discovery = discovery_server.client()
    keys = ClusterKeys(discovery_server.kv_root("mysql"))
    key = keys.snapshots_lock
    ttl = discovery_server.min_session_ttl
    if discovery_server.kind == "consul":
        pytest.skip("holding past Consul's minimum TTL (10 s, expiring up to 2x later) is too slow; "
                    "the etcd run checks renewal")
    lock = SnapshotLock(ClusterStore(discovery, keys), node="n1", snapshot="mysql-1", ttl=ttl)
    with lock:
        time.sleep(ttl * 2.5)
        kv = discovery.get(key)
        assert kv is not None and decode(kv.value)["node"] == "n1" and not lock.lost.is_set()
        session = lock.session
    assert discovery.get(key) is None
    assert not discovery.renew_session(session)


def test_lock_of_a_killed_holder_expires(discovery_server, tmp_path):
    if discovery_server.kind == "consul":
        pytest.skip("Consul's minimum TTL (10 s, expiring up to 2x later) makes this slow; the etcd run covers it")
    root = discovery_server.kv_root("mysql")
    key = ClusterKeys(root).snapshots_lock
    endpoint = discovery_server.endpoint.split(":")
    script = textwrap.dedent(f"""
        import sys, time
        from triton_mysql.discovery import connect_endpoints
        from triton_mysql.backup.lock import SnapshotLock
        from triton_mysql.keys import ClusterKeys
        from triton_mysql.records import ClusterStore
        d = connect_endpoints(etcd=[("{endpoint[0]}", {endpoint[1]})])
        SnapshotLock(ClusterStore(d, ClusterKeys("{root}")), node="victim", snapshot="s", ttl=2).acquire()
        print("held", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert proc.stdout.readline().strip() == "held"
        discovery = discovery_server.client()
        assert decode(discovery.get(key).value)["node"] == "victim"
        time.sleep(3)                                    # renewed meanwhile: still held
        assert discovery.get(key) is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        wait_for(lambda: discovery.get(key) is None, 5, 0.1, "the killed holder's lock to expire")
        assert time.monotonic() - killed <= 2 + 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lost_lock_is_noticed(discovery_server):
    discovery = discovery_server.client()
    store = ClusterStore(discovery, ClusterKeys(discovery_server.kv_root("mysql")))
    lock = SnapshotLock(store, node="n1", snapshot="s", ttl=discovery_server.min_session_ttl)
    lock.acquire()
    try:
        discovery.destroy_session(lock.session)          # e.g. expired during a long partition
        wait_for(lock.lost.is_set, discovery_server.min_session_ttl + 2, 0.05, "the loss to be noticed")
    finally:
        lock.release()


# -- retention ---------------------------------------------------------------------------------

def test_retention_keeps_exactly_the_newest(small, tmp_path):
    url = backups_url(tmp_path)
    keep = 2
    config = config_for(small, url, {"SNAPSHOT_KEEP": str(keep)})
    storage = open_storage(url, config)
    old = mf.make_id("mysql", datetime.now(timezone.utc) - timedelta(days=2))
    young = mf.make_id("mysql", datetime.now(timezone.utc) - timedelta(hours=2))
    for leftover in (old, young):                        # killed backups: a claim, part of the data
        storage.put_bytes(mf.claim_key(leftover), b"{}")
        storage.put_bytes(mf.data_key(leftover), b"partial")
    stale = time.time() - 2 * 86400
    for path in (tmp_path / "backups" / old).iterdir():
        os.utime(path, (stale, stale))

    taken = []
    for i in range(keep + 2):
        small.sql("INSERT INTO app.t (v) VALUES (%s)", (f"r{i}",))
        taken.append(take_snapshot(config)["id"])
    assert _complete(storage) == list(reversed(taken))[:keep]
    dirs = storage.directories()
    assert old not in dirs                              # an incomplete leftover older than a day: removed
    assert young in dirs                                # younger: it may be a backup still running
    assert set(dirs) == {young, *taken[-keep:]}


# -- binlog purge ---------------------------------------------------------------------------------

def _binlogs(server) -> list[str]:
    return [r["Log_name"] for r in server.sql("SHOW BINARY LOGS")]


def test_purge_removes_only_binlogs_older_than_the_newest_snapshot(small, spare, tmp_path):  # noqa: F811
    url = backups_url(tmp_path)
    config = config_for(small, url)
    storage = open_storage(url, config)
    take_snapshot(config)
    for i in range(3):
        small.sql("INSERT INTO app.t (v) VALUES (%s)", (f"before-{i}",))
        small.sql("FLUSH BINARY LOGS")
    small.sql("INSERT INTO app.t (v) VALUES ('in the snapshot file')")
    logs_before = _binlogs(small)
    assert len(logs_before) >= 4
    newest = take_snapshot(config)
    logs_after = _binlogs(small)
    # Older logs are gone; the one holding the snapshot position is the oldest left.
    assert logs_after[0] == newest["binlog_file"]
    assert set(logs_before) - set(logs_after) == set(logs_before[:logs_before.index(newest["binlog_file"])])

    # A clone of the newest snapshot finds every binlog it needs.
    small.sql("INSERT INTO app.t (v) VALUES ('after the snapshot')")
    replica = spare()
    restore(storage, newest["id"], str(replica.datadir))
    start_restored(replica)
    seed(replica, newest["gtid"])
    replica.replicate_from(small)
    target = small.scalar("SELECT @@gtid_binlog_pos")
    wait_for(lambda: replica.scalar("SELECT @@gtid_slave_pos") == target, 30, what="the clone to catch up")
    status = replica.sql("SHOW SLAVE STATUS")[0]
    assert status["Last_IO_Errno"] == 0 and status["Last_SQL_Errno"] == 0
    assert replica.scalar("SELECT COUNT(*) FROM app.t") == small.scalar("SELECT COUNT(*) FROM app.t")

    # The same GTID rule on another node (the clone: other binlog names and numbering).
    replica.sql("FLUSH BINARY LOGS")
    small.sql("INSERT INTO app.t (v) VALUES ('more')")
    wait_for(lambda: replica.scalar("SELECT @@gtid_slave_pos") == small.scalar("SELECT @@gtid_binlog_pos"), 30)
    replica.sql("FLUSH BINARY LOGS")
    replica_logs = _binlogs(replica)
    position = small.scalar("SELECT @@gtid_binlog_pos")
    with LocalServer(replica.socket) as server:
        # MariaDB keeps a binlog until its binlog checkpoint is written (InnoDB flushed its
        # commits, up to a second later): purge() removes what it may, the next call the rest.
        wait_for(lambda: (purge(server, position), _binlogs(replica) == replica_logs[-1:])[1], 10, 0.2,
                 what="the replica's old binlogs to be purged")
    assert _binlogs(replica) == replica_logs[-1:]


# -- which snapshot a new node clones ---------------------------------------------------------------

def test_restore_newest_prefers_discovery_then_storage(small, discovery_server, tmp_path):
    from triton_mysql.backup.restore import restore_newest

    url = backups_url(tmp_path)
    config = config_for(small, url, discovery_server.env())
    discovery = discovery_server.client()
    keys = ClusterKeys.for_config(config)
    hold_primary_lock(discovery, keys)
    assert restore_newest(config, discovery, str(tmp_path / "d0")) is None        # nothing anywhere
    assert not (tmp_path / "d0").exists() or os.listdir(tmp_path / "d0") == []

    older = take_snapshot(config, discovery=discovery)
    small.sql("INSERT INTO app.t (v) VALUES ('newer')")
    newer = take_snapshot(config, discovery=discovery)
    assert restore_newest(config, discovery, str(tmp_path / "d1"))["id"] == newer["id"]

    discovery.put(keys.snapshots_last, encode(older))                               # discovery decides
    assert restore_newest(config, discovery, str(tmp_path / "d2"))["id"] == older["id"]

    discovery.delete(keys.snapshots_last)                                           # a wiped discovery
    assert restore_newest(config, discovery, str(tmp_path / "d3"))["id"] == newer["id"]
    assert restore_newest(config, None, str(tmp_path / "d4"))["id"] == newer["id"]

    ghost = {**newer, "id": "mysql-20000101T000000Z"}                               # not in storage
    discovery.put(keys.snapshots_last, encode(ghost))
    assert restore_newest(config, discovery, str(tmp_path / "d5"))["id"] == newer["id"]
    assert (tmp_path / "d5" / "ibdata1").exists()


def test_no_snapshot_starts_while_commits_wait_for_a_semisync_ack(small, tmp_path):
    """mariabackup would sit at BACKUP STAGE behind the waiting commit (ignoring SIGTERM): defer instead."""
    from triton_mysql.backup.snapshot import NotDue
    from triton_mysql.backup.pipeline import SnapshotError
    url = f"file://{tmp_path}/backups"
    (tmp_path / "backups").mkdir()  # an existing storage root: the refusal must come from the semi-sync guard
    config = config_for(small, url)
    small.sql("SET GLOBAL rpl_semi_sync_master_timeout = 60000")
    small.sql("SET GLOBAL rpl_semi_sync_master_enabled = ON")  # a lone primary: the next commit waits
    with pytest.raises(SnapshotError, match="next commit waits"):
        take_snapshot(config)
    waiter = threading.Thread(target=lambda: small.sql("INSERT INTO app.t (v) VALUES ('waits')"), daemon=True)
    waiter.start()
    wait_for(lambda: small.scalar("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'") is not None
             and int(small.sql("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'")[0]["Value"]) == 1,
             10, what="a commit waiting for an acknowledgement")
    with pytest.raises(NotDue, match="1 commit"):
        take_snapshot(config, still_due=lambda server: True)  # the scheduled path: deferred, not failed
    with pytest.raises(SnapshotError, match="wait for a semi-sync acknowledgement"):
        take_snapshot(config)
    assert _complete(open_storage(url, config)) == []
    assert not list((tmp_path / "backups").glob("*/claim.json"))  # no id claimed, mariabackup never ran
    small.sql("SET GLOBAL rpl_semi_sync_master_enabled = OFF")  # releases the waiter
    waiter.join(10)
    assert take_snapshot(config)["id"]
