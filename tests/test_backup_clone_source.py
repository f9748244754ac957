"""Only the lock holder or a healthy replica without errant transactions writes the clone source
(issue 13 item 8): every complete snapshot at BACKUP_URL is what new nodes and re-clones restore.

The rule itself against a real discovery service (both backends), and the whole
`triton-mysql backup` against a real server: refused with one line, nothing
stored at BACKUP_URL, snapshots/last untouched; `--url` exports still work; a node
that loses the right while its backup runs leaves no complete snapshot behind.
(tests/test_bootstrap_lifecycle.py checks it on a replica whose replication
stopped with an error, in a real cluster.)
"""
from __future__ import annotations

import os
import time

import pytest

from tests.harness.backup import backups_url, cli, config_for, env_for, hold_primary_lock
from triton_mysql.backup import manifest as mf
from triton_mysql.backup.snapshot import SnapshotError, clone_source_refusal, take_snapshot
from triton_mysql.keys import ClusterKeys, encode
from triton_mysql.records import ClusterStore
from triton_mysql.storage import open_storage

NOW = 1_000_000.0


@pytest.fixture
def small(mariadb_factory):
    [server] = mariadb_factory(1)
    server.sql("CREATE DATABASE app")
    server.sql("CREATE TABLE app.t (id INT PRIMARY KEY)")
    server.sql("INSERT INTO app.t VALUES (1)")
    return server


def member(node="n1", **fields):
    record = {"node": node, "role": "replica", "healthy": True, "candidate": True, "errant": None,
              "updated": NOW - 1}
    record.update(fields)
    return encode(record)


@pytest.mark.parametrize("record, allowed, why", [
    (member(), True, None),
    (member(candidate=False), True, None),  # a backup running here makes it no candidate: still a source
    (member(errant="0-7-3"), False, "errant transactions 0-7-3"),
    (member(healthy=False), False, "not a healthy replica"),
    (member(role="fenced"), False, "not a healthy replica"),
    (member(role="starting", healthy=False), False, "not a healthy replica"),
    (member(updated=NOW - 60), False, "member record is 60 s old"),
    (None, False, "no member record"),
])
def test_who_may_write_the_clone_source(discovery_server, tmp_path, record, allowed, why):
    config = config_for_node(discovery_server, tmp_path)
    discovery = discovery_server.client()
    keys = ClusterKeys.for_config(config)
    if record is not None:
        discovery.put(keys.member("n1"), record)
    store = ClusterStore(discovery, keys)
    refusal = clone_source_refusal(config, store, now=NOW)
    assert (refusal is None) is allowed and (why is None or why in refusal), refusal
    # The lock holder always may, whatever its member record says (e.g. a new cluster's first snapshot).
    hold_primary_lock(discovery, keys, "n1")
    assert clone_source_refusal(config, store, now=NOW) is None


def config_for_node(discovery_server, tmp_path):
    from triton_mysql.config import Config
    return Config.from_env({"NODE_NAME": "n1", "SERVICE_NAME": "mysql", "SESSION_TTL": "10",
                            "BACKUP_URL": backups_url(tmp_path), **discovery_server.env()})


def test_backup_on_a_node_that_is_not_a_clone_source_is_refused(small, etcd_server, tmp_path):
    url = backups_url(tmp_path)
    env = env_for(small, url, {"ETCD": etcd_server.endpoint})
    config = config_for(small, url, {"ETCD": etcd_server.endpoint})
    from triton_mysql.discovery import connect
    discovery = connect(config)
    keys = ClusterKeys.for_config(config)
    try:
        discovery.put(keys.member("n1"), member(errant="0-7-3", updated=time.time()))
        refused = cli(["backup"], env)
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert "refused: n1 is neither the primary nor a healthy replica" in lines[-1]
        assert "errant transactions 0-7-3" in lines[-1] and "--url" in lines[-1]
        assert os.listdir(tmp_path / "backups") == []  # nothing stored: not even the id's claim
        assert discovery.get(keys.snapshots_last) is None

        exported = cli(["backup", "--url", f"file://{tmp_path}/export"], env)  # an export is always allowed
        assert exported.returncode == 0, exported.stderr
        assert len(mf.list_complete(open_storage(f"file://{tmp_path}/export", config))) == 1
        assert discovery.get(keys.snapshots_last) is None
    finally:
        discovery.close()


def test_a_node_that_loses_the_right_during_its_backup_stores_no_snapshot(small, etcd_server, tmp_path):
    url = backups_url(tmp_path)
    config = config_for(small, url, {"ETCD": etcd_server.endpoint})
    from triton_mysql.discovery import connect
    discovery = connect(config)
    keys = ClusterKeys.for_config(config)
    session = hold_primary_lock(discovery, keys, "n1")
    try:
        def lose_the_lock(_backup) -> None:  # a failover while the backup runs: n1 is fenced
            discovery.destroy_session(session)
            discovery.put(keys.member("n1"), member(role="fenced", healthy=False, updated=time.time()))

        with pytest.raises(SnapshotError, match="neither the primary nor a healthy replica"):
            take_snapshot(config, discovery=discovery, on_started=lose_the_lock)
        assert mf.list_complete(open_storage(url, config)) == []
        assert discovery.get(keys.snapshots_last) is None
    finally:
        discovery.close()
