"""Round trips with real mariabackup: back up a server holding ~70 MB while it
takes writes, restore into an empty datadir, start a server on it: every
table's CHECKSUM matches, the data matches the manifest's GTID exactly, and
after seeding the server is at the manifest's position.  On file://, s3://
(moto's real S3 server) and manta:// (the signed-API double)."""
from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from tests.harness.backup import (Ticker, backups_url, checksums, config_for, gtid_seq, seed,  # noqa: F401
                                       source, spare, start_restored)
from triton_mysql.backup.manifest import FIELDS, data_key, list_complete, manifest_key
from triton_mysql.backup.restore import restore
from triton_mysql.backup.snapshot import take_snapshot
from triton_mysql.storage import open_storage


@pytest.fixture
def backend_url(request, tmp_path, monkeypatch):
    kind = request.param
    if kind == "file":
        return backups_url(tmp_path), {}
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        return f"s3://rt-{uuid.uuid4().hex[:12]}/cluster", {**s3.env(), "S3_CREATE_BUCKET": "true"}
    manta = request.getfixturevalue("manta_double")
    env = manta.env("stor/backups")
    return env.pop("BACKUP_URL"), env


@pytest.mark.parametrize("backend_url", ["file", "s3", "manta"], indirect=True)
def test_round_trip_under_writes(source, spare, backend_url):  # noqa: F811
    url, extra = backend_url
    config = config_for(source, url, extra)
    storage = open_storage(url, config)
    static = checksums(source, exclude=("app.ticks",))

    with Ticker(source) as ticker:
        manifest = take_snapshot(config)
    assert ticker.written > 0

    # The manifest: every SPEC field, and it describes the stored object exactly.
    assert set(FIELDS) <= set(manifest)
    assert manifest["source_node"] == "n1" and manifest["flavor"] == "mariadb"
    assert manifest["server_id"] == source.server_id and manifest["tool"] == "mariabackup"
    data = storage.get_bytes(data_key(manifest["id"]))
    assert len(data) == manifest["size"] and hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert len(data) > 50 << 20, "the snapshot should hold the ~64 MB of random data"
    assert json.loads(storage.get_bytes(manifest_key(manifest["id"]))) == manifest
    assert [m["id"] for m in list_complete(storage)] == [manifest["id"]]
    del data

    target = spare()
    used = restore(storage, manifest["id"], str(target.datadir))
    assert used == manifest
    assert not [p for p in os.listdir(target.datadir.parent) if ".new-" in p or ".restore-" in p], "staging left behind"
    start_restored(target)

    assert checksums(target, exclude=("app.ticks",)) == static
    # Exactly the transactions the manifest's GTID counts are in the data.
    included = gtid_seq(manifest["gtid"]) - ticker.start_seq
    assert 0 <= included <= ticker.written
    assert target.scalar("SELECT COUNT(*) FROM app.ticks WHERE n > %s", (ticker.base,)) == included
    assert target.scalar("SELECT COALESCE(MAX(n), 0) FROM app.ticks") == ticker.base + included

    seed(target, manifest["gtid"])
    assert target.scalar("SELECT @@gtid_binlog_pos") == manifest["gtid"]
    assert target.scalar("SELECT @@gtid_slave_pos") == manifest["gtid"]
    assert target.scalar("SELECT @@gtid_current_pos") == manifest["gtid"]
