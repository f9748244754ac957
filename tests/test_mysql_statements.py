"""MySQL 8 code paths at statement level (no MySQL server exists here), MariaDB alongside.

`Recorder` stands in for the *server*: it records every statement the
operations send and answers queries from canned rows shaped like MySQL 8's.
The operations under test (replication, state, fence, accounts) are the real code.
"""
from __future__ import annotations

import pytest

from triton_mysql.config import Config
from triton_mysql.mysql import accounts, fence, replication
from triton_mysql.mysql.flavor import MARIADB, MYSQL, Sql, from_version
from triton_mysql.mysql.state import read_state

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4d22ab58-82db-22f2-8f44-d91bb0530673"


class Recorder:
    """Duck-types triton_mysql.mysql.connection.Connection."""

    def __init__(self, answers: dict[str, list[dict]] | None = None, own_id: int = 1) -> None:
        self.answers = answers or {}
        self.sent: list[tuple[str, tuple]] = []
        self.connection_id = own_id
        self.server_version: str | None = None

    def query(self, sql, args=None, timeout=None):
        text, params = (sql.text, sql.args) if isinstance(sql, Sql) else (sql, tuple(args or ()))
        self.sent.append((text, tuple(params or ())))
        for prefix, rows in self.answers.items():
            if text.startswith(prefix):
                return rows
        return []

    def scalar(self, sql, args=None, timeout=None):
        rows = self.query(sql, args, timeout)
        return next(iter(rows[0].values())) if rows else None

    def one(self, sql, args=None, timeout=None):
        rows = self.query(sql, args, timeout)
        return rows[0] if rows else None

    def execute(self, sql, args=None, timeout=None):
        self.query(sql, args, timeout)

    def execute_all(self, statements):
        for s in statements:
            self.execute(s)

    @property
    def texts(self) -> list[str]:
        return [t for t, _ in self.sent]


# -- replication ----------------------------------------------------------------

def test_mysql_follow_uses_auto_position_and_no_rejoin_step():
    conn = Recorder()
    replication.follow(conn, MYSQL, "10.0.0.2", 3306, "repl", "pw")
    assert conn.sent == [
        ("STOP REPLICA", ()),
        (MYSQL.gtid_waiters().text, ()),
        ("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, SOURCE_PASSWORD=%s, "
         "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, SOURCE_SSL=1",
         ("10.0.0.2", 3306, "repl", "pw")),
        ("START REPLICA", ()),
    ]


@pytest.mark.parametrize("binlog_pos, rejoin", [("0-1-5", True), ("", False)])
def test_mariadb_follow_copies_the_binlog_position_only_when_there_is_one(binlog_pos, rejoin):
    conn = Recorder({"SELECT @@GLOBAL.gtid_binlog_pos": [{"p": binlog_pos}]})
    replication.follow(conn, MARIADB, "10.0.0.2", 3306, "repl", "pw")
    expected = ["STOP SLAVE", MARIADB.gtid_waiters().text, "SELECT @@GLOBAL.gtid_binlog_pos"]
    expected += ["SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos"] if rejoin else []
    expected += [MARIADB.change_source("h", 1, "u", "p").text, "START SLAVE"]
    assert conn.texts == expected


@pytest.mark.parametrize("flavor", [MARIADB, MYSQL])
def test_repointing_ends_client_gtid_waits_first(flavor):
    rows = ([{"Id": 41, "State": "Waiting in MASTER_GTID_WAIT()"}, {"Id": 40, "State": "Sending data"},
             {"Id": 42, "State": "Waiting in MASTER_GTID_WAIT() (primary waiter)"}]
            if flavor == MARIADB else [{"ID": 41}, {"ID": 42}])
    conn = Recorder({flavor.gtid_waiters().text: rows})
    replication.follow(conn, flavor, "10.0.0.2", 3306, "repl", "pw")
    kills = [i for i, (t, _) in enumerate(conn.sent) if t.startswith("KILL QUERY")]
    assert [conn.sent[i][1] for i in kills] == [(41,), (42,)]
    change = next(i for i, t in enumerate(conn.texts) if t.startswith(("CHANGE", "SET GLOBAL gtid_slave_pos")))
    assert max(kills) < change


def test_mysql_stop_and_clear_and_start():
    conn = Recorder()
    replication.stop_and_clear(conn, MYSQL)
    replication.start(conn, MYSQL)
    assert conn.texts == ["STOP REPLICA", "RESET REPLICA ALL", "START REPLICA"]


@pytest.mark.parametrize("result, expected", [(0, True), (1, False), (None, False)])
def test_mysql_wait_applied(result, expected):
    conn = Recorder({"SELECT @@GLOBAL.gtid_executed": [{"gtid": f"{U1}:1-5"}],
                     "SELECT WAIT_FOR_EXECUTED_GTID_SET": [{"result": result}]})
    assert replication.wait_applied(conn, MYSQL, f"{U1}:1-9", 3) is expected
    assert conn.sent[-1] == ("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS result", (f"{U1}:1-9", 3.0))


def test_wait_applied_does_not_wait_for_what_is_already_executed():
    conn = Recorder({"SELECT @@GLOBAL.gtid_executed": [{"gtid": f"{U1}:1-10,\n{U2}:1-2"}]})
    assert replication.wait_applied(conn, MYSQL, f"{U1}:3-7", 3) is True
    assert conn.texts == ["SELECT @@GLOBAL.gtid_executed AS gtid"]


@pytest.mark.parametrize("version, reset", [("8.0.36", "RESET MASTER"), ("8.4.1", "RESET BINARY LOGS AND GTIDS")])
def test_mysql_seed_after_restore(version, reset):
    conn = Recorder()
    replication.seed_after_restore(conn, from_version(version), f"{U1}:1-5,\n{U2}:1-3")
    assert conn.sent == [("STOP REPLICA", ()), (MYSQL.gtid_waiters().text, ()), (reset, ()),
                         ("SET GLOBAL gtid_purged = %s", (f"{U1}:1-5,{U2}:1-3",))]


def test_mariadb_seed_reduces_a_state_to_a_position_for_slave_pos():
    conn = Recorder()
    replication.seed_after_restore(conn, MARIADB, "0-1-100,0-2-120")
    assert conn.sent == [("STOP SLAVE", ()), (MARIADB.gtid_waiters().text, ()), ("RESET MASTER", ()),
                         ("SET GLOBAL gtid_binlog_state = %s", ("0-2-120",)),
                         ("SET GLOBAL gtid_slave_pos = %s", ("0-2-120",))]


# -- state ---------------------------------------------------------------------------

MYSQL_REPLICA_ROW = {
    "Source_Host": "10.0.0.2", "Source_Port": 3306, "Replica_IO_Running": "Connecting",
    "Replica_SQL_Running": "Yes", "Last_IO_Errno": 2003, "Last_IO_Error": "can't connect",
    "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Seconds_Behind_Source": None,
    "Retrieved_Gtid_Set": f"{U1}:1-12", "Executed_Gtid_Set": f"{U1}:1-10",
}


@pytest.mark.parametrize("version, binlog_statement", [("8.0.36", "SHOW MASTER STATUS"),
                                                        ("8.4.1", "SHOW BINARY LOG STATUS")])
def test_mysql_read_state(version, binlog_statement):
    flavor = from_version(version)
    conn = Recorder({
        "SELECT VERSION()": [{"version": version, "server_id": 7, "read_only": 1, "super_read_only": 1,
                              "gtid": f"{U1}:1-10,\n{U2}:1-3", "binlog_state": f"{U1}:1-10,\n{U2}:1-3"}],
        binlog_statement: [{"File": "binlog.000004", "Position": 157}],
        "SHOW REPLICA STATUS": [MYSQL_REPLICA_ROW],
    })
    state = read_state(conn, flavor)
    assert conn.texts == [flavor.state_query().text, binlog_statement, "SHOW REPLICA STATUS"]
    assert (state.version, state.server_id, state.read_only, state.super_read_only) == (version, 7, True, True)
    assert state.executed_gtid == f"{U1}:1-10,{U2}:1-3"
    assert (state.binlog_file, state.binlog_pos) == ("binlog.000004", 157)
    r = state.replica
    assert (r.source_host, r.source_port, r.io_running, r.io_state, r.sql_running) == \
        ("10.0.0.2", 3306, False, "Connecting", True)
    assert (r.last_io_errno, r.last_sql_errno, r.seconds_behind, r.sql_error) == (2003, 0, None, False)
    assert state.received_gtid == f"{U1}:1-12,{U2}:1-3"  # retrieved ∪ executed
    assert state.follows("10.0.0.2", 3306)


def test_read_state_detects_the_flavor_when_not_given():
    conn = Recorder({"SELECT VERSION() AS version": [{"version": "8.0.36", "server_id": 1, "read_only": 0,
                                                      "super_read_only": 0, "gtid": "", "binlog_state": ""}],
                     "SELECT VERSION()": [{"v": "8.0.36"}]})
    state = read_state(conn)
    assert state.flavor == MYSQL and state.writable and state.replica is None and state.received_gtid == ""


# -- fencing -------------------------------------------------------------------------

def test_mysql_set_read_only_sets_super_read_only_and_verifies_both():
    ok = Recorder({"SELECT @@GLOBAL.read_only": [{"read_only": 1, "super_read_only": 1}]})
    fence.set_read_only(ok, MYSQL, True, lock_wait_timeout=1)
    assert ok.sent[:2] == [("SET SESSION lock_wait_timeout = %s", (1,)), ("SET GLOBAL super_read_only = ON", ())]
    half = Recorder({"SELECT @@GLOBAL.read_only": [{"read_only": 1, "super_read_only": 0}]})
    with pytest.raises(fence.FenceError):
        fence.set_read_only(half, MYSQL, True)
    off = Recorder({"SELECT @@GLOBAL.read_only": [{"read_only": 0, "super_read_only": 0}]})
    fence.set_read_only(off, MYSQL, False)
    assert off.texts[1:3] == ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]


def test_mysql_kill_spares_system_threads():
    processlist = [
        {"ID": 1, "USER": "root", "COMMAND": "Query"},                 # ourselves
        {"ID": 5, "USER": "event_scheduler", "COMMAND": "Daemon"},
        {"ID": 6, "USER": "system user", "COMMAND": "Connect"},       # replica IO/SQL threads
        {"ID": 7, "USER": "repl", "COMMAND": "Binlog Dump GTID"},
        {"ID": 8, "USER": "app", "COMMAND": "Sleep"},
        {"ID": 9, "USER": "app", "COMMAND": "Query"},
        {"ID": 10, "USER": "unauthenticated user", "COMMAND": "Connect"},
    ]
    conn = Recorder({"SELECT ID, USER, COMMAND": processlist}, own_id=1)
    assert fence.kill_client_connections(conn) == 3
    assert [args for text, args in conn.sent if text.startswith("KILL")] == [(8,), (9,), (10,)]


# -- accounts ------------------------------------------------------------------------

def test_mysql_accounts_statements():
    conn = Recorder({"SELECT @@GLOBAL.read_only": [{"ro": 0}]})
    cfg = Config(mysql_repl_user="repl", mysql_repl_password="rpw", mysql_user="app", mysql_password="apw",
                 mysql_database="app_db", mysql_root_password="root-pw")
    done = accounts.ensure_accounts(conn, MYSQL, cfg)
    sent = dict(conn.sent)
    assert ("CREATE USER %s@%s IDENTIFIED BY %s", ("repl", "%", "rpw")) in conn.sent
    assert ("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO %s@%s", ("repl", "%")) in conn.sent
    assert ("GRANT ALL PRIVILEGES ON `app\\_db`.* TO %s@%s", ("app", "%")) in conn.sent
    assert ("ALTER USER %s@%s IDENTIFIED BY %s", ("root", "localhost", "root-pw")) in conn.sent
    assert "CREATE DATABASE IF NOT EXISTS `app_db`" in sent
    assert not any("PASSWORD(" in text for text in sent)  # MySQL 8 has no PASSWORD()
    assert not any(pw in " ".join(done) for pw in ("rpw", "apw", "root-pw"))
    # Fencing over SQL by a peer (issue 13 item 7): the MySQL names of the privileges.
    assert ("GRANT SYSTEM_VARIABLES_ADMIN, CONNECTION_ADMIN, PROCESS ON *.* TO %s@%s", ("repl", "%")) in conn.sent
    # root@'%' keeps ALL on MySQL: super_read_only (set at boot and by fencing) stops SUPER holders too.
    assert ("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", ("root", "%")) in conn.sent
    assert not any(text.startswith("REVOKE") for text in sent)
    assert [s.text for s in MYSQL.set_read_only(True)] == ["SET GLOBAL super_read_only = ON"]


def test_mariadb_root_loses_read_only_admin_statements():
    conn = Recorder({"SELECT @@GLOBAL.read_only": [{"ro": 0}],
                     "SHOW GRANTS FOR": [{"g": "GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION"}]})
    cfg = Config(mysql_root_password="root-pw")
    done = accounts.ensure_accounts(conn, from_version("10.11.6-MariaDB"), cfg)
    assert ("REVOKE READ ONLY ADMIN ON *.* FROM %s@%s", ("root", "%")) in conn.sent
    assert "revoked READ ONLY ADMIN from 'root'@'%' (read_only must stop it)" in done
    conn = Recorder({"SELECT @@GLOBAL.read_only": [{"ro": 0}],
                     "SHOW GRANTS FOR": [{"g": "GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION"}]})
    accounts.ensure_accounts(conn, from_version("10.6.16-MariaDB"), cfg)  # SUPER ignored read_only before 10.11
    assert ("REVOKE READ ONLY ADMIN, SUPER ON *.* FROM %s@%s", ("root", "%")) in conn.sent
