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
