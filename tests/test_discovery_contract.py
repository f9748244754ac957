"""The discovery contract (triton_mysql/discovery/base.py), one suite for both
backends: every test runs against the real etcd and against the Consul double
(`discovery_server` is parametrized), with the same body."""
from __future__ import annotations

import json
import threading
import time

import pytest

from tests.harness.procs import wait_for
from triton_mysql.discovery import KV, DiscoveryError, ServiceSpec

ROUNDS = 20


def _ttl(server) -> int:
    """The shortest session TTL the backend allows: keeps expiry tests short."""
    return server.min_session_ttl


def _spec(name: str, node: str, port: int = 3306, ttl: float = 2.0) -> ServiceSpec:
    return ServiceSpec(id=f"{name}-{node}", name=name, address="127.0.0.9", port=port, ttl=ttl, tags=("t1",))


# -- locks --------------------------------------------------------------------

def test_lock_race_has_exactly_one_winner(discovery_server):
    """Two contenders with their own clients and sessions race for the lock 20 times."""
    key = discovery_server.kv_root() + "/primary"
    clients = [discovery_server.client(), discovery_server.client()]
    sessions = [c.create_session(f"contender-{i}", _ttl(discovery_server)) for i, c in enumerate(clients)]
    for round_no in range(ROUNDS):
        barrier = threading.Barrier(2)
        results: list[bool | None] = [None, None]
        errors: list[BaseException] = []

        def contend(i: int) -> None:
            try:
                barrier.wait(5)
                results[i] = clients[i].acquire(key, f"node-{i}-{round_no}".encode(), sessions[i])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert sorted(results) == [False, True], f"round {round_no}: {results}"
        winner = results.index(True)
        held = clients[1 - winner].holder(key)
        assert held is not None and held.session == sessions[winner]
        assert held.value == f"node-{winner}-{round_no}".encode()
        assert clients[winner].release(key, sessions[winner])
        assert clients[0].get(key) is None


def test_acquire_is_reentrant_and_refused_to_others(discovery_server):
    d = discovery_server.client()
    key = discovery_server.kv_root() + "/primary"
    a = d.create_session("a", _ttl(discovery_server))
    b = d.create_session("b", _ttl(discovery_server))
    assert d.acquire(key, b"a1", a)
    assert d.acquire(key, b"a2", a), "the holder may rewrite its lock"
    assert not d.acquire(key, b"b1", b)
    kv = d.holder(key)
    assert kv is not None and kv.value == b"a2" and kv.session == a


def test_release_by_non_holder_fails(discovery_server):
    d1, d2 = discovery_server.client(), discovery_server.client()
    key = discovery_server.kv_root() + "/snapshots/lock"
    a = d1.create_session("a", _ttl(discovery_server))
    b = d2.create_session("b", _ttl(discovery_server))
    assert d1.acquire(key, b"a", a)
    assert not d2.release(key, b)
    assert d2.holder(key).session == a
    assert not d2.release(discovery_server.kv_root() + "/absent", b), "nothing held, nothing released"
    assert d1.release(key, a)
    assert d2.get(key) is None, "a released lock is absent, i.e. free"
    assert d2.acquire(key, b"b", b)


def test_acquire_with_ended_session_fails(discovery_server):
    d = discovery_server.client()
    key = discovery_server.kv_root() + "/primary"
    a = d.create_session("a", _ttl(discovery_server))
    d.destroy_session(a)
    assert not d.renew_session(a)
    assert not d.acquire(key, b"x", a)
    assert d.get(key) is None
    d.destroy_session(a)  # unknown session: fine


def test_destroying_the_session_frees_its_keys(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    a = d.create_session("a", _ttl(discovery_server))
    assert d.acquire(root + "/primary", b"lock", a)
    assert d.put(root + "/members/n1", b"member", session=a)
    assert d.put(root + "/nodes/n1", b"durable")
    d.destroy_session(a)
    assert d.get(root + "/primary") is None
    assert d.get(root + "/members/n1") is None
    assert d.get(root + "/nodes/n1").value == b"durable"


def test_holder_that_stops_renewing_loses_lock_and_member_record(discovery_server):
    """Held before the earliest expiry; free (and its member record gone) within the bound:
    etcd TTL + 1 s, Consul 2 x TTL + 1 s."""
    d1, d2 = discovery_server.client(), discovery_server.client()
    root = discovery_server.kv_root()
    ttl = _ttl(discovery_server)
    earliest, latest = d1.expiry_bounds(ttl)
    assert earliest >= ttl
    assert latest <= (ttl + 0.5 if discovery_server.kind == "etcd" else 2 * ttl)
    other = d2.create_session("other", ttl)
    session = d1.create_session("holder", ttl)
    assert d1.acquire(root + "/primary", b"holder", session)
    assert d1.put(root + "/members/holder", b"{}", session=session)
    assert d1.renew_session(session)
    renewed = time.monotonic()
    # Keep the other session alive while we wait; the holder's is never renewed again.
    time.sleep(max(0.0, earliest - 0.6 - (time.monotonic() - renewed)))
    assert d2.holder(root + "/primary") is not None, "lock gone before the TTL"
    assert d2.get(root + "/members/holder") is not None
    assert not d2.acquire(root + "/primary", b"other", other)
    assert d2.renew_session(other)

    def lock_free() -> bool:
        return d2.get(root + "/primary") is None

    wait_for(lock_free, latest + 1.0 - (time.monotonic() - renewed), interval=0.1, what="lock expiry")
    freed_after = time.monotonic() - renewed
    assert freed_after >= earliest - 0.3, f"lock freed {freed_after:.2f} s after the last renewal"
    assert d2.get(root + "/members/holder") is None
    assert not d1.renew_session(session)
    assert d2.acquire(root + "/primary", b"other", other)


def test_keepalive_session_ends_at_its_ttl(discovery_server):
    """A node's own session, bound to its keepalive (issue 19): held until its TTL after the last
    renewal, free within `expiry_bounds(ttl, keepalive=True)`, on Consul too (not up to 2 x TTL);
    a new one can be made at once by the same node."""
    d1, d2 = discovery_server.client(), discovery_server.client()
    root = discovery_server.kv_root()
    ttl = _ttl(discovery_server)
    keepalive = "mysql-keepalive-holder"
    earliest, latest = d1.expiry_bounds(ttl, keepalive=True)
    assert earliest >= ttl and latest <= ttl + 1.0
    session = d1.create_session("holder", ttl, keepalive=keepalive)
    assert d1.acquire(root + "/primary", b"holder", session)
    for _ in range(2):  # renewals keep it past its TTL
        time.sleep(ttl * 0.6)
        assert d1.renew_session(session, keepalive=keepalive)
    renewed = time.monotonic()
    time.sleep(max(0.0, earliest - 0.6))
    assert d2.holder(root + "/primary") is not None, "lock gone before the TTL"
    wait_for(lambda: d2.get(root + "/primary") is None, latest + 1.0 - (time.monotonic() - renewed),
             interval=0.05, what="lock expiry")
    freed_after = time.monotonic() - renewed
    assert earliest - 0.3 <= freed_after <= latest + 1.0, f"freed {freed_after:.2f} s after the last renewal"
    assert not d1.renew_session(session, keepalive=keepalive)
    again = d1.create_session("holder", ttl, keepalive=keepalive)
    assert d1.acquire(root + "/primary", b"holder", again)
    d1.destroy_session(again)
    d1.drop_keepalive(keepalive)
    d1.drop_keepalive(keepalive)  # unknown: fine


# -- key/value ---------------------------------------------------------------

def test_compare_and_set_conflicts_are_detected(discovery_server):
    d1, d2 = discovery_server.client(), discovery_server.client()
    key = discovery_server.kv_root() + "/switchover"
    assert d1.create(key, b"v1")
    assert not d2.create(key, b"other"), "create is create-only"
    assert not d1.cas(key, b"again", 0), "cas index 0 means only if absent"
    kv = d1.get(key)
    assert kv.value == b"v1" and kv.index > 0 and kv.session is None
    assert d2.cas(key, b"v2", kv.index)
    assert not d1.cas(key, b"stale", kv.index), "a stale index must be refused"
    assert d1.get(key).value == b"v2"
    assert not d1.delete(key, index=kv.index), "a stale conditional delete must be refused"
    current = d1.get(key)
    assert current.index != kv.index
    assert d1.delete(key, index=current.index)
    assert d1.get(key) is None
    assert d1.delete(key, index=current.index), "a key already gone counts as deleted"
    assert d1.delete(key), "deleting an absent key is fine"
    assert d1.cas(key, b"new", 0)


def test_concurrent_cas_has_one_winner(discovery_server):
    d1, d2 = discovery_server.client(), discovery_server.client()
    key = discovery_server.kv_root() + "/server-id-counter"
    d1.put(key, b"0")
    for _ in range(10):
        kv = d1.get(key)
        barrier = threading.Barrier(2)
        results = [None, None]

        def bump(i: int, client) -> None:
            barrier.wait(5)
            results[i] = client.cas(key, str(int(kv.value) + 1 + i).encode(), kv.index)

        threads = [threading.Thread(target=bump, args=(i, c)) for i, c in enumerate((d1, d2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results) == [False, True]


def test_get_put_roundtrip_binary_and_missing(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    payload = bytes(range(256))
    assert d.get(root + "/nothing") is None
    assert d.put(root + "/binary", payload)
    kv = d.get(root + "/binary")
    assert isinstance(kv, KV) and kv.value == payload and kv.key == root + "/binary"
    assert d.put(root + "/empty", b"")
    assert d.get(root + "/empty").value == b""
    first = d.get(root + "/binary").index
    d.put(root + "/binary", b"changed")
    assert d.get(root + "/binary").index > first


def test_list_returns_the_prefix_only_sorted(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    session = d.create_session("s", _ttl(discovery_server))
    for name in ("n3", "n1", "n2"):
        record = json.dumps({"node": name}).encode()
        assert d.put(f"{root}/members/{name}", record, session=session)
    d.put(f"{root}/membersX", b"sibling")
    d.put(f"{root}/nodes/n1", b"node")
    listed = d.list(root + "/members/")
    assert [kv.key for kv in listed] == [f"{root}/members/{n}" for n in ("n1", "n2", "n3")]
    assert all(kv.session == session for kv in listed)
    assert json.loads(listed[1].value) == {"node": "n2"}
    assert d.list(root + "/none/") == []
    assert [kv.key for kv in d.list(root + "/")] == sorted(
        [f"{root}/members/n1", f"{root}/members/n2", f"{root}/members/n3", f"{root}/membersX", f"{root}/nodes/n1"])


def test_put_with_session_binds_the_key(discovery_server):
    d = discovery_server.client()
    key = discovery_server.kv_root() + "/members/n1"
    a = d.create_session("a", _ttl(discovery_server))
    b = d.create_session("b", _ttl(discovery_server))
    assert d.put(key, b"1", session=a)
    assert d.get(key).session == a
    assert not d.put(key, b"2", session=b), "bound to another live session"
    assert d.put(key, b"3"), "a plain write is unconditional"
    kv = d.get(key)
    assert kv.value == b"3" and kv.session == a, "a plain write keeps the binding"
    d.destroy_session(a)
    assert d.get(key) is None


def test_create_with_session_is_create_only_and_bound(discovery_server):
    d = discovery_server.client()
    key = discovery_server.kv_root() + "/bootstrap"
    a = d.create_session("a", _ttl(discovery_server))
    assert d.create(key, b"first", session=a)
    assert not d.create(key, b"second", session=a)
    assert d.get(key).session == a
    d.destroy_session(a)
    assert d.get(key) is None


def test_wait_returns_on_change_and_on_timeout(discovery_server):
    d1, d2 = discovery_server.client(), discovery_server.client()
    key = discovery_server.kv_root() + "/primary"
    start = time.monotonic()
    assert d1.wait(key, 0, 0.5) is None
    assert 0.4 <= time.monotonic() - start < 2.0
    d1.put(key, b"one")
    kv = d1.get(key)
    start = time.monotonic()
    assert d1.wait(key, kv.index, 0.5).value == b"one"
    assert 0.4 <= time.monotonic() - start < 2.0
    assert d1.wait(key, 0, 5).value == b"one", "index 0: any existing value, at once"

    timer = threading.Timer(0.4, lambda: d2.put(key, b"two"))
    timer.start()
    try:
        start = time.monotonic()
        changed = d1.wait(key, kv.index, 10)
        elapsed = time.monotonic() - start
    finally:
        timer.join()
    assert changed is not None and changed.value == b"two" and changed.index != kv.index
    assert 0.3 <= elapsed < 3.0, elapsed

    timer = threading.Timer(0.4, lambda: d2.delete(key))
    timer.start()
    try:
        assert d1.wait(key, changed.index, 10) is None, "a deletion is a change"
    finally:
        timer.join()


# -- services ----------------------------------------------------------------

def test_service_is_healthy_only_while_heartbeats_arrive(discovery_server):
    d1, d2 = discovery_server.client(), discovery_server.client()
    spec = _spec("mysql-primary", "n1", ttl=2.0)
    other = _spec("mysql-primary", "n2", port=3307, ttl=30.0)
    d1.register_service(spec)
    d2.register_service(other)
    assert d2.healthy("mysql-primary") == [], "registered but never heartbeated: not healthy"
    d1.heartbeat(spec)
    d2.heartbeat(other)
    instances = d2.healthy("mysql-primary")
    assert [i.id for i in instances] == ["mysql-primary-n1", "mysql-primary-n2"]
    first = instances[0]
    assert (first.name, first.address, first.port, first.tags) == ("mysql-primary", "127.0.0.9", 3306, ("t1",))
    assert instances[1].address_port == "127.0.0.9:3307"
    assert d2.healthy("mysql") == []
    for _ in range(3):  # heartbeats within the TTL keep it listed
        time.sleep(0.8)
        d1.heartbeat(spec)
        assert "mysql-primary-n1" in [i.id for i in d2.healthy("mysql-primary")]
    stopped = time.monotonic()

    def gone() -> bool:
        return "mysql-primary-n1" not in [i.id for i in d2.healthy("mysql-primary")]

    wait_for(gone, spec.ttl + 1.5, interval=0.1, what="service to leave the healthy list")
    assert time.monotonic() - stopped >= spec.ttl - 0.3
    assert [i.id for i in d2.healthy("mysql-primary")] == ["mysql-primary-n2"]
    d1.heartbeat(spec)  # back after a pause
    assert "mysql-primary-n1" in [i.id for i in d2.healthy("mysql-primary")]
    d2.deregister_service(other)
    assert [i.id for i in d1.healthy("mysql-primary")] == ["mysql-primary-n1"]
    d2.deregister_service(other)  # unknown: fine


# -- outages -----------------------------------------------------------------

def _operations(d, root: str, session: str, spec: ServiceSpec):
    return {
        "get": lambda: d.get(root + "/primary"),
        "list": lambda: d.list(root + "/members/"),
        "put": lambda: d.put(root + "/nodes/n1", b"x"),
        "create": lambda: d.create(root + "/bootstrap", b"x"),
        "cas": lambda: d.cas(root + "/nodes/n1", b"y", 1),
        "delete": lambda: d.delete(root + "/nodes/n1"),
        "acquire": lambda: d.acquire(root + "/primary", b"x", session),
        "release": lambda: d.release(root + "/primary", session),
        "create_session": lambda: d.create_session("s", _ttl_for(d)),
        "renew_session": lambda: d.renew_session(session),
        "destroy_session": lambda: d.destroy_session(session),
        "wait": lambda: d.wait(root + "/primary", 12345, 0.5),
        "register_service": lambda: d.register_service(spec),
        "heartbeat": lambda: d.heartbeat(spec),
        "healthy": lambda: d.healthy(spec.name),
        "deregister_service": lambda: d.deregister_service(spec),
    }


def _ttl_for(d) -> int:
    return 2 if "etcd" in d.describe() else 10


def test_server_gone_gives_discovery_error_within_timeout(discovery_server):
    timeout = 1.0
    d = discovery_server.client(timeout=timeout)
    root = discovery_server.kv_root()
    session = d.create_session("s", discovery_server.min_session_ttl)
    spec = _spec("mysql", "n1")
    d.register_service(spec)
    d.heartbeat(spec)
    discovery_server.stop()
    failures = {}
    for name, op in _operations(d, root, session, spec).items():
        start = time.monotonic()
        if name == "register_service" and discovery_server.kind == "etcd":
            op()  # etcd: remembers the spec only, nothing remote
            continue
        with pytest.raises(DiscoveryError) as info:
            op()
        elapsed = time.monotonic() - start
        # wait() may use its own 0.5 s on top of the request timeout.
        assert elapsed < timeout + 0.5 + 0.5, f"{name} took {elapsed:.2f} s"
        failures[name] = str(info.value)
    for name, message in failures.items():
        assert discovery_server.endpoint in message, (name, message)
    discovery_server.start()
    assert wait_for(lambda: d.put(root + "/nodes/n1", b"back"), 10, what="discovery back")
    assert d.get(root + "/nodes/n1").value == b"back"


def test_unreachable_endpoint_gives_discovery_error(discovery_server):
    """Nothing listens on the port: refused at once, DiscoveryError naming the endpoint."""
    from tests.harness.procs import free_port
    from triton_mysql.discovery import connect_endpoints

    port = free_port()
    if discovery_server.kind == "etcd":
        d = connect_endpoints(etcd=[("127.0.0.1", port)], timeout=1.0)
    else:
        d = connect_endpoints(consul=("127.0.0.1", port), timeout=1.0)
    start = time.monotonic()
    with pytest.raises(DiscoveryError, match=f"127.0.0.1:{port}"):
        d.get("triton-mysql/mysql/primary")
    assert time.monotonic() - start < 1.5
    d.close()


def test_state_survives_a_restart(discovery_server):
    d = discovery_server.client()
    root = discovery_server.kv_root()
    session = d.create_session("s", discovery_server.min_session_ttl)
    assert d.acquire(root + "/primary", b"lock", session)
    d.put(root + "/snapshots/last", b"manifest")
    discovery_server.stop()
    discovery_server.start()
    assert d.get(root + "/snapshots/last").value == b"manifest"
    assert d.renew_session(session), "sessions survive a restart (timers reset)"
    assert d.holder(root + "/primary").session == session


# -- broken servers (both backends) ------------------------------------------

class _BrokenServer:
    """An HTTP server on loopback that answers every request wrongly (one `mode`)."""

    def __init__(self, mode: str) -> None:
        import http.server

        self.mode = mode
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if outer.mode == "hang":
                    outer.release.wait(30)
                    return
                status, body, headers = {
                    "5xx": (500, b'{"error":"boom","message":"boom","code":13}', {"X-Consul-Index": "5"}),
                    "not-json": (200, b"<html>proxy error</html>", {"X-Consul-Index": "5"}),
                    "wrong-shape": (200, b'{"kvs":[{"key":"a2V5"}],"result":{},"ID":"x"}', {"X-Consul-Index": "5"}),
                    "no-index": (200, b"[]", {}),
                }[outer.mode]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("kind,mode", [(k, m) for k in ("etcd", "consul")
                                       for m in ("5xx", "not-json", "wrong-shape", "no-index", "hang")
                                       if (k, m) != ("etcd", "no-index")])  # X-Consul-Index: Consul only
def test_bad_answers_become_discovery_errors(kind, mode):
    from triton_mysql.discovery import connect_endpoints

    broken = _BrokenServer(mode)
    timeout = 0.5
    try:
        if kind == "etcd":
            d = connect_endpoints(etcd=[("127.0.0.1", broken.port)], timeout=timeout)
        else:
            d = connect_endpoints(consul=("127.0.0.1", broken.port), timeout=timeout)
        spec = _spec("mysql", "n1")
        calls = {
            "get": lambda: d.get("triton-mysql/mysql/primary"),
            "list": lambda: d.list("triton-mysql/mysql/members/"),
            "create_session": lambda: d.create_session("s", 10),
            "renew_session": lambda: d.renew_session("123"),
            "healthy": lambda: d.healthy("mysql"),
            "heartbeat": lambda: d.heartbeat(spec),
        }
        if mode == "wrong-shape":
            calls.pop("renew_session" if kind == "etcd" else "create_session")  # {"result": {}}, {"ID": "x"}: valid
        if kind == "consul" and mode in ("not-json", "wrong-shape", "no-index"):
            calls.pop("heartbeat")  # Consul answers a check pass with 200 and an empty body: any 200 is success
        for name, call in calls.items():
            start = time.monotonic()
            with pytest.raises(DiscoveryError) as info:
                call()
            assert time.monotonic() - start < timeout + 0.5, name
            assert f"127.0.0.1:{broken.port}" in str(info.value), (name, str(info.value))
        d.close()
    finally:
        broken.close()


# -- backend specifics ---------------------------------------------------------

def test_etcd_tries_endpoints_in_turn_and_sticks_to_the_one_that_works(etcd_server):
    from tests.harness.procs import free_port
    from triton_mysql.discovery import connect_endpoints

    dead = ("127.0.0.1", free_port())
    d = connect_endpoints(etcd=[dead, (etcd_server.host, etcd_server.port)], timeout=1.0)
    assert d.put("/triton-mysql/mysql/k", b"v")
    assert d.describe() == f"etcd at 127.0.0.1:{dead[1]},{etcd_server.endpoint}"
    assert d._current == 1, "sticks to the endpoint that answered"
    assert d.get("/triton-mysql/mysql/k").value == b"v"
    etcd_server.stop()
    with pytest.raises(DiscoveryError, match="no endpoint reachable") as info:
        d.get("/triton-mysql/mysql/k")
    assert str(dead[1]) in str(info.value) and str(etcd_server.port) in str(info.value)
    d.close()


def test_etcd_services_live_under_the_prefix(etcd_server):
    import etcd3gw
    from triton_mysql.discovery import connect_endpoints

    d = connect_endpoints(etcd=[(etcd_server.host, etcd_server.port)], etcd_prefix="/custom/", timeout=2.0)
    spec = _spec("mysql", "n1", ttl=2.0)
    d.register_service(spec)
    raw = etcd3gw.client(host=etcd_server.host, port=etcd_server.port, timeout=5)
    assert raw.get(b"/custom/services/mysql/mysql-n1") == [], "register_service writes nothing"
    d.heartbeat(spec)
    [(value, meta)] = raw.get(b"/custom/services/mysql/mysql-n1", metadata=True)
    assert json.loads(value) == {"ID": "mysql-n1", "Name": "mysql", "Address": "127.0.0.9", "Port": 3306,
                                 "Tags": ["t1"]}
    assert int(meta["lease"]) > 0
    d.deregister_service(spec)
    assert raw.get(b"/custom/services/mysql/mysql-n1") == []
    assert d.healthy("mysql") == []
    d.close()


def test_consul_heartbeat_registers_again_when_the_agent_lost_the_service(consul_double):
    from triton_mysql.discovery import connect_endpoints

    d = connect_endpoints(consul=(consul_double.host, consul_double.port), timeout=2.0)
    spec = _spec("mysql", "n1", ttl=5.0)
    d.register_service(spec)
    d.heartbeat(spec)
    consul_double.kill()  # the agent comes back without its services
    consul_double.start()
    assert d.healthy("mysql") == []
    d.heartbeat(spec)
    assert [i.id for i in d.healthy("mysql")] == ["mysql-n1"]
    checks = consul_double.client().agent.checks()
    assert checks["service:mysql-n1"]["Definition"]["TTL"] == "5s"
    d.close()


def test_consul_keys_have_no_leading_slash(consul_double):
    from triton_mysql.discovery import connect_endpoints

    d = connect_endpoints(consul=(consul_double.host, consul_double.port), timeout=2.0)
    d.put("/triton-mysql/mysql/nodes/n1", b"v")
    assert consul_double.client().kv.get("triton-mysql/mysql/nodes/n1")[1]["Value"] == b"v"
    assert d.get("triton-mysql/mysql/nodes/n1").key == "triton-mysql/mysql/nodes/n1"
    d.close()


def test_consul_session_ttl_below_ten_is_refused(consul_double):
    from triton_mysql.discovery import connect_endpoints

    d = connect_endpoints(consul=(consul_double.host, consul_double.port), timeout=2.0)
    with pytest.raises(ValueError, match="10"):
        d.create_session("s", 5)
    assert d.expiry_bounds(10) == (10.0, 20.0)
    assert d.expiry_bounds(10, keepalive=True) == (10.0, 11.0)
    d.close()


def test_consul_keepalive_session_is_bound_to_its_check_only(consul_double):
    """The request discovery/consul.py sends binds the keepalive check and nothing else (no
    serfHealth: a gossip flap must not end the primary's session before it can fence), and the
    keepalive is a service of its own, passing, apart from the node's mysql service."""
    from triton_mysql.discovery import connect_endpoints

    d = connect_endpoints(consul=(consul_double.host, consul_double.port), timeout=2.0)
    c = consul_double.client()
    sid = d.create_session("triton-mysql-n1", 10, keepalive="mysql-keepalive-n1")
    info = c.session.info(sid)[1]
    assert info["ServiceChecks"] == [{"ID": "service:mysql-keepalive-n1", "Namespace": ""}]
    assert info["NodeChecks"] == [] and info["Behavior"] == "delete" and info["LockDelay"] == 0
    assert info["TTL"] == "12s", "the session's own TTL: ceil(ttl + request timeout), see session_ttl()"
    assert c.agent.checks()["service:mysql-keepalive-n1"]["Status"] == "passing"
    assert c.agent.services()["mysql-keepalive-n1"]["Service"] == "triton-mysql-keepalive"
    consul_double.set_serf_health("critical")
    assert c.session.info(sid)[1] is not None
    consul_double.set_serf_health("passing")
    c.agent.check.ttl_fail("service:mysql-keepalive-n1")  # as if its TTL ran out
    assert c.session.info(sid)[1] is None
    assert not d.renew_session(sid, keepalive="mysql-keepalive-n1")
    again = d.create_session("triton-mysql-n1", 10, keepalive="mysql-keepalive-n1")  # passes it first
    assert c.session.info(again)[1] is not None
    d.destroy_session(again)
    d.drop_keepalive("mysql-keepalive-n1")
    assert "mysql-keepalive-n1" not in c.agent.services()
    sid = d.create_session("other", 10)
    assert c.session.info(sid)[1]["NodeChecks"] == [] and not c.session.info(sid)[1]["ServiceChecks"]
    d.close()


@pytest.mark.parametrize("poll", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("timeout", [0.5, 1.0, 2.0])
def test_consul_keepalive_session_keeps_the_fencing_rule(poll, timeout):
    """Worst cases of a primary's health pass against its check-bound session, for every setting the
    fencing rule (config._check_consistency) accepts: the primary has fenced itself (FENCE_BUDGET, plus
    FENCE_MARGIN) before its session can end, and within Timing.fence_bound of its last check pass.

    A pass reads the view (R), passes the check (P), renews the session (N); each request takes up to
    DISCOVERY_TIMEOUT, and a failing one exactly that.  The previous pass renewed both at 0 (the
    earliest deadlines); this one starts at HEALTH_POLL."""
    from triton_mysql.config import FENCE_BUDGET, FENCE_MARGIN, Config, ConfigError
    from triton_mysql.discovery.consul import session_ttl
    from triton_mysql.ha.decide import Timing

    for ttl in range(10, 16):
        env = {"CONSUL": "127.0.0.1:8500", "SESSION_TTL": str(ttl), "HEALTH_POLL": str(poll),
               "DISCOVERY_TIMEOUT": str(timeout), "NODE_NAME": "n1"}
        try:
            Config.from_env(env)
        except ConfigError:
            continue  # a setting start-up refuses
        own = session_ttl(ttl, timeout)
        bound = Timing(session_ttl=ttl, lock_expiry_max=ttl + 1, stop_grace=10, health_poll=poll,
                       discovery_timeout=timeout).fence_bound
        check_deadline, session_deadline, last_pass = float(ttl), float(own), 0.0
        start = poll
        for d_read in (0.0, timeout):
            for d_pass in (0.0, timeout):
                cases = {
                    "read fails": (start + timeout, check_deadline, last_pass),
                    "check pass fails": (start + d_read + timeout, check_deadline, last_pass),
                    # the check was passed at start + d_read: its deadline moves, the session's does not
                    "renewal fails": (start + d_read + d_pass + timeout,
                                      min(start + d_read + ttl, session_deadline), start + d_read),
                }
                for case, (decided, session_end, passed) in cases.items():
                    fenced = decided + FENCE_BUDGET
                    assert fenced + FENCE_MARGIN <= session_end + 1e-9, (case, ttl, poll, timeout)
                    assert fenced <= passed + bound + 1e-9, (case, ttl, poll, timeout)
