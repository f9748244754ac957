"""The cluster records (records.py): what lands in discovery, and reading it back.

Nodes of an older version read what a newer one writes (and the other way round during a rolling
upgrade), so the written fields are pinned here, not only the round trips.
"""
from __future__ import annotations

import pytest

from triton_mysql.discovery import DiscoveryError
from triton_mysql import records as r
from triton_mysql.keys import ClusterKeys, decode, encode

from tests.harness.memory_discovery import Clock, MemoryDiscovery

MEMBER_FIELDS = {"node", "address", "port", "server_id", "role", "gtid", "received_gtid", "binlog_state", "origin",
                 "candidate", "healthy", "lag_seconds", "snapshot_id", "updated", "read_only", "verdict", "errant",
                 "flavor"}


def member_record(**kw) -> r.MemberRecord:
    base = dict(node="a", address="10.0.0.1", port=3306, server_id=1, role="replica", gtid="0-1-5",
                received_gtid="0-1-7", binlog_state="0-1-5", origin="1", candidate=True, healthy=True,
                lag_seconds=0.0, snapshot_id="s1", updated=100.0, read_only=True, verdict=None, errant=None,
                flavor="mariadb")
    return r.MemberRecord(**{**base, **kw})


@pytest.mark.parametrize("record, written", [
    (r.Lock(node="a", address="10.0.0.1", port=3306, server_id=1, since=5.0, state=r.PROMOTING),
     {"node": "a", "address": "10.0.0.1", "port": 3306, "server_id": 1, "since": 5.0, "state": "promoting"}),
    (r.SwitchoverRequest(to="b", requested=7.0, source="a"),
     {"to": "b", "requested": 7.0, "from": "a", "kind": "planned"}),
    (r.SwitchoverRequest(to="b", requested=7.0, source="a", kind="maintenance", caught_up=False),
     {"to": "b", "requested": 7.0, "from": "a", "kind": "maintenance", "caught_up": False}),
    (r.FailoverRecord(source="a", to="b", at=9.0, kind="automatic", lost_possible=True, missing_gtids="0-1-9",
                      missing_count=1),
     {"from": "a", "to": "b", "at": 9.0, "kind": "automatic", "lost_possible": True, "missing_gtids": "0-1-9",
      "missing_count": 1}),
    (r.BootstrapClaim(node="a", at=3.0, session="s-a"), {"node": "a", "at": 3.0, "session": "s-a"}),
    (r.BootstrapClaim(node="a", at=3.0), {"node": "a", "at": 3.0}),
])
def test_what_is_written_and_read_back(record, written):
    assert record.to_record() == written
    if isinstance(record, r.Lock):
        assert r.Lock.from_record(decode(encode(written)), None, 0) == record
    else:
        assert type(record).from_record(decode(encode(written))) == record


def test_the_ready_state_is_the_default_of_a_lock_record_without_one():
    assert r.Lock.from_record({"node": "a"}, "s", 3).state == r.READY == "ready"


@pytest.mark.parametrize("case, kw", [
    ("replica", {}),
    ("mysqld down", dict(gtid=None, received_gtid=None, binlog_state=None, origin=None, read_only=None, flavor=None,
                         lag_seconds=None)),
    ("errant", dict(verdict={"kind": "errant", "gtids": "0-3-1", "against": "b", "at": 1.0}, errant="0-3-1",
                    candidate=False)),
    ("with sync", dict(role="primary", sync={"mode": "on", "status": "on"})),
])
def test_member_record_round_trip_and_fields(case, kw):
    record = member_record(**kw)
    written = record.to_record()
    assert set(written) == MEMBER_FIELDS | ({"sync"} if "sync" in kw else set()), case
    assert r.MemberRecord.from_record(decode(encode(written))) == record


def test_a_reader_interprets_a_published_member_record():
    written = member_record(gtid=None, received_gtid=None, binlog_state=None).to_record()
    member = r.Member.from_record(written, "s-a")
    assert (member.gtid, member.received_gtid, member.binlog_state, member.session) == ("", "", "", "s-a")
    applied = r.Member.from_record(member_record(received_gtid=None, binlog_state=None).to_record())
    assert applied.received_gtid == applied.binlog_state == "0-1-5"  # older records: fall back to gtid


def test_unknown_fields_of_a_newer_version_are_ignored():
    written = {**member_record().to_record(), "something_new": 1}
    assert r.MemberRecord.from_record(written) == member_record()


# -- the store against the in-memory discovery -----------------------------------

@pytest.fixture
def store():
    discovery = MemoryDiscovery(clock=Clock())
    return r.ClusterStore(discovery, ClusterKeys("svc/test"), clock=lambda: 42.0)


def test_lock_take_mark_ready_and_release(store):
    session, other = (store.discovery.create_session(n, 10) for n in ("a", "b"))
    lock = r.Lock(node="a", address="10.0.0.1", port=3306, server_id=1, since=1.0, state=r.PROMOTING)
    assert store.take_lock(session, lock)
    assert not store.take_lock(other, lock)
    held = store.held_lock()
    assert held is not None and (held.node, held.state, held.session) == ("a", r.PROMOTING, session)
    store.mark_ready(session, lock)
    assert store.held_lock().state == r.READY
    with pytest.raises(DiscoveryError):
        store.mark_ready(other, lock)
    assert store.release_lock(session)
    assert store.held_lock() is None


def test_member_publish_drop_and_stop(store):
    session = store.discovery.create_session("a", 10)
    assert store.publish_member(member_record(), session)
    assert decode(store.discovery.get(store.keys.member("a")).value) == member_record().to_record()
    assert store.node_record("a") == member_record().to_record()
    store.drop_member("a")
    assert store.discovery.get(store.keys.member("a")) is None
    store.mark_node_stopped("a", store.node_record("a"))
    assert store.node_record("a") == {**member_record().to_record(), "healthy": False, "stopped": 42.0}
    store.drop_node("a")
    assert store.node_record("a") is None


def test_switchover_request_only_if_none_and_clear(store):
    request = r.SwitchoverRequest(to="b", requested=1.0, source="a")
    assert store.request_switchover(request, only_if_none=True)
    assert not store.request_switchover(request, only_if_none=True)
    assert store.request_switchover(r.SwitchoverRequest(to="c", requested=2.0, source="a", kind="maintenance"))
    kv = store.discovery.get(store.keys.switchover)
    assert r.SwitchoverRequest.from_record(decode(kv.value)).to == "c"
    assert store.clear_switchover()
    assert store.discovery.get(store.keys.switchover) is None


def test_bootstrap_claim_and_failover_record(store):
    session = store.discovery.create_session("a", 10)
    assert store.claim_bootstrap(r.BootstrapClaim(node="a", at=1.0, session=session))
    assert not store.claim_bootstrap(r.BootstrapClaim(node="b", at=2.0, session=session))
    assert store.bootstrap_claim() == r.BootstrapClaim(node="a", at=1.0, session=session)
    store.record_failover(r.FailoverRecord(source="a", to="b", at=3.0, kind="planned"))
    kv = store.discovery.get(store.keys.failover_last)
    assert r.FailoverRecord.from_record(decode(kv.value)) == r.FailoverRecord(source="a", to="b", at=3.0,
                                                                              kind="planned")


def test_server_ids_skip_known_nodes(store):
    store.discovery.put(store.keys.node("a"), encode({"node": "a", "server_id": 1}))
    assert store.allocate_server_id() == 2
    assert store.allocate_server_id(avoid=frozenset({3})) == 4
