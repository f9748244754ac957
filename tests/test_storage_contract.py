"""The storage contract, run against every backend: file://, s3:// (moto's real
S3 server) and manta:// (the Manta API double, signed requests)."""
from __future__ import annotations

import contextlib
import os
import threading
import uuid

import pytest

from triton_mysql.config import Config
from triton_mysql.storage import NotFound, StorageError, open_storage


def _config(env: dict[str, str]):
    return Config.from_env({"NODE_NAME": "test", **env})


@pytest.fixture(params=["file", "s3", "manta"])
def storage(request, tmp_path):
    kind = request.param
    if kind == "file":
        (tmp_path / "backups").mkdir()
        url = f"file://{tmp_path}/backups"
        yield open_storage(url, _config({"BACKUP_URL": url}))
    elif kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        bucket = f"contract-{uuid.uuid4().hex[:12]}"
        env = {**s3.env(), "BACKUP_URL": f"s3://{bucket}/some/prefix", "S3_CREATE_BUCKET": "true"}
        old = {k: os.environ.get(k) for k in s3.env()}
        os.environ.update(s3.env())  # boto3 reads AWS_* from the environment
        try:
            yield open_storage(None, _config(env))
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        manta = request.getfixturevalue("manta_double")
        yield open_storage(None, _config(manta.env("stor/backups/cluster1")))


def _blob(size: int, seed: int = 1) -> bytes:
    return (seed.to_bytes(4, "big") + os.urandom(1021)) * (size // 1025) + b"x" * (size % 1025)


def test_round_trip_in_many_chunks(storage):
    data = _blob(9 * (1 << 20) + 12345)  # more than one S3 part
    chunks = [data[i:i + 300_000] for i in range(0, len(data), 300_000)]
    size = storage.put_stream("snap-1/backup.bin", chunks)
    assert size == len(data)
    assert storage.exists("snap-1/backup.bin")
    assert storage.get_bytes("snap-1/backup.bin") == data
    with storage.open_read("snap-1/backup.bin") as reader:
        assert reader.size == len(data)
    [info] = storage.list("snap-1/")
    assert (info.key, info.size) == ("snap-1/backup.bin", len(data))
    assert info.mtime > 0


def test_small_and_empty_objects(storage):
    storage.put_bytes("a/small.json", b'{"x": 1}')
    storage.put_bytes("a/empty", b"")
    assert storage.get_bytes("a/small.json") == b'{"x": 1}'
    assert storage.get_bytes("a/empty") == b""
    assert [i.key for i in storage.list("a/")] == ["a/empty", "a/small.json"]


def test_uncommitted_object_is_never_visible(storage):
    writer = storage.open_write("partial/backup.bin")
    writer.write(_blob(2 * (1 << 20)))
    assert not storage.exists("partial/backup.bin")
    assert [i.key for i in storage.list("partial/")] == []
    with pytest.raises(NotFound):
        storage.get_bytes("partial/backup.bin")
    writer.abort()
    assert not storage.exists("partial/backup.bin")
    assert storage.list("partial/") == []


def test_a_killed_writers_upload_is_listed_and_dropped(storage):
    """Retention's housekeeping: what a writer that never finished left in the store (S3's
    multipart upload) is listed with `abandoned_uploads` and dropped with `abort_upload`."""
    writer = storage.open_write("killed/backup.bin")
    for _ in range(20):
        writer.write(b"z" * (1 << 20))
    for key, upload_id, started in storage.abandoned_uploads():
        assert key.endswith("killed/backup.bin") and started > 0
        storage.abort_upload(key, upload_id)
    assert storage.abandoned_uploads() == []
    assert storage.list() == []
    with contextlib.suppress(Exception):  # its upload may be gone already
        writer.abort()
    assert storage.abandoned_uploads() == []


def test_exception_inside_writer_block_aborts(storage):
    with pytest.raises(RuntimeError):
        with storage.open_write("boom/backup.bin") as writer:
            writer.write(b"x" * 1000)
            raise RuntimeError("pipeline failed")
    assert not storage.exists("boom/backup.bin")
    assert storage.list("boom/") == []


def test_replacing_an_object(storage):
    storage.put_bytes("r/obj", b"one")
    storage.put_bytes("r/obj", b"two")
    assert storage.get_bytes("r/obj") == b"two"


def test_missing_object(storage):
    with pytest.raises(NotFound):
        storage.get_bytes("nope/missing")
    assert not storage.exists("nope/missing")
    storage.delete("nope/missing")  # absent is fine
    assert storage.list("nope/") == []


def test_list_sorted_and_prefix_filtered(storage):
    for key in ("b-2/manifest.json", "a-1/backup.bin", "a-1/manifest.json", "a-10/backup.bin", "top"):
        storage.put_bytes(key, key.encode())
    assert [i.key for i in storage.list()] == [
        "a-1/backup.bin", "a-1/manifest.json", "a-10/backup.bin", "b-2/manifest.json", "top"]
    assert [i.key for i in storage.list("a-1/")] == ["a-1/backup.bin", "a-1/manifest.json"]
    assert [i.key for i in storage.list("a-1")] == ["a-1/backup.bin", "a-1/manifest.json", "a-10/backup.bin"]
    assert storage.directories() == ["a-1", "a-10", "b-2"]


def test_delete_and_delete_prefix(storage):
    for key in ("d1/x", "d1/y", "d2/x"):
        storage.put_bytes(key, b"1")
    storage.delete("d1/x")
    assert [i.key for i in storage.list()] == ["d1/y", "d2/x"]
    assert storage.delete_prefix("d1/") == 1
    assert [i.key for i in storage.list()] == ["d2/x"]
    assert storage.directories() == ["d2"]


def test_create_exclusive_has_one_winner(storage):
    assert storage.create_exclusive("claims/one", b"first")
    assert not storage.create_exclusive("claims/one", b"second")
    assert storage.get_bytes("claims/one") == b"first"

    results: list[bool] = []
    barrier = threading.Barrier(6)

    def contend(i: int) -> None:
        barrier.wait()
        results.append(storage.create_exclusive("claims/race", f"writer {i}".encode()))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert storage.get_bytes("claims/race").startswith(b"writer ")


def test_invalid_keys_are_refused(storage):
    for key in ("/abs", "a/../b", "", "a//b", "dir/"):
        with pytest.raises(StorageError):
            storage.open_write(key)
