"""How long does one cluster view take to read?  `python -m bench.discovery_view [--reads 200]`

One "view" is what a hook reads before deciding (issue 4): every record under
the cluster's root (`list(<root>/)`: members, nodes, snapshots, failover...),
the lock (`get(<root>/primary)`) and the healthy instances of
`<SERVICE_NAME>-primary`.  It is measured against a real local etcd and against
the Consul double, each loaded with a three-node cluster (session-bound lock
and member records, durable node records, a snapshot manifest, three
services), through the same `triton_mysql.discovery` clients the hooks use.

Baseline, measured interleaved with ours in the same run: the same three reads
through the bare client library (etcd3gw / py-consul, no triton_mysql layer).

Prints median / p90 / max per backend.  Goal (issue 4): < 20 ms per view.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import emit
from tests.harness.discovery import DiscoveryServer
from triton_mysql.discovery import Discovery, ServiceSpec

SERVICE = "mysql"
NODES = ("mysql-1", "mysql-2", "mysql-3")


def _load_cluster(d: Discovery, root: str, ttl: int) -> list[ServiceSpec]:
    """Write what a healthy three-node cluster keeps in discovery."""
    now = time.time()
    sessions = {node: d.create_session(node, ttl) for node in NODES}
    primary = NODES[0]
    lock = {"node": primary, "address": "127.0.0.2", "port": 3306, "server_id": 1, "since": now}
    assert d.acquire(f"{root}/primary", json.dumps(lock).encode(), sessions[primary])
    for i, node in enumerate(NODES):
        member = {"node": node, "address": f"127.0.0.{i + 2}", "port": 3306, "server_id": i + 1,
                  "role": "primary" if node == primary else "replica", "gtid": "0-1-1234",
                  "received_gtid": "0-1-1234", "candidate": node != primary, "healthy": True,
                  "lag_seconds": 0.0 if node != primary else None, "snapshot_id": None, "updated": now}
        assert d.put(f"{root}/members/{node}", json.dumps(member).encode(), session=sessions[node])
        d.put(f"{root}/nodes/{node}", json.dumps(member).encode())
    d.put(f"{root}/bootstrap", json.dumps({"node": primary, "at": now}).encode())
    d.put(f"{root}/snapshots/last", json.dumps({"id": "mysql-20260101T000000Z", "size": 103_000_000,
                                                "gtid": "0-1-1200", "sha256": "0" * 64}).encode())
    d.put(f"{root}/failover/last", json.dumps({"from": None, "to": primary, "at": now, "kind": "automatic"}).encode())
    specs = [ServiceSpec(id=f"{SERVICE}-primary-{primary}", name=f"{SERVICE}-primary", address="127.0.0.2",
                         port=3306, ttl=30)]
    specs += [ServiceSpec(id=f"{SERVICE}-{n}", name=SERVICE, address=f"127.0.0.{i + 3}", port=3306, ttl=30)
              for i, n in enumerate(NODES[1:])]
    for spec in specs:
        d.register_service(spec)
        d.heartbeat(spec)
    return specs


def read_view(d: Discovery, root: str) -> tuple[int, object, list]:
    """The reads of one cluster view (what the hooks decide on)."""
    records = d.list(f"{root}/")
    lock = d.get(f"{root}/primary")
    primaries = d.healthy(f"{SERVICE}-primary")
    return len(records), lock, primaries


def bare_reader(kind: str, server: DiscoveryServer, root: str):
    """The same three reads through the bare client library: the baseline."""
    if kind == "etcd":
        from etcd3gw import Etcd3Client
        client = Etcd3Client(host=server.host, port=server.port, timeout=2, api_path="/v3/")
        services = f"/triton-mysql/services/{SERVICE}-primary/"

        def read() -> None:
            client.get_prefix(f"{root}/")
            client.get(f"{root}/primary")
            client.get_prefix(services)
        return read
    import consul
    c = consul.Consul(host=server.host, port=server.port, connections_timeout=2)

    def read_consul() -> None:
        c.kv.get(f"{root}/", recurse=True)
        c.kv.get(f"{root}/primary")
        c.health.service(f"{SERVICE}-primary", passing=True)
    return read_consul


def measure(kind: str, reads: int = 200, workdir: Path | None = None) -> dict[str, float]:
    """Start a `kind` server, load a cluster, time `reads` views (and as many bare reads,
    interleaved); figures in milliseconds."""
    if reads < 50:
        raise ValueError("at least 50 reads are needed for meaningful figures")
    own_dir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"bench-discovery-{kind}-"))
    server = DiscoveryServer.launch(kind, workdir)
    try:
        d = server.client(timeout=2.0)
        root = server.kv_root(SERVICE)
        _load_cluster(d, root, server.min_session_ttl * 3)
        count, lock, primaries = read_view(d, root)
        assert count == 10 and lock is not None and len(primaries) == 1, (count, lock, primaries)
        bare = bare_reader(kind, server, root)
        for _ in range(10):  # warm up connections
            read_view(d, root)
            bare()
        samples, baseline = [], []
        for _ in range(reads):
            start = time.perf_counter()
            read_view(d, root)
            samples.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            bare()
            baseline.append((time.perf_counter() - start) * 1000)
    finally:
        server.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)  # etcd preallocates ~60 MB of WAL
    samples.sort()
    baseline.sort()
    return {"reads": reads, "median_ms": statistics.median(samples),
            "p90_ms": samples[int(0.9 * (len(samples) - 1))], "max_ms": samples[-1], "min_ms": samples[0],
            "bare_median_ms": statistics.median(baseline), "bare_max_ms": baseline[-1],
            "ratio_vs_bare": statistics.median(samples) / statistics.median(baseline)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200, help="views read per backend (>= 50)")
    parser.add_argument("--kind", choices=("etcd", "consul"), action="append",
                        help="backend(s) to measure (default: both)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    try:
        results = {kind: measure(kind, args.reads) for kind in (args.kind or ["etcd", "consul"])}
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        print(f"cannot measure: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit("discovery", {}, ok=False, error=f"{type(exc).__name__}: {exc}", settings={"reads": args.reads})
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"cluster view = list(<root>/) + get(<root>/primary) + healthy({SERVICE}-primary); goal < 20 ms")
        print(f"{'backend':<16}{'reads':>7}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}{'bare median':>13}"
              f"{'ratio':>7}")
        for kind, r in results.items():
            label = "etcd 3.4" if kind == "etcd" else "Consul double"
            print(f"{label:<16}{r['reads']:>7}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}{r['max_ms']:>9.2f}"
                  f"{r['bare_median_ms']:>13.2f}{r['ratio_vs_bare']:>7.2f}")
    emit("discovery", {kind: {k: round(v, 3) for k, v in r.items()} for kind, r in results.items()},
         settings={"reads": args.reads, "goal_ms": 20.0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
