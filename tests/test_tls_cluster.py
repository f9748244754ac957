"""End to end, real MariaDB nodes: TLS replication with per-node certificates, discovery over HTTPS
with an ACL token (the Consul double), secrets from files, and no secret in any log or `status`.

Certificates: one CA and a certificate per node (for its 127.0.0.x address), made in the test.
"""
from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from tests.harness.cluster import REPL_PASSWORD, REPL_USER, ROOT, VENV_BIN
from tests.harness.consul_double import ConsulDouble
from tests.harness.procs import wait_for
from tests.harness.tls import TestCA

TOKEN = "consul-acl-token-e2e-7"
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-key-e2e-1",
    "AWS_SESSION_TOKEN": "aws-session-token-e2e-2",
    "ETCD_PASSWORD": "etcd-password-e2e-3",
    "MANTA_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nmanta-key-line-e2e-4-abcdefgh\n-----END PRIVATE KEY-----",
}
BINLOG_DUMP_TLS = (
    "SELECT t.CONNECTION_TYPE AS type, s.VARIABLE_VALUE AS cipher FROM performance_schema.threads t "
    "JOIN performance_schema.status_by_thread s ON s.THREAD_ID = t.THREAD_ID "
    "WHERE t.PROCESSLIST_COMMAND LIKE 'Binlog Dump%%' AND t.PROCESSLIST_USER = %s AND s.VARIABLE_NAME = 'Ssl_cipher'")


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def secure_consul(tmp_path, ca):
    with ConsulDouble(tmp_path / "consul", acl_token=TOKEN, ca=ca, verify_incoming=True) as double:
        yield double


def _tls_node(cluster, ca, tmp_path, name: str):
    node = cluster.add_node(name)
    cert = ca.issue(name, [node.address], directory=tmp_path / "certs")
    node.extra_env.update({"MYSQL_TLS_CA": ca.cert, "MYSQL_TLS_CERT": cert.cert, "MYSQL_TLS_KEY": cert.key})
    return node


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "triton-mysql"), *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT))


def test_tls_replication_over_https_discovery_with_secrets_from_files(cluster_factory, secure_consul, ca, tmp_path):
    repl_file = tmp_path / "repl-password"
    repl_file.write_text(REPL_PASSWORD + "\n")
    repl_file.chmod(0o600)
    env = {**SECRETS, "ETCD_USER": "unused", "MYSQL_TLS_VERIFY_IDENTITY": "true", "MYSQL_REPL_PASSWORD": "",
           "MYSQL_REPL_PASSWORD_FILE": str(repl_file)}
    cluster = cluster_factory(secure_consul.env(), env=env)
    first = _tls_node(cluster, ca, tmp_path, "node1")
    # performance_schema on the first node (the bootstrap winner, so the primary): it shows
    # the TLS state of the replica's Binlog Dump connection.
    (first.dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (first.dir / "conf.d" / "ps.cnf").write_text("[mysqld]\nperformance_schema=ON\n")
    first.start()
    primary = cluster.wait_for_primary(timeout=120)
    assert primary is first
    second = _tls_node(cluster, ca, tmp_path, "node2").start()
    cluster.wait_replicating(second, primary, timeout=120)

    # The replication account needs a certificate signed by the CA.
    assert primary.scalar("SELECT ssl_type FROM mysql.user WHERE User = %s", (REPL_USER,)) == "X509"
    # The replica's connection is TLS, seen from the primary.
    rows = wait_for(lambda: primary.sql(BINLOG_DUMP_TLS, (REPL_USER,)), 30, what="the Binlog Dump thread")
    assert rows[0]["type"] == "SSL/TLS" and rows[0]["cipher"], rows
    status = second.sql("SHOW SLAVE STATUS")[0]
    assert status["Master_SSL_Allowed"] == "Yes" and status["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert status["Master_SSL_Cert"] == str(second.dir / "run" / "tls" / "cert.pem")
    # Data flows.
    with primary.app_connection() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (1)")
    cluster.wait_caught_up(primary, [second])
    assert second.scalar("SELECT COUNT(*) FROM appdb.t") == 1

    # mysqld's copy of the key: the mysql user's, 0600; the directory 0700.
    key = second.dir / "run" / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert key.stat().st_uid == pwd.getpwnam("mysql").pw_uid

    # A replica without a client certificate is refused, with or without TLS.
    for ssl in ({"ssl": {"ca": ca.cert}}, {}):
        with pytest.raises(pymysql.err.OperationalError) as err:
            pymysql.connect(host=primary.address, port=primary.port, user=REPL_USER, password=REPL_PASSWORD,
                            connect_timeout=5, **ssl)
        assert err.value.args[0] == 1045, err.value
    # With one: TLS, the cipher shows on its own session.
    peer = ca.issue("peer", [], directory=tmp_path / "certs")
    conn = pymysql.connect(host=primary.address, port=primary.port, user=REPL_USER, password=REPL_PASSWORD,
                           ssl_ca=ca.cert, ssl_cert=peer.cert, ssl_key=peer.key, connect_timeout=5)
    with conn, conn.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]

    # `status` over HTTPS with the token; every log and every status output is free of secrets.
    node_env = second.env()
    outputs = [_cli(node_env, "status"), _cli(node_env, "status", "--json")]
    assert outputs[0].returncode == 0, outputs[0]
    assert json.loads(outputs[1].stdout)["primary"]["node"] == "node1"
    wrong = _cli({**node_env, "CONSUL_HTTP_TOKEN": "wrong-token-e2e-8"}, "status")
    assert wrong.returncode == 1 and "ACL" in wrong.stderr
    outputs.append(wrong)
    texts = [o.stdout + o.stderr for o in outputs] + [node.log_text() for node in cluster.nodes]
    texts += [p.read_text(errors="replace") for p in Path(cluster.workdir).rglob("*.log")]
    values = [*SECRETS.values(), "manta-key-line-e2e-4-abcdefgh", TOKEN, "wrong-token-e2e-8", REPL_PASSWORD,
              "app#Pass 2", "root#Pass 3"]
    for value in values:
        for text in texts:
            assert value not in text, f"{value!r} leaked"
