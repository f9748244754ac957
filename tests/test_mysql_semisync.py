"""Semi-sync on the server (mysql/semisync.py + the flavor's dialect).

MySQL 8 at statement level (no MySQL server exists here: `Recorder` answers with
rows shaped like its performance_schema); MariaDB on real servers.
"""
from __future__ import annotations

import time

import pytest

from tests.harness.procs import wait_for
from tests.test_mysql_statements import Recorder
from triton_mysql.mysql import semisync
from triton_mysql.mysql.connection import connect_local
from triton_mysql.mysql.flavor import MARIADB, MYSQL, Sql


# -- dialect -----------------------------------------------------------------------

@pytest.mark.parametrize("flavor, name, expected", [
    (MARIADB, "source_enabled", "rpl_semi_sync_master_enabled"),
    (MARIADB, "source_timeout", "rpl_semi_sync_master_timeout"),
    (MARIADB, "source_wait_no_replica", "rpl_semi_sync_master_wait_no_slave"),
    (MARIADB, "replica_enabled", "rpl_semi_sync_slave_enabled"),
    (MYSQL, "source_enabled", "rpl_semi_sync_source_enabled"),
    (MYSQL, "source_wait_point", "rpl_semi_sync_source_wait_point"),
    (MYSQL, "source_wait_no_replica", "rpl_semi_sync_source_wait_no_replica"),
    (MYSQL, "replica_enabled", "rpl_semi_sync_replica_enabled"),
])
def test_variable_names(flavor, name, expected):
    assert flavor.semisync_variable(name) == expected
    assert flavor.set_semisync(name, True) == Sql(f"SET GLOBAL {expected} = %s", ("ON",))


def mysql_rows(**values):
    """What MySQL 8's performance_schema query returns (lower-cased names)."""
    base = {"rpl_semi_sync_source_enabled": "OFF", "rpl_semi_sync_source_timeout": "10000",
            "rpl_semi_sync_source_wait_point": "AFTER_SYNC", "rpl_semi_sync_source_wait_no_replica": "ON",
            "rpl_semi_sync_replica_enabled": "ON", "rpl_semi_sync_source_status": "OFF",
            "rpl_semi_sync_source_clients": "0", "rpl_semi_sync_source_wait_sessions": "0",
            "rpl_semi_sync_source_yes_tx": "0", "rpl_semi_sync_source_no_tx": "0",
            "rpl_semi_sync_source_no_times": "0", "rpl_semi_sync_replica_status": "OFF",
            "dump_threads": "0", "dump_caught_up": "0"}
    base.update(values)
    return [{"name": k, "value": v} for k, v in base.items() if v is not None]


def test_mysql_state_is_read_from_performance_schema_with_neutral_names():
    conn = Recorder({"SELECT LOWER(VARIABLE_NAME)": mysql_rows(**{
        "rpl_semi_sync_source_enabled": "ON", "rpl_semi_sync_source_status": "ON",
        "rpl_semi_sync_source_clients": "2", "rpl_semi_sync_source_wait_sessions": "1",
        "rpl_semi_sync_source_yes_tx": "42", "rpl_semi_sync_source_no_times": "3",
        "dump_threads": "2", "dump_caught_up": "1"})})
    state = semisync.read(conn, MYSQL)
    assert "performance_schema.global_status" in conn.sent[0][0]
    assert "sent all binlog to" in conn.sent[0][0]
    assert state == semisync.SemisyncState(
        available=True, source_loaded=True, replica_loaded=True, source_enabled=True, timeout_ms=10000,
        wait_point="AFTER_SYNC", wait_no_replica=True, replica_enabled=True, source_on=True, clients=2,
        wait_sessions=1, yes_tx=42, no_tx=0, off_times=3, replica_on=False, dump_threads=2, dump_caught_up=1)


def test_mysql_without_plugins_installs_them():
    conn = Recorder({"SELECT LOWER(VARIABLE_NAME)": [{"name": "dump_threads", "value": "0"}]})
    state = semisync.read(conn, MYSQL)
    assert not state.available and not state.source_loaded and not state.replica_loaded
    semisync.ensure_loaded(conn, MYSQL, state)
    assert [t for t, _ in conn.sent[1:3]] == [
        "INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'",
        "INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so'"]
    half = semisync.parse(MYSQL, mysql_rows(rpl_semi_sync_replica_enabled=None, rpl_semi_sync_replica_status=None))
    assert half.source_loaded and not half.replica_loaded
    assert MYSQL.install_semisync(source=False, replica=True) == [
        Sql("INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so'")]
    assert MARIADB.install_semisync(source=True, replica=True) == []  # built in


def test_mysql_source_side_on_sets_timeout_and_wait_point_first():
    conn = Recorder()
    state = semisync.parse(MYSQL, mysql_rows(rpl_semi_sync_source_wait_point="AFTER_COMMIT"))
    assert semisync.apply_source(conn, MYSQL, state, enabled=True, timeout=semisync.TIMEOUT_MAX_MS)
    assert conn.sent == [
        ("SET GLOBAL rpl_semi_sync_source_timeout = %s", (4294967295,)),
        ("SET GLOBAL rpl_semi_sync_source_wait_point = %s", ("AFTER_SYNC",)),
        ("SET GLOBAL rpl_semi_sync_source_enabled = %s", ("ON",))]
    same = Recorder()
    on = semisync.parse(MYSQL, mysql_rows(rpl_semi_sync_source_enabled="ON"))
    assert not semisync.apply_source(same, MYSQL, on, enabled=True, timeout=10000)
    assert same.sent == []


def test_mysql_replica_side_change_restarts_the_io_thread():
    conn = Recorder({"SELECT LOWER(VARIABLE_NAME)": mysql_rows(rpl_semi_sync_replica_enabled="OFF")})
    assert semisync.ensure_replica_side(conn, MYSQL, "semi", io_running=True)
    assert [t for t, _ in conn.sent[1:]] == ["SET GLOBAL rpl_semi_sync_replica_enabled = %s",
                                             "STOP REPLICA IO_THREAD", "START REPLICA IO_THREAD"]
    off = Recorder({"SELECT LOWER(VARIABLE_NAME)": mysql_rows()})
    assert semisync.ensure_replica_side(off, MYSQL, "off", io_running=False)
    assert off.sent[1] == ("SET GLOBAL rpl_semi_sync_replica_enabled = %s", ("OFF",))


@pytest.mark.parametrize("waiting, turned_off", [(0, True), (2, False)])
def test_prepare_replica_turns_the_source_side_off_unless_commits_wait(waiting, turned_off):
    conn = Recorder({"SELECT LOWER(VARIABLE_NAME)": mysql_rows(
        rpl_semi_sync_source_enabled="ON", rpl_semi_sync_source_wait_sessions=str(waiting))})
    semisync.prepare_replica(conn, MYSQL, "semi", io_running=False)
    off = ("SET GLOBAL rpl_semi_sync_source_enabled = %s", ("OFF",))
    assert (off in conn.sent) is turned_off


def test_timeout_in_the_servers_unit():
    assert semisync.timeout_ms(10) == 10000
    assert semisync.timeout_ms(0.0001) == 1
    assert semisync.timeout_ms(10**9) == semisync.TIMEOUT_MAX_MS
    assert semisync.describe_timeout(semisync.TIMEOUT_MAX_MS) == "never"


# -- MariaDB, real servers -----------------------------------------------------------

def conn_of(server):
    return connect_local(server.socket, timeout=5)


def test_mariadb_source_and_replica_sides_on_real_servers(mariadb_factory):
    primary, replica = mariadb_factory(2)
    with conn_of(primary) as p, conn_of(replica) as r:
        state = semisync.read(p, MARIADB)
        assert state.available and state.source_loaded and state.replica_loaded
        assert not state.source_enabled and state.timeout_ms == 10000 and state.dump_threads == 0
        replica.replicate_from(primary)
        wait_for(lambda: semisync.read(p, MARIADB).dump_caught_up == 1, 20, what="a caught-up dump thread")
        assert semisync.read(p, MARIADB).clients == 0  # its replica side is off: an asynchronous replica
        # The replica side negotiates on connect: turning it on restarts the IO thread.
        assert semisync.ensure_replica_side(r, MARIADB, "semi", io_running=True)
        wait_for(lambda: semisync.read(p, MARIADB).clients == 1, 20, what="a semi-sync client")
        assert semisync.read(r, MARIADB).replica_on
        assert not semisync.ensure_replica_side(r, MARIADB, "semi", io_running=True)  # idempotent
        # Source side on, AFTER_SYNC, 3 s.
        assert semisync.apply_source(p, MARIADB, semisync.read(p, MARIADB), True, 3000)
        state = semisync.read(p, MARIADB)
        assert (state.source_enabled, state.source_on, state.wait_point, state.timeout_ms) == (
            True, True, "AFTER_SYNC", 3000)
        p.execute("CREATE DATABASE s")
        assert semisync.read(p, MARIADB).yes_tx == 1
        # A server with the source side on that replicates: its own applier would wait for ACKs.
        replica.sql("STOP SLAVE")
        assert semisync.apply_source(r, MARIADB, semisync.read(r, MARIADB), True, 3000)
        semisync.prepare_replica(r, MARIADB, "semi", io_running=False)
        assert not semisync.read(r, MARIADB).source_enabled
        replica.sql("START SLAVE")
        p.execute("CREATE TABLE s.t (id INT PRIMARY KEY)")
        started = time.monotonic()
        wait_for(lambda: replica.scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='s'")
                 == 1, 10, what="the replica applying")
        assert time.monotonic() - started < 2.5  # no wait for an acknowledgement on the replica


def test_promotion_stop_of_a_semisync_replica_whose_source_is_frozen(mariadb_factory):
    """A semi-sync replica's STOP SLAVE first connects to its source to kill its dump thread: with a frozen
    source it waits rpl_semi_sync_slave_kill_conn_timeout (the generated config: 1 s, default 5 s).
    The promotion's stop_and_clear must outlast it instead of failing on the client's read timeout."""
    import os
    import signal
    from triton_mysql.mysql import replication
    settings = dict(line.split("=", 1) for line in MARIADB.semisync_cnf(10_000))
    primary, replica = mariadb_factory(2, extra_cnf=settings)
    primary.sql("SET GLOBAL rpl_semi_sync_master_enabled = ON")
    replica.replicate_from(primary)
    with conn_of(primary) as p:
        wait_for(lambda: semisync.read(p, MARIADB).clients == 1, 20, what="a semi-sync client")
    os.kill(primary.pid, signal.SIGSTOP)
    try:
        time.sleep(0.3)
        with connect_local(replica.socket, timeout=2) as r:  # the hooks' default read timeout
            started = time.monotonic()
            replication.stop_and_clear(r, MARIADB)
            took = time.monotonic() - started
    finally:
        os.kill(primary.pid, signal.SIGCONT)
    assert replica.sql("SHOW SLAVE STATUS") == []
    assert 0.5 < took < replication.STOP_TIMEOUT, took  # it did wait for the frozen source, within the bound
