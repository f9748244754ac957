"""TLS settings at statement and file level (MySQL 8 has no server here: its dialect is checked as text)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.harness.tls import TestCA
from triton_mysql.config import Config
from triton_mysql.mysql import tls
from triton_mysql.mysql.flavor import MARIADB, MYSQL, ReplicationTLS
from triton_mysql.mysql.server_config import render_cnf, write_cnf

TLS = ReplicationTLS(ca="/run/mysqld/tls/ca.pem", cert="/run/mysqld/tls/cert.pem", key="/run/mysqld/tls/key.pem",
                     verify_identity=True)


def test_mariadb_change_master_over_tls():
    sql = MARIADB.change_source("db1.example", 3306, "repl", "pw", TLS)
    assert sql.text.endswith(", MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_CERT=%s, MASTER_SSL_KEY=%s, "
                             "MASTER_SSL_VERIFY_SERVER_CERT=1")
    assert sql.args == ("db1.example", 3306, "repl", "pw", TLS.ca, TLS.cert, TLS.key)
    assert "MASTER_SSL" not in MARIADB.change_source("h", 1, "u", "p").text


def test_mysql_replicates_over_tls_and_never_fetches_the_source_public_key():
    for tls_files in (None, TLS, TLS._replace(verify_identity=False)):
        sql = MYSQL.change_source("10.0.0.5", 3306, "repl", "pw", tls_files)
        assert "GET_SOURCE_PUBLIC_KEY" not in sql.text
        assert "SOURCE_SSL=1" in sql.text
    with_files = MYSQL.change_source("10.0.0.5", 3306, "repl", "pw", TLS)
    assert with_files.text.endswith(", SOURCE_SSL_CA=%s, SOURCE_SSL_CERT=%s, SOURCE_SSL_KEY=%s, "
                                    "SOURCE_SSL_VERIFY_SERVER_CERT=1")
    assert with_files.args[-3:] == (TLS.ca, TLS.cert, TLS.key)


def _config(tmp_path: Path, **env: str) -> Config:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue("node1", ["127.0.0.2"])
    return Config.from_env({"ETCD": "127.0.0.1:2379", "NODE_NAME": "node1", "ADVERTISE_ADDRESS": "127.0.0.2",
                            "MYSQL_SOCKET": str(tmp_path / "run" / "mysqld.sock"),
                            "MYSQL_CNF": str(tmp_path / "my.cnf"), "MYSQL_CONF_DIR": str(tmp_path / "conf.d"),
                            "MYSQL_TLS_CA": ca.cert, "MYSQL_TLS_CERT": cert.cert, "MYSQL_TLS_KEY": cert.key, **env})


def test_server_config_points_at_the_installed_copies(tmp_path):
    config = _config(tmp_path)
    text = render_cnf(config, MARIADB, 7, as_root=False)
    mysqld = text.split("[mysqld]", 1)[1]
    directory = tmp_path / "run" / "tls"
    for line in (f"ssl_ca={directory}/ca.pem", f"ssl_cert={directory}/cert.pem", f"ssl_key={directory}/key.pem"):
        assert f"\n{line}\n" in mysqld
    assert "ssl_" not in render_cnf(Config.from_env({"ETCD": "e:1", "NODE_NAME": "n"}), MARIADB, 7, as_root=False)


def test_on_start_installs_the_key_privately_whatever_the_source_mode(tmp_path):
    config = _config(tmp_path)
    os.chmod(config.mysql_tls_key, 0o400)  # as a mounted secret may come: read-only, root's
    write_cnf(config, MARIADB, 7, as_root=True)
    ca, cert, key = (Path(p) for p in tls.installed(config))
    assert key.read_bytes() == Path(config.mysql_tls_key).read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644 and stat.S_IMODE(ca.stat().st_mode) == 0o644
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        import pwd
        mysql = pwd.getpwnam("mysql").pw_uid
        assert key.stat().st_uid == mysql and key.parent.stat().st_uid == mysql
    write_cnf(config, MARIADB, 7, as_root=True)  # again (every start): replaced, not refused


def test_peer_connections_verify_the_chain_and_the_name_only_when_asked(tmp_path):
    options = tls.client_options(_config(tmp_path))
    assert options["ssl_verify_cert"] is True and options["ssl_verify_identity"] is False
    named = tls.client_options(_config(tmp_path / "b", ADVERTISE_ADDRESS="db1.example"))
    assert named["ssl_verify_identity"] is True
    assert tls.replication(_config(tmp_path / "c")).verify_identity is False
    assert tls.client_options(Config.from_env({"ETCD": "e:1", "NODE_NAME": "n"})) == {}
