"""Replication operations and server state on real MariaDB servers."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.mariadb import chown_mysql
from tests.harness.procs import wait_for
from triton_mysql.config import Config
from triton_mysql.mysql import gtid, replication
from triton_mysql.mysql.accounts import ensure_accounts
from triton_mysql.mysql.connection import DBError, connect_local
from triton_mysql.mysql.flavor import MARIADB, parse_binlog_info
from triton_mysql.mysql.state import read_state

REPL_USER, REPL_PASSWORD = "repl", "repl-pw#1"


def setup_primary(server) -> None:
    config = Config(mysql_repl_user=REPL_USER, mysql_repl_password=REPL_PASSWORD)
    with connect_local(server.socket) as conn:
        ensure_accounts(conn, MARIADB, config)
        conn.execute("CREATE DATABASE app")
        conn.execute("CREATE TABLE app.t (id INT PRIMARY KEY, who VARCHAR(20))")


def insert(server, first: int, count: int, who: str = "p") -> str:
    with connect_local(server.socket) as conn:
        for i in range(first, first + count):
            conn.execute("INSERT INTO app.t VALUES (%s, %s)", (i, who))
        return conn.scalar("SELECT @@gtid_binlog_pos")


def follow(replica, primary) -> None:
    with connect_local(replica.socket) as conn:
        replication.follow(conn, MARIADB, primary.address, primary.port, REPL_USER, REPL_PASSWORD)


def applied(server, target: str, timeout: float = 10) -> bool:
    with connect_local(server.socket, timeout=2) as conn:
        return replication.wait_applied(conn, MARIADB, target, timeout)


def rows(server) -> list[tuple]:
    return [(r["id"], r["who"]) for r in server.sql("SELECT id, who FROM app.t ORDER BY id")]


def state(server):
    with connect_local(server.socket) as conn:
        return read_state(conn, MARIADB)


def test_follow_replicates_with_gtid_and_state_reports_it(mariadb_factory):
    primary, replica = mariadb_factory(2)
    setup_primary(primary)
    replica.sql("SET GLOBAL read_only = ON")
    follow(replica, primary)
    target = insert(primary, 1, 5)
    assert applied(replica, target)
    assert rows(replica) == rows(primary)

    p, r = state(primary), state(replica)
    assert p.replica is None and p.writable and p.server_id == primary.server_id
    assert p.binlog_file and p.binlog_file.startswith("mysql-bin.") and p.binlog_pos > 0
    assert p.version.startswith("10.") and p.super_read_only is None
    assert gtid.contains("mariadb", p.executed_gtid, target)
    assert r.read_only and not r.writable
    assert r.follows(primary.address, primary.port) and not r.follows(primary.address, primary.port + 1)
    assert r.replica.sql_running and r.replica.last_sql_errno == 0
    wait_for(lambda: state(replica).replica.io_running, 10, what="IO thread running")
    assert gtid.contains("mariadb", r.received_gtid, target)
    assert r.replica.seconds_behind is not None and r.replica.seconds_behind >= 0
    assert r.executed_gtid == p.executed_gtid
    assert gtid.extra("mariadb", r.binlog_state, p.binlog_state) == ""


def test_using_gtid_slave_pos_and_short_timers(mariadb_factory):
    primary, replica = mariadb_factory(2)
    setup_primary(primary)
    follow(replica, primary)
    status = replica.sql("SHOW SLAVE STATUS")[0]
    assert status["Using_Gtid"] == "Slave_Pos"
    assert status["Connect_Retry"] == 1
    assert status["Master_User"] == REPL_USER
    assert float(replica.scalar("SELECT @@slave_net_timeout")) == 3  # the harness config


def test_stop_and_clear_and_start(mariadb_factory):
    primary, replica = mariadb_factory(2)
    setup_primary(primary)
    follow(replica, primary)
    with connect_local(replica.socket) as conn:
        replica.sql("STOP SLAVE")
        assert not read_state(conn, MARIADB).replica.sql_running
        replication.start(conn, MARIADB)
        assert read_state(conn, MARIADB).replica.sql_running
        replication.stop_and_clear(conn, MARIADB)
        assert read_state(conn, MARIADB).replica is None
    assert replica.sql("SHOW SLAVE STATUS") == []


def test_old_primary_rejoins_through_its_binlog_position(mariadb_factory):
    old, new = mariadb_factory(2)
    setup_primary(old)
    follow(new, old)
    assert applied(new, insert(old, 1, 3, "old"))
    # Failover: the old primary dies; the replica is promoted and takes writes.
    old.kill()
    with connect_local(new.socket) as conn:
        replication.stop_and_clear(conn, MARIADB)
    target = insert(new, 100, 4, "new")
    # The old primary comes back (read-only from its first second) and follows the new one.
    old.start()
    old.sql("SET GLOBAL read_only = ON")
    assert old.scalar("SELECT @@gtid_slave_pos") == ""  # it never replicated: the reason for the rejoin step
    primary_state = replication.remote_gtid_state(new.address, new.port, REPL_USER, REPL_PASSWORD, MARIADB)
    assert gtid.extra("mariadb", state(old).binlog_state, primary_state) == ""
    follow(old, new)
    assert applied(old, target)
    assert rows(old) == rows(new)
    st = state(old).replica
    assert st.sql_running and st.last_sql_errno == 0 and st.last_io_errno == 0


def test_errant_write_on_a_replica_is_named(mariadb_factory):
    primary, replica = mariadb_factory(2)
    setup_primary(primary)
    follow(replica, primary)
    assert applied(replica, insert(primary, 1, 2))
    mine = state(replica).binlog_state
    theirs = replication.remote_gtid_state(primary.address, primary.port, REPL_USER, REPL_PASSWORD, MARIADB)
    assert gtid.extra("mariadb", mine, theirs) == ""
    # Someone writes on the replica while read_only is off.
    replica.sql("SET GLOBAL read_only = OFF")
    replica.sql("INSERT INTO app.t VALUES (999, 'errant')")
    errant_gtid = replica.scalar("SELECT @@gtid_binlog_pos")
    assert errant_gtid.startswith(f"0-{replica.server_id}-")
    mine = state(replica).binlog_state
    theirs = replication.remote_gtid_state(primary.address, primary.port, REPL_USER, REPL_PASSWORD, MARIADB)
    assert gtid.extra("mariadb", mine, theirs) == errant_gtid
    # The primary moving on does not hide it.
    insert(primary, 10, 3)
    theirs = replication.remote_gtid_state(primary.address, primary.port, REPL_USER, REPL_PASSWORD, MARIADB)
    assert gtid.extra("mariadb", state(replica).binlog_state, theirs) == errant_gtid


def test_wait_applied_times_out(mariadb_factory):
    primary, replica = mariadb_factory(2)
    setup_primary(primary)
    follow(replica, primary)
    with connect_local(replica.socket, timeout=1) as conn:
        start = time.monotonic()
        assert replication.wait_applied(conn, MARIADB, "0-4242-1000000", 0.5) is False
        assert time.monotonic() - start < 2.5
        # Something it wrote itself counts even though gtid_slave_pos never sees it.
    own = insert(primary, 1, 1)
    with connect_local(primary.socket, timeout=1) as conn:
        assert replication.wait_applied(conn, MARIADB, own, 0.1) is True


def test_remote_gtid_state_refuses_a_wrong_password(mariadb_factory):
    (primary,) = mariadb_factory(1)
    setup_primary(primary)
    with pytest.raises(DBError) as info:
        replication.remote_gtid_state(primary.address, primary.port, REPL_USER, "wrong", MARIADB, timeout=2)
    assert info.value.errno == 1045


def restore_clone(primary, clone, workdir: Path) -> str:
    """Back `primary` up with the flavor's argv (stream, extract, prepare, move back) into `clone`.

    `clone` is stopped, emptied, restored and started; returns the backup's GTID.
    """
    backup_dir, scratch = workdir / "backup", workdir / "scratch"
    backup_dir.mkdir()
    scratch.mkdir()
    producer = subprocess.Popen(MARIADB.backup_argv(str(primary.cnf_path), str(scratch), ["--user=root"]),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    subprocess.run(MARIADB.extract_argv(str(backup_dir)), stdin=producer.stdout, check=True)
    producer.stdout.close()
    assert producer.wait(60) == 0
    subprocess.run(MARIADB.prepare_argv(str(backup_dir)), check=True, capture_output=True)
    binlog_file, binlog_pos, backup_gtid = parse_binlog_info((backup_dir / MARIADB.binlog_info_file).read_text())
    assert binlog_file.startswith("mysql-bin.") and binlog_pos > 0
    assert backup_gtid.startswith(f"0-{primary.server_id}-")
    clone.stop()
    for entry in list(clone.datadir.iterdir()):
        subprocess.run(["rm", "-rf", str(entry)], check=True)
    subprocess.run(MARIADB.move_back_argv(str(clone.cnf_path), str(backup_dir)), check=True, capture_output=True)
    chown_mysql(clone.datadir)
    clone.start()
    return backup_gtid


def test_restored_server_seeded_serves_as_a_source(mariadb_factory, tmp_path):
    """A clone seeded after restore carries the snapshot position and serves a replica without a gap."""
    primary, clone, other = mariadb_factory(3)
    setup_primary(primary)
    follow(other, primary)
    insert(primary, 1, 20)
    backup_gtid = restore_clone(primary, clone, tmp_path)
    # The other replica stops at the snapshot's position (as if its primary had died there).
    assert applied(other, backup_gtid)
    other.sql("STOP SLAVE")
    insert(primary, 100, 5)  # written after the snapshot
    with connect_local(clone.socket) as conn:
        replication.seed_after_restore(conn, MARIADB, backup_gtid)
        assert conn.scalar("SELECT @@gtid_binlog_state") == backup_gtid
        assert conn.scalar("SELECT @@gtid_slave_pos") == backup_gtid
        assert conn.scalar("SELECT @@gtid_binlog_pos") == backup_gtid  # a snapshot of it would carry it
    # The other replica follows the clone from the moment it is restored, and the clone follows
    # the primary: the rows written after the snapshot reach both.
    follow(other, clone)
    follow(clone, primary)
    insert(primary, 200, 5)
    target = primary.scalar("SELECT @@gtid_binlog_pos")
    assert applied(clone, target)
    assert applied(other, target)
    assert rows(other) == rows(primary) and len(rows(primary)) == 30
    st = state(other).replica
    assert st.source_host == clone.address and st.last_io_errno == 0 and st.last_sql_errno == 0


def test_repointing_is_not_blocked_by_a_client_waiting_for_a_gtid(mariadb_factory):
    """Issue 13, item 14: an application's MASTER_GTID_WAIT (read-your-writes) on a replica used to
    block SET GLOBAL gtid_slave_pos (and every statement after it) until the wait ended."""
    import threading

    import pymysql

    primary, replica = mariadb_factory(2)
    setup_primary(primary)
    replica.sql("SET GLOBAL read_only = ON")
    follow(replica, primary)
    target = insert(primary, 1, 2)
    assert applied(replica, target)
    far = f"0-{primary.server_id}-1000000"
    outcome: dict = {}

    def application_waits() -> None:
        conn = pymysql.connect(unix_socket=replica.socket, user="root")
        started = time.monotonic()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, 30)", (far,))
                outcome["result"] = cur.fetchone()[0]
        except pymysql.err.MySQLError as exc:
            outcome["error"] = exc.args[0]
        finally:
            outcome["waited"] = time.monotonic() - started
            conn.close()

    waiter = threading.Thread(target=application_waits)
    waiter.start()
    wait_for(lambda: replica.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE STATE LIKE "
                                 "'Waiting in MASTER_GTID_WAIT%'"), 10, what="the application waiting")
    started = time.monotonic()
    with connect_local(replica.socket, timeout=5) as conn:  # a hook's bounded connection
        replication.follow(conn, MARIADB, primary.address, primary.port, REPL_USER, REPL_PASSWORD)
    took = time.monotonic() - started
    waiter.join(35)
    assert took < 5, f"re-pointing took {took:.1f} s"
    assert outcome.get("error") == 1317 and outcome["waited"] < 10, outcome  # interrupted: it retries
    target = insert(primary, 3, 1)
    assert applied(replica, target)
