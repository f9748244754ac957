"""A datadir is complete or absent (issue 13 items 6 and 12), on real file systems and real mount points.

- A new datadir is initialised (or restored) in a staging directory and moved in
  only when complete, with the mark of a finished initialisation/restore (the
  node state file) written last.  Reproduced for real: mariadb-install-db fails
  because the mysql user cannot reach the datadir's parent, and the next start
  must not keep the half datadir it would leave.
- Data without the mark is never started: moved aside (kept), or, on a mount
  point, refused with one line saying what to do.
- AUTO_RECLONE moves the old data aside with one rename on the datadir's own
  file system (same inode, never a copy), and refuses on a mount point.

Mount points are real: an ext4 file system in a loop-mounted image file (so it has
`lost+found`, like a fresh volume).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness.mariadb import mysql_tmp_dir, next_loopback_address, run_mysqld
from tests.harness.procs import free_port
from tests.harness.backup import cli, cli_popen
from triton_mysql import node_state
from triton_mysql.mysql import datadir as dd
from triton_mysql.mysql.connection import connect_local

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown to mysql, mount points")


@contextlib.contextmanager
def ext4_volume(mount_point: Path, size_mb: int = 300) -> Iterator[Path]:
    """A fresh ext4 file system mounted at `mount_point` (a loop-mounted image beside it)."""
    image = mount_point.parent / f".{mount_point.name}.img"
    mount_point.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)],
                                                      capture_output=True, text=True).returncode == 0
    if not mounted:
        image.unlink(missing_ok=True)
        pytest.skip(f"cannot mount an ext4 image here: {made.stderr.strip() or 'mount failed'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        image.unlink(missing_ok=True)


class NodeDirs:
    """One node's paths, as onStart sees them: `<base>/vol/data` is the datadir unless told otherwise."""

    def __init__(self, discovery: str | dict[str, str], service: str, datadir: Path | None = None,
                 node: str = "n1", backups: Path | None = None) -> None:
        """`discovery`: an etcd endpoint, or a discovery_server's env(); `backups`: a shared storage root."""
        discovery_env = {"ETCD": discovery} if isinstance(discovery, str) else dict(discovery)
        self.base = mysql_tmp_dir("dd")
        self.datadir = datadir or self.base / "vol" / "data"
        self.address = next_loopback_address()
        self.port = free_port(self.address)
        backups = backups or self.base / "backups"
        backups.mkdir(exist_ok=True)
        self.env = {
            **discovery_env,
            "SERVICE_NAME": service,
            "NODE_NAME": node,
            "ADVERTISE_ADDRESS": self.address,
            "MYSQL_BIND_ADDRESS": self.address,
            "MYSQL_PORT": str(self.port),
            "MYSQL_DATADIR": str(self.datadir),
            "MYSQL_CNF": str(self.base / "etc" / "my.cnf"),
            "MYSQL_CONF_DIR": str(self.base / "conf.d"),
            "MYSQL_SOCKET": str(self.base / "run" / "mysqld.sock"),
            "MYSQL_REPL_USER": "repl", "MYSQL_REPL_PASSWORD": "repl-pw",
            "BACKUP_URL": f"file://{backups}",
            "DISCOVERY_WAIT": "5", "BOOTSTRAP_WAIT": "5", "HEALTH_POLL": "1", "DISCOVERY_TIMEOUT": "0.5",
            "SESSION_TTL": "10" if "CONSUL" in discovery_env else "5",
        }
        # A private tmpdir: bootstraps running side by side on this machine must not share /tmp.
        (self.base / "conf.d").mkdir()
        (self.base / "tmp").mkdir()
        dd.chown_mysql(self.base / "tmp")
        (self.base / "conf.d" / "10-test.cnf").write_text(f"[mysqld]\ntmpdir={self.base / 'tmp'}\n")

    def on_start(self) -> subprocess.CompletedProcess:
        return cli(["onStart"], self.env, timeout=180)

    def on_start_popen(self) -> subprocess.Popen:
        return cli_popen(["onStart"], self.env)

    def siblings(self, infix: str) -> list[Path]:
        return sorted(p for p in self.datadir.parent.iterdir() if p.name.startswith(self.datadir.name + infix))

    def boots_with_system_tables(self, log: Path) -> None:
        proc = run_mysqld(self.env["MYSQL_CNF"], self.env["MYSQL_SOCKET"], log, timeout=60)
        try:
            with connect_local(self.env["MYSQL_SOCKET"]) as conn:
                assert conn.scalar("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'root'") >= 1
                assert conn.scalar("SELECT @@read_only") == 1
        finally:
            proc.stop()


def service_name(request) -> str:
    return "dd-" + request.node.name.split("[")[0][-30:].replace("_", "-")


# -- the building blocks --------------------------------------------------------------

def test_install_is_one_rename_with_the_mark_inside(tmp_path):
    datadir = tmp_path / "data"
    datadir.mkdir()
    staging = dd.new_staging(datadir)
    assert staging.parent == tmp_path and staging.name.startswith("data.new-")
    (staging / "ibdata1").write_bytes(b"x")
    inode = staging.stat().st_ino
    dd.install(staging, datadir, node_state.NodeState(node="n1", server_id=3, origin="bootstrap"))
    assert datadir.stat().st_ino == inode  # the staging directory itself became the datadir
    assert sorted(os.listdir(datadir)) == ["ibdata1", node_state.FILENAME]
    assert json.loads(node_state.path(datadir).read_text())["complete"] is True
    assert not staging.exists() and sorted(os.listdir(tmp_path)) == ["data"]


def test_move_aside_is_one_rename_and_keeps_everything(tmp_path):
    datadir = tmp_path / "data"
    (datadir / "schema").mkdir(parents=True)
    (datadir / "schema" / "t.ibd").write_bytes(b"rows")
    inode = datadir.stat().st_ino
    aside = dd.move_aside(datadir, "errant")
    assert aside.parent == tmp_path and aside.name.startswith("data.errant-")
    assert aside.stat().st_ino == inode and (aside / "schema" / "t.ibd").read_bytes() == b"rows"
    assert datadir.is_dir() and os.listdir(datadir) == []
    assert dd.move_aside(datadir, "errant") != aside  # a second one the same second gets its own name


def test_staging_leftovers_are_removed_and_never_count_as_data(tmp_path):
    datadir = tmp_path / "data"
    datadir.mkdir()
    outer = dd.new_staging(datadir)
    (outer / "ibdata1").write_bytes(b"half")
    inner = datadir / (dd.INNER_STAGING_PREFIX + "x")
    inner.mkdir()
    assert dd.is_empty(datadir)  # the inner staging directory of a mount point is not data
    (tmp_path / "data.errant-20200101T000000Z").mkdir()  # data moved aside: never removed
    assert sorted(dd.remove_staging_leftovers(datadir)) == sorted([outer, inner])
    assert sorted(os.listdir(tmp_path)) == ["data", "data.errant-20200101T000000Z"]


def test_on_a_mount_point_install_moves_entries_with_the_mark_last_and_move_aside_refuses(tmp_path):
    with ext4_volume(tmp_path / "vol") as datadir:
        staging = dd.new_staging(datadir)
        assert staging.parent == datadir and dd.is_empty(datadir)  # inside the volume, not data
        (staging / "ibdata1").write_bytes(b"x")
        (staging / "mysql").mkdir()
        dd.install(staging, datadir, node_state.NodeState(node="n1", server_id=3, origin="bootstrap"))
        assert sorted(os.listdir(datadir)) == ["ibdata1", "lost+found", "mysql", node_state.FILENAME]
        assert node_state.load(datadir).complete
        with pytest.raises(dd.DatadirError, match="mount point.*one level above the datadir"):
            dd.move_aside(datadir, "errant")
        assert sorted(os.listdir(datadir)) == ["ibdata1", "lost+found", "mysql", node_state.FILENAME]


# -- onStart, for real ---------------------------------------------------------------------

def test_a_failed_initialisation_never_becomes_data(etcd_server, request, tmp_path):
    """The failure seen for real: mariadb-install-db cannot work because the mysql user cannot reach
    the datadir's parent.  It leaves ibdata1 without system tables; the next start must not keep that."""
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    volume = node.datadir.parent
    volume.mkdir(parents=True)
    os.chmod(volume, 0o700)  # root only: mysqld (user mysql) cannot reach the datadir
    failed = node.on_start()
    assert failed.returncode != 0
    assert "mariadb-install-db exited" in failed.stderr
    assert dd.entries(node.datadir) == [], "a failed initialisation left files in the datadir"
    assert node.siblings(".new-") == [], "the staging directory of the failed initialisation is left"

    os.chmod(volume, 0o755)  # the operator fixes the volume; the container restarts
    done = node.on_start()
    assert done.returncode == 0, done.stderr
    state = node_state.load(node.datadir)
    assert state.complete and state.origin == "bootstrap" and state.bootstrap_pending
    node.boots_with_system_tables(tmp_path / "mysqld.log")


def test_a_half_datadir_without_the_mark_is_moved_aside_not_started(etcd_server, request, tmp_path):
    """What an earlier version left after that failure (install-db run in the datadir itself)."""
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    volume = node.datadir.parent
    node.datadir.mkdir(parents=True)
    os.chmod(volume, 0o700)
    (node.base / "etc").mkdir()
    Path(node.env["MYSQL_CNF"]).write_text(f"[mysqld]\nuser=mysql\ndatadir={node.datadir}\nlog_bin=mysql-bin\n"
                                           f"server_id=1\nsocket={node.env['MYSQL_SOCKET']}\n")
    dd.chown_mysql(node.datadir)
    half = subprocess.run(["mariadb-install-db", f"--defaults-file={node.env['MYSQL_CNF']}", "--skip-test-db"],
                          capture_output=True, text=True)
    assert half.returncode != 0 and "ibdata1" in dd.entries(node.datadir)  # the real half datadir
    half_files = dd.entries(node.datadir)
    os.chmod(volume, 0o755)

    done = node.on_start()
    assert done.returncode == 0, done.stderr
    assert "without the mark of a finished initialisation or restore" in done.stderr
    (aside,) = node.siblings(".unmarked-")
    assert dd.entries(aside) == half_files  # kept as it was
    assert node_state.load(node.datadir).complete
    node.boots_with_system_tables(tmp_path / "mysqld.log")


def test_an_unmarked_mount_point_datadir_is_refused_with_one_line(etcd_server, request):
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    with ext4_volume(node.datadir):
        (node.datadir / "ibdata1").write_bytes(b"half")
        refused = node.on_start()
        assert refused.returncode == 1
        errors = [line for line in refused.stderr.splitlines() if "ERROR" in line]
        assert len(errors) == 1 and "mount point" in errors[0] and "one level above the datadir" in errors[0], \
            refused.stderr
        assert sorted(os.listdir(node.datadir)) == ["ibdata1", "lost+found"]  # untouched


def test_a_mount_point_datadir_is_initialised_in_place_with_the_mark_last(etcd_server, request, tmp_path):
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    with ext4_volume(node.datadir):
        done = node.on_start()
        assert done.returncode == 0, done.stderr
        assert node_state.load(node.datadir).complete
        assert "mysql" in dd.entries(node.datadir)
        assert not [n for n in os.listdir(node.datadir) if n.startswith(dd.INNER_STAGING_PREFIX)]
        node.boots_with_system_tables(tmp_path / "mysqld.log")


def test_auto_reclone_moves_the_data_aside_with_one_rename(etcd_server, request):
    """Issue 13 item 12: on the datadir's own file system, all or nothing (the same inode: no copy)."""
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    assert node.on_start().returncode == 0
    state = node_state.load(node.datadir)
    node_state.save(node.datadir, state.update(reclone={"errant": "0-9-1", "at": 0, "primary": "n2"},
                                               bootstrap_pending=False))
    inode, device = node.datadir.stat().st_ino, node.datadir.stat().st_dev
    files = dd.entries(node.datadir)
    # The bootstrap claim of the first start is still there (its session expires after SESSION_TTL).
    done = node.on_start()
    assert done.returncode == 0, done.stderr
    (aside,) = node.siblings(".errant-")
    assert (aside.stat().st_ino, aside.stat().st_dev) == (inode, device)
    assert dd.entries(aside) == files
    assert f"re-cloning: moved the old data aside to {aside} (errant: 0-9-1)" in done.stderr
    assert node_state.load(node.datadir).reclone is None


def test_auto_reclone_on_a_mount_point_refuses_instead_of_a_half_move(etcd_server, request):
    node = NodeDirs(etcd_server.endpoint, service_name(request))
    with ext4_volume(node.datadir):
        assert node.on_start().returncode == 0
        state = node_state.load(node.datadir)
        node_state.save(node.datadir, state.update(reclone={"errant": "0-9-1", "at": 0, "primary": "n2"}))
        before = sorted(os.listdir(node.datadir))
        refused = node.on_start()
        assert refused.returncode == 1
        assert "mount point" in refused.stderr and "one level above the datadir" in refused.stderr
        assert sorted(os.listdir(node.datadir)) == before
        assert node.siblings(".errant-") == []
