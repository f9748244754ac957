"""The MariaDB harness starts real servers: own address, GTID replication, clean stop."""
from __future__ import annotations

import os

import pymysql
import pytest

from tests.harness.mariadb import MariaDBServer, next_loopback_address
from tests.harness.procs import process_state, wait_for


def test_row_written_is_read_back_over_tcp_on_own_address(mariadb_factory):
    (server,) = mariadb_factory(1)
    assert server.address.startswith("127.") and server.address != "127.0.0.1"
    writer = server.connect()
    with writer.cursor() as cur:
        cur.execute("CREATE DATABASE probe")
        cur.execute("CREATE TABLE probe.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("INSERT INTO probe.t VALUES (1, 'hello')")
    writer.close()

    reader = pymysql.connect(host=server.address, port=server.port, user="root", password="", connect_timeout=5)
    with reader.cursor() as cur:
        cur.execute("SELECT v FROM probe.t WHERE id = 1")
        assert cur.fetchone() == ("hello",)
        cur.execute("SELECT @@bind_address, @@port, @@server_id")
        assert cur.fetchone() == (server.address, server.port, server.server_id)
    reader.close()


def test_servers_get_distinct_addresses_ports_and_ids(mariadb_factory):
    servers = mariadb_factory(3)
    assert len({s.address for s in servers}) == 3
    assert len({s.server_id for s in servers}) == 3
    assert len({s.datadir for s in servers}) == 3
    for s in servers:
        assert s.scalar("SELECT @@gtid_strict_mode") == 1
        assert s.scalar("SELECT @@log_slave_updates") == 1
        assert s.scalar("SELECT @@binlog_format") == "ROW"
    # The server really listens only on its own address: another loopback address is refused.
    other = next_loopback_address()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host=other, port=servers[0].port, user="root", connect_timeout=1)


def test_replica_replicates_from_primary_with_gtid(mariadb_factory):
    primary, replica = mariadb_factory(2)
    primary.sql("CREATE DATABASE app")
    primary.sql("CREATE TABLE app.t (id INT PRIMARY KEY)")
    replica.replicate_from(primary)
    primary.sql("INSERT INTO app.t VALUES (1), (2), (3)")
    gtid = primary.scalar("SELECT @@gtid_current_pos")
    assert gtid.startswith(f"0-{primary.server_id}-")
    assert replica.scalar("SELECT MASTER_GTID_WAIT(%s, 10)", (gtid,)) == 0
    assert replica.scalar("SELECT COUNT(*) FROM app.t") == 3
    status = replica.sql("SHOW SLAVE STATUS")[0]
    assert status["Using_Gtid"] == "Slave_Pos"
    assert status["Slave_IO_Running"] == "Yes" and status["Slave_SQL_Running"] == "Yes"


def test_stop_kill_and_restart_leave_no_process(mariadb_factory):
    (server,) = mariadb_factory(1)
    server.sql("CREATE DATABASE keep")
    pid = server.pid
    server.kill()
    assert process_state(pid) in (None, "Z")
    server.start()
    assert server.scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name='keep'") == 1
    pid = server.pid
    server.stop()
    assert not server.alive()
    wait_for(lambda: process_state(pid) in (None, "Z"), 5, what="mariadbd gone")
    assert not os.path.exists(server.socket)


def test_factory_cleans_up_when_init_fails(tmp_path):
    from tests.harness.mariadb import start_servers

    with pytest.raises(RuntimeError):
        start_servers(tmp_path, 2, extra_cnf={"no_such_option_at_all": 1})
    from tests.harness.procs import descendants
    assert not [cmd for _, cmd in descendants() if "mariadbd" in cmd]


def test_server_files_are_reachable_by_mysql_and_linked_from_the_workdir(tmp_path):
    server = MariaDBServer(tmp_path / "node")
    if os.geteuid() == 0:
        # pytest resets its tmp root to 0700 whenever a session starts: files live elsewhere.
        assert (tmp_path / "node").is_symlink() and (tmp_path / "node").resolve() == server.workdir.resolve()
        assert "pytest-of-" not in str(server.workdir)
    assert server.cnf_path.exists()
    server.cleanup()


def test_long_workdir_gets_a_short_socket(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    server = MariaDBServer(deep)
    assert len(server.socket) <= 100
    server.cleanup()
