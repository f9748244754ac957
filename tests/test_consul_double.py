"""Pins each Consul semantic the double implements (tests/harness/consul_double.py),
through py-consul (what the backend sends) and through raw HTTP (what Consul answers)."""
from __future__ import annotations

import base64
import json
import threading
import time

import consul
import pytest
import requests

from tests.harness.procs import wait_for

FAST = pytest.mark.consul_double(min_session_ttl=1, blocking_jitter=False)


def _raw(double, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, double.url + path, timeout=5, **kwargs)


def _session(c, name="s", ttl=None, **kwargs) -> str:
    return c.session.create(name=name, ttl=ttl, **kwargs)


def _raw_session(double, **body) -> requests.Response:
    return _raw(double, "PUT", "/v1/session/create", data=json.dumps(body))


# -- KV --------------------------------------------------------------------

def test_kv_entry_fields_base64_and_indexes(consul_double):
    c = consul_double.client()
    assert c.kv.put("a/b", b"\x00\xffbin", flags=7)
    idx, entry = c.kv.get("a/b")
    assert entry["Value"] == b"\x00\xffbin" and entry["Flags"] == 7 and entry["LockIndex"] == 0
    assert entry["CreateIndex"] == entry["ModifyIndex"] == int(idx)
    assert "Session" not in entry
    c.kv.put("a/b", b"v2")
    _, updated = c.kv.get("a/b")
    assert updated["CreateIndex"] == entry["CreateIndex"] and updated["ModifyIndex"] > entry["ModifyIndex"]
    r = _raw(consul_double, "GET", "/v1/kv/a/b")
    assert r.status_code == 200 and r.headers["X-Consul-Index"] == str(updated["ModifyIndex"])
    assert r.json()[0]["Value"] == base64.b64encode(b"v2").decode()
    r = _raw(consul_double, "GET", "/v1/kv/a/b?raw")
    assert r.content == b"v2"


def test_kv_missing_key_is_404_with_an_index(consul_double):
    r = _raw(consul_double, "GET", "/v1/kv/missing")
    assert r.status_code == 404 and int(r.headers["X-Consul-Index"]) >= 1
    idx, entry = consul_double.client().kv.get("missing")
    assert entry is None and int(idx) >= 1
    r = _raw(consul_double, "GET", "/v1/kv/missing/?recurse")
    assert r.status_code == 404 and "X-Consul-Index" in r.headers


def test_kv_recurse_keys_and_delete_recurse(consul_double):
    c = consul_double.client()
    for key in ("p/b", "p/a", "p/sub/c", "pq", "other"):
        c.kv.put(key, key.encode())
    _, entries = c.kv.get("p/", recurse=True)
    assert [e["Key"] for e in entries] == ["p/a", "p/b", "p/sub/c"]
    _, keys = c.kv.get("p/", keys=True, separator="/")
    assert keys == ["p/a", "p/b", "p/sub/"]
    assert c.kv.delete("p/", recurse=True)
    assert c.kv.get("p/", recurse=True)[1] is None
    assert c.kv.get("pq")[1]["Value"] == b"pq", "recurse deletes the prefix only"


def test_kv_cas(consul_double):
    c = consul_double.client()
    assert c.kv.put("k", b"1", cas=0)
    assert not c.kv.put("k", b"2", cas=0), "cas=0: only if absent"
    _, entry = c.kv.get("k")
    assert not c.kv.put("k", b"2", cas=entry["ModifyIndex"] + 100)
    assert c.kv.put("k", b"2", cas=entry["ModifyIndex"])
    assert not c.kv.put("k", b"3", cas=entry["ModifyIndex"]), "stale index"
    assert not c.kv.put("absent", b"x", cas=5)


def test_kv_delete_cas(consul_double):
    c = consul_double.client()
    c.kv.put("k", b"1")
    _, entry = c.kv.get("k")
    c.kv.put("k", b"2")
    assert not c.kv.delete("k", cas=entry["ModifyIndex"]), "stale index"
    _, entry = c.kv.get("k")
    assert c.kv.delete("k", cas=entry["ModifyIndex"])
    assert c.kv.get("k")[1] is None
    assert c.kv.delete("k", cas=entry["ModifyIndex"]), "Consul: a missing key counts as deleted"
    assert c.kv.delete("never")
    c.kv.put("z", b"1")
    assert not c.kv.delete("z", cas=0), "cas=0 never deletes an existing key"


def test_kv_value_size_limit(consul_double):
    r = _raw(consul_double, "PUT", "/v1/kv/big", data=b"x" * (512 * 1024 + 1))
    assert r.status_code == 413
    assert _raw(consul_double, "PUT", "/v1/kv/big", data=b"x" * (512 * 1024)).json() is True


def test_acquire_release_and_lock_index(consul_double):
    c = consul_double.client()
    s1, s2 = _session(c, "s1", lock_delay=0), _session(c, "s2", lock_delay=0)
    assert c.kv.put("lock", b"one", acquire=s1)
    _, entry = c.kv.get("lock")
    assert entry["Session"] == s1 and entry["LockIndex"] == 1
    assert c.kv.put("lock", b"again", acquire=s1), "re-acquire by the holder"
    _, entry = c.kv.get("lock")
    assert entry["LockIndex"] == 1 and entry["Value"] == b"again"
    assert not c.kv.put("lock", b"two", acquire=s2)
    assert not c.kv.put("lock", b"two", release=s2), "only the holder releases"
    assert c.kv.put("lock", b"released", release=s1)
    _, entry = c.kv.get("lock")
    assert "Session" not in entry and entry["Value"] == b"released", "release clears Session, writes the body"
    assert c.kv.put("lock", b"two", acquire=s2)
    assert c.kv.get("lock")[1]["LockIndex"] == 2
    assert not c.kv.put("absent", b"", release=s1)


def test_plain_put_keeps_the_session(consul_double):
    c = consul_double.client()
    s = _session(c, lock_delay=0)
    c.kv.put("lock", b"v", acquire=s)
    c.kv.put("lock", b"plain")
    _, entry = c.kv.get("lock")
    assert entry["Session"] == s and entry["LockIndex"] == 1 and entry["Value"] == b"plain"


def test_acquire_with_unknown_session_is_an_error(consul_double):
    r = _raw(consul_double, "PUT", "/v1/kv/lock?acquire=00000000-0000-0000-0000-000000000000", data=b"x")
    assert r.status_code == 500 and "invalid session" in r.text
    with pytest.raises(consul.ConsulException):
        consul_double.client().kv.put("lock", b"x", acquire="nope")


def test_txn_is_atomic(consul_double):
    c = consul_double.client()
    s = _session(c, lock_delay=0)
    ops = [{"KV": {"Verb": "check-not-exists", "Key": "boot"}},
           {"KV": {"Verb": "lock", "Key": "boot", "Value": base64.b64encode(b"v").decode(), "Session": s}}]
    result = c.txn.put(ops)
    assert result["Errors"] is None and len(result["Results"]) == 1, "checks return no entry"
    assert result["Results"][0]["KV"]["Session"] == s and result["Results"][0]["KV"]["Value"] is None
    r = _raw(consul_double, "PUT", "/v1/txn", data=json.dumps(
        [{"KV": {"Verb": "set", "Key": "side", "Value": base64.b64encode(b"x").decode()}}] + ops))
    assert r.status_code == 409 and r.json()["Errors"][0]["OpIndex"] == 1
    assert c.kv.get("side")[1] is None, "a failed transaction changes nothing"


# -- sessions --------------------------------------------------------------

def test_session_create_as_py_consul_sends_it(consul_double):
    c = consul_double.client()
    sid = c.session.create(name="node1", ttl=10, lock_delay=0, behavior="delete")
    _, info = c.session.info(sid)
    assert info["Name"] == "node1" and info["Behavior"] == "delete" and info["TTL"] == "10s"
    assert info["LockDelay"] == 0 and info["NodeChecks"] == ["serfHealth"]
    assert info["CreateIndex"] > 0
    assert sid in [s["ID"] for s in c.session.list()[1]]
    assert c.session.renew(sid)["ID"] == sid
    assert c.session.destroy(sid)
    assert c.session.info(sid)[1] is None
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)
    assert c.session.destroy(sid), "destroying an unknown session is fine"
    r = _raw(consul_double, "GET", f"/v1/session/info/{sid}")
    assert r.json() == [] and "X-Consul-Index" in r.headers


def test_an_empty_check_list_binds_no_serf_health(consul_double):
    # Consul's agent/session_endpoint.go (fixupEmptySessionChecks): with no "Checks" key the agent's
    # serfHealth is bound; "Checks": [] empties NodeChecks too ("Prior to 1.7.0 users could create a
    # session with no Checks by passing an empty Checks field").
    c = consul_double.client()
    sid = c.session.create(name="n", ttl=10, lock_delay=0, behavior="delete", checks=[])
    assert c.session.info(sid)[1]["NodeChecks"] == []


def test_failing_serf_health_ends_the_sessions_bound_to_it(consul_double):
    c = consul_double.client()
    _register(c, ttl="30s")
    c.agent.check.ttl_pass("service:mysql-n1")
    bound = c.session.create(name="bound", ttl=10, lock_delay=0, behavior="delete")
    free = c.session.create(name="free", ttl=10, lock_delay=0, behavior="delete", checks=[])
    c.kv.put("a", b"x", acquire=bound)
    c.kv.put("b", b"x", acquire=free)
    consul_double.set_serf_health("critical")
    assert c.session.info(bound)[1] is None and c.kv.get("a")[1] is None, "invalidated at once, key deleted"
    assert c.session.info(free)[1] is not None and c.kv.get("b")[1]["Session"] == free
    assert c.health.service("mysql", passing=True)[1] == [], "a node failing serfHealth serves nothing"
    r = _raw_session(consul_double, Name="new")
    assert r.status_code == 500 and "serfHealth" in r.text
    consul_double.set_serf_health("passing")
    assert len(c.health.service("mysql", passing=True)[1]) == 1


def test_session_ttl_bounds(consul_double):
    assert _raw_session(consul_double, TTL="9s").status_code == 400
    assert _raw_session(consul_double, TTL="86401s").status_code == 400
    assert _raw_session(consul_double, TTL="10s").status_code == 200
    assert _raw_session(consul_double, TTL="24h").status_code == 200
    assert _raw_session(consul_double, Behavior="bogus").status_code == 400
    no_ttl = _raw_session(consul_double).json()["ID"]
    info = _raw(consul_double, "GET", f"/v1/session/info/{no_ttl}").json()[0]
    assert info["TTL"] == "" and info["Behavior"] == "release" and info["LockDelay"] == 15 * 10**9


@FAST
def test_session_invalidated_between_ttl_and_twice_ttl(consul_double):
    """Default multiplier 2.0: alive at 1.5 x TTL after the last renewal, gone by 2 x TTL."""
    c = consul_double.client()
    sid = _raw_session(consul_double, TTL="1s").json()["ID"]
    time.sleep(0.7)
    c.session.renew(sid)
    renewed = time.monotonic()
    time.sleep(1.5)
    assert c.session.info(sid)[1] is not None, "invalidated before 2 x TTL"
    wait_for(lambda: c.session.info(sid)[1] is None, 2.3 - (time.monotonic() - renewed), interval=0.02,
             what="session invalidation")
    assert time.monotonic() - renewed >= 1.9


@pytest.mark.consul_double(min_session_ttl=1, ttl_multiplier=1.0)
def test_ttl_multiplier_option(consul_double):
    c = consul_double.client()
    sid = _raw_session(consul_double, TTL="1s").json()["ID"]
    created = time.monotonic()
    time.sleep(0.8)
    assert c.session.info(sid)[1] is not None
    wait_for(lambda: c.session.info(sid)[1] is None, 1.4 - (time.monotonic() - created), interval=0.02,
             what="session invalidation")


def test_behavior_release_versus_delete(consul_double):
    c = consul_double.client()
    release = _session(c, "r", lock_delay=0)
    delete = c.session.create(name="d", lock_delay=0, behavior="delete")
    c.kv.put("by-release", b"r", acquire=release)
    c.kv.put("by-delete", b"d", acquire=delete)
    _, before = c.kv.get("by-release")
    c.session.destroy(release)
    c.session.destroy(delete)
    _, after = c.kv.get("by-release")
    assert "Session" not in after and after["Value"] == b"r" and after["ModifyIndex"] > before["ModifyIndex"]
    assert c.kv.get("by-delete")[1] is None


def test_lock_delay_after_invalidation_not_after_release(consul_double):
    c = consul_double.client()
    holder = _session(c, "holder", lock_delay=1)
    other = _session(c, "other", lock_delay=0)
    c.kv.put("lock", b"h", acquire=holder)
    assert c.kv.put("lock", b"h", release=holder)
    assert c.kv.put("lock", b"o", acquire=other), "no lock-delay after a release"
    assert c.kv.put("lock", b"o", release=other)
    c.kv.put("lock", b"h", acquire=holder)
    c.session.destroy(holder)
    destroyed = time.monotonic()
    assert not c.kv.put("lock", b"o", acquire=other), "lock-delay after invalidation"
    wait_for(lambda: c.kv.put("lock", b"o", acquire=other), 2.0, interval=0.05, what="lock-delay end")
    assert time.monotonic() - destroyed >= 0.9


@FAST
def test_session_with_ttl_deletes_its_keys_on_expiry(consul_double):
    c = consul_double.client()
    sid = _raw_session(consul_double, TTL="1s", Behavior="delete", LockDelay="0s").json()["ID"]
    c.kv.put("members/n1", b"m", acquire=sid)
    idx, _ = c.kv.get("members/n1")
    start = time.monotonic()
    idx2, entry = c.kv.get("members/n1", index=idx, wait="10s")  # blocking: wakes on the expiry
    assert entry is None and int(idx2) > int(idx)
    assert 1.8 <= time.monotonic() - start < 3.0


# -- blocking queries --------------------------------------------------------

@FAST
def test_blocking_kv_query_returns_on_change_or_after_wait(consul_double):
    c = consul_double.client()
    c.kv.put("k", b"1")
    idx, _ = c.kv.get("k")
    start = time.monotonic()
    idx2, entry = c.kv.get("k", index=idx, wait="300ms")
    assert idx2 == idx and entry["Value"] == b"1"
    assert 0.28 <= time.monotonic() - start < 1.0
    timer = threading.Timer(0.3, lambda: consul_double.client().kv.put("k", b"2"))
    timer.start()
    start = time.monotonic()
    idx3, entry = c.kv.get("k", index=idx, wait="10s")
    timer.join()
    assert int(idx3) > int(idx) and entry["Value"] == b"2"
    assert 0.25 <= time.monotonic() - start < 2.0
    # A stale index answers at once.
    start = time.monotonic()
    c.kv.get("k", index=idx, wait="10s")
    assert time.monotonic() - start < 0.5


def test_blocking_wait_jitter_is_at_most_a_sixteenth(consul_double):
    c = consul_double.client()
    c.kv.put("k", b"1")
    idx, _ = c.kv.get("k")
    start = time.monotonic()
    c.kv.get("k", index=idx, wait="800ms")
    elapsed = time.monotonic() - start
    assert 0.79 <= elapsed < 0.8 * 17 / 16 + 0.3


# -- agent services and health ----------------------------------------------

def _register(c, service_id="mysql-n1", name="mysql", ttl="1s", **extra):
    check = {"ttl": ttl, "DeregisterCriticalServiceAfter": "1m", **extra}
    return c.agent.service.register(name, service_id=service_id, address="10.0.0.1", port=3306, tags=["a"],
                                    check=check)


@FAST
def test_ttl_check_lifecycle_and_health_passing(consul_double):
    c = consul_double.client()
    assert _register(c)
    checks = c.agent.checks()
    assert checks["service:mysql-n1"]["Status"] == "critical", "a TTL check starts critical"
    idx, passing = c.health.service("mysql", passing=True)
    assert passing == [] and int(idx) >= 1
    assert c.agent.check.ttl_pass("service:mysql-n1")
    _, passing = c.health.service("mysql", passing=True)
    assert len(passing) == 1
    entry = passing[0]
    assert entry["Service"]["ID"] == "mysql-n1" and entry["Service"]["Address"] == "10.0.0.1"
    assert entry["Service"]["Port"] == 3306 and entry["Service"]["Tags"] == ["a"]
    assert {ch["CheckID"] for ch in entry["Checks"]} == {"serfHealth", "service:mysql-n1"}
    passed = time.monotonic()
    wait_for(lambda: c.health.service("mysql", passing=True)[1] == [], 1.5, interval=0.02, what="TTL expiry")
    assert time.monotonic() - passed >= 0.95
    _, everything = c.health.service("mysql")
    assert [ch["Status"] for ch in everything[0]["Checks"] if ch["CheckID"] != "serfHealth"] == ["critical"]
    r = _raw(consul_double, "GET", "/v1/health/service/nothing?passing=1")
    assert r.json() == [] and "X-Consul-Index" in r.headers


@FAST
def test_health_index_moves_on_status_changes_only(consul_double):
    c = consul_double.client()
    _register(c, ttl="10s")
    idx0, _ = c.health.service("mysql", passing=True)
    c.agent.check.ttl_pass("service:mysql-n1")
    idx1, _ = c.health.service("mysql", passing=True)
    assert int(idx1) > int(idx0)
    c.agent.check.ttl_pass("service:mysql-n1")
    idx2, _ = c.health.service("mysql", passing=True)
    assert idx2 == idx1, "a pass that keeps the check passing changes nothing"
    timer = threading.Timer(0.3, lambda: c.agent.check.ttl_fail("service:mysql-n1"))
    timer.start()
    start = time.monotonic()
    idx3, passing = c.health.service("mysql", passing=True, index=idx2, wait="10s")
    timer.join()
    assert int(idx3) > int(idx2) and passing == [] and time.monotonic() - start < 2.0


def test_unknown_check_and_service_are_404(consul_double):
    c = consul_double.client()
    assert _raw(consul_double, "PUT", "/v1/agent/check/pass/service:nope").status_code == 404
    assert c.agent.check.ttl_pass("service:nope") is False
    assert _raw(consul_double, "PUT", "/v1/agent/service/deregister/nope").status_code == 404
    assert c.agent.service.deregister("nope") is False


def test_deregister_removes_service_and_check(consul_double):
    c = consul_double.client()
    _register(c, ttl="10s")
    c.agent.check.ttl_pass("service:mysql-n1")
    assert c.agent.service.deregister("mysql-n1")
    assert c.agent.services() == {} and c.agent.checks() == {}
    assert c.health.service("mysql")[1] == []


def test_reregistering_keeps_the_check_status(consul_double):
    c = consul_double.client()
    _register(c, ttl="10s")
    c.agent.check.ttl_pass("service:mysql-n1")
    c.agent.service.register("mysql", service_id="mysql-n1", address="10.0.0.2", port=3307,
                             check={"ttl": "10s", "DeregisterCriticalServiceAfter": "1m"})
    _, passing = c.health.service("mysql", passing=True)
    assert [(e["Service"]["Address"], e["Service"]["Port"]) for e in passing] == [("10.0.0.2", 3307)]


def test_register_body_as_py_consul_sends_it(consul_double):
    c = consul_double.client()
    _register(c, ttl="2500ms")
    services = c.agent.services()
    assert services["mysql-n1"]["Service"] == "mysql" and services["mysql-n1"]["Port"] == 3306
    assert c.agent.checks()["service:mysql-n1"]["Definition"]["TTL"] == "2.5s"
    r = _raw(consul_double, "PUT", "/v1/agent/service/register", data=json.dumps({"id": "x"}))
    assert r.status_code == 400
    two = {"Name": "web", "ID": "web1", "Checks": [{"TTL": "5s"}, {"TTL": "5s"}]}
    assert _raw(consul_double, "PUT", "/v1/agent/service/register", data=json.dumps(two)).status_code == 200
    assert {"service:web1:1", "service:web1:2"} <= set(c.agent.checks())


@pytest.mark.consul_double(min_deregister_critical=0.5)
def test_deregister_critical_service_after(consul_double):
    c = consul_double.client()
    c.agent.service.register("mysql", service_id="gone", port=1,
                             check={"ttl": "10s", "DeregisterCriticalServiceAfter": "1s"})
    c.agent.service.register("mysql", service_id="kept", port=2, check={"ttl": "10s"})
    registered = time.monotonic()
    wait_for(lambda: "gone" not in c.agent.services(), 2.0, interval=0.05, what="reaping")
    assert time.monotonic() - registered >= 0.9
    assert "kept" in c.agent.services(), "no DeregisterCriticalServiceAfter: never reaped"


def test_deregister_critical_minimum_is_one_minute(consul_double):
    c = consul_double.client()
    c.agent.service.register("mysql", service_id="s", port=1,
                             check={"ttl": "1s", "DeregisterCriticalServiceAfter": "1s"})
    time.sleep(1.5)
    assert "s" in c.agent.services(), "1s is raised to Consul's 1 minute minimum"


def test_session_bound_to_a_check_ends_when_it_turns_critical(consul_double):
    c = consul_double.client()
    _register(c, ttl="10s")
    r = _raw_session(consul_double, Checks=["serfHealth", "service:mysql-n1"])
    assert r.status_code == 500, "a critical check cannot back a new session"
    c.agent.check.ttl_pass("service:mysql-n1")
    sid = _raw_session(consul_double, Checks=["serfHealth", "service:mysql-n1"], LockDelay="0s").json()["ID"]
    c.kv.put("lock", b"x", acquire=sid)
    c.agent.check.ttl_fail("service:mysql-n1")
    assert c.session.info(sid)[1] is None
    assert "Session" not in c.kv.get("lock")[1]


# -- sessions bound to a TTL check: what discovery/consul.py relies on (issue 19) ----------------
# Sources (github.com/hashicorp/consul): agent/session_endpoint.go (SessionCreate, fixupEmptySessionChecks),
# agent/consul/state/session.go (validateSessionChecksTxn), agent/consul/state/catalog.go (ensureCheckTxn,
# deleteCheckTxn, parseCheckServiceNodes), agent/checks/check.go (CheckTTL), agent/local/state.go
# (UpdateCheck); docs: developer.hashicorp.com/consul/docs/dynamic-app-config/sessions ("the session is
# invalidated" when "any of the health checks go to the critical state" or are deregistered) and
# /consul/api-docs/agent/check (TTL checks; "Status" is the initial status).

def _keepalive(c, service_id="mysql-keepalive-n1", ttl="10s", status="passing"):
    c.agent.service.register("triton-mysql-keepalive", service_id=service_id,
                             check={"ttl": ttl, "Status": status, "DeregisterCriticalServiceAfter": "1m"})
    return f"service:{service_id}"


def test_checks_field_alone_still_binds_serf_health(consul_double):
    """SessionCreate starts from NodeChecks=[serfHealth] and Checks=[serfHealth]; a body's "Checks"
    replaces only Checks, and fixupEmptySessionChecks keeps the default NodeChecks beside a non-empty
    Checks.  "ServiceChecks" with "NodeChecks": [] binds the service check alone; "Checks" with
    "NodeChecks": [] binds nothing ("If the NodeChecks field contains an empty slice, empty out
    the default check that was provided to Checks")."""
    c = consul_double.client()
    check = _keepalive(c)
    with_serf = _raw_session(consul_double, Checks=[check], TTL="20s").json()["ID"]
    alone = _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": check}], TTL="20s").json()["ID"]
    dropped = _raw_session(consul_double, Checks=[check], NodeChecks=[], TTL="20s").json()["ID"]
    consul_double.set_serf_health("critical")
    assert c.session.info(with_serf)[1] is None, "Checks alone: serfHealth bound too"
    assert c.session.info(alone)[1] is not None
    consul_double.set_serf_health("passing")
    c.agent.check.ttl_fail(check)
    assert c.session.info(alone)[1] is None, "bound to the service check"
    assert c.session.info(dropped)[1] is not None, "Checks beside an empty NodeChecks is dropped"


def test_no_session_while_a_listed_check_is_critical_or_missing(consul_double):
    """validateSessionChecksTxn: "Missing check '%s' registration", "Check '%s' is in critical state"."""
    c = consul_double.client()
    r = _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": "service:nope"}])
    assert r.status_code == 500 and "Missing check 'service:nope' registration" in r.text
    check = _keepalive(c, status="critical")
    r = _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": check}])
    assert r.status_code == 500 and f"Check '{check}' is in critical state" in r.text
    c.agent.check.ttl_pass(check)
    assert _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": check}]).status_code == 200


@FAST
def test_ttl_check_turns_critical_at_its_ttl_and_ends_its_sessions_then(consul_double):
    """CheckTTL: each pass resets a timer of exactly TTL; when it fires the check is critical ("TTL
    expired"); UpdateCheck syncs a status change at once; ensureCheckTxn deletes every session bound to
    a check that turns critical, whatever that session's own TTL (behavior delete: its keys go)."""
    c = consul_double.client()
    check = _keepalive(c, ttl="1s")
    sid = _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": check}], TTL="30s", LockDelay="0s",
                       Behavior="delete").json()["ID"]
    c.kv.put("lock", b"x", acquire=sid)
    for _ in range(3):  # passes keep it alive past its TTL
        time.sleep(0.6)
        assert c.agent.check.ttl_pass(check)
    assert c.session.info(sid)[1] is not None
    passed = time.monotonic()
    wait_for(lambda: c.session.info(sid)[1] is None, 3, interval=0.02, what="the session's end")
    ended = time.monotonic() - passed
    assert 0.95 <= ended <= 1.3, f"ended {ended:.2f} s after the last pass (check TTL 1 s, session TTL 30 s)"
    assert c.kv.get("lock")[1] is None
    assert c.agent.checks()[check]["Status"] == "critical"
    assert "TTL expired" in c.agent.checks()[check]["Output"]


def test_deregistering_the_checks_service_ends_its_sessions(consul_double):
    """deleteCheckTxn: "Delete any sessions for this check".  A role rename deregisters the old service
    id (and its check) and registers a new one: a session bound to the renamed service's check would end
    on every rename, which is why the keepalive is a service of its own."""
    c = consul_double.client()
    _register(c, service_id="mysql-n1", ttl="10s")
    c.agent.check.ttl_pass("service:mysql-n1")
    keepalive = _keepalive(c)
    on_role = _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": "service:mysql-n1"}]).json()["ID"]
    on_keepalive = _raw_session(consul_double, NodeChecks=[], ServiceChecks=[{"ID": keepalive}]).json()["ID"]
    assert c.agent.service.deregister("mysql-n1")  # the rename to mysql-primary
    _register(c, service_id="mysql-primary-n1", name="mysql-primary", ttl="10s")
    assert c.session.info(on_role)[1] is None
    assert c.session.info(on_keepalive)[1] is not None
    assert c.agent.service.deregister("mysql-keepalive-n1")
    assert c.session.info(on_keepalive)[1] is None


def test_a_critical_check_of_another_service_leaves_this_one_healthy(consul_double):
    """parseCheckServiceNodes: an instance's health is its node's checks plus its own service's checks,
    so the keepalive (a service check) going critical does not take the node's mysql service down, where
    a node-level check would ("These always apply to any service on the node")."""
    c = consul_double.client()
    _register(c, ttl="10s")
    c.agent.check.ttl_pass("service:mysql-n1")
    check = _keepalive(c)
    c.agent.check.ttl_fail(check)
    assert [e["Service"]["ID"] for e in c.health.service("mysql", passing=True)[1]] == ["mysql-n1"]
    assert c.health.service("triton-mysql-keepalive", passing=True)[1] == []


# -- restarts ----------------------------------------------------------------

def test_restart_keeps_state_and_resets_session_timers(consul_double):
    c = consul_double.client()
    sid = c.session.create(name="n", ttl=10, lock_delay=0, behavior="delete")
    c.kv.put("lock", b"x", acquire=sid)
    _register(c, ttl="30s")
    c.agent.check.ttl_pass("service:mysql-n1")
    idx, _ = c.kv.get("lock")
    port = consul_double.port
    consul_double.stop()
    with pytest.raises(requests.ConnectionError):
        c.kv.get("lock")
    consul_double.start()
    assert consul_double.port == port
    idx2, entry = c.kv.get("lock")
    assert entry["Session"] == sid and idx2 == idx
    assert c.session.renew(sid)["ID"] == sid
    assert len(c.health.service("mysql", passing=True)[1]) == 1
    assert c.kv.put("after", b"1")
    assert c.kv.get("after")[1]["ModifyIndex"] > int(idx), "the index keeps growing"


def test_kill_loses_state(consul_double):
    c = consul_double.client()
    c.kv.put("k", b"v")
    _register(c, ttl="30s")
    consul_double.kill()
    consul_double.start()
    assert c.kv.get("k")[1] is None
    assert c.agent.check.ttl_pass("service:mysql-n1") is False, "the agent lost the service: 404"


def test_unknown_endpoint_and_bad_json(consul_double):
    assert _raw(consul_double, "GET", "/v1/nope").status_code == 404
    assert _raw(consul_double, "PUT", "/v1/session/create", data=b"{not json").status_code == 400
    assert _raw(consul_double, "GET", "/v1/status/leader").json().endswith(":8300")
