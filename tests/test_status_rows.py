"""`status` rows show what the evidence supports (pure: built from a hand-made ClusterView).

- a member record older than SESSION_TTL is `stale` (with its age), never healthy;
- the lock holder's row is `primary` as soon as the header names it;
- a node whose record still says `primary` without the lock is `fenced`;
- sizes use the same unit as `backup` and `snapshots`.
"""
from __future__ import annotations

from triton_mysql.backup.progress import human_bytes
from triton_mysql.view import PROMOTING, READY, ClusterView, Lock, Member
from triton_mysql.hooks.status import build, render
from triton_mysql.records import FailoverRecord

NOW = 1_000_000.0
TTL = 10.0


def member(node: str, role: str, age: float = 1.0, healthy: bool = True) -> Member:
    return Member(node=node, address=f"10.0.0.{ord(node[-1]) % 200}", port=3306, server_id=ord(node[-1]),
                  role=role, gtid="0-1-9", received_gtid="0-1-9", candidate=role == "replica", healthy=healthy,
                  lag_seconds=0.0 if role == "replica" else None, snapshot_id=None, updated=NOW - age)


def lock(node: str, state: str = READY) -> Lock:
    return Lock(node=node, address="10.0.0.1", port=3306, server_id=1, since=NOW - 30, session="s", index=7,
                state=state)


def view(members: list[Member], holder: Lock | None, nodes: dict | None = None,
         snapshot: dict | None = None) -> ClusterView:
    return ClusterView(now=NOW, lock=holder, members={m.node: m for m in members}, nodes=nodes or {},
                       bootstrap=None, bootstrap_index=0, switchover=None, switchover_index=0,
                       failover_last=None, snapshot_last=snapshot, snapshot_lock=None)


def rows(status: dict) -> dict[str, dict]:
    return {n["node"]: n for n in status["nodes"]}


def test_a_record_older_than_the_ttl_is_stale_and_not_healthy():
    """A crashed primary: its lock and record are still there, but the record stopped changing."""
    status = build(view([member("n1", "primary", age=TTL + 2.5), member("n2", "replica"),
                         member("n3", "replica")], lock("n1")), TTL)
    n1 = rows(status)["n1"]
    assert n1["role"] == "stale" and n1["stale"] is True and n1["healthy"] is False
    assert n1["last_role"] == "primary" and n1["last_seen_ago"] == TTL + 2.5 and n1["holds_lock"] is True
    assert n1["lag_seconds"] is None and n1["candidate"] is False
    assert [rows(status)[n]["role"] for n in ("n2", "n3")] == ["replica", "replica"]
    table = render(status, "t")
    line = next(line for line in table.splitlines() if line.startswith("n1"))
    assert line.split()[2] == "stale" and "12s ago" in line and " no " in line


def test_a_record_exactly_at_the_ttl_is_still_fresh():
    status = build(view([member("n1", "replica", age=TTL)], None), TTL)
    assert rows(status)["n1"]["role"] == "replica" and rows(status)["n1"]["healthy"] is True


def test_without_a_ttl_nothing_is_called_stale():
    status = build(view([member("n1", "replica", age=3600)], None))
    assert rows(status)["n1"]["stale"] is False


def test_the_lock_holder_row_is_primary_before_its_own_record_says_so():
    """Just promoted: the lock names n2 (ready), n2's record still says replica, n1's still says primary."""
    status = build(view([member("n1", "primary"), member("n2", "replica"), member("n3", "replica")],
                        lock("n2")), TTL)
    by = rows(status)
    assert status["primary"]["node"] == "n2"
    assert by["n2"]["role"] == "primary" and by["n2"]["holds_lock"] and by["n2"]["healthy"]
    assert by["n1"]["role"] == "fenced" and by["n1"]["healthy"] is False
    assert by["n3"]["role"] == "replica"
    assert sum(1 for n in status["nodes"] if n["role"] == "primary") == 1


def test_a_promoting_holder_is_shown_as_promoting_and_not_healthy():
    status = build(view([member("n2", "replica"), member("n3", "replica")], lock("n2", PROMOTING)), TTL)
    assert rows(status)["n2"]["role"] == PROMOTING and rows(status)["n2"]["healthy"] is False


def test_no_lock_means_no_primary_row():
    status = build(view([member("n1", "primary"), member("n2", "replica")], None), TTL)
    assert rows(status)["n1"]["role"] == "fenced"
    assert "primary: none" in render(status, "t")


def test_a_down_node_is_down_whatever_its_last_record_says():
    nodes = {"n9": {"node": "n9", "role": "primary", "address": "10.0.0.9", "port": 3306, "healthy": True,
                    "updated": NOW - 90}}
    status = build(view([member("n1", "primary")], lock("n1"), nodes=nodes), TTL)
    n9 = rows(status)["n9"]
    assert n9["role"] == "down" and n9["up"] is False and n9["stale"] is False and n9["healthy"] is False


def test_sizes_use_the_unit_of_backup_and_snapshots():
    snapshot = {"id": "mysql-20260101T000000Z", "created": "2026-01-01T00:00:00Z", "gtid": "0-1-9",
                "size": 5 * 2**20 + 2**19, "source_node": "n1", "sha256": "ab"}
    table = render(build(view([member("n1", "primary")], lock("n1"), snapshot=snapshot), TTL), "t")
    assert human_bytes(snapshot["size"]) == "5.5 MiB"
    assert "5.5 MiB" in table and " MB" not in table


def test_a_divergence_verdict_and_a_lossy_failover_are_said_in_the_table():
    verdict = {"kind": "tail", "gtids": "0-2-40-41", "against": "n1", "at": NOW - 5}
    nodes = {"n2": {"role": "replica", "verdict": verdict, "updated": NOW - 1}}
    v = view([member("n1", "primary"), member("n2", "replica")], lock("n1"), nodes=nodes)
    v = ClusterView(**{**v.__dict__, "failover_last": FailoverRecord(source="n2", to="n1", kind="automatic",
                                                                     at=NOW - 60, lost_possible=True,
                                                                     missing_gtids="0-2-40-41")})
    status = build(v, TTL)
    assert rows(status)["n2"]["verdict"] == verdict and rows(status)["n1"]["verdict"] is None
    table = render(status, "t")
    assert "n2 diverged from n1: tail 0-2-40-41" in table
    assert "writes may be lost (missing 0-2-40-41)" in table
    clean = render(build(view([member("n1", "primary")], lock("n1")), TTL), "t")
    assert "diverged" not in clean and "may be lost" not in clean
