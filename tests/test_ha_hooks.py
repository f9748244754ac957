"""The hooks' side of the HA rules, in-process: the real health pass, election and preStop against
fake MariaDB servers and an in-memory discovery on a fake clock (tests/harness/ha_world.py).

Each test is one compound fault of issue 13, checked in milliseconds through the sequence of
discovery writes and SQL; the end-to-end tests (test_compound_faults.py) make the same faults real.
"""
from __future__ import annotations

import pytest

from tests.harness.ha_world import World


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    return World(tmp_path, monkeypatch)


def form(world: World, names=("a", "b", "c")) -> None:
    """Three nodes, `a` elected primary, the others replicating from it and caught up."""
    for i, name in enumerate(names, start=1):
        world.add(name, server_id=i)
    world.passes(2)
    world.elect(list(names))
    world.passes(3)
    assert world.lock()["node"] == names[0] and world.writable() == [names[0]]
    for name in names[1:]:
        assert world.server(name).source == (world.server(names[0]).address, 3306)


def test_a_cluster_forms_and_replicates(world):
    form(world)
    world.server("a").write(5)
    world.passes(2)
    assert world.server("b").seq == world.server("c").seq == 5
    assert world.state("a").term_open and world.state("a").terms[0]["from"] == ""


def test_an_errant_former_primary_never_wins_the_next_election(world):
    """Bug 1: A writes what never replicates, dies; B is promoted and writes; A comes back and is
    refused; then B dies.  A has more transactions by count, yet C (with B's writes) must win."""
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    a.write(3)
    world.passes(1)
    a.write(20)                      # never replicated
    world.crash("a")
    world.elect(["b", "c"])
    new = world.lock()["node"]
    assert new in ("b", "c")
    survivor = "c" if new == "b" else "b"
    world.server(new).write(5)
    world.passes(2)
    assert world.server(survivor).seq == world.server(new).seq
    # A comes back: its tail is lost writes, it refuses to replicate and says why
    world.restart("a")
    world.passes(2)
    verdict = world.state("a").verdict
    assert verdict and verdict["kind"] == "tail" and verdict["against"] == new
    assert world.member("a")["candidate"] is False
    assert a.source is None or not a.io_running
    # the new primary dies: A (seq 23 by count) must not win; the survivor with B's writes does
    world.crash(new)
    world.elect(["a", survivor])
    assert world.lock()["node"] == survivor
    assert world.writable() == [survivor]
    assert world.state("a").verdict["kind"] == "tail"


def test_a_lagging_winner_applies_its_whole_relay_log_before_turning_writable(world):
    """Bug 2: b received everything but applies slowly; c applied less and received less.  b wins
    (it contains c) and turns writable only with an empty relay log; nothing acknowledged is lost."""
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    b.apply_rate = 2                               # a slow SQL thread: 2 transactions per step
    c.io_blocked = True                            # c stopped receiving early
    a.write(40)
    world.net.replicate()
    world.crash("a")
    assert len(b.relay) > 30 and c.seq < b.seq + len(b.relay)
    world.elect(["b", "c"])
    assert world.lock()["node"] == "b"
    assert b.relay == [] and b.seq == 40, "writable with an unapplied relay log"
    turned = [i for i, (srv, stmt) in enumerate(world.net.journal) if srv == "b" and "read_only = OFF" in stmt]
    assert turned and all(stmt != "root: STOP SLAVE" for srv, stmt in world.net.journal[turned[0]:] if srv == "b")
    c.io_blocked = False
    world.passes(3)
    assert c.seq == 40 and world.writable() == ["b"]
    assert world.record("failover/last")["lost_possible"] is True  # asynchronous: a may have had more


def test_a_winner_whose_sql_thread_stalls_gives_the_lock_up_and_the_next_one_reports_the_loss(world):
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    c.io_blocked = True
    b.sql_held = True                              # b's SQL thread makes no progress at all
    a.write(10)
    world.net.replicate()
    world.crash("a")
    world.elect(["b", "c"])
    assert world.lock()["node"] == "c"
    assert "b" not in world.writable() and world.writable() == ["c"]
    report = world.record("failover/last")
    assert report["lost_possible"] is True and report["missing_gtids"] == "0-1-10"


def test_maintenance_on_the_primary_hands_over_and_never_leaves_two_writable(world):
    """Bug 3: SIGUSR1 on the primary used to stop its health passes while it stayed writable."""
    form(world)
    a = world.server("a")
    a.write(7)
    world.passes(1)
    world.set_maintenance("a", True)
    world.health("a")                               # fences, names the best candidate, hands over
    assert a.read_only
    assert world.record("switchover")["to"] in ("b", "c")
    world.elect(["b", "c"])
    new = world.lock()["node"]
    assert new in ("b", "c") and world.writable() == [new]
    assert world.server(new).seq == 7
    world.passes(3 * 10)                            # a stays out while in maintenance
    assert world.writable() == [new] and world.member("a") is None
    world.set_maintenance("a", False)
    world.passes(3)
    assert a.source == (world.server(new).address, 3306) and a.read_only


def test_after_a_discovery_wipe_the_old_primary_is_read_only_before_anyone_turns_writable(world):
    """Bug 13: the lock vanished before its TTL while a was writable."""
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    world.background = False                        # a's own health pass does not run in between
    world.discovery.wipe()
    world.elect(["b", "c"])
    new = world.lock()["node"]
    assert new in ("b", "c") and a.read_only
    fenced = next(i for i, (srv, stmt) in enumerate(world.net.journal)
                  if srv == "a" and stmt == "repl: SET GLOBAL read_only = ON")
    writable = next(i for i, (srv, stmt) in enumerate(world.net.journal)
                    if srv == new and stmt == "root: SET GLOBAL read_only = OFF" and i > fenced - 1000)
    assert fenced < writable


def test_an_unreachable_previous_primary_is_waited_out(world):
    form(world)
    a = world.server("a")
    world.passes(1)
    world.background = False
    world.discovery.wipe()
    a.repl_can_fence = False                        # reachable but refuses (no READ ONLY ADMIN)
    start = world.clock()
    world.elect(["b", "c"])
    timing = world.agent("b").timing
    assert world.clock() - start >= timing.fence_bound - 1
