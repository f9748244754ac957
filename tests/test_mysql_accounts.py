"""Accounts on a real MariaDB: replication only replicates, the application account obeys read_only."""
from __future__ import annotations

import pytest

from triton_mysql.config import Config
from triton_mysql.mysql.accounts import AccountsError, ensure_accounts
from triton_mysql.mysql.connection import DBError, connect_local, connect_tcp
from triton_mysql.mysql.flavor import MARIADB

REPL = ("repl", "repl#pw 1")
APP = ("app", "app#pw 2")
DB = "app_db"


def config(**kw) -> Config:
    values = dict(mysql_repl_user=REPL[0], mysql_repl_password=REPL[1], mysql_user=APP[0],
                  mysql_password=APP[1], mysql_database=DB)
    values.update(kw)
    return Config(**values)


def ensure(server, cfg: Config, **kw) -> list[str]:
    with connect_local(server.socket) as conn:
        return ensure_accounts(conn, MARIADB, cfg, **kw)


def app_conn(server, database=DB):
    return connect_tcp(server.address, server.port, APP[0], APP[1], database=database)


def test_ensure_is_idempotent_and_never_shows_passwords(mariadb_factory):
    (server,) = mariadb_factory(1)
    done = ensure(server, config())
    assert "created 'repl'@'%'" in done and "created 'app'@'%'" in done and f"created database `{DB}`" in done
    assert any(a.startswith("granted REPLICATION SLAVE") for a in done)
    assert not any(REPL[1] in a or APP[1] in a for a in done)
    gtid_before = server.scalar("SELECT @@gtid_binlog_pos")
    assert ensure(server, config()) == []
    assert server.scalar("SELECT @@gtid_binlog_pos") == gtid_before  # nothing written the second time


def test_changed_password_is_applied(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    assert ensure(server, config(mysql_repl_password="new-pw")) == ["set the password of 'repl'@'%'"]
    connect_tcp(server.address, server.port, REPL[0], "new-pw").close()
    with pytest.raises(DBError):
        connect_tcp(server.address, server.port, REPL[0], REPL[1])


def test_application_account_obeys_read_only(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with app_conn(server) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        server.sql("SET GLOBAL read_only = ON")
        with pytest.raises(DBError) as info:
            conn.execute("INSERT INTO t VALUES (2)")
        assert info.value.errno == 1290
        assert conn.scalar("SELECT COUNT(*) FROM t") == 1  # reads still work
        server.sql("SET GLOBAL read_only = OFF")
        conn.execute("INSERT INTO t VALUES (2)")


def test_application_account_has_its_database_only(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with app_conn(server, database=None) as conn:
        for statement in ("CREATE DATABASE other", "CREATE DATABASE appXdb", "SELECT * FROM mysql.user",
                          "SET GLOBAL read_only = ON", "CREATE USER x@'%'"):
            with pytest.raises(DBError) as info:
                conn.execute(statement)
            assert info.value.errno in (1044, 1142, 1227), statement
    grants = server.sql("SHOW GRANTS FOR 'app'@'%'")
    text = " ".join(next(iter(g.values())) for g in grants)
    assert "READ ONLY ADMIN" not in text and "SUPER" not in text and "ON *.*" in text  # USAGE only globally
    assert "GRANT USAGE ON *.*" in text


def test_replication_account_only_replicates(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with connect_tcp(server.address, server.port, REPL[0], REPL[1]) as conn:
        assert conn.scalar("SELECT @@GLOBAL.gtid_binlog_state") is not None  # the errant check reads it
        assert conn.query("SHOW MASTER STATUS")  # binlog monitoring is allowed
        for statement in (f"CREATE TABLE {DB}.x (i INT)", "CREATE DATABASE nope", "SET GLOBAL read_only = OFF",
                          "SELECT * FROM mysql.user", "STOP SLAVE"):
            with pytest.raises(DBError) as info:
                conn.execute(statement)
            assert info.value.errno in (1044, 1142, 1227), statement
    text = " ".join(next(iter(g.values())) for g in server.sql("SHOW GRANTS FOR 'repl'@'%'"))
    for forbidden in ("SUPER", "ALL PRIVILEGES", "READ ONLY ADMIN", "REPLICATION SLAVE ADMIN"):
        assert forbidden not in text


def test_replication_account_can_wait_for_a_gtid(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with connect_tcp(server.address, server.port, REPL[0], REPL[1]) as conn:
        assert conn.scalar("SELECT MASTER_GTID_WAIT('', 1)") == 0


def test_root_password_gives_tcp_root_and_keeps_socket_auth(mariadb_factory):
    (server,) = mariadb_factory(1)
    # As a datadir made by datadir.initialize: root@localhost only (the harness adds TCP root accounts).
    for row in server.sql("SELECT host FROM mysql.user WHERE user='root' AND host <> 'localhost'"):
        server.sql("DROP USER 'root'@%s", (next(iter(row.values())),))
    server.sql("ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket")
    ensure(server, config())
    assert server.scalar("SELECT COUNT(*) FROM mysql.user WHERE user='root' AND host='%'") == 0
    done = ensure(server, config(mysql_root_password="root#pw 3"))
    assert "set the password of 'root'@'localhost'" in done and "created 'root'@'%'" in done
    assert ensure(server, config(mysql_root_password="root#pw 3")) == []
    with connect_tcp(server.address, server.port, "root", "root#pw 3") as conn:
        assert conn.scalar("SELECT CURRENT_USER()") == "root@%"
    with connect_local(server.socket) as conn:  # OS root still gets in by unix_socket, no password
        assert conn.scalar("SELECT CURRENT_USER()") == "root@localhost"
    with connect_local(server.socket, password="root#pw 3") as conn:
        assert conn.scalar("SELECT 1") == 1
    grants = server.scalar("SHOW GRANTS FOR root@localhost")
    assert "unix_socket" in grants and "mysql_native_password" in grants
    # Unset again: TCP root goes away.
    assert ensure(server, config()) == ["dropped 'root'@'%' (MYSQL_ROOT_PASSWORD is not set)"]
    assert server.scalar("SELECT COUNT(*) FROM mysql.user WHERE user='root' AND host='%'") == 0


def test_refuses_on_a_read_only_server(mariadb_factory):
    (server,) = mariadb_factory(1)
    server.sql("SET GLOBAL read_only = ON")
    with pytest.raises(AccountsError):
        ensure(server, config())
    assert server.scalar("SELECT COUNT(*) FROM mysql.user WHERE user IN ('repl', 'app')") == 0
    assert ensure(server, config(), allow_read_only=True)


def test_database_without_user_and_nothing_configured(mariadb_factory):
    (server,) = mariadb_factory(1)
    assert ensure(server, Config()) == []
    assert ensure(server, Config(mysql_database="only_db")) == ["created database `only_db`"]
    assert ensure(server, Config(mysql_database="only_db")) == []
