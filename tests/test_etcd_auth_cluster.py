"""A real node on etcd with TLS, client certificates and auth: the role limited to the cluster's
prefix covers everything the hooks and the supervisor write (records, services, snapshot lock)."""
from __future__ import annotations

import stat
from pathlib import Path

from tests.harness.etcd import EtcdServer
from tests.harness.procs import wait_for
from tests.harness.tls import TestCA
from triton_mysql.discovery import TOKEN_CACHE_NAME

USER, PASSWORD = "triton", "etcd#Cluster 6"
PREFIX = "/prod"


def test_a_node_runs_with_an_etcd_role_limited_to_its_prefix(cluster_factory, tmp_path):
    ca = TestCA(tmp_path / "ca")
    etcd = EtcdServer(tmp_path / "etcd", ca=ca, client_cert_auth=True).start()
    try:
        etcd.add_user(USER, PASSWORD, PREFIX + "/")
        etcd.enable_auth()
        # One authentication (bcrypt) must fit in DISCOVERY_TIMEOUT, on a loaded machine too.
        env = {"ETCD_PREFIX": PREFIX, "ETCD_USER": USER, "ETCD_PASSWORD": PASSWORD,
               "DISCOVERY_TIMEOUT": "2", "SESSION_TTL": "10"}
        cluster = cluster_factory({**etcd.env()}, env=env)
        node = cluster.start(1)[0]
        primary = cluster.wait_for_primary(timeout=120)
        assert primary is node
        wait_for(lambda: cluster.record("snapshots/last"), 60, what="the first snapshot recorded")
        # The service lives under <prefix>/services, written by the supervisor with the same role.
        d, _config = cluster.discovery()
        try:
            wait_for(lambda: d.healthy("mysql-primary"), 30, what="mysql-primary listed")
        finally:
            d.close()
        cache = Path(node.env()["MYSQL_CNF"]).parent / TOKEN_CACHE_NAME
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        log = node.log_text()
        assert "permission denied" not in log and PASSWORD not in log
        # Nothing outside the prefix was written (the role could not have, and nothing tried).
        outside = etcd.etcdctl("get", "", "--prefix", "--keys-only").stdout.split()
        assert outside and all(key.startswith(PREFIX + "/") for key in outside), outside
    finally:
        etcd.stop()
