"""Manta specifics against the API double: every request signed with the
account's key (the double verifies against the public key), uploads streamed
with chunked transfer encoding, directories created on demand, listings paged."""
from __future__ import annotations

import os

import pytest

import triton_mysql.storage.manta as manta_module
from tests.harness.manta_double import generate_key
from triton_mysql.config import Config
from triton_mysql.storage import StorageError, open_storage


def _storage(env: dict[str, str]):
    return open_storage(None, Config.from_env({"NODE_NAME": "t", **env}))


def test_requests_are_signed_with_the_account_key(manta_double):
    storage = _storage(manta_double.env())
    storage.put_bytes("s1/manifest.json", b"{}")
    assert manta_double.requests, "the double saw no request"
    for request in manta_double.requests:
        auth = request.headers["Authorization"]
        assert auth.startswith(f'Signature keyId="/tester/keys/{manta_double.fingerprint}",algorithm="rsa-sha')
        assert request.headers["Date"].endswith("GMT")
    assert manta_double.rejected == []


def test_a_key_the_account_does_not_have_is_rejected(manta_double):
    other_pem, _, other_fp = generate_key()
    env = {**manta_double.env(), "MANTA_PRIVATE_KEY": other_pem.decode(), "MANTA_KEY_ID": other_fp}
    with pytest.raises(StorageError) as info:
        _storage(env).put_bytes("s1/manifest.json", b"{}")
    assert "403" in str(info.value) and "KeyDoesNotExist" in str(info.value)
    # Claiming the right key id with the wrong key: the signature does not verify.
    env["MANTA_KEY_ID"] = manta_double.fingerprint
    with pytest.raises(StorageError) as info:
        _storage(env).put_bytes("s1/manifest.json", b"{}")
    assert "InvalidSignature" in str(info.value)
    assert manta_double.objects() == {}


def test_upload_is_streamed_chunked_into_created_directories(manta_double):
    storage = _storage(manta_double.env("stor/deep/er/backups"))
    data = os.urandom(3 << 20)
    with storage.open_write("mysql-20250101T000000Z/backup.xbstream.zst") as writer:
        for i in range(0, len(data), 1 << 18):
            writer.write(data[i:i + (1 << 18)])
        writer.commit()
    path = "/tester/stor/deep/er/backups/mysql-20250101T000000Z/backup.xbstream.zst"
    assert manta_double.objects()[path] == data
    [put] = [r for r in manta_double.requests if r.method == "PUT" and r.path == path]
    assert put.chunked and "Content-Length" not in put.headers
    assert put.body_size == len(data)
    made = [r.path for r in manta_double.requests if r.method == "PUT" and r.path != path]
    assert made == ["/tester/stor/deep", "/tester/stor/deep/er", "/tester/stor/deep/er/backups",
                    "/tester/stor/deep/er/backups/mysql-20250101T000000Z"]


def test_streaming_get_and_corruption_is_visible(manta_double):
    storage = _storage(manta_double.env())
    data = os.urandom(1 << 20)
    storage.put_bytes("s/backup", data)
    manta_double.corrupt("/tester/stor/backups/s/backup", 1000)
    got = storage.get_bytes("s/backup")
    assert len(got) == len(data) and got != data


def test_listing_follows_the_marker(manta_double, monkeypatch):
    monkeypatch.setattr(manta_module, "LIST_LIMIT", 3)
    storage = _storage(manta_double.env())
    keys = [f"snap-{i:02d}/manifest.json" for i in range(8)]
    for key in keys:
        storage.put_bytes(key, b"{}")
    assert [i.key for i in storage.list()] == keys
    assert all(i.size == 2 for i in storage.list())


def test_delete_prefix_removes_the_directory(manta_double):
    storage = _storage(manta_double.env())
    storage.put_bytes("gone/a", b"1")
    storage.put_bytes("gone/b", b"2")
    assert storage.delete_prefix("gone/") == 2
    assert "/tester/stor/backups/gone" not in manta_double.tree
    # It can be written again afterwards (the directory is re-created).
    storage.put_bytes("gone/a", b"3")
    assert storage.get_bytes("gone/a") == b"3"


def test_key_from_file_and_key_id_derived_from_the_key(manta_double, tmp_path):
    key_file = tmp_path / "id_rsa.pem"
    key_file.write_bytes(manta_double.private_key_pem)
    env = manta_double.env()
    del env["MANTA_PRIVATE_KEY"]
    env["MANTA_KEY_PATH"] = str(key_file)
    env["MANTA_KEY_ID"] = "SHA256:not-an-md5-fingerprint"  # derived from the key instead
    storage = _storage(env)
    storage.put_bytes("k/x", b"1")
    assert storage.get_bytes("k/x") == b"1"


def test_bad_key_material_is_a_clear_error(manta_double):
    env = {**manta_double.env(), "MANTA_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"}
    with pytest.raises(StorageError) as info:
        _storage(env)
    assert "MANTA_PRIVATE_KEY" in str(info.value) and "PEM" in str(info.value)
    assert "AAAA" not in str(info.value)
