"""Steady-state cost of a node, warm start against cold, in one run.  `python -m bench.node_idle`

A real idle three-node cluster (containerbuddy + mariadbd + the real hooks,
tests/harness/cluster.py) with the shipped supervisor config and its
defaults: HEALTH_POLL=2, SNAPSHOT_POLL=10, SESSION_TTL=10, DISCOVERY_TIMEOUT=2,
the primary backend polled every second.  The same cluster runs in each mode
in turn (every node restarted with WARM_START=true or false):

* idle CPU of each node, from /proc over `--seconds`: the supervisor (its
  threads and every child it reaped: cold hooks) plus the warm-start helper
  (itself and every hook it reaped); mysqld excluded and reported next to it.
  A hook running across an edge of the window is counted at most once, when
  reaped; the error is one pass either way.
* health pass latency: from the supervisor's start of the check to its exit
  code, as the supervisor itself logs it ("health …: pid N exited (…) after
  X ms", a DEBUG line: the supervisor's own log level is raised through its
  config and SIGHUP, the hooks' LOG_LEVEL stays INFO), for the primary
  (`health mysql-primary`) and the replicas (`health mysql`).
* RSS of the supervisor and of the helper.

Throughout both windows every node's HTTP endpoints are checked as the issue
sets it (GET /primary and /replica every 2 s, a new connection each, as one
HAProxy with `inter 2s`; the shipped haproxy.cfg checks every 500 ms, whose
cost bench.supervisor_idle measures) and /metrics is scraped every 15 s; the
supervisor's share includes answering them.

Goals (issue 19): idle cost < 1 % of one core per node; health pass median
< 50 ms on the primary and on a replica; supervisor RSS < 40 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import HttpChecker, emit, stop_on_sigterm
from bench.failover import converge, discovery_service
from tests.harness.cluster import Cluster, Node
from tests.harness.mariadb import mysql_tmp_dir
from tests.harness.procs import descendants, wait_for

CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_CPU = 1.0
GOAL_LATENCY_MS = 50.0
GOAL_RSS_MB = 40.0
CHECK_INTERVAL = 2.0
"""Seconds between two checks of a node's /primary and /replica (issue 19: "checked every 2 s")."""
SHIPPED = {"HEALTH_POLL": "2", "SNAPSHOT_POLL": "10", "SESSION_TTL": "10", "DISCOVERY_TIMEOUT": "2"}
EXIT_LINE = re.compile(r"^(\S+Z) DEBUG +containerbuddy\[(\S+)\]: health (\S+): pid \d+ exited \((.+?)\) "
                       r"after ([\d.]+) ms", re.M)


def log(message: str) -> None:
    print(message, flush=True)


# -- /proc --------------------------------------------------------------------------------------

def stat(pid: int) -> tuple[int, int] | None:
    """(own utime+stime, reaped children's cutime+cstime) in ticks; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def helper_of(node: Node) -> int | None:
    if node.proc is None:
        return None
    for pid, cmd in descendants(node.proc.pid):
        if "triton_mysql.supervisor.warm" in cmd:
            return pid
    return None


def node_pids(node: Node) -> dict[str, int | None]:
    assert node.proc is not None
    return {"supervisor": node.proc.pid, "helper": helper_of(node), "mysqld": node.mysqld_pid()}


def calibration(runs: int = 5) -> float:
    """CPU ms of `python -c pass` (median of `runs`): how much the machine's load inflates CPU time
    right now (20 ms on a quiet machine, BENCHMARKS.md of 2026-11-27)."""
    import resource
    import subprocess
    values = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        values.append(1000 * (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime))
    return round(statistics.median(values), 1)


# -- cluster ------------------------------------------------------------------------------------

def restart(cluster: Cluster, warm: bool) -> None:
    """Every node stopped and started again with WARM_START set; converged; helpers ready."""
    cluster.stop_all(timeout=90)
    for node in cluster.nodes:
        node.extra_env["WARM_START"] = "true" if warm else "false"
        node.start()
    converge(cluster, timeout=180)
    if warm:
        for node in cluster.nodes:
            wait_for(lambda n=node: "warm start: helper" in n.log_text() and " ready: " in n.log_text(), 60,
                     what=f"{node.name}'s warm-start helper")


DEBUG_KEY = '\n  "logging": {"level": "DEBUG", "format": "text", "output": "stderr"},'


def set_supervisor_debug(cluster: Cluster, on: bool) -> None:
    """Raise (or restore) the supervisors' own log level: a `logging` key in the node's config
    (a template, not JSON: edited as text, as the hooks edit the service name) + SIGHUP."""
    for node in cluster.nodes:
        text = node.config_path.read_text()
        text = text.replace("{" + DEBUG_KEY, "{", 1)
        if on:
            text = text.replace("{", "{" + DEBUG_KEY, 1)
        tmp = node.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(node.config_path)
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGHUP)


# -- measurements -------------------------------------------------------------------------------

def measure_cpu(cluster: Cluster, seconds: float) -> dict[str, Any]:
    pids = {n.name: node_pids(n) for n in cluster.nodes}
    before = {name: {role: stat(pid) if pid else None for role, pid in p.items()} for name, p in pids.items()}
    t0 = time.monotonic()
    rss: dict[str, dict[str, float]] = {name: {"supervisor": 0.0, "helper": 0.0} for name in pids}
    while time.monotonic() - t0 < seconds:
        for name, p in pids.items():
            for role in ("supervisor", "helper"):
                rss[name][role] = max(rss[name][role], rss_mib(p[role]) or 0.0)
        time.sleep(1.0)
    elapsed = time.monotonic() - t0
    after = {name: {role: stat(pid) if pid else None for role, pid in p.items()} for name, p in pids.items()}
    nodes = {}
    for name in pids:
        def delta(role: str, children: bool = True) -> float:
            a, b = before[name][role], after[name][role]
            if a is None or b is None:
                return 0.0
            own = b[0] - a[0]
            kids = (b[1] - a[1]) if children else 0
            return (own + kids) / CLK_TCK
        supervisor_own = delta("supervisor", children=False)
        supervisor_all = delta("supervisor")
        helper_all = delta("helper")
        node_cpu = supervisor_all + helper_all
        nodes[name] = {
            "node_cpu_percent": round(100 * node_cpu / elapsed, 2),
            "supervisor_own_percent": round(100 * supervisor_own / elapsed, 2),
            "hooks_percent": round(100 * (node_cpu - supervisor_own) / elapsed, 2),
            "mysqld_percent": round(100 * delta("mysqld", children=False) / elapsed, 2),
            "supervisor_rss_mib": rss[name]["supervisor"],
            "helper_rss_mib": rss[name]["helper"] or None,
            "helper_alive_throughout": bool(pids[name]["helper"]) and after[name]["helper"] is not None,
        }
    values = [n["node_cpu_percent"] for n in nodes.values()]
    return {"seconds": round(elapsed, 1), "nodes": nodes, "median_node_cpu_percent": round(statistics.median(values), 2),
            "max_node_cpu_percent": max(values),
            "median_mysqld_percent": round(statistics.median(n["mysqld_percent"] for n in nodes.values()), 2)}


def measure_latency(cluster: Cluster, seconds: float) -> dict[str, Any]:
    offsets = {n.name: len(n.log_text()) for n in cluster.nodes}
    set_supervisor_debug(cluster, True)
    try:
        time.sleep(seconds)
    finally:
        set_supervisor_debug(cluster, False)
    primary: list[float] = []
    replica: list[float] = []
    codes: dict[str, int] = {}
    for node in cluster.nodes:
        text = node.log_text()[offsets[node.name]:]
        for match in EXIT_LINE.finditer(text):
            service, outcome, ms = match.group(3), match.group(4), float(match.group(5))
            codes[outcome] = codes.get(outcome, 0) + 1
            (primary if service.endswith("-primary") else replica).append(ms)

    def summary(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"runs": 0}
        data = sorted(values)
        return {"runs": len(data), "median_ms": round(statistics.median(data), 1),
                "p95_ms": round(data[min(len(data) - 1, int(round(0.95 * (len(data) - 1))))], 1),
                "max_ms": round(data[-1], 1)}
    return {"primary": summary(primary), "replica": summary(replica), "outcomes": codes}


# -- run ------------------------------------------------------------------------------------------

def run(backend: str, modes: list[str], seconds: float, latency_seconds: float, settle: float) -> dict[str, Any]:
    workdir = mysql_tmp_dir(f"bench-idle-{backend}")
    service_dir = Path(tempfile.mkdtemp(prefix=f"bench-idle-{backend}-"))
    results: dict[str, Any] = {}
    try:
        with discovery_service(backend, service_dir) as env:
            cluster = Cluster(workdir, env, env=dict(SHIPPED))
            try:
                current: bool | None = None
                for i, mode in enumerate(modes):
                    warm = mode == "warm"
                    log(f"[{backend}] {mode}: {'starting' if current is None else 'restarting'} the cluster "
                        f"(WARM_START={'true' if warm else 'false'})")
                    if current is None:
                        for _ in range(3):
                            node = cluster.add_node()
                            node.extra_env["WARM_START"] = "true" if warm else "false"
                            node.start()
                        converge(cluster, timeout=240)
                        if warm:
                            for node in cluster.nodes:
                                wait_for(lambda n=node: " ready: " in n.log_text(), 90, what="helper ready")
                    elif current != warm:
                        restart(cluster, warm)
                    current = warm
                    time.sleep(settle)
                    load0 = os.getloadavg()[0]
                    calib = calibration()
                    log(f"[{backend}] {mode}: idle CPU over {seconds:g} s (load {load0:.2f}; `python -c pass` "
                        f"{calib} ms CPU)")
                    checkers = [HttpChecker(n.address, n.http_port, interval=CHECK_INTERVAL).start()
                                for n in cluster.nodes]
                    try:
                        cpu = measure_cpu(cluster, seconds)
                        latency = measure_latency(cluster, latency_seconds)
                    finally:
                        for checker in checkers:
                            checker.stop()
                    http = {"requests": sum(c.requests for c in checkers), "failures": sum(c.failures for c in checkers)}
                    log(f"[{backend}] {mode}: node CPU {[n['node_cpu_percent'] for n in cpu['nodes'].values()]} %, "
                        f"mysqld {[n['mysqld_percent'] for n in cpu['nodes'].values()]} %")
                    log(f"[{backend}] {mode}: health latency over {latency_seconds:g} s; HTTP checks {http}")
                    log(f"[{backend}] {mode}: primary {latency['primary']}, replica {latency['replica']}")
                    results.setdefault(mode, []).append({"cpu": cpu, "latency": latency, "http_checks": http, "load_start": round(load0, 2),
                                                         "load_end": round(os.getloadavg()[0], 2), "round": i,
                                                         "python_pass_cpu_ms": calib})
            finally:
                try:
                    cluster.stop_all(timeout=60)
                finally:
                    cluster.kill_all()
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        shutil.rmtree(service_dir, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="etcd", choices=("etcd", "consul"))
    parser.add_argument("--modes", default="warm,cold,warm", help="comma list of warm/cold, measured in this order")
    parser.add_argument("--seconds", type=float, default=60.0, help="idle CPU window per mode (default 60)")
    parser.add_argument("--latency-seconds", type=float, default=40.0, help="latency window per mode (default 40)")
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    stop_on_sigterm()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    settings = {"backend": args.backend, "seconds": args.seconds, "latency_seconds": args.latency_seconds,
                "modes": modes, **{k: float(v) for k, v in SHIPPED.items()}, "BACKEND_POLL": 1.0, "nodes": 3}
    try:
        results = run(args.backend, modes, args.seconds, args.latency_seconds, args.settle)
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        import traceback
        traceback.print_exc()
        emit(f"node-{args.backend}", {}, ok=False, error=f"{type(exc).__name__}: {exc}", settings=settings)
        return 1
    print(json.dumps(results, indent=2))
    emit(f"node-{args.backend}", results, ok=True, settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
