"""The node name stays with the node's data (issue 14).

A container that compose re-creates on the same volume gets a new host name.
The name the node had is stored in its datadir (`node` in triton-mysql.json,
written by onStart): it replaces the host-name default; an explicit NODE_NAME
still wins.  The supervisor builds its service IDs before onStart runs, so it
applies the same rule.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.harness.procs import wait_for
from triton_mysql.config import Config, ConfigError
from triton_mysql.node_state import FILENAME
from triton_mysql.supervisor import config as supervisor_config

ROOT = Path(__file__).resolve().parent.parent
HOSTNAME = socket.gethostname().split(".")[0]


def store(datadir: Path, node: object) -> Path:
    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / FILENAME).write_text(json.dumps({"node": node, "server_id": 4, "origin": "restore"}))
    return datadir


def env(datadir: Path, **extra: str) -> dict[str, str]:
    return {"ETCD": "127.0.0.1:2379", "MYSQL_DATADIR": str(datadir), **extra}


def test_the_stored_name_replaces_the_host_name(tmp_path):
    datadir = store(tmp_path / "data", "mysql-old-1")
    assert Config.from_env(env(datadir)).node_name == "mysql-old-1"


def test_an_explicit_node_name_wins(tmp_path):
    datadir = store(tmp_path / "data", "mysql-old-1")
    assert Config.from_env(env(datadir, NODE_NAME="chosen")).node_name == "chosen"


def test_without_stored_state_the_host_name_is_the_default(tmp_path):
    assert Config.from_env(env(tmp_path / "missing")).node_name == HOSTNAME
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / FILENAME).write_text("{not json")
    assert Config.from_env(env(tmp_path / "bad")).node_name == HOSTNAME
    store(tmp_path / "unnamed", None)
    assert Config.from_env(env(tmp_path / "unnamed")).node_name == HOSTNAME


def test_an_invalid_stored_name_is_a_configuration_error(tmp_path):
    datadir = store(tmp_path / "data", "bad name/..")
    with pytest.raises(ConfigError) as exc:
        Config.from_env(env(datadir))
    assert exc.value.key == "NODE_NAME" and str(datadir) in exc.value.problem


def test_the_supervisor_builds_its_service_ids_from_the_same_name(tmp_path):
    datadir = store(tmp_path / "data", "mysql-old-1")
    cfg = supervisor_config.load(str(ROOT / "etc" / "containerbuddy.json"), env(datadir))
    assert cfg.node == "mysql-old-1"
    assert [s.id for s in cfg.services] == ["mysql-mysql-old-1"]
    cfg = supervisor_config.load(str(ROOT / "etc" / "containerbuddy.json"), env(datadir, NODE_NAME="chosen"))
    assert [s.id for s in cfg.services] == ["mysql-chosen"]
    cfg = supervisor_config.load(str(ROOT / "etc" / "containerbuddy.json"), env(tmp_path / "none"))
    assert cfg.node == HOSTNAME


def test_the_supervisor_reports_an_invalid_stored_name_as_node_name(tmp_path):
    datadir = store(tmp_path / "data", "bad name")
    with pytest.raises(supervisor_config.ConfigError) as exc:
        supervisor_config.load(str(ROOT / "etc" / "containerbuddy.json"), env(datadir))
    assert exc.value.key == "NODE_NAME"


@pytest.mark.slow
def test_a_restarted_node_without_node_name_keeps_its_name(cluster_factory, etcd_server):
    """The compose re-create case with real processes: started as node1, then again with no NODE_NAME
    (the default would be this machine's host name): it is node1 again, for the hooks and the supervisor."""
    cluster = cluster_factory({"ETCD": etcd_server.endpoint})
    (node,) = cluster.start(1)
    cluster.wait_for_primary(90)
    server_id = node.scalar("SELECT @@server_id")
    node.stop()
    node.extra_env["NODE_NAME"] = ""  # empty counts as unset
    node.start()
    try:
        wait_for(lambda: cluster.primary() is node, 90, interval=0.2, what="node1 primary again under its stored name")
        assert cluster.lock()["node"] == "node1"
        assert node.scalar("SELECT @@server_id") == server_id, "the restarted node got a new server_id"
        discovery, config = cluster.discovery()
        try:
            members = {kv.key.rsplit("/", 1)[-1] for kv in discovery.list(f"{config.kv_prefix}/members/")}
            nodes = {kv.key.rsplit("/", 1)[-1] for kv in discovery.list(f"{config.kv_prefix}/nodes/")}
            assert members == {"node1"} and nodes == {"node1"}, (members, nodes)
            # The supervisor's service instance (heartbeats only while health passes: on a loaded
            # machine a pass can time out now and then, so wait for one).
            wait_for(lambda: {i.id for i in discovery.healthy("mysql-primary")} == {"mysql-primary-node1"}, 60,
                     interval=0.2, what="the service instance mysql-primary-node1")
        finally:
            discovery.close()
        log = node.log_text()
        assert f"-{HOSTNAME}" not in log, "a service ID was built from the host name"
    except BaseException:
        print(cluster.dump_logs())
        raise
