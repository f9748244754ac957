"""Clients find the primary (issue 18), with real processes: three nodes under `containerbuddy`
on etcd, a real HAProxy (Debian's) running the shipped etc/haproxy.cfg checks, and clients that
only know HAProxy's ports.

* writes through the write port follow the primary across a planned stop (SIGTERM: no
  acknowledged write lost) and a crash (kill -9: only the unreplicated tail may be lost, and
  it is reported), and no write is ever acknowledged by a node that did not hold the lock;
* the read port never reaches a primary, nor the old primary once it is fenced;
* GET /primary sampled every 50 ms on every node through a frozen primary (SIGSTOP of its
  whole node for longer than the session TTL, then SIGCONT): never two 200s in one sample;
* /metrics parses with the Prometheus parser and agrees with `triton-mysql status --json`;
  the endpoints listen only where HTTP_PORT/HTTP_BIND_ADDRESS say and serve no secret
  (checked on the first test's cluster while it is quiet, before the writer starts).

Timings are reported (stderr) but only loosely bounded here: `make bench` measures them.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness.cluster import APP_PASSWORD, REPL_PASSWORD, ROOT_PASSWORD, Cluster, Node
from tests.harness.haproxy import SHIPPED, Ack, HAProxy, RoutedWriter, haproxy_binary  # noqa: F401 - Ack: type of writer.acked
from tests.harness.procs import port_open, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (make deps)")]
TRITON = str(Path(sys.executable).parent / "triton-mysql")
SECRETS = (REPL_PASSWORD, APP_PASSWORD, ROOT_PASSWORD)


# -- observers ------------------------------------------------------------------------

class Poller:
    """Calls `sample()` every `interval` s on a thread; keeps (time, value) pairs."""

    def __init__(self, sample, interval: float) -> None:
        self.sample = sample
        self.interval = interval
        self.values: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Poller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                value = self.sample()
            except Exception as exc:  # noqa: BLE001 - discovery hiccup: recorded, not fatal
                value = exc
            self.values.append((time.time(), value))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))


def lock_poller(cluster: Cluster) -> tuple[Poller, object]:
    """The `primary` lock every 50 ms: (node, state, since) or None."""
    from triton_mysql.keys import ClusterKeys, decode
    discovery, config = cluster.discovery()
    key = ClusterKeys.for_config(config).primary

    def sample():
        kv = discovery.get(key)
        record = decode(kv.value) if kv else None
        return (record["node"], record.get("state", "ready"), float(record["since"])) if record else None
    return Poller(sample, 0.05), discovery


def terms(samples: list[tuple[float, object]]) -> list[tuple[str, float, float]]:
    """(node, since, last seen) of every lock term the samples saw."""
    out: dict[tuple[str, float], float] = {}
    for at, value in samples:
        if isinstance(value, tuple):
            node, _state, since = value
            out[(node, since)] = max(at, out.get((node, since), at))
    return [(node, since, last) for (node, since), last in out.items()]


def holdings(lock_terms: list[tuple[str, float, float]], gap: float = 0.25) -> list[tuple[str, float, float]]:
    """Lock terms with a node's back-to-back terms (`promoting`, then `ready`: a new `since`) merged into
    one: (node, when it took the lock, last seen)."""
    out: list[tuple[str, float, float]] = []
    for node, since, last in sorted(lock_terms, key=lambda term: term[1]):
        if out and out[-1][0] == node and since <= out[-1][2] + gap:
            out[-1] = (node, out[-1][1], max(last, out[-1][2]))
        else:
            out.append((node, since, last))
    return out


def acks_outside_terms(acks: list[Ack], lock_terms, slack: float = 0.25) -> list[Ack]:
    """Acks by a node that held no lock term covering their time (± slack)."""
    return [a for a in acks
            if not any(node == a.node and since - slack <= a.at <= last + slack for node, since, last in lock_terms)]


# -- helpers --------------------------------------------------------------------------

ROUTING_ENV = {"SESSION_TTL": "8"}
"""A little more than the harness's 5 s: these tests are about routing, not failover speed, and on a
loaded 2-core machine a hook can take longer than 5 s (then the cluster flaps before the test starts)."""


def start_cluster(cluster_factory, etcd_server) -> tuple[Cluster, Node, list[Node]]:
    cluster = cluster_factory({"ETCD": etcd_server.endpoint}, env=dict(ROUTING_ENV))
    nodes = cluster.start(3)
    primary = cluster.wait_for_primary(90)
    replicas = [n for n in nodes if n is not primary]
    for node in replicas:
        cluster.wait_replicating(node, primary, 90)
    wait_snapshots_idle(cluster)
    return cluster, primary, replicas


def wait_snapshots_idle(cluster: Cluster, quiet: float = 3.0) -> None:
    """Until no snapshot has run for `quiet` s: the new cluster's first snapshots are not this test's subject
    (on a loaded machine a snapshot on the primary can stall its health passes past the session TTL)."""
    since = [time.monotonic()]

    def idle() -> bool:
        if cluster.record("snapshots/lock") is not None:
            since[0] = time.monotonic()
        return time.monotonic() - since[0] >= quiet
    wait_for(idle, 120, interval=0.25, what="no snapshot running")


def check_interval() -> float:
    """Seconds between two HAProxy checks of a server: `inter` on the shipped config's default-server line."""
    match = re.search(r"^\s*default-server\b.*?\binter (\d+)(ms|s)\b", SHIPPED.read_text(), flags=re.M)
    assert match, f"no default-server inter in {SHIPPED}"
    return int(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def ttl(cluster: Cluster) -> float:
    return float(cluster.base_env()["SESSION_TTL"])


@pytest.fixture
def haproxy_factory(tmp_path):
    made: list[HAProxy] = []

    def make(cluster: Cluster) -> HAProxy:
        proxy = HAProxy(tmp_path / f"haproxy{len(made)}", cluster.nodes, cluster.http_port)
        made.append(proxy)
        return proxy.start()
    yield make
    for proxy in made:
        proxy.stop()


# -- tests ----------------------------------------------------------------------------

def test_writes_follow_the_primary_through_haproxy(cluster_factory, etcd_server, haproxy_factory):
    cluster, primary, replicas = start_cluster(cluster_factory, etcd_server)
    check_metrics_and_endpoints(cluster, primary, replicas)  # first, while the cluster is quiet
    proxy = haproxy_factory(cluster)
    by_port = {n.port: n.name for n in cluster.nodes}
    proxy.wait_write_route(primary, 30)
    locks, lock_client = lock_poller(cluster)
    locks.start()
    def read_sample() -> tuple[float, str | None, bool | None]:
        """(when the connection started, the node it reached, that node's read_only)."""
        started = time.time()
        route = proxy.route_of(proxy.read_port, 0.5)
        return (started, by_port.get(route[0]), route[1]) if route else (started, None, None)
    reads = Poller(read_sample, 0.1).start()
    writer = RoutedWriter(proxy, by_port).start(primary)
    try:
        time.sleep(2)

        # -- planned: SIGTERM to the primary's supervisor --------------------------------
        signalled = time.time()
        assert primary.stop() == 0
        new = cluster.wait_for_primary(30, exclude=primary)
        wait_for(lambda: writer.first_on(new.name, signalled), 30, what=f"a write acknowledged by {new.name}")
        routed, routed_row = writer.first_on(new.name, signalled).at, writer.first_on(new.name, signalled).row
        promoted = float(cluster.record("failover/last")["at"])
        sys.stderr.write(f"planned: writes through HAProxy reach {new.name} {routed - signalled:.2f} s after "
                         f"SIGTERM, {routed - promoted:.2f} s after its promotion\n")
        time.sleep(1)
        lost = writer.missing_on(new)
        assert lost == [], (f"acknowledged writes lost on a planned stop: "
                            f"{[(a.row, a.node, round(a.at - signalled, 3)) for a in writer.acked if a.row in lost]}; "
                            f"the last acks before {new.name}'s first: "
                            f"{[(a.row, a.node, round(a.at - signalled, 3)) for a in writer.acked if a.row <= routed_row][-5:]}")
        read_after_fence = [started for _at, (started, name, _ro) in reads.values
                            if name == primary.name and started > signalled]
        assert read_after_fence == [], "the read port routed to the old primary after it was fenced"
        assert routed - promoted < 10, "writes took far too long to follow the new primary"

        # -- the old primary comes back as a replica ----------------------------------
        primary.start()
        cluster.wait_replicating(primary, new, 90)
        wait_for(lambda: primary.http("/replica")[0] == 200, 30, what=f"{primary.name} /replica 200")
        time.sleep(1)

        # -- crash: kill -9 of the whole node ----------------------------------------------
        killed_at = time.time()
        new.kill()
        third = cluster.wait_for_primary(ttl(cluster) + 30, exclude=new)
        wait_for(lambda: writer.first_on(third.name, killed_at), 30, what=f"a write acknowledged by {third.name}")
        routed = writer.first_on(third.name, killed_at).at
        promoted = float(cluster.record("failover/last")["at"])
        time.sleep(1)
    finally:
        writer.stop()
        reads.stop()
        locks.stop()
        lock_client.close()
    missing = writer.missing_on(third)
    last_acks_by_killed = [a.row for a in writer.acked if a.node == new.name][-len(missing):] if missing else []
    sys.stderr.write(f"crash: writes through HAProxy reach {third.name} {routed - killed_at:.2f} s after kill -9, "
                     f"{routed - promoted:.2f} s after its promotion; {len(missing)} acknowledged write(s) lost "
                     f"(the unreplicated tail): {missing}\n")
    assert missing == last_acks_by_killed, "lost writes are not the killed primary's last ones"
    assert len(missing) <= 5, missing
    lock_terms = terms(locks.values)
    outside = acks_outside_terms(writer.acked, lock_terms)
    assert outside == [], f"writes acknowledged by a node that did not hold the lock: {outside[:5]}; terms: {lock_terms}"
    holders = {node for node, _since, _last in lock_terms}
    read_nodes = {name for _at, (_started, name, _ro) in reads.values if name}
    # HAProxy picks the node when the connection is made, so a read counts from when it started (a read
    # that started before a term began reached a replica).  HAProxy learns that a replica won the lock at
    # its next check of /replica: one check interval is its own delay, not a wrong answer.
    grace = check_interval()
    held = holdings(lock_terms)
    reads_on_holder = [(node, round(started - since, 3), read_only) for _at, (started, name, read_only) in reads.values
                       for node, since, last in held
                       if name == node and since + grace <= started <= last + 0.25]
    assert reads_on_holder == [], (f"the read port routed to the lock holder more than HAProxy's check interval "
                                   f"({grace:g} s) into its term (node, s into the term, read_only): "
                                   f"{reads_on_holder[:10]}; terms: {lock_terms}")
    on_writable = [(name, started) for _at, (started, name, read_only) in reads.values if read_only is False
                   and not any(name == node and since <= started < since + grace for node, since, _last in held)]
    assert on_writable == [], f"the read port reached a writable node (node, when): {on_writable[:10]}"
    assert read_nodes, "the read port never routed anywhere"
    assert holders >= {primary.name, new.name, third.name}


class EndpointSampler:
    """GET `path` on every node every `interval` s, all nodes at once, each with a short timeout.

    A round starts every `interval` whatever the previous one is waiting for (a frozen node's
    request times out after `timeout`), so the cadence holds through a freeze."""

    def __init__(self, nodes: list[Node], path: str, interval: float = 0.05, timeout: float = 0.4) -> None:
        self.nodes, self.path, self.interval, self.timeout = nodes, path, interval, timeout
        self.rounds: list[tuple[float, dict[str, object]]] = []
        self._pool = ThreadPoolExecutor(max_workers=8 * len(nodes))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "EndpointSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.rounds.append((time.time(), {n.name: self._pool.submit(n.http, self.path, self.timeout)
                                              for n in self.nodes}))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> list[tuple[float, dict[str, int | None]]]:
        self._stop.set()
        self._thread.join(10)
        out = [(at, {name: future.result()[0] for name, future in answers.items()}) for at, answers in self.rounds]
        self._pool.shutdown()
        return out


def test_primary_endpoint_through_a_frozen_primary(cluster_factory, etcd_server):
    """SIGSTOP the primary's whole node (supervisor, its HTTP threads, mysqld, hooks) for two
    session TTLs: another node is elected; after SIGCONT the old primary fences itself.  GET
    /primary on every node every 50 ms: never two 200s in one sample, and the old primary never
    answers 200 again (the documented window for /primary is empty: rules.py)."""
    cluster, primary, replicas = start_cluster(cluster_factory, etcd_server)
    wait_for(lambda: primary.http("/primary")[0] == 200, 30, what="/primary 200 on the primary")
    sampler = EndpointSampler(cluster.nodes, "/primary").start()
    try:
        time.sleep(1)
        pids = primary.freeze()
        frozen_at = time.time()
        new = cluster.wait_for_primary(4 * ttl(cluster), exclude=primary)
        wait_for(lambda: new.http("/primary")[0] == 200, 30, what="/primary 200 on the new primary")
        remaining = 2 * ttl(cluster) - (time.time() - frozen_at)
        if remaining > 0:
            time.sleep(remaining)
        thawed_at = time.time()
        primary.thaw(pids)
        wait_for(lambda: primary.read_only() is True, 30, what="the old primary fencing itself")
        time.sleep(2 * float(cluster.base_env()["HEALTH_POLL"]) + 1)
    finally:
        rounds = sampler.stop()
    doubles = [(round(at - thawed_at, 2), answers) for at, answers in rounds
               if sum(1 for code in answers.values() if code == 200) > 1]
    old_after = [round(at - thawed_at, 2) for at, answers in rounds if at > frozen_at and answers[primary.name] == 200]
    new_ok = [at for at, answers in rounds if answers[new.name] == 200]
    sys.stderr.write(f"frozen primary: {len(rounds)} samples of /primary on 3 nodes, every 50 ms; two 200s in "
                     f"{len(doubles)}; old primary 200 after the freeze in {len(old_after)}; new primary first 200 "
                     f"{min(new_ok) - frozen_at:.2f} s after the freeze\n")
    assert len(rounds) > 100
    assert doubles == [], f"two nodes answered 200 to /primary in one sample: {doubles[:5]}"
    assert old_after == [], f"the old primary answered 200 after it was frozen (s after SIGCONT): {old_after[:5]}"
    assert new_ok and max(new_ok) > thawed_at


def check_metrics_and_endpoints(cluster: Cluster, primary: Node, replicas: list[Node]) -> None:
    """On a quiet cluster: /metrics (Prometheus parser) and /status agree with `triton-mysql status
    --json`; each endpoint answers as the node's role says; HTTP listens only on the node's own
    address; no answer contains a secret."""
    from prometheus_client.parser import text_string_to_metric_families
    from triton_mysql.mysql.gtid import highest_per_source

    for node in cluster.nodes:
        wait_for(lambda n=node: n.http("/health")[0] == 200, 30, what=f"{node.name} /health 200")
    wait_for(lambda: primary.http("/primary")[0] == 200, 30, what="/primary 200")
    for node in replicas:
        wait_for(lambda n=node: n.http("/replica")[0] == 200, 30, what=f"{node.name} /replica 200")

    def status() -> dict:
        env = {**cluster.node("node1").env(), "NODE_NAME": "observer"}
        out = subprocess.run([TRITON, "status", "--json"], env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def settled() -> dict | None:  # every member record shows the same GTID (a quiet cluster)
        s = status()
        gtids = {n["gtid"] for n in s["nodes"]}
        return s if len(gtids) == 1 and all(n["healthy"] for n in s["nodes"]) else None
    wait_for(settled, 30, interval=0.5, what="member records with one GTID")
    time.sleep(1.5)  # let every supervisor read the records again
    s = status()
    by_name = {n["node"]: n for n in s["nodes"]}
    for node in cluster.nodes:
        code, text = node.http("/metrics")
        assert code == 200
        metrics: dict[tuple[str, tuple], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = dict(sample.labels)
                if sample.name.startswith("triton_mysql_"):
                    assert (labels.pop("service"), labels.pop("node")) == ("mysql", node.name), sample
                metrics[(sample.name, tuple(sorted(labels.items())))] = sample.value

        def m(name: str, **labels: str) -> float | None:
            return metrics.get((f"triton_mysql_{name}", tuple(sorted(labels.items()))))
        want = by_name[node.name]
        where = f"{node.name}: {want}"
        assert m("role", role=want["role"]) == 1.0, where
        assert sum(v for (name, _), v in metrics.items() if name == "triton_mysql_role") == 1.0, where
        assert m("lock_held") == float(want["holds_lock"]), where
        assert m("healthy") == float(want["healthy"]) and m("candidate") == float(want["candidate"]), where
        assert m("replication_lag_seconds") == want["lag_seconds"], where
        for domain, seq in highest_per_source("mariadb", want["gtid"]).items():
            assert m("gtid_executed_sequence", domain=domain) == seq, where
        for domain, seq in highest_per_source("mariadb", want["received_gtid"]).items():
            assert m("gtid_received_sequence", domain=domain) == seq, where
        assert m("cluster_primary_ready") == 1.0
        assert m("writable") == float(want["role"] == "primary"), where
        if want["role"] == "replica":
            assert m("replication_io_running") == 1.0 and m("replication_sql_running") == 1.0, where
        snap = s["last_snapshot"]
        assert m("snapshot_size_bytes") == snap["size"]
        assert abs(m("snapshot_age_seconds") - snap["age_seconds"]) < 10
        assert m("snapshot_running") == float(bool(s["snapshot_running"]))
        assert m("primary_endpoint_ok") == float(node is primary)
        assert m("replica_endpoint_ok") == float(node is not primary)
        assert m("mysqld_up") == 1.0 and m("maintenance") == 0.0
        assert (m("hook_runs_total", hook="health", exit_code="0") or 0) >= 1
        node_status = json.loads(node.http("/status")[1])
        assert node_status["role"] == want["role"] and node_status["holds_lock"] == want["holds_lock"]
        assert node_status["member"]["gtid"] == want["gtid"]
        expected = {"/primary": 200 if node is primary else 503, "/replica": 503 if node is primary else 200,
                    "/health": 200}
        for path, code in expected.items():
            assert node.http(path)[0] == code, (node.name, path)
        for path in ("/primary", "/replica", "/replica?lag=0", "/health", "/status", "/metrics", "/nope"):
            body = node.http(path)[1]
            assert not any(secret in body for secret in SECRETS), (node.name, path)
        assert port_open(node.address, cluster.http_port)
        assert not port_open("127.0.0.1", cluster.http_port), "HTTP bound beyond HTTP_BIND_ADDRESS"
        assert "contained a secret value" not in node.log_text()
