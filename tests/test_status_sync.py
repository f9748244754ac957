"""`status` shows the semi-sync state per node and for the cluster (from the member records alone)."""
from __future__ import annotations

from triton_mysql.hooks import status as st
from triton_mysql.view import READY, ClusterView, Lock, Member

NOW = 2_000_000.0


def member(node: str, role: str) -> Member:
    return Member(node=node, address=f"10.0.0.{ord(node[-1]) - 96}", port=3306, server_id=1, role=role, gtid="0-1-5",
                  received_gtid="0-1-5", candidate=role == "replica", healthy=True, lag_seconds=0.0,
                  snapshot_id=None, updated=NOW - 1)


def view(syncs: dict[str, dict | None], down: tuple[str, ...] = ()) -> ClusterView:
    roles = {"a": "primary", "b": "replica", "c": "replica"}
    nodes = {n: {"node": n, "role": roles[n], "updated": NOW - 1, "address": f"10.0.0.{i}", "port": 3306,
                 **({"sync": syncs[n]} if syncs.get(n) is not None else {})}
             for i, n in enumerate(roles, 1)}
    members = {n: member(n, roles[n]) for n in roles if n not in down}
    lock = Lock(node="a", address="10.0.0.1", port=3306, server_id=1, since=NOW - 50, session="s", index=1,
                state=READY)
    return ClusterView(now=NOW, lock=lock, members=members, nodes=nodes, bootstrap=None, bootstrap_index=0,
                       switchover=None, switchover_index=0, failover_last=None, snapshot_last=None,
                       snapshot_lock=None)


def sync(status: str, phase: str, mode: str = "semi", since: float = NOW - 30, **extra) -> dict:
    return {"mode": mode, "status": status, "since": since, "phase": phase, "clients": 1, "waiting": 0, **extra}


def test_cluster_and_nodes_show_semisync_on():
    data = st.build(view({"a": sync("on", "on"), "b": sync("on", "replica"), "c": sync("off", "replica")}))
    assert data["sync"]["status"] == "on" and data["sync"]["replicas_on"] == ["b"]
    assert {n["node"]: n["sync"]["status"] for n in data["nodes"]} == {"a": "on", "b": "on", "c": "off"}
    text = st.render(data, "t")
    assert "semi-sync: on (semi) since 30s ago; replicas acknowledging: b" in text
    assert "SYNC" in next(line for line in text.splitlines() if line.startswith("NODE"))


def test_fallback_waiting_strict_and_off_are_told_apart():
    fallback = st.render(st.build(view({"a": sync("off", "on", waiting=2)})), "t")
    assert "semi-sync: OFF (semi), fell back to asynchronous since 30s ago" in fallback
    assert "2 commit(s) waiting" in fallback and "OFF (fallback)" in fallback
    waiting = st.render(st.build(view({"a": sync("off", "waiting", mode="strict")})), "t")
    assert "semi-sync: waiting for a replica to connect and catch up (strict)" in waiting
    strict = st.render(st.build(view({"a": sync("on", "strict", mode="strict")})), "t")
    assert "semi-sync: on (strict)" in strict and "on, strict" in strict
    off = st.render(st.build(view({"a": sync("off", "off", mode="off")})), "t")
    assert "semi-sync: off (SYNC_REPLICATION=off" in off


def test_no_sync_line_without_a_live_primary_record():
    data = st.build(view({"a": sync("on", "on")}, down=("a",)))
    assert data["sync"] is None and "semi-sync" not in st.render(data, "t")
    assert next(n for n in data["nodes"] if n["node"] == "a")["sync"] is None  # a down node's is stale
