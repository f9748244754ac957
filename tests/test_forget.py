"""`triton-mysql forget NODE` against real etcd and the Consul double (both via `discovery_server`).

The command runs as an operator runs it: the installed console script, with
only the discovery variables set.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from triton_mysql.discovery import ServiceSpec
from triton_mysql.keys import encode

TRITON = str(Path(sys.executable).parent / "triton-mysql")


def forget(server, node: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "CONSUL", "ETCD", "NODE_NAME"))}
    full.update(server.env(), SESSION_TTL="10", **env)
    return subprocess.run([TRITON, "forget", node], env=full, capture_output=True, text=True, timeout=60)


def status(server) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "CONSUL", "ETCD"))}
    env.update(server.env())
    result = subprocess.run([TRITON, "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def record(node: str, updated: float, role: str = "replica") -> bytes:
    return encode({"node": node, "address": "10.0.0.9", "port": 3306, "server_id": 9, "role": role,
                   "gtid": "0-1-5", "received_gtid": "0-1-5", "candidate": True, "healthy": True,
                   "lag_seconds": 0.0, "snapshot_id": None, "updated": updated})


def spec(name: str, node: str) -> ServiceSpec:
    return ServiceSpec(id=f"{name}-{node}", name=name, address="10.0.0.9", port=3306, ttl=30)


def test_forget_removes_a_down_node_and_what_it_left(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    d.put(f"{root}/nodes/gone", record("gone", time.time() - 3600))
    d.put(f"{root}/nodes/other", record("other", time.time() - 3600))
    d.put(f"{root}/switchover", encode({"to": "gone", "requested": time.time()}))
    # Service instances it left (Consul keeps critical ones for a while; here they even pass).
    for name in ("mysql", "mysql-primary"):
        d.register_service(spec(name, "gone"))
        d.heartbeat(spec(name, "gone"))
    assert [i.id for i in d.healthy("mysql")] == ["mysql-gone"]
    assert "gone" in {n["node"] for n in status(discovery_server)["nodes"]}

    result = forget(discovery_server, "gone")
    assert result.returncode == 0, result.stderr
    assert "forgot gone" in result.stdout
    assert d.get(f"{root}/nodes/gone") is None
    assert d.get(f"{root}/nodes/other") is not None, "another down node was touched"
    assert d.get(f"{root}/switchover") is None, "the switchover request naming it is left"
    assert d.healthy("mysql") == [] and d.healthy("mysql-primary") == []
    assert {n["node"] for n in status(discovery_server)["nodes"]} == {"other"}


def test_forget_refuses_a_live_node(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    session = d.create_session("alive", discovery_server.min_session_ttl * 5)
    d.put(f"{root}/members/alive", record("alive", time.time()), session=session)
    d.put(f"{root}/nodes/alive", record("alive", time.time()))
    result = forget(discovery_server, "alive")
    assert result.returncode == 1
    assert "refusing to forget alive: it is alive" in result.stderr, result.stderr
    assert d.get(f"{root}/members/alive") is not None and d.get(f"{root}/nodes/alive") is not None


def test_forget_refuses_the_lock_holder_even_with_a_stale_record(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    session = d.create_session("holder", discovery_server.min_session_ttl * 5)
    assert d.acquire(f"{root}/primary", encode({"node": "holder", "address": "10.0.0.9", "port": 3306,
                                                 "server_id": 9, "since": time.time()}), session)
    d.put(f"{root}/nodes/holder", record("holder", time.time() - 3600, role="primary"))
    result = forget(discovery_server, "holder")
    assert result.returncode == 1 and "holds the primary lock" in result.stderr, result.stderr
    assert d.get(f"{root}/nodes/holder") is not None


def test_forget_removes_a_stale_member_record_and_its_session(discovery_server):
    """A node that stopped publishing (record older than SESSION_TTL) while its session lives on."""
    d = discovery_server.client()
    root = discovery_server.kv_root()
    session = d.create_session("frozen", discovery_server.min_session_ttl * 30)
    d.put(f"{root}/members/frozen", record("frozen", time.time() - 600), session=session)
    d.put(f"{root}/nodes/frozen", record("frozen", time.time() - 600))
    result = forget(discovery_server, "frozen")
    assert result.returncode == 0, result.stderr
    assert "members/frozen (stale)" in result.stdout
    assert d.get(f"{root}/members/frozen") is None and d.get(f"{root}/nodes/frozen") is None
    assert not d.renew_session(session), "the forgotten node's session is still alive"


def test_forget_an_unknown_node_is_an_error(discovery_server):
    result = forget(discovery_server, "nobody")
    assert result.returncode == 1
    assert "no node nobody" in result.stderr
