"""The operator commands as installed: `backup [--url]`, `snapshots`, `restore`,
and the `snapshot` task's cheap no-op path."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.harness.backup import ROOT, backups_url, cli, env_for, hold_primary_lock
from triton_mysql.keys import ClusterKeys, decode


@pytest.fixture
def node(mariadb_factory, etcd_server, tmp_path):
    [server] = mariadb_factory(1)
    server.sql("CREATE DATABASE app")
    server.sql("CREATE TABLE app.t (id INT PRIMARY KEY)")
    server.sql("INSERT INTO app.t VALUES (1), (2), (3)")
    env = env_for(server, backups_url(tmp_path), {"ETCD": etcd_server.endpoint, "SNAPSHOT_KEEP": "1"})
    from triton_mysql.discovery import connect_endpoints
    host, port = etcd_server.endpoint.split(":")
    discovery = connect_endpoints(etcd=[(host, int(port))])
    keys = ClusterKeys("/triton-mysql/mysql")
    hold_primary_lock(discovery, keys)
    try:
        yield server, env, discovery, keys
    finally:
        discovery.close()


def test_backup_export_list_and_restore(node, tmp_path):
    server, env, discovery, keys = node
    first = cli(["backup"], env)
    assert first.returncode == 0, first.stderr
    snapshot_id = re.search(r"^snapshot (\S+) stored at file://", first.stdout, re.M).group(1)
    assert decode(discovery.get(keys.snapshots_last).value)["id"] == snapshot_id

    # Exports: stored with a manifest elsewhere, not recorded, no retention there (KEEP=1).
    export_url = f"file://{tmp_path}/export"
    for _ in range(2):
        result = cli(["backup", "--url", export_url], env)
        assert result.returncode == 0, result.stderr
    assert decode(discovery.get(keys.snapshots_last).value)["id"] == snapshot_id
    exported = sorted(os.listdir(tmp_path / "export"))
    assert len(exported) == 2 and all((tmp_path / "export" / e / "manifest.json").exists() for e in exported)

    server.sql("INSERT INTO app.t VALUES (4)")
    second = cli(["backup"], env)
    assert second.returncode == 0, second.stderr
    newest = decode(discovery.get(keys.snapshots_last).value)
    assert newest["id"] != snapshot_id

    listing = cli(["snapshots"], env)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.strip().splitlines()
    assert lines[0].split() == ["ID", "CREATED", "SIZE", "GTID"]
    assert [line.split()[0] for line in lines[1:]] == [newest["id"]]  # SNAPSHOT_KEEP=1: the newest only
    assert lines[1].split()[-1] == newest["gtid"] and newest["created"] in lines[1]

    datadir = tmp_path / "dr" / "data"
    restored = cli(["restore", "--snapshot", newest["id"], "--datadir", str(datadir)], env)
    assert restored.returncode == 0, restored.stderr
    assert (datadir / "ibdata1").exists() and (datadir / "app").is_dir()
    assert f"SET GLOBAL gtid_binlog_state = '{newest['gtid']}';" in restored.stdout

    again = cli(["restore", "--snapshot", newest["id"], "--datadir", str(datadir)], env)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("triton-mysql restore: restore refused: ")
    assert "is not empty" in again.stderr


def test_backup_shows_a_progress_bar_on_a_terminal(node):
    import pty

    from tests.harness.backup import triton_mysql
    _, env, _, _ = node
    master, slave = pty.openpty()
    proc = subprocess.Popen([triton_mysql(), "backup"], env={**os.environ, **env}, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        seen += data
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert re.search(r"snapshot mysql-\S+: \[#+\] 100%, .* stored, .*/s, ETA 0:00", text), text
    assert b"stored at file://" in stdout


def test_backup_with_a_bad_url_is_a_configuration_error(node):
    _, env, _, _ = node
    result = cli(["backup", "--url", "ftp://somewhere/x"], env)
    assert result.returncode == 2
    assert "unknown scheme" in result.stderr and "Traceback" not in result.stderr


def test_snapshot_task_on_a_replica_is_a_cheap_no_op(node):
    """Not the primary: one discovery read, no server connection, no storage client loaded."""
    _, env, _, _ = node
    script = textwrap.dedent("""
        import sys
        from triton_mysql.config import Config
        from triton_mysql.hooks import snapshot
        config = Config.from_env(dict(__import__("os").environ))
        assert snapshot.run(config) == 0
        print(sorted(m for m in ("boto3", "botocore", "manta", "pymysql") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env, "NODE_NAME": "n2",  # n1 holds
                            "BACKUP_URL": "s3://some-bucket/prefix"}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
