"""Table tests of the semi-sync rule (ha/decide.py `decide_sync`): when the source side is on, and its timeout."""
from __future__ import annotations

import pytest

from triton_mysql.ha import decide as d

SYNC_MS = 10_000
NEVER = 4294967295


def facts(mode="semi", primary=True, enabled=False, clients=0, caught_up=0, waiting=0, acked=False):
    return d.SyncFacts(mode=mode, primary=primary, source_enabled=enabled, clients=clients, caught_up=caught_up,
                       wait_sessions=waiting, acknowledged=acked)


@pytest.mark.parametrize("case, f, enabled, timeout, phase", [
    # SYNC_REPLICATION=off: never on (turned off if it was)
    ("off", facts("off"), False, SYNC_MS, d.SYNC_OFF),
    ("off, was on", facts("off", enabled=True), False, SYNC_MS, d.SYNC_OFF),
    ("off, was on, a commit waits: hold", facts("off", enabled=True, waiting=1), True, SYNC_MS, d.SYNC_HOLD),
    # a replica never has the source side on (its applier would wait for ACKs)
    ("replica", facts(primary=False, clients=1, caught_up=1), False, SYNC_MS, d.SYNC_REPLICA),
    ("demoted primary, source still on", facts(primary=False, enabled=True), False, SYNC_MS, d.SYNC_REPLICA),
    ("demoted, strict, source on", facts("strict", primary=False, enabled=True, acked=True), False, SYNC_MS,
     d.SYNC_REPLICA),
    ("demoted, commits wait: never released", facts(primary=False, enabled=True, waiting=3), True, SYNC_MS,
     d.SYNC_HOLD),
    # a lone primary waits for a replica (bootstrap, first snapshot, after a failover)
    ("lone primary", facts(), False, SYNC_MS, d.SYNC_WAITING),
    ("lone primary, strict", facts("strict"), False, SYNC_MS, d.SYNC_WAITING),
    ("replica connected, not caught up", facts(clients=1, caught_up=0), False, SYNC_MS, d.SYNC_WAITING),
    ("async replica caught up, no semi-sync client", facts(clients=0, caught_up=1), False, SYNC_MS,
     d.SYNC_WAITING),
    ("replica connected and caught up", facts(clients=1, caught_up=1), True, SYNC_MS, d.SYNC_ON),
    ("two replicas, one caught up", facts(clients=2, caught_up=1), True, SYNC_MS, d.SYNC_ON),
    ("strict: on with the timeout until a replica acknowledged", facts("strict", clients=1, caught_up=1),
     True, SYNC_MS, d.SYNC_ON),
    # once on, the primary keeps it on: the server falls back and comes back by itself
    ("on, replicas gone (semi falls back by itself)", facts(enabled=True), True, SYNC_MS, d.SYNC_ON),
    ("on, commits waiting", facts(enabled=True, clients=1, waiting=4), True, SYNC_MS, d.SYNC_ON),
    ("strict, on, not yet acknowledged", facts("strict", enabled=True, clients=1), True, SYNC_MS, d.SYNC_ON),
    ("strict, acknowledged: never falls back", facts("strict", enabled=True, clients=1, acked=True), True, NEVER,
     d.SYNC_STRICT),
    ("strict, acknowledged, replicas gone: still never", facts("strict", enabled=True, acked=True, waiting=2),
     True, NEVER, d.SYNC_STRICT),
    ("semi ignores 'acknowledged'", facts("semi", enabled=True, acked=True), True, SYNC_MS, d.SYNC_ON),
])
def test_decide_sync(case, f, enabled, timeout, phase):
    plan = d.decide_sync(f, SYNC_MS, NEVER)
    assert (plan.source_enabled, plan.timeout_ms, plan.phase) == (enabled, timeout, phase), case
    assert plan.reason


def test_never_turned_off_under_waiting_commits_whatever_the_mode():
    for mode in ("semi", "strict", "off"):
        for primary in (True, False):
            plan = d.decide_sync(facts(mode, primary=primary, enabled=True, clients=1, waiting=1), SYNC_MS, NEVER)
            assert plan.source_enabled, (mode, primary)


def test_a_primary_never_turns_the_source_side_on_without_a_caught_up_replica():
    for mode in ("semi", "strict"):
        for clients, caught_up in ((0, 0), (1, 0), (0, 1), (0, 2)):
            plan = d.decide_sync(facts(mode, clients=clients, caught_up=caught_up), SYNC_MS, NEVER)
            assert not plan.source_enabled, (mode, clients, caught_up)
