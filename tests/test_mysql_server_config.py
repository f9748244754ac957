"""The generated server config and the datadir helpers, checked on a real MariaDB."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.mariadb import fast_tuning_cnf, mysql_tmp_dir, next_loopback_address, run_mysqld
from tests.harness.procs import free_port
from triton_mysql.config import Config
from triton_mysql.mysql import datadir, server_config
from triton_mysql.mysql.connection import connect_local
from triton_mysql.mysql.flavor import MARIADB, MYSQL


def node_config(**overrides) -> Config:
    """Paths of one node in a fresh directory the mysql user can reach."""
    base = mysql_tmp_dir("node")
    address = next_loopback_address()
    values = dict(
        mysql_datadir=str(base / "data"), mysql_socket=str(base / "run" / "mysqld.sock"),
        mysql_port=free_port(address), mysql_bind_address=address,
        mysql_conf_dir=str(base / "conf.d"), mysql_cnf=str(base / "etc" / "triton-mysql.cnf"),
    )
    values.update(overrides)
    return Config(**values)


def mysqld_lines(text: str) -> list[str]:
    section, out = None, []
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif section == "[mysqld]" and line and not line.startswith("!"):
            out.append(line)
    return out


def test_mariadb_cnf_contents(tmp_path):
    config = node_config()
    text = server_config.render_cnf(config, MARIADB, 4242, as_root=True)
    lines = mysqld_lines(text)
    for expected in ["user=mysql", f"datadir={config.mysql_datadir}", f"socket={config.mysql_socket}",
                     f"pid-file={Path(config.mysql_socket).parent}/mysqld.pid", f"port={config.mysql_port}",
                     f"bind-address={config.mysql_bind_address}", "server_id=4242", "gtid_domain_id=0",
                     "gtid_strict_mode=ON", "log_bin=mysql-bin", "relay_log=relay-bin", "log_slave_updates=ON",
                     "binlog_format=ROW", "read_only=ON", "skip_slave_start=ON", "slave_net_timeout=5",
                     "sync_binlog=1", "innodb_flush_log_at_trx_commit=1", "binlog_expire_logs_seconds=0",
                     "skip_name_resolve=ON"]:
        assert expected in lines
    assert "gtid_mode=ON" not in lines and "super_read_only=ON" not in lines
    # The user's files come after the generated options, and the pinned ones come after the user's files.
    head, _, tail = text.partition(f"!includedir {config.mysql_conf_dir}\n")
    assert tail and "sync_binlog=1" in head
    pinned = mysqld_lines(tail)
    assert pinned == ["server_id=4242", "log_bin=mysql-bin", "gtid_domain_id=0", "gtid_strict_mode=ON",
                      "log_slave_updates=ON", "read_only=ON", "skip_slave_start=ON"]
    assert f"socket={config.mysql_socket}" in text.split("[mysqld]")[0]  # [client] too
    assert "user=mysql" not in server_config.render_cnf(config, MARIADB, 1, as_root=False)


def test_mysql_cnf_contents(tmp_path):
    config = node_config()
    lines = mysqld_lines(server_config.render_cnf(config, MYSQL, 9, as_root=False))
    for expected in ["gtid_mode=ON", "enforce_gtid_consistency=ON", "log_replica_updates=ON", "read_only=ON",
                     "super_read_only=ON", "skip_replica_start=ON", "server_id=9", "binlog_format=ROW",
                     "sync_binlog=1", "innodb_flush_log_at_trx_commit=1",
                     # MySQL 8 expires binlogs after 30 days by default; only the purge rule may (SPEC §6).
                     "binlog_expire_logs_seconds=0"]:
        assert expected in lines
    assert not [line for line in lines if line.startswith("gtid_domain_id") or line.startswith("gtid_strict")]


@pytest.mark.parametrize("bad", [0, -1, 2**32])
def test_server_id_range(tmp_path, bad):
    with pytest.raises(ValueError):
        server_config.render_cnf(node_config(), MARIADB, bad)


def test_write_cnf_is_atomic_and_server_id_reads_back(tmp_path):
    config = node_config()
    assert server_config.read_server_id(config.mysql_cnf) is None
    server_config.write_cnf(config, MARIADB, 77)
    assert Path(config.mysql_conf_dir).is_dir()
    assert Path(config.mysql_socket).parent.is_dir()
    assert server_config.read_server_id(config.mysql_cnf) == 77
    server_config.write_cnf(config, MARIADB, 78)
    assert server_config.read_server_id(config.mysql_cnf) == 78
    assert [p.name for p in Path(config.mysql_cnf).parent.iterdir()] == ["triton-mysql.cnf"]


def test_is_empty(tmp_path):
    assert datadir.is_empty(tmp_path / "missing")
    (tmp_path / "d" / "lost+found").mkdir(parents=True)
    assert datadir.is_empty(tmp_path / "d")
    (tmp_path / "d" / "node-state.json").write_text("{}")
    assert not datadir.is_empty(tmp_path / "d")
    assert datadir.is_empty(tmp_path / "d", ignore={"node-state.json"})
    (tmp_path / "d" / ".triton-mysql.abc123").write_text("{")  # a node-state save killed half-way
    assert datadir.is_empty(tmp_path / "d", ignore={"node-state.json"})
    (tmp_path / "d" / "ibdata1").write_bytes(b"x")
    assert not datadir.is_empty(tmp_path / "d", ignore={"node-state.json"})
    assert datadir.entries(tmp_path / "d") == ["ibdata1", "node-state.json"]


def test_initialize_refuses_a_datadir_with_data(tmp_path):
    config = node_config()
    Path(config.mysql_datadir).mkdir(parents=True)
    (Path(config.mysql_datadir) / "something").write_text("keep me")
    with pytest.raises(datadir.DatadirError):
        datadir.initialize(config, MARIADB)
    assert (Path(config.mysql_datadir) / "something").read_text() == "keep me"


def test_generated_cnf_boots_a_real_server_read_only_with_user_tuning_winning(tmp_path):
    config = node_config()
    server_config.write_cnf(config, MARIADB, 31337)
    # A user file may tune (max_connections) but not defeat the replication and fencing options.
    Path(config.mysql_conf_dir, "10-fast.cnf").write_text(
        fast_tuning_cnf() + "max_connections=77\nread_only=OFF\nserver_id=7\nskip_slave_start=OFF\n")
    Path(config.mysql_datadir, "lost+found").mkdir(parents=True)
    datadir.initialize(config, MARIADB)
    assert not datadir.is_empty(config.mysql_datadir)
    if os.geteuid() == 0:
        assert Path(config.mysql_datadir, "mysql").stat().st_uid != 0
    proc = run_mysqld(config.mysql_cnf, config.mysql_socket, tmp_path / "mysqld.log")
    try:
        with connect_local(config.mysql_socket) as conn:  # unix_socket authentication as OS root
            row = conn.one("SELECT @@read_only AS ro, @@server_id AS id, @@gtid_strict_mode AS strict, "
                           "@@gtid_domain_id AS domain, @@log_bin AS log_bin, @@log_slave_updates AS lsu, "
                           "@@max_connections AS maxc, @@port AS port, @@bind_address AS bind, "
                           "@@log_bin_basename AS basename, @@pid_file AS pid, @@sync_binlog AS sync, "
                           "@@innodb_flush_log_at_trx_commit AS flush")
            # The user's tuning in MYSQL_CONF_DIR (the tests' fast settings) overrides the durable defaults;
            # its read_only=OFF and server_id=7 do not win over the pinned options.
            assert row == {"ro": 1, "id": 31337, "strict": 1, "domain": 0, "log_bin": 1, "lsu": 1, "maxc": 77,
                           "port": config.mysql_port, "bind": config.mysql_bind_address,
                           "basename": f"{config.mysql_datadir}/mysql-bin",
                           "pid": server_config.pid_file_for(config), "sync": 0, "flush": 2}
            assert conn.query("SHOW SLAVE STATUS") == []
            # A new datadir has root@localhost only, by unix_socket (no usable password yet).
            assert conn.query("SELECT host AS h FROM mysql.user WHERE user='root'") == [{"h": "localhost"}]
            grants = conn.scalar("SHOW GRANTS FOR root@localhost")
            assert "unix_socket" in grants and "USING 'invalid'" in grants
            assert conn.scalar("SELECT @@gtid_binlog_state") == ""
        assert Path(server_config.pid_file_for(config)).exists()
        assert not list(Path(config.mysql_datadir).glob("*.pid"))
    finally:
        proc.stop()


def test_durability_defaults_on_a_real_server(tmp_path):
    """Issue 13 item 10: without user tuning the server syncs the binlog and the redo log at every commit."""
    config = node_config()
    server_config.write_cnf(config, MARIADB, 7)
    datadir.initialize(config, MARIADB)
    proc = run_mysqld(config.mysql_cnf, config.mysql_socket, tmp_path / "mysqld.log")
    try:
        with connect_local(config.mysql_socket) as conn:
            row = conn.one("SELECT @@sync_binlog AS sync, @@innodb_flush_log_at_trx_commit AS flush, "
                           "@@binlog_expire_logs_seconds AS expire, @@expire_logs_days AS days")
        assert row["sync"] == 1 and row["flush"] == 1 and row["expire"] == 0 and float(row["days"]) == 0
    finally:
        proc.stop()


def test_semisync_settings_per_mode():
    semi = mysqld_lines(server_config.render_cnf(node_config(), MARIADB.with_version((10, 11, 19)), 5, as_root=False))
    for expected in ["rpl_semi_sync_slave_enabled=ON", "rpl_semi_sync_master_enabled=OFF",
                     "rpl_semi_sync_master_wait_point=AFTER_SYNC", "rpl_semi_sync_master_timeout=10000",
                     "rpl_semi_sync_slave_kill_conn_timeout=1", "init_rpl_role=SLAVE"]:
        assert expected in semi
    strict = mysqld_lines(server_config.render_cnf(node_config(sync_replication="strict", sync_timeout=2.5),
                                                   MARIADB.with_version((10, 6, 19)), 5, as_root=False))
    assert "rpl_semi_sync_master_timeout=2500" in strict and "init_rpl_role=SLAVE" in strict
    off = mysqld_lines(server_config.render_cnf(node_config(sync_replication="off"), MARIADB, 5, as_root=False))
    assert not [line for line in off if "semi_sync" in line or "rpl_role" in line]
    mysql = mysqld_lines(server_config.render_cnf(node_config(), MYSQL, 5, as_root=False))
    for expected in ["plugin-load-add=semisync_source.so", "plugin-load-add=semisync_replica.so",
                     "loose-rpl_semi_sync_replica_enabled=ON", "loose-rpl_semi_sync_source_enabled=OFF",
                     "loose-rpl_semi_sync_source_wait_point=AFTER_SYNC", "loose-rpl_semi_sync_source_timeout=10000"]:
        assert expected in mysql
    assert not [line for line in mysql if "rpl_role" in line]  # MariaDB only


def test_generated_semisync_settings_take_effect_on_a_real_server(tmp_path):
    """mariadb-install-db and mariadbd accept the semi-sync lines and init_rpl_role (start-up only)."""
    config = node_config(sync_timeout=3)
    server_config.write_cnf(config, MARIADB, 8)
    Path(config.mysql_conf_dir, "10-fast.cnf").write_text(fast_tuning_cnf())
    datadir.initialize(config, MARIADB)
    proc = run_mysqld(config.mysql_cnf, config.mysql_socket, tmp_path / "mysqld.log")
    try:
        with connect_local(config.mysql_socket) as conn:
            row = conn.one("SELECT @@rpl_semi_sync_master_enabled AS src, @@rpl_semi_sync_slave_enabled AS rep, "
                           "@@rpl_semi_sync_master_wait_point AS point, @@rpl_semi_sync_master_timeout AS t")
            assert row == {"src": 0, "rep": 1, "point": "AFTER_SYNC", "t": 3000}
    finally:
        proc.stop()
    assert "unknown variable" not in (tmp_path / "mysqld.log").read_text().lower()


@pytest.mark.parametrize("mode, cut", [("semi", True), ("off", False)])
def test_a_restarted_former_primary_cuts_its_unacknowledged_tail(tmp_path, mariadb_factory, mode, cut):
    """The generated config of a crashed primary: with semi-sync (init_rpl_role=SLAVE) the restart removes
    the commit that waited for an acknowledgement (written and prepared, never acknowledged) and logs its
    GTID; with `off` the same restart commits it (the old behaviour, which diverges from the new primary)."""
    import contextlib
    import signal
    import threading
    import time as _time

    import pymysql

    from tests.harness.procs import wait_for
    config = node_config(sync_replication=mode)
    server_config.write_cnf(config, MARIADB, 71)
    Path(config.mysql_conf_dir, "10-fast.cnf").write_text(fast_tuning_cnf())
    datadir.initialize(config, MARIADB)
    log = tmp_path / "primary.log"
    proc = run_mysqld(config.mysql_cnf, config.mysql_socket, log)
    (replica,) = mariadb_factory(1, extra_cnf={"rpl_semi_sync_slave_enabled": "ON"})
    try:
        with connect_local(config.mysql_socket) as conn:
            conn.execute("SET SESSION sql_log_bin = 0")
            conn.execute("CREATE USER 'r'@'%' IDENTIFIED BY 'r'")
            conn.execute("GRANT ALL ON *.* TO 'r'@'%'")  # the test's client and the replica
            conn.execute("SET SESSION sql_log_bin = 1")
            conn.execute("SET GLOBAL read_only = OFF")
            conn.execute("CREATE DATABASE t")
            conn.execute("CREATE TABLE t.t (id INT PRIMARY KEY)")
        replica.sql("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER='r', MASTER_PASSWORD='r', "
                    "MASTER_USE_GTID=slave_pos", (config.mysql_bind_address, config.mysql_port))
        replica.sql("START SLAVE")
        with connect_local(config.mysql_socket) as conn:
            wait_for(lambda: conn.scalar("SELECT @@gtid_binlog_pos") == replica.scalar("SELECT @@gtid_slave_pos"),
                     30, what="the replica caught up")
            conn.execute("SET GLOBAL rpl_semi_sync_master_timeout = 600000")
            conn.execute("SET GLOBAL rpl_semi_sync_master_enabled = ON")
        replica.sql("STOP SLAVE IO_THREAD")  # no acknowledgement will come

        def insert():
            with pymysql.connect(host=config.mysql_bind_address, port=config.mysql_port, user="r", password="r",
                                 read_timeout=60, autocommit=True) as client:
                with contextlib.suppress(pymysql.err.MySQLError), client.cursor() as cur:
                    cur.execute("INSERT INTO t.t VALUES (1)")

        threading.Thread(target=insert, daemon=True).start()
        with connect_local(config.mysql_socket) as conn:
            wait_for(lambda: int(conn.one("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'")["Value"])
                     == 1, 10, what="the commit waiting for an acknowledgement")
            tail = conn.scalar("SELECT @@gtid_binlog_pos")
        proc.send(signal.SIGKILL)  # the crash
        proc.stop(timeout=10)
        _time.sleep(0.2)
        proc = run_mysqld(config.mysql_cnf, config.mysql_socket, log)
        with connect_local(config.mysql_socket) as conn:
            rows = conn.scalar("SELECT COUNT(*) FROM t.t")
            position = conn.scalar("SELECT @@gtid_binlog_pos")
        text = log.read_text()
        if cut:
            assert rows == 0 and position != tail
            assert f"to remove transactions starting from GTID {tail}" in text
        else:
            assert rows == 1 and position == tail
            assert "Successfully truncated binlog" not in text
    finally:
        proc.stop()


@pytest.mark.parametrize("version, line", [
    ((10, 11, 19), "init_rpl_role=SLAVE"), ((10, 11, 9), "init_rpl_role=SLAVE"), ((11, 4, 3), "init_rpl_role=SLAVE"),
    ((11, 8, 2), "init_rpl_role=SLAVE"), ((10, 6, 18), None), ((10, 11, 8), None), ((11, 0, 6), None),
    (None, "loose-init_rpl_role=SLAVE"),
])
def test_init_rpl_role_only_where_the_server_knows_it(version, line):
    """An unknown option stops mariadbd: MDEV-33465 added init_rpl_role in 10.6.19/10.11.9/11.1.6/11.2.5/11.4.3."""
    flavor = MARIADB.with_version(version)
    lines = [x for x in mysqld_lines(server_config.render_cnf(node_config(), flavor, 5, as_root=False))
             if "init_rpl_role" in x]
    assert lines == ([line] if line else [])
