"""HTTP endpoints and HAProxy routing of a real three-node cluster.  `python -m bench.routing`

Three real nodes on etcd (tests/harness/cluster.py: SESSION_TTL=5, HEALTH_POLL=1).

* **Endpoint latency**: GET on each endpoint with a new TCP connection per request (as
  a load balancer's check does), interleaved with the same request to a bare
  `http.server` (ThreadingHTTPServer answering a fixed 200, a Python process of its own)
  measured in the same run: the floor for any Python HTTP endpoint.  /primary on the
  primary and /replica on a replica run their request-time SQL (read_only, replica
  status); /primary on a replica answers from the supervisor's view alone.
  Goal (issue 18): median < 10 ms for /primary, /replica and /health.
* **Routing**: Debian's haproxy with the shipped etc/haproxy.cfg checks (tests/harness/
  haproxy.py) in front of the nodes, a writer inserting a row every 10 ms through the
  write port (reconnecting on error).  Planned (SIGTERM to the primary's supervisor)
  and crash (kill -9 of its whole node): seconds from the promotion (the new primary's
  `failover/last.at`) and from the signal to the first write acknowledged by the new
  primary through HAProxy.  Goal: within 1 s of the promotion.  After each run the old
  primary is started again and must rejoin before the next one.
"""
from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit, ratio, stats, stop_on_sigterm
from bench.failover import converge, discovery_service, rejoin
from tests.harness.cluster import Cluster, Node
from tests.harness.haproxy import HAProxy, RoutedWriter
from tests.harness.mariadb import mysql_tmp_dir
from tests.harness.procs import Proc, free_port, port_open, wait_for

GOAL_LATENCY_MS = 10.0
GOAL_ROUTING_S = 1.0
BARE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = b'{"ok": true}\\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def log(message: str) -> None:
    print(message, flush=True)


def get_ms(address: str, port: int, path: str) -> tuple[float, int | None]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        code: int | None = response.status
    except (OSError, http.client.HTTPException):
        code = None
    finally:
        conn.close()
    return (time.perf_counter() - start) * 1000, code


def latency(cluster: Cluster, primary: Node, replica: Node, work: Path, requests: int) -> dict[str, Any]:
    port = free_port("127.0.0.1")
    bare = Proc("bare http.server", [sys.executable, "-c", BARE_SERVER, str(port)], work / "bare.log")
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 15, what="the bare http.server")
        targets = {
            "baseline": ("127.0.0.1", port, "/", 200),
            "/primary on the primary": (primary.address, cluster.http_port, "/primary", 200),
            "/primary on a replica": (replica.address, cluster.http_port, "/primary", 503),
            "/replica on a replica": (replica.address, cluster.http_port, "/replica", 200),
            "/health": (replica.address, cluster.http_port, "/health", 200),
            "/status": (primary.address, cluster.http_port, "/status", 200),
            "/metrics": (primary.address, cluster.http_port, "/metrics", 200),
        }
        times: dict[str, list[float]] = {name: [] for name in targets}
        wrong: dict[str, int] = {name: 0 for name in targets}
        for name, (address, p, path, _) in targets.items():  # warm up (imports, connections)
            get_ms(address, p, path)
        for _ in range(requests):
            for name, (address, p, path, expected) in targets.items():
                ms, code = get_ms(address, p, path)
                times[name].append(ms)
                wrong[name] += code != expected
    finally:
        bare.stop(timeout=5)
    base = stats(times["baseline"])
    out: dict[str, Any] = {"baseline": base}
    for name in targets:
        if name == "baseline":
            continue
        s = stats(times[name])
        out[name] = {**s, "ratio": ratio(s["median"], base["median"]), "unexpected_status": wrong[name]}
    return out


def routing_run(cluster: Cluster, proxy: HAProxy, writer: RoutedWriter, kind: str) -> dict[str, Any]:
    begun = time.time()
    old = converge(cluster, timeout=120)
    proxy.wait_write_route(old, 30)
    wait_for(lambda: writer.first_on(old.name, time.time() - 0.5), 30, what="the writer writing to the primary")
    signalled = time.time()
    if kind == "planned":
        old.stop()
    else:
        old.kill()
    new = cluster.wait_for_primary(60, exclude=old)
    wait_for(lambda: writer.first_on(new.name, signalled), 60, what=f"a write acknowledged by {new.name}")
    routed = writer.first_on(new.name, signalled).at
    record = wait_for(lambda: (r := cluster.record("failover/last")) and r.get("to") == new.name
                      and float(r.get("at") or 0) >= signalled and r, 30, what="failover/last")
    promoted = float(record["at"])
    time.sleep(0.5)
    missing = [row for row in writer.missing_on(new) if row in {a.row for a in writer.acked if a.at >= begun}]
    how = rejoin(cluster, old, new)
    run = {"kind": kind, "from": old.name, "to": new.name, "signal_to_routed_s": round(routed - signalled, 3),
           "promoted_to_routed_s": round(routed - promoted, 3), "signal_to_promoted_s": round(promoted - signalled, 3),
           "acked_missing": len(missing), "old_primary": how, "recorded_as": record.get("kind"),
           "missing_rows": missing[:10]}
    log(f"  {kind}: {old.name} -> {new.name}: promoted {run['signal_to_promoted_s']:.2f} s after the signal, "
        f"writes routed {run['promoted_to_routed_s']:.2f} s after the promotion ({run['signal_to_routed_s']:.2f} s "
        f"after the signal); {len(missing)} acknowledged write(s) missing {missing[:10]}; recorded as "
        f"{record.get('kind')}; old primary {how}")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint (default 200)")
    parser.add_argument("--planned", type=int, default=3, help="planned failovers (default 3)")
    parser.add_argument("--crash", type=int, default=3, help="crash failovers (default 3)")
    parser.add_argument("--session-ttl", type=float, default=None,
                        help="SESSION_TTL for the nodes (default: the harness's 5 s); the routing figure is measured "
                             "from the promotion, so it does not depend on it")
    args = parser.parse_args()
    stop_on_sigterm()
    settings = {"requests": args.requests, "planned": args.planned, "crash": args.crash}
    work = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    try:
        with discovery_service("etcd", work) as env:
            extra = {"SESSION_TTL": f"{args.session_ttl:g}"} if args.session_ttl else {}
            cluster = Cluster(mysql_tmp_dir("bench-routing"), env, env=extra)
            proxy: HAProxy | None = None
            writer: RoutedWriter | None = None
            try:
                cluster.start(3)
                primary = converge(cluster, timeout=120)
                replica = next(n for n in cluster.nodes if n is not primary)
                wait_for(lambda: primary.http("/primary")[0] == 200 and replica.http("/replica")[0] == 200, 60,
                         what="/primary and /replica answering 200")
                settings.update({k: float(cluster.base_env()[k]) for k in ("SESSION_TTL", "HEALTH_POLL")})
                log(f"endpoint latency: {args.requests} requests per endpoint, new connection each")
                lat = latency(cluster, primary, replica, work, args.requests)
                for name, s in lat.items():
                    log(f"  {name:28s} median {s['median']:.2f} ms  p90 {s['p90']:.2f} ms  max {s['max']:.2f} ms"
                        + (f"  ({s['ratio']} x bare)" if "ratio" in s else ""))
                proxy = HAProxy(work / "haproxy", cluster.nodes, cluster.http_port).start()
                primary = converge(cluster, timeout=120)  # the primary may have changed meanwhile (a busy machine)
                writer = RoutedWriter(proxy, {n.port: n.name for n in cluster.nodes}).start(primary)
                runs = [routing_run(cluster, proxy, writer, kind)
                        for kind in ["planned"] * args.planned + ["crash"] * args.crash]
            finally:
                if writer is not None:
                    writer.stop()
                if proxy is not None:
                    proxy.stop()
                try:
                    cluster.stop_all(timeout=30)
                finally:
                    cluster.kill_all()
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        print(f"cannot measure: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit("routing", {}, ok=False, error=f"{type(exc).__name__}: {exc}", settings=settings)
        return 1
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    figures: dict[str, Any] = {"latency": lat, "runs": runs}
    for kind in ("planned", "crash"):
        mine = [r for r in runs if r["kind"] == kind]
        if mine:
            figures[kind] = {"promoted_to_routed": stats(r["promoted_to_routed_s"] for r in mine),
                             "signal_to_routed": stats(r["signal_to_routed_s"] for r in mine),
                             "acked_missing": sum(r["acked_missing"] for r in mine)}
    checks = [lat[n]["median"] for n in ("/primary on the primary", "/replica on a replica", "/health")]
    latency_ok = max(checks) < GOAL_LATENCY_MS
    routing_ok = all(figures[k]["promoted_to_routed"]["median"] < GOAL_ROUTING_S for k in ("planned", "crash")
                     if k in figures)
    figures["latency_goal_met"], figures["routing_goal_met"] = latency_ok, routing_ok
    emit("routing", figures, ok=True, settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
