"""The flavor layer: detection, and the exact statements/argv of each family.

MySQL 8 cannot run here, so its dialect is pinned at statement level; the
MariaDB statements are also run against real servers in test_mysql_replication.
"""
from __future__ import annotations

import stat

import pytest

from triton_mysql.mysql import flavor as fl
from triton_mysql.mysql.flavor import MARIADB, MYSQL, FlavorError, Sql


def fake_binary(tmp_path, output: str, code: int = 0) -> str:
    path = tmp_path / "mysqld"
    path.write_text(f"#!/bin/sh\ncat <<'END'\n{output}\nEND\nexit {code}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# -- detection -------------------------------------------------------------

def test_detect_from_the_installed_binary_is_mariadb():
    flavor = fl.detect_from_binary()
    assert flavor == MARIADB and flavor.is_mariadb
    assert flavor.version is not None and flavor.version >= (10, 6, 0)


@pytest.mark.parametrize("output, name, version", [
    ("mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)", "mariadb", (10, 11, 19)),
    ("/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 0, 36)),
    ("/usr/sbin/mysqld  Ver 8.4.2 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", (8, 4, 2)),
    ("/usr/sbin/mysqld  Ver 8.0.35-27 for Linux on x86_64 (Percona Server (GPL), Release '27', Revision 'abc')",
     "mysql", (8, 0, 35)),
])
def test_detect_from_binary_output(tmp_path, output, name, version):
    flavor = fl.detect_from_binary(fake_binary(tmp_path, output))
    assert flavor.name == name and flavor.version == version


def test_detect_failures_are_flavor_errors(tmp_path):
    with pytest.raises(FlavorError):
        fl.detect_from_binary(fake_binary(tmp_path, "boom", code=3))
    with pytest.raises(FlavorError):
        fl.detect_from_binary(str(tmp_path / "missing"))
    with pytest.raises(FlavorError):
        fl.detect_from_binary(fake_binary(tmp_path, "no version here"))


@pytest.mark.parametrize("version, name, parsed", [
    ("10.11.19-MariaDB-0+deb12u1-log", "mariadb", (10, 11, 19)),
    ("5.5.5-10.6.12-MariaDB", "mariadb", (10, 6, 12)),
    ("8.0.36", "mysql", (8, 0, 36)),
    ("8.0.35-27", "mysql", (8, 0, 35)),
    ("8.4.0-commercial", "mysql", (8, 4, 0)),
])
def test_from_version(version, name, parsed):
    flavor = fl.from_version(version)
    assert (flavor.name, flavor.version) == (name, parsed)


def test_from_version_rejects_garbage():
    for bad in ("", "   ", "unknown"):
        with pytest.raises(FlavorError):
            fl.from_version(bad)


def test_flavors_compare_by_family_and_by_name():
    assert fl.from_version("8.4.1") == MYSQL and fl.from_version("8.4.1") != MARIADB
    assert fl.by_name("mariadb") is MARIADB and fl.by_name("MySQL") is MYSQL
    assert len({MARIADB, fl.from_version("10.11.2-MariaDB")}) == 1
    with pytest.raises(FlavorError):
        fl.by_name("postgres")


# -- MariaDB dialect ------------------------------------------------------------

def test_mariadb_replication_statements():
    assert MARIADB.change_source("10.0.0.5", 3306, "repl", "s3cr#t") == Sql(
        "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
        ("10.0.0.5", 3306, "repl", "s3cr#t"))
    assert MARIADB.start_replica().text == "START SLAVE"
    assert MARIADB.stop_replica().text == "STOP SLAVE"
    assert MARIADB.reset_replica_all().text == "RESET SLAVE ALL"
    assert MARIADB.show_replica_status().text == "SHOW SLAVE STATUS"
    assert MARIADB.prepare_rejoin() == [Sql("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")]
    assert MARIADB.executed_gtid().text == "SELECT @@GLOBAL.gtid_current_pos AS gtid"
    assert MARIADB.binlog_state().text == "SELECT @@GLOBAL.gtid_binlog_state AS gtid"
    assert MARIADB.wait_for_gtid("0-1-5", 3) == Sql("SELECT MASTER_GTID_WAIT(%s, %s) AS result", ("0-1-5", 3.0))
    assert MARIADB.show_binlog_status().text == "SHOW MASTER STATUS"


def test_mariadb_seed_read_only_and_accounts():
    assert MARIADB.seed_after_restore("0-1-100,1-2-5") == [
        Sql("RESET MASTER"),
        Sql("SET GLOBAL gtid_binlog_state = %s", ("0-1-100,1-2-5",)),
        Sql("SET GLOBAL gtid_slave_pos = %s", ("0-1-100,1-2-5",)),
    ]
    assert MARIADB.set_read_only(True) == [Sql("SET GLOBAL read_only = ON")]
    assert MARIADB.set_read_only(False) == [Sql("SET GLOBAL read_only = OFF")]
    assert MARIADB.read_only_query().text == "SELECT @@GLOBAL.read_only AS read_only"
    assert "SUPER" not in MARIADB.replication_privileges() and "ALL" not in MARIADB.replication_privileges()


def test_mariadb_tool_argv():
    assert MARIADB.initialize_argv("/etc/my.cnf") == [
        "mariadb-install-db", "--defaults-file=/etc/my.cnf", "--auth-root-authentication-method=socket",
        "--skip-test-db"]
    assert MARIADB.backup_argv("/etc/my.cnf", "/tmp/bk") == [
        "mariabackup", "--defaults-file=/etc/my.cnf", "--backup", "--stream=xbstream", "--target-dir=/tmp/bk"]
    assert MARIADB.extract_argv("/x") == ["mbstream", "-x", "-C", "/x"]
    assert MARIADB.prepare_argv("/x") == ["mariabackup", "--no-defaults", "--prepare", "--target-dir=/x"]
    assert MARIADB.prepare_argv("/x", "/c.cnf") == ["mariabackup", "--defaults-file=/c.cnf", "--prepare",
                                                    "--target-dir=/x"]
    assert MARIADB.move_back_argv("/c.cnf", "/x") == ["mariabackup", "--defaults-file=/c.cnf", "--move-back",
                                                      "--target-dir=/x"]
    assert MARIADB.binlog_info_file == "xtrabackup_binlog_info"
    assert MARIADB.backup_tool == "mariabackup"


# -- MySQL 8 dialect ------------------------------------------------------------

def test_mysql_replication_statements():
    assert MYSQL.change_source("10.0.0.5", 3307, "repl", "pw") == Sql(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, SOURCE_PASSWORD=%s, "
        "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, SOURCE_SSL=1",
        ("10.0.0.5", 3307, "repl", "pw"))
    assert MYSQL.start_replica().text == "START REPLICA"
    assert MYSQL.stop_replica().text == "STOP REPLICA"
    assert MYSQL.reset_replica_all().text == "RESET REPLICA ALL"
    assert MYSQL.show_replica_status().text == "SHOW REPLICA STATUS"
    assert MYSQL.prepare_rejoin() == []
    assert MYSQL.executed_gtid().text == "SELECT @@GLOBAL.gtid_executed AS gtid"
    assert MYSQL.binlog_state().text == "SELECT @@GLOBAL.gtid_executed AS gtid"
    assert MYSQL.wait_for_gtid("u:1-5", 2.5) == Sql("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS result",
                                                    ("u:1-5", 2.5))


def test_mysql_version_dependent_statements():
    mysql80 = fl.from_version("8.0.36")
    mysql84 = fl.from_version("8.4.2")
    gtid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
    assert mysql80.seed_after_restore(gtid) == [Sql("RESET MASTER"), Sql("SET GLOBAL gtid_purged = %s", (gtid,))]
    assert mysql84.seed_after_restore(gtid) == [Sql("RESET BINARY LOGS AND GTIDS"),
                                                Sql("SET GLOBAL gtid_purged = %s", (gtid,))]
    assert mysql80.show_binlog_status().text == "SHOW MASTER STATUS"
    assert mysql84.show_binlog_status().text == "SHOW BINARY LOG STATUS"


def test_mysql_read_only_uses_super_read_only():
    assert MYSQL.set_read_only(True) == [Sql("SET GLOBAL super_read_only = ON")]
    assert MYSQL.set_read_only(False) == [Sql("SET GLOBAL super_read_only = OFF"), Sql("SET GLOBAL read_only = OFF")]
    assert "super_read_only" in MYSQL.read_only_query().text
    assert MYSQL.password_matches("u", "%", "p") is None


def test_mysql_tool_argv():
    assert MYSQL.initialize_argv("/etc/my.cnf") == ["mysqld", "--defaults-file=/etc/my.cnf", "--initialize-insecure"]
    assert MYSQL.initialize_argv("/etc/my.cnf", "/opt/bin/mysqld")[0] == "/opt/bin/mysqld"
    assert MYSQL.backup_argv("/etc/my.cnf", "/tmp/bk") == [
        "xtrabackup", "--defaults-file=/etc/my.cnf", "--backup", "--stream=xbstream", "--target-dir=/tmp/bk"]
    assert MYSQL.extract_argv("/x") == ["xbstream", "-x", "-C", "/x"]
    assert MYSQL.prepare_argv("/x", "/c.cnf") == ["xtrabackup", "--defaults-file=/c.cnf", "--prepare",
                                                  "--target-dir=/x"]
    assert MYSQL.move_back_argv("/c.cnf", "/x") == ["xtrabackup", "--defaults-file=/c.cnf", "--move-back",
                                                    "--target-dir=/x"]
    assert MYSQL.binlog_info_file == "xtrabackup_binlog_info"


# -- replica status normalisation ---------------------------------------------------

def test_replica_status_is_normalised_for_both_families():
    maria_row = {"Master_Host": "127.0.0.2", "Master_Port": 3306, "Slave_IO_Running": "Yes",
                 "Slave_SQL_Running": "No", "Last_IO_Errno": 0, "Last_IO_Error": "", "Last_SQL_Errno": 1062,
                 "Last_SQL_Error": "dup", "Seconds_Behind_Master": None, "Gtid_IO_Pos": "0-1-7"}
    mysql_row = {"Source_Host": "127.0.0.2", "Source_Port": 3306, "Replica_IO_Running": "Yes",
                 "Replica_SQL_Running": "No", "Last_IO_Errno": 0, "Last_IO_Error": "", "Last_SQL_Errno": 1062,
                 "Last_SQL_Error": "dup", "Seconds_Behind_Source": None, "Retrieved_Gtid_Set": "u:1-7"}
    a = MARIADB.replica_status(maria_row)
    b = MYSQL.replica_status(mysql_row)
    assert a["received_gtid"] == "0-1-7" and b["received_gtid"] == "u:1-7"
    del a["received_gtid"], b["received_gtid"]
    assert a == b == {"source_host": "127.0.0.2", "source_port": 3306, "io_running": "Yes", "sql_running": "No",
                      "last_io_errno": 0, "last_io_error": "", "last_sql_errno": 1062, "last_sql_error": "dup",
                      "seconds_behind": None}
    assert MARIADB.replica_status(None) is None and MYSQL.replica_status({}) is None


def test_wait_succeeded():
    assert MARIADB.wait_succeeded(0) and MYSQL.wait_succeeded(0)
    assert not MARIADB.wait_succeeded(-1) and not MYSQL.wait_succeeded(1) and not MYSQL.wait_succeeded(None)


# -- backup binlog info ---------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("mysql-bin.000002\t1234\t0-1-17\n", ("mysql-bin.000002", 1234, "0-1-17")),
    ("mysql-bin.000002\t1234\t0-1-17,1-3-9\n", ("mysql-bin.000002", 1234, "0-1-17,1-3-9")),
    ("mysql-bin.000001\t329\t\n", ("mysql-bin.000001", 329, "")),
    ("mysql-bin.000001\t329\n", ("mysql-bin.000001", 329, "")),
    ("binlog.000003\t157\taaaa-bb:1-5,\ncccc-dd:1-3\n", ("binlog.000003", 157, "aaaa-bb:1-5,cccc-dd:1-3")),
])
def test_parse_binlog_info(text, expected):
    assert fl.parse_binlog_info(text) == expected


def test_parse_binlog_info_rejects_garbage():
    for bad in ("", "justonefield"):
        with pytest.raises(ValueError):
            fl.parse_binlog_info(bad)
