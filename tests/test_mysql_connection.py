"""The connection wrapper against a real server: rows, timeouts, scrubbed errors."""
from __future__ import annotations

import time

import pytest

from triton_mysql import log
from triton_mysql.mysql.connection import DBError, connect_local, connect_tcp
from triton_mysql.mysql.flavor import Sql


def test_query_scalar_one_execute(mariadb_factory):
    (server,) = mariadb_factory(1)
    with connect_local(server.socket) as conn:
        assert conn.query("SELECT 1 AS a, 'x' AS b") == [{"a": 1, "b": "x"}]
        assert conn.scalar("SELECT %s + %s", (2, 3)) == 5
        assert conn.one("SELECT 1 FROM DUAL WHERE 0") is None
        conn.execute("CREATE DATABASE t")
        conn.execute(Sql("CREATE TABLE t.x (v VARCHAR(10))"))
        conn.execute(Sql("INSERT INTO t.x VALUES (%s)", ("a'b",)))
        assert conn.scalar("SELECT v FROM t.x") == "a'b"
        assert conn.connection_id == conn.scalar("SELECT CONNECTION_ID()")


def test_tcp_connection(mariadb_factory):
    (server,) = mariadb_factory(1)
    with connect_tcp(server.address, server.port, "root", "", database="mysql") as conn:
        assert conn.scalar("SELECT DATABASE()") == "mysql"


def test_server_error_has_errno_and_no_password(mariadb_factory):
    (server,) = mariadb_factory(1)
    secret = "Sup3r#Secret'pw"
    with connect_local(server.socket) as conn:
        with pytest.raises(DBError) as info:
            # A syntax error: the server quotes the text near it, password included.
            conn.execute("CREATE USER %s@'%%' IDENTIFIED BY BY %s", ("u1", secret))
        assert info.value.errno == 1064
        assert "Sup3r" not in str(info.value) and "Secret" not in str(info.value)
        assert "near '…'" in str(info.value)


def test_access_denied_message_has_no_password(mariadb_factory):
    (server,) = mariadb_factory(1)
    with pytest.raises(DBError) as info:
        connect_tcp(server.address, server.port, "nobody", "pa55word-xyz", timeout=2)
    assert info.value.errno == 1045
    assert "pa55word-xyz" not in str(info.value)


def test_registered_secrets_are_scrubbed(mariadb_factory):
    (server,) = mariadb_factory(1)
    log.setup("test", secrets=["registered-secret-1"])
    try:
        with connect_local(server.socket) as conn:
            with pytest.raises(DBError) as info:
                conn.execute("SELECT registered-secret-1 FROM nowhere")
        assert "registered-secret-1" not in str(info.value)
    finally:
        log.setup("test", secrets=[])


def test_refused_connection_is_a_dberror_quickly(tmp_path):
    start = time.monotonic()
    with pytest.raises(DBError):
        connect_local(str(tmp_path / "no.sock"), timeout=1)
    with pytest.raises(DBError):
        connect_tcp("127.0.0.1", 1, "root", "", timeout=1)
    assert time.monotonic() - start < 5


def test_hung_server_times_out_instead_of_hanging(mariadb_factory):
    (server,) = mariadb_factory(1)
    with connect_local(server.socket, timeout=1) as conn:
        start = time.monotonic()
        with pytest.raises(DBError) as info:
            conn.scalar("SELECT SLEEP(5)")
        assert time.monotonic() - start < 3
        assert info.value.errno == 2013
    with connect_local(server.socket, timeout=1) as conn:
        assert conn.scalar("SELECT SLEEP(1.5)", timeout=4) == 0  # a per-statement longer timeout
        with pytest.raises(DBError):
            conn.scalar("SELECT SLEEP(3)")  # back to the connection's own timeout
