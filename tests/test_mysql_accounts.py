"""Accounts on a real MariaDB: replication only replicates, the application account obeys read_only."""
from __future__ import annotations

import pytest

from triton_mysql import node_state
from triton_mysql.config import Config
from triton_mysql.mysql import fence
from triton_mysql.mysql.accounts import ACCOUNTS_VERSION, AccountsError, ensure_accounts, upgrade_once
from triton_mysql.mysql.connection import DBError, connect_local, connect_tcp
from triton_mysql.mysql.flavor import MARIADB, from_version

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


def test_replication_account_only_replicates_and_fences(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with connect_tcp(server.address, server.port, REPL[0], REPL[1]) as conn:
        assert conn.scalar("SELECT @@GLOBAL.gtid_binlog_state") is not None  # the errant check reads it
        assert conn.query("SHOW MASTER STATUS")  # binlog monitoring is allowed
        for statement in (f"CREATE TABLE {DB}.x (i INT)", "CREATE DATABASE nope", "SELECT * FROM mysql.user",
                          "STOP SLAVE", "CREATE USER x@'%'"):
            with pytest.raises(DBError) as info:
                conn.execute(statement)
            assert info.value.errno in (1044, 1142, 1227), statement
    text = " ".join(next(iter(g.values())) for g in server.sql("SHOW GRANTS FOR 'repl'@'%'"))
    for forbidden in ("SUPER", "ALL PRIVILEGES", "REPLICATION SLAVE ADMIN", "SELECT", "INSERT"):
        assert forbidden not in text
    for needed in ("READ_ONLY ADMIN", "CONNECTION ADMIN", "PROCESS"):
        assert needed in text


def test_a_peer_fences_a_server_over_sql_with_the_replication_account(mariadb_factory):
    """Issue 13 items 7/13: the repl account turns read_only on and kills client connections
    (the fencing code itself, over TCP), and still cannot write a table."""
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with app_conn(server) as app:
        app.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        app.execute("BEGIN")
        app.execute("INSERT INTO t VALUES (1)")  # an open transaction the fence must roll back
        with connect_tcp(server.address, server.port, REPL[0], REPL[1]) as peer:
            assert fence.kill_client_connections(peer) == 1
            fence.set_read_only(peer, MARIADB, True)
            assert fence.is_read_only(peer, MARIADB)
            for statement in (f"INSERT INTO {DB}.t VALUES (2)", f"CREATE TABLE {DB}.y (i INT)",
                              f"DELETE FROM {DB}.t"):
                with pytest.raises(DBError) as info:
                    peer.execute(statement)
                assert info.value.errno in (1044, 1142), statement
        with pytest.raises(DBError):
            app.execute("COMMIT")  # its connection was killed
    assert server.scalar(f"SELECT COUNT(*) FROM {DB}.t") == 0
    with app_conn(server) as app, pytest.raises(DBError) as refused:
        app.execute("INSERT INTO t VALUES (3)")
    assert refused.value.errno == 1290


def drop_harness_tcp_root(server) -> None:
    """As a datadir made by datadir.initialize: root@localhost only (the harness adds TCP root accounts)."""
    for row in server.sql("SELECT host FROM mysql.user WHERE user='root' AND host <> 'localhost'"):
        server.sql("DROP USER 'root'@%s", (next(iter(row.values())),))


def test_tcp_root_is_stopped_by_read_only(mariadb_factory):
    """Issue 13 item 7: root@'%' has every privilege but READ ONLY ADMIN: a fenced node refuses its writes."""
    (server,) = mariadb_factory(1)
    drop_harness_tcp_root(server)
    ensure(server, config(mysql_root_password="root#pw 3"))
    text = server.scalar("SHOW GRANTS FOR 'root'@'%'")
    assert "READ_ONLY ADMIN" not in text and "ALL PRIVILEGES" not in text
    assert "INSERT" in text and "CREATE USER" in text and "WITH GRANT OPTION" in text
    with connect_tcp(server.address, server.port, "root", "root#pw 3") as root:
        root.execute(f"CREATE TABLE {DB}.t (id INT PRIMARY KEY)")
        root.execute(f"INSERT INTO {DB}.t VALUES (1)")
        server.sql("SET GLOBAL read_only = ON")
        for statement in (f"INSERT INTO {DB}.t VALUES (2)", "CREATE DATABASE other", "CREATE USER x@'%'"):
            with pytest.raises(DBError) as info:
                root.execute(statement)
            assert info.value.errno == 1290, statement
        assert root.scalar(f"SELECT COUNT(*) FROM {DB}.t") == 1


def test_existing_accounts_get_the_new_grants_once(mariadb_factory):
    """Accounts made by an older version (repl without the fencing privileges, root@'%' with ALL)."""
    (server,) = mariadb_factory(1)
    drop_harness_tcp_root(server)
    server.sql("CREATE USER %s@%s IDENTIFIED BY %s", ("repl", "%", REPL[1]))
    server.sql("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO %s@%s", ("repl", "%"))
    server.sql("CREATE USER %s@%s IDENTIFIED BY %s", ("root", "%", "root#pw 3"))
    server.sql("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", ("root", "%"))
    server.sql("ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password "
               "USING PASSWORD('root#pw 3')")
    cfg = config(mysql_root_password="root#pw 3", mysql_datadir=str(server.datadir))
    node_state.save(server.datadir, node_state.NodeState(node="n1", server_id=1))  # an old node state
    with connect_local(server.socket) as conn:
        done = upgrade_once(conn, MARIADB, cfg)
    assert "granted READ ONLY ADMIN, CONNECTION ADMIN, PROCESS ON *.* to 'repl'@'%' (so a peer can fence " \
           "this server)" in done
    assert "revoked READ ONLY ADMIN from 'root'@'%' (read_only must stop it)" in done
    assert node_state.load(server.datadir).accounts_version == ACCOUNTS_VERSION
    gtid = server.scalar("SELECT @@gtid_binlog_pos")
    with connect_local(server.socket) as conn:
        assert upgrade_once(conn, MARIADB, cfg) == []  # once: the node state says it is done
        assert ensure_accounts(conn, MARIADB, cfg) == []  # and the grants are right
    assert server.scalar("SELECT @@gtid_binlog_pos") == gtid


def test_read_only_bypass_privileges_by_version():
    assert from_version("10.11.6-MariaDB-0+deb12u1").read_only_bypass_privileges() == ["READ ONLY ADMIN"]
    assert from_version("10.6.16-MariaDB").read_only_bypass_privileges() == ["READ ONLY ADMIN", "SUPER"]
    assert from_version("8.0.36").read_only_bypass_privileges() == []  # MySQL: super_read_only stops SUPER


def test_replication_account_can_wait_for_a_gtid(mariadb_factory):
    (server,) = mariadb_factory(1)
    ensure(server, config())
    with connect_tcp(server.address, server.port, REPL[0], REPL[1]) as conn:
        assert conn.scalar("SELECT MASTER_GTID_WAIT('', 1)") == 0


def test_root_password_gives_tcp_root_and_keeps_socket_auth(mariadb_factory):
    (server,) = mariadb_factory(1)
    drop_harness_tcp_root(server)
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
