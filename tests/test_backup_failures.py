"""Failures: a backup whose mariabackup is killed midway, a backup stopped by
SIGTERM, corrupted and truncated objects.  Each must leave the cluster as it
was: lock released, no manifest, snapshots/last unchanged, datadir untouched."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.harness.procs import descendants, wait_for
from tests.harness.backup import (backups_url, cli, cli_popen, config_for, env_for,  # noqa: F401
                                       hold_primary_lock, source)
from triton_mysql.backup.manifest import data_key, list_complete, manifest_key
from triton_mysql.backup.progress import process_read_bytes
from triton_mysql.backup.restore import RestoreError, restore
from triton_mysql.backup.snapshot import take_snapshot
from triton_mysql.keys import ClusterKeys, decode
from triton_mysql.storage import open_storage
from triton_mysql.storage.marker import MARKER_KEY


def _child(pid: int, name: str) -> int | None:
    for child, cmd in descendants(pid):
        if cmd.split()[0].endswith(name):
            return child
    return None


def _started_id(stderr: str) -> str:
    for line in stderr.splitlines():
        if ": starting (" in line and "snapshot " in line:
            return line.split("snapshot ", 1)[1].split(":", 1)[0]
    raise AssertionError(f"no 'starting' line in:\n{stderr}")


@pytest.fixture
def cluster_env(source, discovery_server, tmp_path):  # noqa: F811
    url = backups_url(tmp_path)
    env = env_for(source, url, discovery_server.env())
    keys = ClusterKeys(discovery_server.kv_root("mysql"))
    discovery = discovery_server.client()
    hold_primary_lock(discovery, keys)
    return env, url, keys, discovery


def test_backup_killed_midway_leaves_nothing_and_releases_the_lock(source, cluster_env):  # noqa: F811
    env, url, keys, discovery = cluster_env
    first = cli(["backup"], env)
    assert first.returncode == 0, first.stderr
    previous = decode(discovery.get(keys.snapshots_last).value)

    proc = cli_popen(["backup"], env)
    try:
        backup_pid = wait_for(lambda: _child(proc.pid, "mariabackup"), 30, 0.01, "mariabackup to start")
        # Midway: it has read a good part of the ~70 MB datadir, not all of it.
        wait_for(lambda: (process_read_bytes(backup_pid) or 0) > 20 << 20, 30, 0.005, "mariabackup to read 20 MB")
        os.kill(backup_pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("triton-mysql backup: backup failed: mariabackup was killed by SIGKILL"), stderr
    broken = _started_id(stderr)

    # Lock released at once (not by expiry), snapshots/last untouched, no trace of the broken id.
    assert discovery.get(keys.snapshots_lock) is None
    assert decode(discovery.get(keys.snapshots_last).value) == previous
    storage = open_storage(url, config_for(source, url))
    assert not storage.exists(manifest_key(broken))
    assert storage.list(f"{broken}/") == []
    assert not descendants(proc.pid)

    # A second backup can start at once.
    again = cli(["backup"], env)
    assert again.returncode == 0, again.stderr
    newest = decode(discovery.get(keys.snapshots_last).value)
    assert newest["id"] != previous["id"]
    assert [m["id"] for m in list_complete(storage)] == [newest["id"], previous["id"]]


def test_sigterm_stops_the_backup_cleanly(source, cluster_env):  # noqa: F811
    env, url, keys, discovery = cluster_env
    proc = cli_popen(["backup"], env)
    try:
        backup_pid = wait_for(lambda: _child(proc.pid, "mariabackup"), 30, 0.01, "mariabackup to start")
        wait_for(lambda: (process_read_bytes(backup_pid) or 0) > 10 << 20, 30, 0.005, "mariabackup to read 10 MB")
        holder = decode(discovery.get(keys.snapshots_lock).value)
        assert holder["node"] == "n1" and holder["snapshot"].startswith("mysql-")  # the HA code reads this
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "interrupted by SIGTERM" in stderr.strip().splitlines()[-1]
    assert discovery.get(keys.snapshots_lock) is None
    assert discovery.get(keys.snapshots_last) is None
    # Nothing but the cluster marker (written before the backup started).
    assert [info.key for info in open_storage(url, config_for(source, url)).list()] == [MARKER_KEY]
    wait_for(lambda: process_read_bytes(backup_pid) is None, 10, what="mariabackup to be gone")


@pytest.fixture
def snapshot(source, tmp_path):  # noqa: F811
    url = backups_url(tmp_path)
    config = config_for(source, url)
    manifest = take_snapshot(config)
    return url, config, manifest, Path(tmp_path / "backups" / data_key(manifest["id"]))


def _empty_datadir(tmp_path: Path) -> Path:
    datadir = tmp_path / "restore-here" / "data"
    (datadir / "lost+found").mkdir(parents=True)
    return datadir


def _untouched(datadir: Path) -> None:
    assert sorted(os.listdir(datadir)) == ["lost+found"]
    assert sorted(os.listdir(datadir.parent)) == ["data"], "staging directory left behind"


def test_corrupted_object_is_refused(snapshot, tmp_path):
    url, config, manifest, path = snapshot
    with open(path, "r+b") as f:
        f.seek(manifest["size"] // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    datadir = _empty_datadir(tmp_path)
    with pytest.raises(RestoreError) as info:
        restore(open_storage(url, config), manifest["id"], str(datadir))
    assert f"snapshot {manifest['id']} is corrupt: sha256" in str(info.value)
    assert "\n" not in str(info.value)
    _untouched(datadir)

    result = cli(["restore", "--snapshot", manifest["id"], "--datadir", str(datadir)],
                 {**env_for_config(config)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("triton-mysql restore: restore refused: snapshot ")
    _untouched(datadir)


def test_truncated_object_is_refused(snapshot, tmp_path):
    url, config, manifest, path = snapshot
    os.truncate(path, manifest["size"] - 4096)
    datadir = _empty_datadir(tmp_path)
    storage = open_storage(url, config)
    with pytest.raises(RestoreError) as info:
        restore(storage, manifest["id"], str(datadir))
    assert "is damaged" in str(info.value) and str(manifest["size"]) in str(info.value)
    _untouched(datadir)
    assert list_complete(storage) == []  # never offered for cloning either


def test_restore_refuses_a_non_empty_datadir_and_an_unknown_snapshot(snapshot, tmp_path):
    url, config, manifest, _ = snapshot
    datadir = tmp_path / "busy"
    datadir.mkdir()
    (datadir / "ibdata1").write_bytes(b"precious")
    storage = open_storage(url, config)
    with pytest.raises(RestoreError, match="is not empty"):
        restore(storage, manifest["id"], str(datadir))
    assert (datadir / "ibdata1").read_bytes() == b"precious"
    with pytest.raises(RestoreError, match="not found"):
        restore(storage, "mysql-20000101T000000Z", str(tmp_path / "fresh"))


def env_for_config(config) -> dict[str, str]:
    return {"NODE_NAME": config.node_name, "BACKUP_URL": config.backup_url, "MYSQL_SOCKET": config.mysql_socket}


def test_storage_failure_fails_the_backup_without_a_manifest(source, tmp_path):  # noqa: F811
    blocked = tmp_path / "readonly"
    blocked.write_text("a file where the backup directory should be")
    config = config_for(source, f"file://{blocked}/backups")
    from triton_mysql.backup.snapshot import SnapshotError
    start = time.monotonic()
    with pytest.raises(SnapshotError) as info:
        take_snapshot(config)
    assert "Not a directory" in str(info.value) or "cannot create" in str(info.value)
    assert time.monotonic() - start < 30


def test_object_store_failing_midway_fails_the_backup(source, tmp_path, monkeypatch):  # noqa: F811
    """The S3 server dies while the backup streams: non-zero, tools stopped, nothing recorded."""
    import threading

    from tests.harness.s3 import S3Server
    from triton_mysql.backup.snapshot import SnapshotError

    s3 = S3Server(tmp_path / "s3").start()
    try:
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        config = config_for(source, "s3://dying-bucket/x", {**s3.env(), "S3_CREATE_BUCKET": "true"})
        started: list[int] = []

        def kill_store_midway(backup) -> None:
            started.append(backup.pid)

            def watch() -> None:
                wait_for(lambda: (process_read_bytes(backup.pid) or 0) > 10 << 20, 30, 0.005)
                s3.stop()
            threading.Thread(target=watch, daemon=True).start()

        with pytest.raises(SnapshotError) as info:
            take_snapshot(config, on_started=kill_store_midway)
        assert "\n" not in str(info.value) and "s3://dying-bucket/x" in str(info.value)
        assert started and process_read_bytes(started[0]) is None  # mariabackup is gone
        assert not [cmd for _, cmd in descendants() if cmd.startswith(("mariabackup", "zstd"))]
    finally:
        s3.stop()


def test_zstd_killed_midway_fails_the_backup(source, tmp_path):  # noqa: F811
    import threading

    from triton_mysql.backup.snapshot import SnapshotError

    url = backups_url(tmp_path)
    config = config_for(source, url)

    def kill_zstd_midway(backup) -> None:
        def watch() -> None:
            wait_for(lambda: (process_read_bytes(backup.pid) or 0) > 10 << 20, 30, 0.005)
            zstd = _child(os.getpid(), "zstd")
            if zstd is not None:
                os.kill(zstd, signal.SIGKILL)
        threading.Thread(target=watch, daemon=True).start()

    with pytest.raises(SnapshotError) as info:
        take_snapshot(config, on_started=kill_zstd_midway)
    assert str(info.value) == "zstd was killed by SIGKILL"
    assert open_storage(url, config).list() == []
