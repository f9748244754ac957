"""Unreachable storage never looks like "no snapshots" (issue 13 item 9), on file:// and on s3:// (moto).

- A file:// root that does not exist, or an S3 bucket that does not exist (and may
  not be created), is an error for every read, not an empty listing.
- The node that bootstraps a cluster writes the marker `cluster.json` at the
  storage root; a root without it while discovery shows an existing cluster is
  an error: onStart refuses with one line instead of bootstrapping a second cluster
  beside real backups (an unmounted volume leaves an empty directory behind).
- A snapshot at BACKUP_URL needs the marker too; a cluster from before the marker
  gets it from its next snapshot when the storage holds what snapshots/last names.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import closing

import pytest

from tests.harness.backup import hold_primary_lock
from tests.test_datadir_lifecycle import NodeDirs, service_name
from triton_mysql.config import Config
from triton_mysql.discovery import connect_endpoints
from triton_mysql.keys import ClusterKeys, decode, encode
from triton_mysql.mysql import datadir as dd
from triton_mysql.storage import NotFound, StorageError, open_storage
from triton_mysql.storage.local import LocalStorage
from triton_mysql.storage.marker import MARKER_KEY, read_marker, write_marker


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)  # boto3 reads AWS_* from the environment
    return s3_server


def s3_storage(s3, bucket: str, create: bool = False):
    env = {**s3.env(), "NODE_NAME": "t", "BACKUP_URL": f"s3://{bucket}/cluster", "S3_CREATE_BUCKET": str(create).lower()}
    return open_storage(None, Config.from_env(env))


def test_a_missing_file_root_is_an_error_not_empty(tmp_path):
    storage = LocalStorage(f"file://{tmp_path}/not-mounted")
    for read in (storage.list, lambda: storage.exists("x/manifest.json"), lambda: storage.open_read("x/a")):
        with pytest.raises(StorageError, match="does not exist") as info:
            read()
        assert not isinstance(info.value, NotFound)
    (tmp_path / "not-mounted").mkdir()
    assert storage.list() == []  # an existing empty root is empty (the marker tells the rest)
    assert not storage.exists("x/manifest.json")


def test_a_missing_bucket_is_an_error_unless_it_may_be_created(s3_env):
    bucket = f"m-{uuid.uuid4().hex[:12]}"
    storage = s3_storage(s3_env, bucket)
    for read in (storage.list, lambda: storage.exists("x/manifest.json"), lambda: read_marker(storage)):
        with pytest.raises(StorageError, match=f"bucket {bucket} does not exist"):
            read()
    creating = s3_storage(s3_env, bucket, create=True)
    assert creating.list() == [] and read_marker(creating) is None


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_the_marker_is_created_once(kind, tmp_path, request):
    if kind == "file":
        (tmp_path / "b").mkdir()
        storage = open_storage(f"file://{tmp_path}/b", Config(backup_url=f"file://{tmp_path}/b"))
    else:
        storage = s3_storage(request.getfixturevalue("s3_env"), f"m-{uuid.uuid4().hex[:12]}", create=True)
    assert read_marker(storage) is None
    assert write_marker(storage, "mysql", "n1") is True
    assert write_marker(storage, "mysql", "n2") is False  # the first bootstrap's marker stays
    marker = read_marker(storage)
    assert marker["service"] == "mysql" and marker["first_node"] == "n1" and marker["created"] > 0
    assert [info.key for info in storage.list()] == [MARKER_KEY]


# -- onStart, for real -----------------------------------------------------------------------

def node_for(kind: str, etcd_server, request, s3=None) -> NodeDirs:
    node = NodeDirs(etcd_server.endpoint, service_name(request) + "-" + kind)
    if kind == "s3":
        bucket = f"m-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=bucket)  # exists, and empty: the "unmounted volume" of S3
        node.env.update({**s3.env(), "BACKUP_URL": f"s3://{bucket}/cluster", "S3_CREATE_BUCKET": "false"})
    return node


def discovery_of(etcd_server):
    host, port = etcd_server.endpoint.split(":")
    return connect_endpoints(etcd=[(host, int(port))])


def storage_of(node: NodeDirs):
    """The node's storage (for s3, the test holds the s3_env fixture: boto3 reads AWS_* from os.environ)."""
    return open_storage(node.env["BACKUP_URL"], Config.from_env(node.env))


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_on_start_refuses_a_second_cluster_beside_an_existing_one(kind, etcd_server, request):
    """Discovery was wiped and the surviving nodes republished their records; the storage root is an
    empty directory (its volume not mounted) or an empty bucket: no snapshot anywhere."""
    node = node_for(kind, etcd_server, request, request.getfixturevalue("s3_env") if kind == "s3" else None)
    discovery = discovery_of(etcd_server)
    keys = ClusterKeys(f"/triton-mysql/{node.env['SERVICE_NAME']}")
    try:
        hold_primary_lock(discovery, keys, "n9")
        discovery.put(keys.node("n9"), encode({"node": "n9", "server_id": 1, "role": "primary"}))
        refused = node.on_start()
        assert refused.returncode == 1, refused.stderr
        errors = [line for line in refused.stderr.splitlines() if "ERROR" in line]
        assert len(errors) == 1, refused.stderr
        assert "no cluster marker (cluster.json)" in errors[0] and "n9 holds the primary lock" in errors[0]
        assert "Refusing to bootstrap a second cluster" in errors[0]
        assert discovery.get(keys.bootstrap) is None
        assert dd.entries(node.datadir) == []
        if kind == "file":
            assert os.listdir(node.base / "backups") == []  # no marker written beside the real cluster

        # The same storage with the cluster's marker is the cluster's own (a first bootstrap that
        # never took its first snapshot): the race goes on.
        with closing(storage_of(node)) as storage:
            write_marker(storage, node.env["SERVICE_NAME"], "n9")
        started = node.on_start()
        assert started.returncode == 0, started.stderr
        assert "won the bootstrap race" in started.stderr
    finally:
        discovery.close()


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_new_cluster_writes_the_marker_and_a_session_bound_claim(kind, etcd_server, request):
    node = node_for(kind, etcd_server, request, request.getfixturevalue("s3_env") if kind == "s3" else None)
    discovery = discovery_of(etcd_server)
    keys = ClusterKeys(f"/triton-mysql/{node.env['SERVICE_NAME']}")
    try:
        done = node.on_start()
        assert done.returncode == 0, done.stderr
        with closing(storage_of(node)) as storage:
            marker = read_marker(storage)
        assert marker["service"] == node.env["SERVICE_NAME"] and marker["first_node"] == "n1"
        claim = discovery.get(keys.bootstrap)
        record = decode(claim.value)
        assert record["node"] == "n1" and claim.session and record["session"] == claim.session
    finally:
        discovery.close()


def test_on_start_refuses_a_missing_storage_root(etcd_server, request):
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    (node.base / "backups").rmdir()
    refused = node.on_start()
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "does not exist" in errors[0], refused.stderr
    assert dd.entries(node.datadir) == []


def test_json_of_the_marker_is_small_and_readable(tmp_path):
    (tmp_path / "b").mkdir()
    storage = LocalStorage(f"file://{tmp_path}/b")
    write_marker(storage, "mysql", "n1")
    text = (tmp_path / "b" / MARKER_KEY).read_text()
    assert len(text) < 300 and json.loads(text)["version"] == 1
