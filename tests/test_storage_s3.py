"""S3 specifics against moto's real S3 server: bucket policy, multipart streaming
with bounded memory, aborted uploads leave nothing behind."""
from __future__ import annotations

import os
import tracemalloc
import uuid

import pytest

from triton_mysql.config import Config
from triton_mysql.storage import StorageError, open_storage
from triton_mysql.storage.s3 import part_size_for


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def _storage(s3, bucket: str, create: bool):
    env = {**s3.env(), "NODE_NAME": "t", "BACKUP_URL": f"s3://{bucket}/pfx",
           "S3_CREATE_BUCKET": "true" if create else "false"}
    return open_storage(None, Config.from_env(env))


def _bucket() -> str:
    return f"b-{uuid.uuid4().hex[:16]}"


def test_missing_bucket_is_a_clear_error_unless_creation_is_allowed(s3_env):
    bucket = _bucket()
    storage = _storage(s3_env, bucket, create=False)
    with pytest.raises(StorageError) as info:
        storage.put_bytes("x/manifest.json", b"{}")
    assert f"bucket {bucket} does not exist" in str(info.value)
    assert "S3_CREATE_BUCKET=true" in str(info.value)
    with pytest.raises(StorageError, match=f"bucket {bucket} does not exist"):
        storage.list()  # missing storage is an error, never "no snapshots"
    assert _storage(s3_env, bucket, create=True).list() == []  # a bucket it may create: nothing stored yet

    storage = _storage(s3_env, bucket, create=True)
    storage.put_bytes("x/manifest.json", b"{}")
    names = [b["Name"] for b in s3_env.client().list_buckets()["Buckets"]]
    assert bucket in names
    # The object sits under the URL's prefix.
    keys = [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["pfx/x/manifest.json"]


def _upload_peak(storage, key: str, total_mib: int, chunk: bytes) -> int:
    """Peak Python allocations while streaming `total_mib` MiB into one object."""
    tracemalloc.start()
    try:
        with storage.open_write(key) as writer:
            for _ in range(total_mib):
                writer.write(chunk)
            writer.commit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_object_is_a_multipart_upload_with_bounded_memory(s3_env):
    bucket = _bucket()
    storage = _storage(s3_env, bucket, create=True)
    chunk = os.urandom(1 << 20)
    # Enough parts for the steady state (every uploader busy, the queue full), then many more.
    small = _upload_peak(storage, "small/backup.xbstream.zst", 56, chunk)
    large = _upload_peak(storage, "big/backup.xbstream.zst", 120, chunk)

    head = s3_env.client().head_object(Bucket=bucket, Key="pfx/big/backup.xbstream.zst")
    assert head["ContentLength"] == 120 << 20
    parts = -(-(120 << 20) // part_size_for(1))
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # multipart ETag: md5-<parts>
    assert storage.get_bytes("big/backup.xbstream.zst")[-(1 << 20):] == chunk
    # Bounded: a few parts in memory whatever the object's size.
    assert large < 64 << 20, f"peak {large >> 20} MiB while uploading 120 MiB"
    assert large < small + (8 << 20), f"peak grew with the size: {small >> 20} -> {large >> 20} MiB"


def test_aborted_multipart_upload_leaves_no_object_and_no_pending_upload(s3_env):
    bucket = _bucket()
    storage = _storage(s3_env, bucket, create=True)
    writer = storage.open_write("gone/backup.xbstream.zst")
    for _ in range(20):
        writer.write(b"z" * (1 << 20))
    assert storage.abandoned_uploads(), "the upload should be in progress"
    writer.abort()
    assert storage.list() == []
    assert storage.abandoned_uploads() == []


def test_part_sizes_grow_to_fit_large_objects():
    assert part_size_for(1) == 8 << 20
    assert part_size_for(1001) == 16 << 20
    total = sum(part_size_for(n) for n in range(1, 10_001))
    assert total > 400 * (1 << 30)
