"""Table tests of the pure HA decisions: one small case per transition (Patroni's test_ha style)."""
from __future__ import annotations

import dataclasses

import pytest

from triton_mysql.ha import decide as d
from triton_mysql.view import PROMOTING, READY, ClusterView, Lock, Member
from triton_mysql.discovery import Instance
from triton_mysql.records import BootstrapClaim, FailoverRecord, SwitchoverRequest

NOW = 1_000_000.0
TIMING = d.Timing(session_ttl=10, lock_expiry_max=20, stop_grace=10, failover_cooldown=0)
UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_B = "4f22ab58-82db-22f2-af44-d91bb0530673"

FORMATS = {
    # flavor: (behind, ahead, way ahead)
    "mariadb": ("0-1-90", "0-1-100", "0-1-120"),
    "mysql": (f"{UUID_A}:1-90", f"{UUID_A}:1-100", f"{UUID_A}:1-100,{UUID_B}:1-20"),
}


def lock(node="a", session="s-a", state=READY, since=NOW - 100, address="10.0.0.1", port=3306):
    return Lock(node=node, address=address, port=port, server_id=1, since=since, session=session, index=7, state=state)


def member(node, received="0-1-100", candidate=True, updated=NOW - 1, role="replica", address=None, applied=None,
           verdict=None):
    return Member(node=node, address=address or f"10.0.0.{ord(node[0]) - 96}", port=3306, server_id=None, role=role,
                  gtid=applied or received, received_gtid=received, candidate=candidate, healthy=True,
                  lag_seconds=0.0, snapshot_id=None, updated=updated, verdict=verdict)


def view(lock_=None, members=(), switchover=None, failover_last=None, healthy=None, bootstrap=None, nodes=None):
    """The tables write the records as discovery holds them; the view parses them as read_view does."""
    return ClusterView(now=NOW, lock=lock_, members={m.node: m for m in members}, nodes=nodes or {},
                       bootstrap=BootstrapClaim.from_record(bootstrap), bootstrap_index=0,
                       switchover=SwitchoverRequest.from_record(switchover), switchover_index=3,
                       failover_last=FailoverRecord.from_record(failover_last),
                       snapshot_last=None, snapshot_lock=None,
                       healthy_primaries=None if healthy is None else tuple(healthy))


def local(node="b", **kw):
    kw.setdefault("session", f"s-{node}")
    return d.Local(node=node, **kw)


def settled():
    """Election memory of an onChange that has been running long enough to have seen its peers."""
    return d.ElectionMemory(started=NOW - 60)


ERRANT_VS_A = d.Verdict(d.ERRANT, "0-3-5", "a")


# -- health -------------------------------------------------------------------

@pytest.mark.parametrize("case, v, me, action", [
    ("mysqld down", view(lock()), local("a", mysql_up=False), d.STARTING),
    ("holder, ready", view(lock()), local("a", read_only=True), d.PRIMARY),
    ("holder, writable", view(lock()), local("a", read_only=False), d.PRIMARY),
    ("holder, promotion under way", view(lock(state=PROMOTING, since=NOW - 5)), local("a"), d.WAIT_PROMOTION),
    ("holder, promotion abandoned (no onChange on it)", view(lock(state=PROMOTING, since=NOW - 600)), local("a"),
     d.ABANDON_PROMOTION),
    ("holder, switchover to b", view(lock(), [member("b")], switchover={"to": "b", "requested": NOW - 1}),
     local("a", read_only=False), d.HANDOVER),
    ("holder, stale switchover ignored", view(lock(), switchover={"to": "b", "requested": NOW - 3600}),
     local("a", read_only=False), d.PRIMARY),
    ("writable, lock held by other", view(lock("c", "s-c")), local("b", read_only=False), d.FENCE),
    ("writable, lock free", view(None), local("b", read_only=False), d.FENCE),
    ("writable, lock names me but old session", view(lock("b", "old")), local("b", read_only=False), d.FENCE),
    ("writable, discovery down", None, local("a", read_only=False), d.FENCE),
    ("read-only, discovery down", None, local("a", read_only=True), d.NO_DISCOVERY),
    ("replica, holder ready", view(lock()), local("b"), d.FOLLOW),
    ("replica, holder promoting", view(lock(state=PROMOTING)), local("b"), d.WAIT_PROMOTION),
    ("lock free", view(None), local("b"), d.NO_PRIMARY),
    ("lock free, bootstrap winner", view(None, bootstrap={"node": "b"}), local("b", bootstrap_pending=True),
     d.TAKE_BOOTSTRAP_LOCK),
    ("lock free, bootstrap key names another", view(None, bootstrap={"node": "c"}),
     local("b", bootstrap_pending=True), d.GIVE_WAY),
    ("lock free, bootstrap already done", view(None, bootstrap={"node": "b"}), local("b"), d.NO_PRIMARY),
    ("lock free, my claim expired while I stalled", view(None), local("b", bootstrap_pending=True),
     d.TAKE_BOOTSTRAP_LOCK),
    ("lock free, claim gone, another node's cluster has a snapshot",
     dataclasses.replace(view(None), snapshot_last={"id": "s", "source_node": "c"}),
     local("b", bootstrap_pending=True), d.GIVE_WAY),
    ("lock free, claim gone, the first snapshot is mine",
     dataclasses.replace(view(None), snapshot_last={"id": "s", "source_node": "b"}),
     local("b", bootstrap_pending=True), d.TAKE_BOOTSTRAP_LOCK),
    ("lock names me under a dead session", view(lock("b", "gone")), local("b", session="new"), d.NO_PRIMARY),
    ("no session at all", view(lock("b", "s-b")), local("b", session=None), d.NO_PRIMARY),
])
def test_decide_health(case, v, me, action):
    assert d.decide_health(v, me, TIMING).action == action, case


def test_a_new_cluster_turns_writable_only_once_its_first_snapshot_exists():
    """Issue 13 item 5: if the bootstrap winner dies before its first snapshot, another node bootstraps
    instead; no client write may have been acknowledged on the dead one's data."""
    winner = local("a", bootstrap_pending=True, read_only=True)
    no_snapshot = view(lock(), bootstrap={"node": "a", "session": "s-a"})
    decision = d.decide_health(no_snapshot, winner, TIMING)
    assert decision.action == d.BOOTSTRAP_SNAPSHOT
    assert d.verdict(decision, winner, 30)[0] is False  # not serving as primary yet
    snapshot = dataclasses.replace(no_snapshot, snapshot_last={"id": "mysql-20260101T000000Z"})
    assert d.decide_health(snapshot, winner, TIMING).action == d.PRIMARY
    # A holder past its bootstrap (or one an older version already made writable) is an ordinary primary.
    assert d.decide_health(no_snapshot, local("a", read_only=True), TIMING).action == d.PRIMARY
    assert d.decide_health(no_snapshot, local("a", bootstrap_pending=True, read_only=False), TIMING).action == \
        d.PRIMARY
    # Nor does onChange's election make it writable first (the lock is free before health takes it).
    assert d.decide_election(view(None, bootstrap={"node": "a"}), winner, TIMING).action == d.NOT_CANDIDATE


@pytest.mark.parametrize("case, v, action", [
    ("another node's claim", view(None, bootstrap={"node": "c"}), d.GIVE_WAY),
    ("another node's claim and lock", view(lock("c", "s-c"), bootstrap={"node": "c"}), d.GIVE_WAY),
    ("another node's first snapshot", dataclasses.replace(view(lock("c", "s-c")),
                                                          snapshot_last={"id": "s", "source_node": "c"}), d.GIVE_WAY),
    ("my own claim", view(None, bootstrap={"node": "b"}), d.TAKE_BOOTSTRAP_LOCK),
    ("my own first snapshot", dataclasses.replace(view(None, bootstrap={"node": "b"}),
                                                  snapshot_last={"id": "s", "source_node": "b"}), d.TAKE_BOOTSTRAP_LOCK),
])
def test_a_replaced_bootstrap_gives_way(case, v, action):
    """Its claim lapsed while it stalled and another node bootstrapped: its never-writable data goes
    (the next onStart moves it aside and clones), instead of sitting unhealthy for ever."""
    assert d.decide_health(v, local("b", bootstrap_pending=True, read_only=True), TIMING).action == action, case
    assert d.decide_health(v, local("b", read_only=True), TIMING).action != d.GIVE_WAY, case  # only if pending


def test_health_never_promotes_on_a_free_lock_even_when_most_advanced():
    v = view(None, [member("c", "0-1-10")])
    assert d.decide_health(v, local("b", received_gtid="0-1-99"), TIMING).action == d.NO_PRIMARY


# -- candidates -----------------------------------------------------------------

@pytest.mark.parametrize("kw, ok", [
    ({}, True),
    ({"io_running": False}, True),  # the primary is gone: the IO thread is expected to be down
    ({"sql_error": "Duplicate entry"}, False),
    ({"verdict": ERRANT_VS_A}, False),
    ({"verdict": d.Verdict(d.AHEAD, "0-1-9", "a")}, False),
    ({"maintenance": True}, False),
    ({"backup_running": True}, False),
    ({"nofailover": True}, False),
    ({"mysql_up": False}, False),
    ({"bootstrap_pending": True}, False),  # never writable through an election before the first snapshot
])
def test_is_candidate(kw, ok):
    assert d.is_candidate(local("b", **kw))[0] is ok


# -- election -------------------------------------------------------------------

@pytest.mark.parametrize("flavor", sorted(FORMATS))
def test_most_advanced_tries_first_others_wait(flavor):
    behind, ahead, way_ahead = FORMATS[flavor]
    v = view(None, [member("b", ahead), member("c", way_ahead)])
    c = d.decide_election(v, local("c", flavor=flavor, received_gtid=way_ahead), TIMING)
    b = d.decide_election(v, local("b", flavor=flavor, received_gtid=ahead), TIMING)
    assert c.action == d.TRY_NOW
    assert b.action == d.TRY_LATER and b.target == "c" and b.wait == TIMING.session_ttl


@pytest.mark.parametrize("flavor", sorted(FORMATS))
def test_tie_goes_to_the_lowest_node_name(flavor):
    _, ahead, _ = FORMATS[flavor]
    v = view(None, [member("b", ahead), member("c", ahead)])
    assert d.decide_election(v, local("b", flavor=flavor, received_gtid=ahead, gtid=ahead), TIMING).action == d.TRY_NOW
    assert d.decide_election(v, local("c", flavor=flavor, received_gtid=ahead, gtid=ahead),
                             TIMING).action == d.TRY_LATER


@pytest.mark.parametrize("flavor", sorted(FORMATS))
def test_tie_on_received_goes_to_the_most_applied(flavor):
    behind, ahead, _ = FORMATS[flavor]
    # b received as much as c but has applied less: its relay log is longer, c wins the tie.
    v = view(None, [member("b", ahead, applied=behind), member("c", ahead, applied=ahead)])
    assert d.decide_election(v, local("c", flavor=flavor, received_gtid=ahead, gtid=ahead), TIMING).action == d.TRY_NOW
    b = d.decide_election(v, local("b", flavor=flavor, received_gtid=ahead, gtid=behind), TIMING)
    assert b.action == d.TRY_LATER and b.target == "c"


@pytest.mark.parametrize("contenders, order", [
    ({"a": ("0-1-100", "0-1-100"), "b": ("0-1-120", "0-1-90"), "c": ("0-1-110", "0-1-110")}, ["b", "c", "a"]),
    ({"a": (f"{UUID_A}:1-100", ""), "b": (f"{UUID_A}:1-90,{UUID_B}:1-5", ""),
      "c": (f"{UUID_A}:1-100,{UUID_B}:1-5", "")}, ["c", "a", "b"]),
    # c has the most transactions but contains nobody: a contains b, so a is ahead of b and comes first
    ({"a": (f"{UUID_A}:1-100", ""), "b": (f"{UUID_A}:1-50", ""), "c": (f"{UUID_B}:1-200", "")}, ["a", "c", "b"]),
])
def test_rank_by_containment(contenders, order):
    flavor = "mysql" if ":" in contenders["a"][0] else "mariadb"
    assert d.rank(flavor, contenders) == order


def test_a_best_candidate_that_does_not_win_is_passed_over_by_the_next_best_only():
    v = view(None, [member("a", "0-1-130"), member("b", "0-1-120"), member("c", "0-1-110")])
    memory_b, memory_c = settled(), settled()
    b = d.decide_election(v, local("b", received_gtid="0-1-120"), TIMING, memory_b)
    c = d.decide_election(v, local("c", received_gtid="0-1-110"), TIMING, memory_c)
    assert (b.action, b.target, c.action, c.target) == (d.TRY_LATER, "a", d.TRY_LATER, "a")
    memory_b.deferred["a"] = memory_c.deferred["a"] = NOW - TIMING.session_ttl  # a had its SESSION_TTL
    b = d.decide_election(v, local("b", received_gtid="0-1-120"), TIMING, memory_b)
    c = d.decide_election(v, local("c", received_gtid="0-1-110"), TIMING, memory_c)
    assert b.action == d.TRY_NOW and "a did not take the lock" in b.reason
    assert c.action == d.TRY_LATER and c.target == "b"


def test_an_empty_view_does_not_make_a_node_rank_itself_first():
    # Discovery was wiped: no member record of any peer.  Wait one publish interval first.
    early = d.decide_election(view(None), local("b", received_gtid="0-1-5"), TIMING, d.ElectionMemory(started=NOW))
    assert early.action == d.TRY_LATER and early.wait == pytest.approx(TIMING.peer_publish_wait)
    later = d.ElectionMemory(started=NOW - TIMING.peer_publish_wait)
    assert d.decide_election(view(None), local("b", received_gtid="0-1-5"), TIMING, later).action == d.TRY_NOW
    # once a peer has published, its record decides
    v = view(None, [member("c", "0-1-9")])
    assert d.decide_election(v, local("b", received_gtid="0-1-5"), TIMING,
                             d.ElectionMemory(started=NOW)).target == "c"


def test_stale_or_non_candidate_members_do_not_block():
    v = view(None, [member("c", "0-1-500", updated=NOW - 60), member("d", "0-1-900", candidate=False)])
    assert d.decide_election(v, local("b", received_gtid="0-1-10"), TIMING, settled()).action == d.TRY_NOW


def test_received_position_counts_not_executed():
    # b executed less but received more (relay log not applied yet): b is more advanced.
    v = view(None, [member("c", "0-1-100")])
    me = local("b", gtid="0-1-80", received_gtid="0-1-110")
    assert d.decide_election(v, me, TIMING).action == d.TRY_NOW


def test_non_candidate_waits_for_a_winner():
    assert d.decide_election(view(None), local("b", nofailover=True), TIMING).action == d.NOT_CANDIDATE
    assert d.decide_election(view(None), local("b", verdict=ERRANT_VS_A), TIMING).action == d.NOT_CANDIDATE


def test_live_holder_is_followed():
    v = view(lock("a", "s-a"), [member("a", role="primary")])
    decision = d.decide_election(v, local("b"), TIMING)
    assert decision.action == d.FOLLOW and decision.target == "a"


def test_live_holder_found_through_the_primary_service():
    v = view(lock("a", "s-a"), [member("a", updated=NOW - 60)],
             healthy=[Instance(id="mysql-primary-a", name="mysql-primary", address="10.0.0.1", port=3306)])
    assert d.decide_election(v, local("b"), TIMING).action == d.FOLLOW


def test_dead_holder_waits_for_expiry():
    v = view(lock("a", "s-a"), [member("a", updated=NOW - 60)], healthy=[])
    decision = d.decide_election(v, local("b"), TIMING)
    assert decision.action == d.WAIT_LOCK_CHANGE and 0 < decision.wait <= TIMING.session_ttl


def test_frozen_holder_with_a_fresh_member_record_is_not_followed():
    # onChange runs because the primary service vanished; the holder's member record is
    # still fresh (it froze a second ago): following it would end onChange for good.
    v = view(lock("a", "s-a"), [member("a", updated=NOW - 1)], healthy=[])
    assert d.decide_election(v, local("b"), TIMING).action == d.WAIT_LOCK_CHANGE


def test_promoting_holder_is_not_followed_yet():
    v = view(lock("c", "s-c", state=PROMOTING), [member("c")])
    assert d.decide_election(v, local("b"), TIMING).action == d.WAIT_LOCK_CHANGE


def test_holder_is_primary():
    assert d.decide_election(view(lock("b", "s-b")), local("b"), TIMING).action == d.IS_PRIMARY


def test_planned_target_goes_first_others_defer():
    v = view(None, [member("b", "0-1-10"), member("c", "0-1-99")],
             switchover={"to": "b", "requested": NOW - 1})
    assert d.decide_election(v, local("b", received_gtid="0-1-10"), TIMING).action == d.TRY_NOW
    c = d.decide_election(v, local("c", received_gtid="0-1-99"), TIMING)
    assert c.action == d.TRY_LATER and c.target == "b" and c.wait >= TIMING.stop_grace


def test_cooldown_refuses_automatic_failover_but_not_planned():
    timing = d.Timing(session_ttl=10, lock_expiry_max=20, stop_grace=10, failover_cooldown=300)
    recent = {"from": "a", "to": "c", "at": NOW - 100, "kind": "automatic"}
    v = view(None, [member("b")], failover_last=recent)
    decision = d.decide_election(v, local("b"), timing)
    assert decision.action == d.REFUSE_COOLDOWN and 199 <= decision.wait <= 200
    planned_last = {**recent, "kind": "planned"}
    assert d.decide_election(view(None, failover_last=planned_last), local("b"), timing,
                             settled()).action == d.TRY_NOW
    v2 = view(None, failover_last=recent, switchover={"to": "b", "requested": NOW})
    assert d.decide_election(v2, local("b"), timing).action == d.TRY_NOW
    old = {**recent, "at": NOW - 1000}
    assert d.decide_election(view(None, failover_last=old), local("b"), timing, settled()).action == d.TRY_NOW


# -- verdict --------------------------------------------------------------------

@pytest.mark.parametrize("decision, me, healthy", [
    (d.Decision(d.PRIMARY, ""), local("a", read_only=False), True),
    (d.Decision(d.PRIMARY, ""), local("a", read_only=True), False),
    (d.Decision(d.FOLLOW, ""), local("b", io_running=True, sql_running=True, lag_seconds=0.0), True),
    (d.Decision(d.FOLLOW, ""), local("b", io_running=False, sql_running=True, lag_seconds=0.0), False),
    (d.Decision(d.FOLLOW, ""), local("b", io_running=True, sql_running=True, lag_seconds=31.0), False),
    (d.Decision(d.FOLLOW, ""), local("b", io_running=True, sql_running=True, lag_seconds=None), False),
    (d.Decision(d.FENCE, "x"), local("a"), False),
    (d.Decision(d.NO_PRIMARY, "x"), local("b"), False),
])
def test_verdict(decision, me, healthy):
    assert d.verdict(decision, me, max_lag=30)[0] is healthy


# -- health: verdicts, purged binlogs, maintenance -----------------------------------

@pytest.mark.parametrize("case, me, action", [
    ("errant against the holder", local("b", verdict=ERRANT_VS_A), d.REFUSE),
    ("errant, AUTO_RECLONE", local("b", verdict=ERRANT_VS_A, auto_reclone=True), d.RECLONE),
    ("lost tail, AUTO_RECLONE", local("b", verdict=d.Verdict(d.TAIL, "0-2-7", "a"), auto_reclone=True), d.RECLONE),
    ("ahead is never re-cloned", local("b", verdict=d.Verdict(d.AHEAD, "0-9-7", "a"), auto_reclone=True), d.REFUSE),
    ("verdict against another primary: compare again", local("b", verdict=d.Verdict(d.ERRANT, "0-3-5", "x")),
     d.FOLLOW),
    ("binlogs purged on the holder", local("b", source=("10.0.0.1", 3306), io_errno=1236,
                                           io_error="Could not find GTID state requested by slave in any binlog "
                                                    "files. Probably the slave state is too old and required "
                                                    "binlog files have been purged."), d.REFUSE),
    ("binlogs purged, AUTO_RECLONE", local("b", source=("10.0.0.1", 3306), io_errno=1236, auto_reclone=True,
                                           io_error="... have been purged."), d.RECLONE),
    ("1236 from an old source is not ours to judge", local("b", source=("10.0.0.9", 3306), io_errno=1236,
                                                           io_error="... purged"), d.FOLLOW),
])
def test_replica_verdicts(case, me, action):
    assert d.decide_health(view(lock("a", "s-a")), me, TIMING).action == action, case


@pytest.mark.parametrize("case, v, me, action, target", [
    ("primary hands over to the best candidate", view(lock("a", "s-a"), [member("b", "0-1-9"), member("c", "0-1-99")]),
     local("a", read_only=False, maintenance=True), d.HANDOVER, "c"),
    ("a named target wins", view(lock("a", "s-a"), [member("b"), member("c")], switchover={"to": "b",
                                                                                            "requested": NOW}),
     local("a", read_only=False, maintenance=True), d.HANDOVER, "b"),
    ("primary with nobody to hand over to", view(lock("a", "s-a")), local("a", read_only=False, maintenance=True),
     d.RELEASE, None),
    ("promotion interrupted by maintenance", view(lock("a", "s-a", state=PROMOTING)),
     local("a", maintenance=True), d.RELEASE, None),
    ("writable replica in maintenance fences", view(lock("a", "s-a")), local("b", read_only=False, maintenance=True),
     d.FENCE, None),
    ("writable without any lock", view(None), local("b", read_only=False, maintenance=True), d.FENCE, None),
    ("read-only replica idles", view(lock("a", "s-a")), local("b", maintenance=True), d.MAINTENANCE, None),
])
def test_maintenance(case, v, me, action, target):
    decision = d.decide_health(v, me, TIMING)
    assert (decision.action, decision.target) == (action, target), case


def test_maintenance_never_takes_the_bootstrap_lock_or_stands():
    me = local("b", maintenance=True, bootstrap_pending=True)
    assert d.decide_health(view(None, bootstrap={"node": "b"}), me, TIMING).action == d.MAINTENANCE
    assert d.decide_election(view(None), me, TIMING, settled()).action == d.NOT_CANDIDATE


@pytest.mark.parametrize("case, target, requested, refused", [
    ("fresh candidate", "b", NOW - 1, None),
    ("unknown node", "x", NOW - 1, "not a candidate"),
    ("did not catch up in STOP_GRACE", "b", NOW - 11, "abandoned"),
])
def test_handover_refusal(case, target, requested, refused):
    v = view(lock("a", "s-a"), [member("b")], switchover={"to": target, "requested": requested})
    why = d.handover_refusal(v, target, TIMING)
    assert (why is None) if refused is None else (refused in why), case


# -- after winning --------------------------------------------------------------------

def test_previous_primary_prefers_the_holder_seen_then_the_most_recent_primary_record():
    nodes = {"a": {"node": "a", "role": "primary", "updated": NOW - 30},
             "c": {"node": "c", "role": "primary", "updated": NOW - 3}}
    v = view(None, [member("a", updated=NOW - 2)], nodes=nodes,
             failover_last={"from": "x", "to": "a", "at": NOW - 100, "kind": "automatic"})
    assert d.previous_primary(v, "b", "a")["updated"] == NOW - 2  # the newest record of a
    assert d.previous_primary(v, "b", None)["node"] == "c"      # c published as primary last
    assert d.previous_primary(view(None, nodes=nodes), "b", None)["node"] == "c"
    assert d.previous_primary(view(None), "b", None) is None
    assert d.previous_primary(view(None), "b", "b") is None
    # this node was the last primary: an older primary's stale record does not count
    old = {"b": {"node": "b", "role": "primary", "updated": NOW - 5}, "x": {"node": "x", "role": "primary",
                                                                           "updated": NOW - 900}}
    assert d.previous_primary(view(None, nodes=old), "b", None) is None
    recent_failover = view(None, nodes={"x": old["x"]}, failover_last={"to": "b", "at": NOW - 60})
    assert d.previous_primary(recent_failover, "b", None) is None


def test_self_fenced_at_counts_from_the_last_renewal():
    assert d.self_fenced_at({"updated": NOW - 20}, TIMING, NOW) == NOW - 20 + TIMING.fence_bound
    assert d.self_fenced_at({"node": "a"}, TIMING, NOW) == NOW + TIMING.fence_bound
    # A normal expiry (SESSION_TTL after the last renewal) is always past the bound: no extra wait.
    assert TIMING.fence_bound <= TIMING.session_ttl


def test_loss_report():
    nodes = {"a": {"node": "a", "gtid": "0-1-140", "received_gtid": "0-1-140"},
             "x": {"node": "x", "gtid": "0-7-999", "verdict": {"kind": "errant"}}}
    v = view(None, [member("c", "0-1-120")], nodes=nodes)
    report = d.loss_report("mariadb", v, "b", "0-1-130", planned=False)
    assert report == {"lost_possible": True, "missing_gtids": "0-1-140", "missing_count": 10}
    assert d.loss_report("mariadb", view(None, [member("c", "0-1-120")]), "b", "0-1-130", planned=True) == {
        "lost_possible": False, "missing_gtids": "", "missing_count": 0}
    assert d.loss_report("mariadb", view(None), "b", "0-1-130", planned=False)["lost_possible"] is True


# -- the member record health publishes ----------------------------------------

PRIMARY_D, FENCE_D = d.Decision(d.PRIMARY, ""), d.Decision(d.FENCE, "")


@pytest.mark.parametrize("case, decision, me, pending, role", [
    ("mysqld down", PRIMARY_D, local("a", mysql_up=False), False, "starting"),
    ("maintenance", d.Decision(d.MAINTENANCE, ""), local("a", maintenance=True), False, "maintenance"),
    ("primary, writable", PRIMARY_D, local("a", read_only=False), False, "primary"),
    ("bootstrap lock, writable", d.Decision(d.TAKE_BOOTSTRAP_LOCK, ""), local("a", read_only=False), False,
     "primary"),
    ("primary, still read-only", PRIMARY_D, local("a", read_only=True), False, "fenced"),
    ("fencing", FENCE_D, local("a", read_only=False), False, "fenced"),
    ("handing over", d.Decision(d.HANDOVER, ""), local("a", source=("10.0.0.2", 3306)), False, "fenced"),
    ("released", d.Decision(d.RELEASE, ""), local("a"), False, "fenced"),
    ("abandoned promotion", d.Decision(d.ABANDON_PROMOTION, ""), local("a"), False, "fenced"),
    ("replicating", d.Decision(d.FOLLOW, ""), local("b", source=("10.0.0.1", 3306)), False, "replica"),
    ("bootstrap pending, no source", d.Decision(d.BOOTSTRAP_SNAPSHOT, ""), local("a"), True, "starting"),
    ("no source, lock free", d.Decision(d.NO_PRIMARY, ""), local("b"), False, "fenced"),
])
def test_member_role(case, decision, me, pending, role):
    assert d.member_role(decision, me, pending) == role, case


@pytest.mark.parametrize("role, me, candidate", [
    ("replica", local("b"), True),
    ("fenced", local("b"), True),
    ("primary", local("a", read_only=False), False),
    ("starting", local("b"), False),
    ("replica", local("b", nofailover=True), False),
])
def test_only_read_only_roles_publish_a_candidate(role, me, candidate):
    assert d.publishes_candidate(role, me) is candidate


@pytest.mark.parametrize("action, maintenance, withdrawn", [
    (d.MAINTENANCE, True, True),
    (d.FENCE, True, True),
    (d.HANDOVER, True, False),  # the hand-over needs the primary's record until the target took over
    (d.FENCE, False, False),
])
def test_a_node_in_maintenance_withdraws_its_member_record(action, maintenance, withdrawn):
    assert d.withdraws_member(d.Decision(action, ""), local("a", maintenance=maintenance)) is withdrawn


@pytest.mark.parametrize("case, v, session, pending, renews", [
    ("claim of this session, lock free", view(bootstrap={"node": "a", "session": "s-a"}), "s-a", True, True),
    ("lock bound to the same session", view(lock(), bootstrap={"node": "a", "session": "s-a"}), "s-a", True, False),
    ("another session's claim", view(bootstrap={"node": "a", "session": "s-x"}), "s-a", True, False),
    ("bootstrap finished", view(bootstrap={"node": "a", "session": "s-a"}), "s-a", False, False),
    ("no session", view(bootstrap={"node": "a", "session": "s-a"}), None, True, False),
])
def test_renews_bootstrap_claim(case, v, session, pending, renews):
    assert d.renews_bootstrap_claim(v, session, pending) is renews, case


@pytest.mark.parametrize("case, v, holds", [
    ("ready lock of this session", view(lock()), True),
    ("promoting", view(lock(state=PROMOTING)), False),
    ("another session", view(lock(session="s-old")), False),
    ("free", view(None), False),
])
def test_holds_ready_lock(case, v, holds):
    assert d.holds_ready_lock(v, local("a")) is holds, case


# -- hand-over targets --------------------------------------------------------------

@pytest.mark.parametrize("case, v, target", [
    ("named by a request", view(lock(), [member("b", "0-1-90"), member("c")], switchover={"to": "b", "requested": NOW}),
     "b"),
    ("no request: best peer", view(lock(), [member("b", "0-1-90"), member("c")]), "c"),
    ("a request naming the primary itself", view(lock(), [member("b")], switchover={"to": "a", "requested": NOW}), "b"),
    ("an expired request", view(lock(), [member("b", "0-1-90"), member("c")],
                                switchover={"to": "b", "requested": NOW - 3600}), "c"),
    ("nobody", view(lock(), [member("b", candidate=False)]), None),
])
def test_handover_target(case, v, target):
    assert d.handover_target(v, local("a", read_only=False), TIMING) == target, case


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_switchover_candidates_rank_with_the_published_flavor(flavor):
    behind, ahead, _ = FORMATS[flavor]
    members = [dataclasses.replace(member("a", ahead, role="primary"), flavor=flavor),
               dataclasses.replace(member("b", behind), flavor=flavor),
               dataclasses.replace(member("c", ahead), flavor=flavor),
               member("d", ahead, updated=NOW - 3600), member("e", ahead, candidate=False)]
    v = view(lock("a"), members)
    assert d.cluster_flavor(v) == flavor
    assert d.switchover_candidates(v, TIMING) == ["c", "b"]
    assert d.why_not_switchover_target(v, "d", TIMING) == "its member record is stale"
    assert d.why_not_switchover_target(v, "e", TIMING).startswith("not a candidate")
    assert d.why_not_switchover_target(v, "z", TIMING) == "unknown node"


def test_cluster_flavor_defaults_to_mariadb():
    assert d.cluster_flavor(view(lock(), [member("b")])) == "mariadb"


def test_election_memory_remembers_when_it_started_deferring():
    memory = d.ElectionMemory(started=NOW)
    memory.remember(d.Decision(d.TRY_LATER, "", target="c"), NOW)
    memory.remember(d.Decision(d.TRY_LATER, "", target="c"), NOW + 5)
    memory.remember(d.Decision(d.TRY_NOW, "", target="b"), NOW + 5)
    assert memory.deferred == {"c": NOW}


def test_timings_derived_from_the_config():
    assert TIMING.switchover_wait == 10 + 2 * 20 + 15
    assert TIMING.peer_read_timeout == TIMING.discovery_timeout + 1


# -- the winner's promotion ------------------------------------------------------------

@pytest.mark.parametrize("case, previous, source, expected", [
    ("known previous primary", {"node": "a", "address": "10.0.0.1", "port": 3306}, ("10.0.0.9", 3306),
     {"node": "a", "address": "10.0.0.1", "port": 3306}),
    ("wiped discovery: the source was it", None, ("10.0.0.9", 3307),
     {"node": "10.0.0.9:3307", "address": "10.0.0.9", "port": 3307}),
    ("a name without an address", {"node": "a"}, ("10.0.0.9", 3306),
     {"node": "a", "address": "10.0.0.9", "port": 3306}),
    ("not replicating", None, None, None),
])
def test_previous_or_source(case, previous, source, expected):
    assert d.previous_or_source(previous, source) == expected, case


def test_apply_target_adds_the_fenced_primary_s_last_transactions_only_when_it_is_the_source():
    previous = {"node": "a", "address": "10.0.0.1", "port": 3306}
    assert d.apply_target("mariadb", "0-1-100", "0-1-105", previous, ("10.0.0.1", 3306)) == "0-1-105"
    assert d.apply_target("mariadb", "0-1-100", "0-1-105", previous, ("10.0.0.2", 3306)) == "0-1-100"
    assert d.apply_target("mariadb", "0-1-100", None, previous, ("10.0.0.1", 3306)) == "0-1-100"


@pytest.mark.parametrize("switchover, planned, caught_up", [
    ({"to": "b", "requested": NOW}, True, True),
    ({"to": "b", "requested": NOW, "caught_up": False}, True, False),
    (None, True, True),
    ({"to": "b", "requested": NOW}, False, False),
])
def test_failover_caught_up(switchover, planned, caught_up):
    assert d.failover_caught_up(view(None, switchover=switchover), planned) is caught_up


@pytest.mark.parametrize("switchover, maintenance, names", [
    (None, True, True),
    ({"to": "c", "requested": NOW}, True, True),
    ({"to": "b", "requested": NOW}, True, False),
    (None, False, False),  # a `switchover` command's request is written by the command itself
])
def test_a_primary_in_maintenance_names_its_target(switchover, maintenance, names):
    assert d.names_handover_target(view(lock(), switchover=switchover), maintenance, "b") is names
