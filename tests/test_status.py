"""`triton-mysql status` on a running cluster, and JSON logs through a failover (issue 9)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cluster import Cluster, Node
from tests.harness.procs import wait_for

pytestmark = pytest.mark.slow
TRITON = str(Path(sys.executable).parent / "triton-mysql")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z (DEBUG|INFO|WARNING|ERROR) ")


def status(node: Node, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in node.env().items() if not k.startswith("MYSQL_REPL")}  # status needs no repl account
    return subprocess.run([TRITON, "status", *args], env=env, capture_output=True, text=True, timeout=30)


def table_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    rows = {}
    for line in lines[header + 1:]:
        if not line.strip() or line.startswith(("newest snapshot", "last failover", "snapshot running",
                                                "switchover")):
            break
        cells = line.split()
        name = cells[0]
        rows[name] = cells[1:] if cells[1] != "*" else cells[2:]
    return rows


def check_json_matches_table(node: Node) -> dict:
    table = status(node)
    as_json = status(node, "--json")
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    data = json.loads(as_json.stdout)
    assert set(data) >= {"primary", "nodes", "last_snapshot"}
    rows = table_rows(table.stdout)
    assert set(rows) == {n["node"] for n in data["nodes"]}
    for entry in data["nodes"]:
        assert rows[entry["node"]][0] == entry["role"], (rows, entry)
        if entry["address"]:
            assert f"{entry['address']}:{entry['port']}" in rows[entry["node"]]
    if data["primary"] is None:
        assert "primary: none" in table.stdout
    else:
        assert f"primary: {data['primary']['node']}" in table.stdout
    return data


def test_status_and_json_logs_through_a_failover(cluster_factory, etcd_server):
    cluster: Cluster = cluster_factory({"ETCD": etcd_server.endpoint}, env={"LOG_FORMAT": "json"})
    nodes = cluster.start(3)
    primary = cluster.wait_for_primary(90)
    replicas = [n for n in nodes if n is not primary]
    for node in replicas:
        cluster.wait_replicating(node, primary, 90)
    wait_for(lambda: cluster.record("snapshots/last"), 60, what="a snapshot")

    def settled() -> dict | None:
        data = json.loads(status(replicas[0], "--json").stdout)
        roles = sorted(n["role"] for n in data["nodes"])
        return data if roles == ["primary", "replica", "replica"] and all(n["healthy"] for n in data["nodes"]) \
            else None

    data = wait_for(settled, 30, what="every node healthy in status")
    assert data["primary"]["node"] == primary.name
    assert data["last_snapshot"]["id"]
    check_json_matches_table(replicas[0])

    # A planned failover: the old primary is shown as down, the new one as primary.
    primary.stop()
    new = cluster.wait_for_primary(30, exclude=primary)
    data = wait_for(lambda: (d := check_json_matches_table(new)) and d["primary"] and d["primary"]["node"] == new.name
                    and {n["node"]: n["role"] for n in d["nodes"]}.get(primary.name) == "down" and d, 30,
                    what="status showing the failover")
    down = next(n for n in data["nodes"] if n["node"] == primary.name)
    assert down["up"] is False and down["last_seen"] is not None
    assert data["last_failover"]["to"] == new.name

    # Every line our processes wrote is one JSON object (mysqld's own lines are not ours).
    for node in nodes:
        ours = 0
        for line in node.log_text().splitlines():
            assert not TEXT_LINE.match(line), f"{node.name}: text log line with LOG_FORMAT=json: {line}"
            if line.startswith("{"):
                entry = json.loads(line)
                assert {"ts", "level", "component", "msg"} <= set(entry)
                ours += 1
        assert ours > 5, f"{node.name} wrote no JSON log lines"

    # No node running: no primary, every node down, still exit 0 and a clear display.
    cluster.stop_all()
    wait_for(lambda: cluster.lock() is None, 30, what="the lock to be gone")
    data = check_json_matches_table(new)
    assert data["primary"] is None
    assert {n["role"] for n in data["nodes"]} == {"down"}
