"""Fencing on real MariaDB servers: read-only, clients killed, mysqld stopped when SQL cannot do it."""
from __future__ import annotations

import os
import signal
import time

import pymysql
import pytest

from tests.harness.procs import process_state
from triton_mysql.mysql import fence as fencing
from triton_mysql.mysql.connection import connect_local
from triton_mysql.mysql.flavor import MARIADB


def factory(server):
    return lambda timeout: connect_local(server.socket, timeout=timeout)


def open_client(server):
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS f")
        cur.execute("CREATE TABLE IF NOT EXISTS f.t (id INT PRIMARY KEY)")
    return conn


def test_fence_makes_a_writable_server_read_only_and_rolls_back_open_writes(mariadb_factory):
    (server,) = mariadb_factory(1)
    client = open_client(server)
    with client.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO f.t VALUES (1)")  # written, not committed
    idle = open_client(server)
    result = fencing.fence(factory(server), MARIADB, server.pid_file, budget=2.0)
    assert result.startswith("read_only ON") and "2 client connection(s) killed" in result
    assert server.scalar("SELECT @@read_only") == 1
    with pytest.raises(pymysql.err.OperationalError):
        with client.cursor() as cur:
            cur.execute("COMMIT")
    with pytest.raises(pymysql.err.OperationalError):
        with idle.cursor() as cur:
            cur.execute("SELECT 1")
    assert server.scalar("SELECT COUNT(*) FROM f.t") == 0
    assert server.alive()


def test_fence_gets_past_a_global_read_lock(mariadb_factory):
    (server,) = mariadb_factory(1)
    locker = server.connect()
    with locker.cursor() as cur:
        cur.execute("FLUSH TABLES WITH READ LOCK")
    result = fencing.fence(factory(server), MARIADB, server.pid_file, budget=2.0)
    assert result.startswith("read_only ON")
    assert server.scalar("SELECT @@read_only") == 1 and server.alive()


def test_fence_stops_a_hung_mysqld_within_the_budget(mariadb_factory):
    (server,) = mariadb_factory(1)
    pid = server.pid
    os.kill(pid, signal.SIGSTOP)  # hung: accepts TCP in the kernel but never answers
    try:
        start = time.monotonic()
        result = fencing.fence(factory(server), MARIADB, server.pid_file, budget=2.0)
        elapsed = time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.startswith("mysqld killed"), result
    assert elapsed < 3.0
    assert process_state(pid) in (None, "Z")


def test_fence_stops_a_mysqld_it_cannot_log_in_to(mariadb_factory):
    (server,) = mariadb_factory(1)
    pid = server.pid

    def wrong_password(timeout):
        from triton_mysql.mysql.connection import connect_tcp
        return connect_tcp(server.address, server.port, "nobody", "x", timeout=timeout)

    result = fencing.fence(wrong_password, MARIADB, server.pid_file, budget=2.0)
    assert result.startswith("mysqld stopped"), result  # a live server exits cleanly on SIGTERM
    assert process_state(pid) in (None, "Z")


def test_kill_client_connections_spares_replication_and_itself(mariadb_factory):
    primary, replica = mariadb_factory(2)
    replica.replicate_from(primary)
    primary.sql("CREATE DATABASE r")
    assert replica.scalar("SELECT MASTER_GTID_WAIT(%s, 10)", (primary.scalar("SELECT @@gtid_binlog_pos"),)) == 0
    clients = [open_client(primary) for _ in range(3)]
    with connect_local(primary.socket) as conn:
        assert fencing.kill_client_connections(conn) == 3
        assert conn.scalar("SELECT 1") == 1  # its own connection survives
        commands = {r["COMMAND"] for r in conn.query("SELECT COMMAND FROM information_schema.PROCESSLIST")}
        assert "Binlog Dump" in commands
    replica_clients = [replica.connect() for _ in range(2)]  # readers: a write here would be errant
    with connect_local(replica.socket) as conn:
        assert fencing.kill_client_connections(conn) == 2
    status = replica.sql("SHOW SLAVE STATUS")[0]
    assert status["Slave_IO_Running"] == "Yes" and status["Slave_SQL_Running"] == "Yes"
    primary.sql("CREATE DATABASE r2")
    assert replica.scalar("SELECT MASTER_GTID_WAIT(%s, 10)", (primary.scalar("SELECT @@gtid_binlog_pos"),)) == 0
    for c in clients + replica_clients:
        c.close()


def test_set_read_only_on_and_off(mariadb_factory):
    (server,) = mariadb_factory(1)
    with connect_local(server.socket) as conn:
        fencing.set_read_only(conn, MARIADB, True)
        assert fencing.is_read_only(conn, MARIADB)
        fencing.set_read_only(conn, MARIADB, False)
        assert not fencing.is_read_only(conn, MARIADB)
        assert server.scalar("SELECT @@read_only") == 0


def test_stop_mysqld_outcomes(mariadb_factory, tmp_path):
    (server,) = mariadb_factory(1)
    assert fencing.stop_mysqld(tmp_path / "missing.pid", 1) == "not running"
    not_mysqld = tmp_path / "other.pid"
    not_mysqld.write_text(f"{os.getpid()}\n")  # a pid that is alive but not a mysqld: never signalled
    assert fencing.stop_mysqld(not_mysqld, 1) == "not running"
    pid = server.pid
    assert fencing.stop_mysqld(server.pid_file, 10) == "stopped"
    assert process_state(pid) in (None, "Z")
    assert fencing.stop_mysqld(server.pid_file, 1) == "not running"


# -- semi-synchronous replication -----------------------------------------------------------

SEMI = {"rpl_semi_sync_slave_enabled": "ON", "rpl_semi_sync_master_wait_point": "AFTER_SYNC",
        "init_rpl_role": "SLAVE"}


def semisync_pair(mariadb_factory, timeout_ms):
    from triton_mysql.mysql import semisync
    from tests.harness.procs import wait_for
    primary, replica = mariadb_factory(2, extra_cnf=SEMI)
    primary.sql("SET GLOBAL rpl_semi_sync_master_timeout = %s", (timeout_ms,))
    primary.sql("SET GLOBAL rpl_semi_sync_master_enabled = ON")
    replica.replicate_from(primary)
    with connect_local(primary.socket) as conn:
        wait_for(lambda: semisync.read(conn, MARIADB).clients == 1, 20, what="the replica acknowledging")
    open_client(primary).close()
    return primary, replica


def insert_in_background(server, row):
    import threading
    outcome = []

    def run():
        try:
            conn = server.connect(read_timeout=60)
            with conn.cursor() as cur:
                cur.execute("INSERT INTO f.t VALUES (%s)", (row,))
            outcome.append("ok")
        except pymysql.err.MySQLError as exc:
            outcome.append(exc.args[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_fence_never_kills_a_commit_waiting_for_an_ack_it_stops_mysqld_hard(mariadb_factory):
    """A waiting commit is in the binlog, prepared: KILL or a clean shutdown would commit it locally
    (its client gets an error, no replica has it).  Fencing stops mysqld with SIGKILL instead, and the
    restart (init_rpl_role=SLAVE) cuts it from the binlog."""
    from triton_mysql.mysql import semisync
    from tests.harness.procs import wait_for
    primary, replica = semisync_pair(mariadb_factory, 60_000)
    replica.sql("STOP SLAVE IO_THREAD")  # no acknowledgement will come
    thread, outcome = insert_in_background(primary, 7)
    with connect_local(primary.socket) as conn:
        wait_for(lambda: semisync.read(conn, MARIADB).wait_sessions == 1, 10, what="a commit waiting for an ACK")
    tail = primary.scalar("SELECT @@gtid_binlog_pos")
    start = time.monotonic()
    result = fencing.fence(factory(primary), MARIADB, primary.pid_file, budget=2.0, hard_stop=True)
    assert result.startswith("mysqld killed"), result
    assert time.monotonic() - start < 3.0
    thread.join(10)
    assert outcome and outcome[0] != "ok"  # the client was never told it committed
    primary.proc.stop(timeout=10)
    primary.proc = None
    primary.start()
    assert primary.scalar("SELECT COUNT(*) FROM f.t WHERE id = 7") == 0
    assert f"to remove transactions starting from GTID {tail}" in primary.log_path.read_text()


def test_fence_waits_for_acknowledged_commits_under_load_and_keeps_mysqld(mariadb_factory):
    """With a replica acknowledging, a commit waits milliseconds: read_only waits for it, nothing is stopped."""
    import threading
    primary, replica = semisync_pair(mariadb_factory, 60_000)
    acked, stop = [], threading.Event()

    def write():
        conn = primary.connect(read_timeout=10)
        row = 1000
        while not stop.is_set():
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO f.t VALUES (%s)", (row,))
                acked.append(row)
            except pymysql.err.MySQLError:
                return
            row += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(1.0)
    result = fencing.fence(factory(primary), MARIADB, primary.pid_file, budget=2.0, hard_stop=True)
    stop.set()
    writer.join(10)
    assert result.startswith("read_only ON"), result
    assert primary.alive() and primary.scalar("SELECT @@read_only") == 1
    assert len(acked) > 10
    replica.sql("SELECT MASTER_GTID_WAIT(%s, 10)", (primary.scalar("SELECT @@gtid_binlog_pos"),))
    on_replica = {r["id"] for r in replica.sql("SELECT id FROM f.t")}
    assert set(acked) <= on_replica
