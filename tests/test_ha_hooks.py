"""The hooks' side of the HA rules, in-process: the real health pass, election and preStop against
fake MariaDB servers and an in-memory discovery on a fake clock (tests/harness/ha_world.py).

Each test is one compound fault of issue 13, checked in milliseconds through the sequence of
discovery writes and SQL; the end-to-end tests (test_compound_faults.py) make the same faults real.
"""
from __future__ import annotations

import inspect

import pytest

from tests.harness.ha_world import TTL, World
from triton_mysql.ha import act as act_module
from triton_mysql.ha.act import Agent


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


def test_a_replica_with_its_own_write_does_not_stand_even_with_no_primary_to_ask(world):
    """The errant check also runs before standing: against the last primary's published record."""
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    a.write(5)
    world.passes(2)
    b.write(1, force=True)                          # root on b bypassed read_only
    world.crash("a")
    world.elect(["b", "c"])
    assert world.lock()["node"] == "c"
    assert world.state("b").verdict["kind"] == "errant"
    assert world.writable() == ["c"]


def test_a_restarted_former_primary_with_a_lost_tail_re_clones_with_auto_reclone(tmp_path, monkeypatch):
    world = World(tmp_path, monkeypatch, AUTO_RECLONE="true")
    form(world)
    a = world.server("a")
    a.write(2)
    world.passes(1)
    a.io_blocked = True
    for name in ("b", "c"):
        world.server(name).io_blocked = True
    a.write(4)                                      # never leaves a
    world.crash("a")
    for name in ("b", "c"):
        world.server(name).io_blocked = False
    world.elect(["b", "c"])
    world.restart("a")
    world.passes(2)
    state = world.state("a")
    assert state.reclone and state.reclone["kind"] == "tail" and not a.up, "mysqld stopped for the re-clone"


def test_a_node_ahead_of_the_new_primary_is_never_re_cloned(tmp_path, monkeypatch):
    """c holds the old primary's last writes that the winner lacks (c was down during the election):
    it is ahead, not errant — AUTO_RECLONE must not throw them away."""
    world = World(tmp_path, monkeypatch, AUTO_RECLONE="true")
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    b.io_blocked = True
    a.write(6)                                      # only c receives these
    world.passes(1)
    world.crash("c")
    world.crash("a")
    world.elect(["b"])
    assert world.lock()["node"] == "b"
    world.restart("c")
    world.passes(2)
    assert world.state("c").verdict["kind"] == "ahead" and c.up and not world.state("c").reclone
    assert world.member("c")["candidate"] is False


def test_a_promotion_nobody_works_on_is_given_up_by_health(world):
    form(world)
    a = world.server("a")
    world.crash("a")
    world.clock.advance(11)                         # a's session and lock expire
    agent = world.agent("b")
    session = agent.session.ensure(agent.view())
    assert agent.acquire_lock(session, None, "promoting")  # then onChange was killed
    world.passes(40)
    assert world.lock() is None or world.lock()["node"] != "b" or world.lock()["state"] == "ready"
    assert ("release", "/triton-mysql/mysql/primary") in world.discovery.writes
    assert world.writable() == []


def test_a_planned_hand_over_closes_the_term_and_the_old_primary_rejoins_cleanly(world):
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    assert world.pre_stop("a") == 0
    world.elect(["b", "c"])
    new = world.lock()["node"]
    assert world.record("failover/last")["kind"] == "planned"
    assert world.record("failover/last")["lost_possible"] is False
    world.passes(3)
    assert not world.state("a").term_open and world.state("a").verdict is None
    assert a.source == (world.server(new).address, 3306)


def test_a_former_primary_that_rejoins_through_on_change_then_writes_alone_is_errant_not_a_lost_tail(world):
    """CI once saw this as a lost tail: the restarted primary followed the new one from onChange, and
    its term stayed open until the next health pass; a write made alone in that window was counted
    as its term's tail.  Following closes the term, so the write is errant (and named so)."""
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    world.crash("a")
    world.elect(["b", "c"])
    new = world.lock()["node"]
    world.restart("a")
    assert world.on_change("a") == 0                 # onChange follows the new primary ...
    assert a.source == (world.server(new).address, 3306)
    assert not world.state("a").term_open            # ... and the old term ends there
    world.restart("a")                               # stopped, started alone, an admin writes
    a.write(1, force=True)
    world.passes(2)
    verdict = world.state("a").verdict
    assert verdict and verdict["kind"] == "errant" and verdict["against"] == new
    assert world.member("a")["candidate"] is False


# -- preStop's branches (hooks/pre_stop.py) ---------------------------------------------------------

PRIMARY_KEY = "/triton-mysql/mysql/primary"


def since(world: World, mark: int, server: str) -> list[str]:
    """What `server` ran after journal position `mark`, reads left out ("user: statement")."""
    return [stmt for srv, stmt in world.net.journal[mark:] if srv == server]


def test_pre_stop_without_discovery_fences_the_primary(world):
    """preStop on the primary while discovery cannot be reached: it can neither name a target nor
    release the lock, so it leaves the lock to expire — but a stopping primary must not stay
    writable meanwhile: it is fenced, and preStop still exits 0 (the stop goes on)."""
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    mark, writes = len(world.net.journal), len(world.discovery.writes)
    assert world.pre_stop("a", discovery_down=True) == 0
    assert a.read_only and world.writable() == []
    assert "root: SET GLOBAL read_only = ON" in since(world, mark, "a")
    assert world.discovery.writes[writes:] == [], "discovery was unreachable: nothing was written"
    assert world.lock()["node"] == "a"             # left to expire with a's session


def test_pre_stop_fences_a_writable_primary_whose_lock_lapsed(world):
    """The supervisor stopped the health passes, and the primary's session expired before preStop
    ran (a slow stop, a stalled node): the lock is gone while mysqld is still writable.  There is
    nothing to hand over, but it must never be left writable without the lock."""
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    world.background = False                        # no health pass of anyone in between
    world.clock.advance(TTL + 1)                    # every session lapses, a's lock with it
    assert world.lock() is None and not a.read_only
    mark, writes = len(world.net.journal), len(world.discovery.writes)
    assert world.pre_stop("a") == 0
    assert a.read_only and world.writable() == []
    assert "root: SET GLOBAL read_only = ON" in since(world, mark, "a")
    assert world.discovery.writes[writes:] == [], "not the holder: no hand-over, no switchover record"


def test_pre_stop_hands_over_after_stop_grace_and_the_target_reports_possible_loss(world):
    """The hand-over target's SQL thread is held (a long statement, a lock) and never applies the
    primary's last writes within STOP_GRACE: preStop releases the lock anyway (the stop cannot wait
    for ever) and says so in the `switchover` record; the target, once it applies and wins, reports
    `lost_possible` in `failover/last` although nothing it knows of is missing."""
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    c.io_blocked = True                             # c receives nothing more: b is the best target
    a.write(5)
    world.passes(1)
    b.sql_held = True                               # b receives, but applies nothing from here on
    a.write(4)
    world.passes(1)
    assert b.seq == 5 and len(b.relay) == 4
    start, writes = world.clock(), len(world.discovery.writes)
    assert world.pre_stop("a") == 0
    assert world.clock() - start >= world.agent("a").timing.stop_grace
    assert b.seq == 5, "b caught up: the test no longer exercises the grace running out"
    request = world.record("switchover")
    assert request["to"] == "b" and request["caught_up"] is False
    assert ("release", PRIMARY_KEY) in world.discovery.writes[writes:] and world.lock() is None
    world.crash("a")                                # the supervisor stops mysqld after preStop
    b.sql_held = False
    c.io_blocked = False
    world.elect(["b", "c"])
    assert world.lock()["node"] == "b" and world.writable() == ["b"] and b.seq == 9
    report = world.record("failover/last")
    assert report["kind"] == "planned" and report["missing_gtids"] == ""
    assert report["lost_possible"] is True, "the target never confirmed it had everything"


def test_a_planned_hand_over_fences_before_releasing_and_never_has_two_writable(world):
    """The order that keeps a planned stop safe, in one journal of SQL and discovery writes: the
    primary turns read-only, then releases the lock, and only then does the target turn writable;
    replayed statement by statement, no moment has two writable servers."""
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    assert world.writable() == ["a"]
    mark = len(world.net.journal)
    assert world.pre_stop("a") == 0
    world.elect(["b", "c"])
    new = world.lock()["node"]
    assert new in ("b", "c") and world.writable() == [new]
    journal = world.net.journal[mark:]
    fenced = journal.index(("a", "root: SET GLOBAL read_only = ON"))
    released = journal.index(("discovery", f"release {PRIMARY_KEY}"))
    writable = journal.index((new, "root: SET GLOBAL read_only = OFF"))
    assert fenced < released < writable
    on = {"a"}                                      # writable when the hand-over began
    for server, stmt in journal:
        if stmt.endswith("SET GLOBAL read_only = OFF"):
            on.add(server)
        elif stmt.endswith("SET GLOBAL read_only = ON"):
            on.discard(server)
        assert len(on) <= 1, f"two writable: {sorted(on)}"


# -- the per-node hook lock (Agent.exclusive) -------------------------------------------------------

FENCING = ("root: SET SESSION lock_wait_timeout", "root: SET GLOBAL read_only = ON", "root: KILL")


def test_a_health_pass_changes_nothing_while_another_hook_holds_the_node_lock(world):
    """health and onChange take one lock per node so that they never change mysqld at the same time.
    A replica restarted with its threads stopped needs replication started; while another hook (an
    onChange in the middle of its step) holds the lock, the health pass sends nothing that changes
    mysqld and reports unhealthy; the next pass, with the lock free, does the work."""
    form(world)
    b = world.server("b")
    world.restart("b")                              # read-only, replication threads stopped
    world.background = False
    mark = len(world.net.journal)
    with world.agent("b").exclusive(timeout=0) as held:
        assert held
        assert world.health("b") == 1
    assert since(world, mark, "b") == [], "a health pass changed mysqld under another hook's lock"
    assert not b.io_running and not b.sql_running
    assert world.health("b") == 0
    assert "root: START SLAVE" in since(world, mark, "b") and b.io_running and b.sql_running


def test_a_health_pass_fences_even_while_another_hook_holds_the_node_lock(world):
    """The one change that does not wait for the node lock: a primary whose lock lapsed (its
    session expired while its passes were stalled) fences itself in the very next pass, even when
    another hook of the node holds the lock at that moment."""
    form(world)
    a = world.server("a")
    a.write(2)
    world.passes(1)
    world.background = False
    world.clock.advance(TTL + 1)                    # a's session and lock expire, a still writable
    assert world.lock() is None and not a.read_only
    mark = len(world.net.journal)
    with world.agent("a").exclusive(timeout=0) as held:
        assert held
        world.health("a")
    changes = since(world, mark, "a")
    assert a.read_only and "root: SET GLOBAL read_only = ON" in changes
    assert all(stmt.startswith(FENCING) for stmt in changes), f"more than fencing under the lock: {changes}"


# -- fencing under semi-sync (ha/act.py Agent.fence) --------------------------------------------------

@pytest.mark.parametrize("mode, hard", [("semi", True), ("strict", True), ("off", False)])
def test_fencing_stops_mysqld_hard_only_with_semi_sync(tmp_path, monkeypatch, mode, hard):
    """With semi-sync a commit waiting for an acknowledgement must not be committed by a clean
    shutdown: when fencing through SQL fails, mysqld is SIGKILLed (`hard_stop`); with
    SYNC_REPLICATION=off a clean stop is right.  A lone writable node fences itself in preStop
    without discovery; the fencing function must get `hard_stop` from SYNC_REPLICATION."""
    world = World(tmp_path, monkeypatch, SYNC_REPLICATION=mode)
    a = world.add("a", server_id=1)
    a.read_only = False
    calls = []
    real = act_module.fence_server

    def recording(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(bound.arguments["hard_stop"])
        return real(*args, **kwargs)

    monkeypatch.setattr(act_module, "fence_server", recording)
    assert world.pre_stop("a", discovery_down=True) == 0
    assert calls == [hard] and a.read_only


# -- split decisions ---------------------------------------------------------------------------------

def test_two_candidates_that_each_rank_themselves_first_race_and_exactly_one_wins(world, monkeypatch):
    """Both replicas restarted mysqld at once (a rolling change) while the primary was stopped: with
    no candidate, preStop released the lock.  Their last member records were published while mysqld
    was down (not candidates), so when onChange runs, on the same view, each ranks itself first and
    both try for the lock.  Exactly one takes it; the other follows it and never turns writable."""
    form(world)
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    a.write(4)
    world.passes(1)
    b.up = c.up = False
    world.health("b")                               # their passes publish: mysqld down, not candidates
    world.health("c")
    assert not world.member("b")["candidate"] and not world.member("c")["candidate"]
    assert world.pre_stop("a") == 0 and world.lock() is None   # nobody to hand over to
    world.crash("a")
    world.restart("b")
    world.restart("c")
    attempts = []
    take = Agent.acquire_lock

    def acquire(agent, session, server, state):
        won = take(agent, session, server, state)
        attempts.append((agent.config.node_name, won))
        return won

    monkeypatch.setattr(Agent, "acquire_lock", acquire)
    mark = len(world.net.journal)
    world.elect(["b", "c"], together=True)
    assert sorted(name for name, _ in attempts) == ["b", "c"], f"not a race: {attempts}"
    winners = [name for name, won in attempts if won]
    assert len(winners) == 1
    winner = winners[0]
    loser = "c" if winner == "b" else "b"
    assert world.lock()["node"] == winner and world.writable() == [winner]
    assert not any(stmt.endswith("read_only = OFF") for stmt in since(world, mark, loser))
    world.server(winner).write(3)
    world.passes(2)
    follower = world.server(loser)
    assert follower.source == (world.server(winner).address, 3306) and follower.io_running
    assert follower.seq == world.server(winner).seq == 7


def test_a_primary_fenced_by_a_short_discovery_outage_turns_writable_again_under_the_same_lock(world):
    """README: when discovery comes back and the holder's session survived, the holder turns writable
    again (no election, no failover recorded); while it could not read discovery it was read-only."""
    form(world)
    a = world.server("a")
    key = "/triton-mysql/mysql/primary"
    session = world.discovery.get(key).session
    failover = world.record("failover/last")
    assert world.health("a", discovery_down=True) == 1    # the pass that cannot read discovery fences
    assert a.read_only and world.writable() == []
    world.passes(2)                                        # discovery answers again within SESSION_TTL
    assert world.writable() == ["a"]
    assert world.discovery.get(key).session == session and world.lock()["node"] == "a"
    assert world.record("failover/last") == failover


def test_a_write_in_flight_when_the_primary_froze_is_named_as_its_lost_tail(world):
    """README: a frozen primary is writable from waking until its first health pass; a write that was
    in flight when it froze may commit then.  It is this node's lost tail (written in its term, never
    replicated): the waking pass fences, the node refuses to follow the new primary and names it."""
    form(world)
    a = world.server("a")
    a.write(3)
    world.passes(1)
    world.stopping.add("a")                   # frozen: no health pass, no heartbeat, mysqld unreachable
    world.crash("a")
    world.elect(["b", "c"])
    new = world.lock()["node"]
    world.server(new).write(2)
    world.passes(1)
    a.up = True                               # wakes writable: the in-flight commit lands first
    assert not a.read_only
    tail = a.write(1)
    world.stopping.discard("a")
    world.health("a")                         # its first pass fences
    assert a.read_only
    world.passes(2)
    verdict = world.state("a").verdict
    assert verdict and verdict["kind"] == "tail" and verdict["against"] == new
    assert f"0-{tail[0][0]}-{tail[0][1]}" in verdict["gtids"]
    assert world.member("a")["candidate"] is False
    assert world.writable() == [new]


def test_every_health_pass_passes_the_keepalive_check_whatever_its_verdict(world):
    """README (Consul sessions): the session is bound to a keepalive check of the node's own, which
    every health pass that reads discovery passes right before renewing, healthy or not: an unhealthy
    replica keeps its session, only a node whose hooks stop running loses it."""
    form(world)
    b = world.server("b")
    b.sql_error, b.sql_running = "Duplicate entry (test)", False   # b is unhealthy from now on
    world.discovery.keepalive_passes.clear()
    start = world.clock()
    for _ in range(3):
        assert world.health("b") == 1
        world.idle(1.0)
    passes = [t for t, keepalive in world.discovery.keepalive_passes if keepalive.endswith("-keepalive-b")]
    assert len(passes) >= 3 and passes[0] >= start
    assert all(later - earlier <= 1.0 for earlier, later in zip(passes, passes[1:]))


def test_the_hooks_keep_no_state_in_temporary_files(world, tmp_path, monkeypatch):
    """README/ARCHITECTURE: state lives in discovery, the database and the datadir, never in temp files
    that can go stale (the ancestor's /tmp files did).  A whole failover leaves the temp dir empty."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    form(world)
    world.server("a").write(3)
    world.passes(1)
    assert world.pre_stop("a") == 0
    world.elect(["b", "c"])
    world.passes(3)
    assert list(scratch.iterdir()) == []
