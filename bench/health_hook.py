"""What does one steady-state `triton-mysql health` cost?  `python -m bench.health_hook [--runs 50]`

A real three-node cluster on a real etcd (tests/harness/cluster.py).  Once it has
converged, each round runs, in an order rotated every round so no variant always
goes first, as whole processes with the node's own environment:

* `triton-mysql health` on a replica and on the primary (the real hook: one
  reconcile pass, member record published, exit 0 = healthy);
* `python -c pass`: the interpreter's own start-up, the floor for any hook
  written in Python;
* a bare PyMySQL + etcd3gw script doing the same I/O as a steady-state pass
  (BARE_SCRIPT below: SELECT VERSION(); the state query; SHOW MASTER STATUS;
  SHOW SLAVE STATUS; one etcd range read of the cluster prefix; one lease
  keep-alive; the member and node records written), on the replica and on the
  primary: what the hook would cost with no framework around the I/O.

Reports median / p90 / max wall milliseconds per variant and the ratios of the
medians (hook / bare script, hook / python -c pass).  Goal (issue 10): hook
median < 150 ms.  Then profiles the hook (python -X importtime, cProfile) and
names where its time goes beyond the bare script.

The supervisor keeps running its own passes; a pass of ours that starts while
the supervisor's holds the node's hook lock waits for it, so the cluster runs
with HEALTH_POLL=5 (SESSION_TTL=20) to make such overlaps rare (~3 %).  The
median is insensitive to them; the max is not.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bench.common import emit, ratio, stats, stop_on_sigterm
from tests.harness.cluster import Cluster, Node
from tests.harness.etcd import EtcdServer
from tests.harness.mariadb import mysql_tmp_dir

GOAL_MS = 150.0
TRITON = str(Path(sys.executable).parent / "triton-mysql")
CLUSTER_ENV = {"SESSION_TTL": "20", "HEALTH_POLL": "5"}

# The same I/O as a steady-state health pass, with nothing around it.
BARE_SCRIPT = r'''
import time
_t = [time.perf_counter()]
_phases = {"started_at": time.time()}


def _lap(name):
    now = time.perf_counter()
    _phases[name] = round((now - _t[0]) * 1000, 2)
    _t[0] = now


import json, os
import pymysql
from etcd3gw import Etcd3Client, Lease
_lap("imports")
env = os.environ
conn = pymysql.connect(unix_socket=env["MYSQL_SOCKET"], user="root", password=env.get("MYSQL_ROOT_PASSWORD") or "",
                       autocommit=True, cursorclass=pymysql.cursors.DictCursor, connect_timeout=5)
with conn.cursor() as cur:
    cur.execute("SELECT VERSION()")
    cur.fetchall()
    cur.execute("SELECT VERSION() AS version, @@GLOBAL.server_id AS server_id, @@GLOBAL.read_only AS read_only, "
                "NULL AS super_read_only, @@GLOBAL.gtid_current_pos AS gtid, "
                "@@GLOBAL.gtid_binlog_state AS binlog_state")
    state = cur.fetchone()
    cur.execute("SHOW MASTER STATUS")
    binlog = cur.fetchone()
    cur.execute("SHOW SLAVE STATUS")
    replica = cur.fetchall()
conn.close()
_lap("mysql")
host, port = env["ETCD"].split(",")[0].rsplit(":", 1)
client = Etcd3Client(host=host, port=int(port), timeout=2, api_path="/v3/")
root = env.get("ETCD_PREFIX", "/triton-mysql").rstrip("/") + "/" + env.get("SERVICE_NAME", "mysql")
member_key = f"{root}/members/{env['NODE_NAME']}"
lease = None
for value, meta in client.get_prefix(root + "/"):
    if meta["key"] == member_key.encode():
        lease = int(meta.get("lease") or 0)
if not lease:
    raise SystemExit("no member record with a lease: the cluster is not in steady state")
_lap("etcd_range")
Lease(lease, client).refresh()
_lap("etcd_keepalive")
record = {"node": env["NODE_NAME"], "address": env.get("ADVERTISE_ADDRESS"), "port": int(env.get("MYSQL_PORT", 3306)),
          "server_id": int(state["server_id"]), "role": "replica" if replica else "primary",
          "gtid": state["gtid"], "received_gtid": state["gtid"], "candidate": bool(replica), "healthy": True,
          "lag_seconds": float(replica[0]["Seconds_Behind_Master"] or 0) if replica else None,
          "snapshot_id": None, "updated": time.time(), "read_only": bool(int(state["read_only"]))}
value = json.dumps(record).encode()
client.put(member_key.encode(), value, lease=Lease(lease, client))
client.put(f"{root}/nodes/{env['NODE_NAME']}".encode(), value)
_lap("etcd_two_puts")
_phases["ended_at"] = time.time()
print("PHASES " + json.dumps(_phases))
'''


def log(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def running_cluster(workdir: Path) -> Iterator[tuple[Cluster, Node, Node]]:
    etcd = EtcdServer(workdir / "etcd").start()
    nodes_dir = mysql_tmp_dir("bench-health")
    cluster = Cluster(nodes_dir, {"ETCD": etcd.endpoint}, env=dict(CLUSTER_ENV))
    try:
        nodes = cluster.start(3)
        primary = cluster.wait_for_primary(120)
        replicas = [n for n in nodes if n is not primary]
        for node in replicas:
            cluster.wait_replicating(node, primary, 120)
        cluster.wait_caught_up(primary, replicas)
        time.sleep(2 * float(CLUSTER_ENV["HEALTH_POLL"]))  # every member record published, nothing pending
        yield cluster, primary, replicas[0]
    finally:
        try:
            cluster.stop_all(timeout=30)
        finally:
            cluster.kill_all()
            etcd.stop()
            shutil.rmtree(nodes_dir, ignore_errors=True)


def ensure_bytecode() -> dict[str, Any]:
    """Measure what missing bytecode costs a hook run, then compile triton_mysql as `pip install` does.

    An editable checkout run with PYTHONDONTWRITEBYTECODE=1 (as on these dev
    machines) may have no .pyc for much of the package, and every hook run then
    compiles those modules from source: a property of the checkout, not of the
    hook.  The cost is measured directly: `compile()` of the sources of the
    triton_mysql modules a health pass imports.  The checkout is then compiled
    so that the hook is measured as installed.
    """
    import triton_mysql

    package = Path(triton_mysql.__file__).parent
    listing = subprocess.run(
        [sys.executable, "-c", "import sys, triton_mysql.cli, triton_mysql.hooks.health, triton_mysql.discovery.etcd, "
         "triton_mysql.supervisor.rename; print('\\n'.join(m.__file__ for n, m in sorted(sys.modules.items()) "
         "if n.startswith('triton_mysql') and getattr(m, '__file__', None)))"],
        capture_output=True, text=True, check=True, timeout=60).stdout.split()
    sources = [(path, Path(path).read_text()) for path in listing]
    totals = []
    for _ in range(5):
        start = time.perf_counter()
        for path, text in sources:
            compile(text, path, "exec")
        totals.append((time.perf_counter() - start) * 1000)
    modules = sum(1 for _ in package.rglob("*.py"))
    cached = sum(1 for _ in package.rglob("__pycache__/*.cpython-*.pyc"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, timeout=120)
    return {"modules": modules, "pyc_before": cached, "hook_modules": len(sources),
            "compile_ms": stats(totals, 1)["median"]}


def hook_env(node: Node) -> dict[str, str]:
    """The environment the supervisor gives the hook (its config source and its PID included)."""
    env = node.env()
    if node.proc is not None:
        env["CONTAINERBUDDY_PID"] = str(node.proc.pid)
    return env


@dataclass
class Run:
    """One process run: wall ms, exit code, output, and wall-clock spawn/return times."""

    ms: float
    code: int
    out: str
    spawned_at: float
    returned_at: float


def timed(argv: list[str], env: dict[str, str], limit: float = 60.0) -> Run:
    """Run `argv` to completion and time it.

    No `timeout=` on the wait: Popen.wait(timeout) polls with sleeps of up to
    50 ms, which would quantize the figure; a timer kills a run that hangs.
    """
    spawned_at = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(limit, proc.kill)
    watchdog.start()
    try:
        out, err = proc.communicate()
    finally:
        watchdog.cancel()
    elapsed = (time.perf_counter() - start) * 1000
    return Run(elapsed, proc.returncode, out + err, spawned_at, time.time())


def phases(run: Run) -> dict[str, float]:
    """The bare script's own lap times (ms), printed as `PHASES {json}`, plus the time from the spawn to
    its first line (interpreter start-up, site) and from its last line until its exit was seen."""
    for line in run.out.splitlines():
        if line.startswith("PHASES "):
            laps = json.loads(line[len("PHASES "):])
            started, ended = laps.pop("started_at"), laps.pop("ended_at")
            return {"startup": round((started - run.spawned_at) * 1000, 2), **laps,
                    "exit": round((run.returned_at - ended) * 1000, 2)}
    return {}


def measure(primary: Node, replica: Node, runs: int, bare_path: Path) -> dict[str, Any]:
    py = sys.executable
    variants = {
        "hook_replica": ([TRITON, "health"], hook_env(replica)),
        "hook_primary": ([TRITON, "health"], hook_env(primary)),
        "python_pass": ([py, "-c", "pass"], hook_env(replica)),
        "bare_replica": ([py, str(bare_path)], hook_env(replica)),
        "bare_primary": ([py, str(bare_path)], hook_env(primary)),
    }
    for name, (argv, env) in variants.items():  # warm the page cache; every variant must work
        run = timed(argv, env)
        if run.code != 0:
            raise RuntimeError(f"{name} exited {run.code} before measuring: {run.out[-800:]}")
    samples: dict[str, list[float]] = {name: [] for name in variants}
    failures: dict[str, int] = {name: 0 for name in variants}
    laps: dict[str, list[float]] = {}
    names = list(variants)
    for i in range(runs):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            argv, env = variants[name]
            run = timed(argv, env)
            samples[name].append(run.ms)
            if name.startswith("bare") and run.code == 0:
                for phase, value in phases(run).items():
                    laps.setdefault(phase, []).append(value)
            if run.code != 0:
                failures[name] += 1
                log(f"  {name} run {i + 1} exited {run.code}: {run.out.strip()[-200:]}")
    for name, count in failures.items():
        if count > runs // 10:
            raise RuntimeError(f"{name} failed {count} of {runs} runs: not a steady state")
    result: dict[str, Any] = {name: stats(values, 1) for name, values in samples.items()}
    for name in variants:
        result[name]["failures"] = failures[name]
    for role in ("replica", "primary"):
        hook = result[f"hook_{role}"]["median"]
        result[f"ratio_{role}_vs_bare"] = ratio(hook, result[f"bare_{role}"]["median"])
        result[f"ratio_{role}_vs_python"] = ratio(hook, result["python_pass"]["median"])
        result[f"goal_met_{role}"] = hook < GOAL_MS
    result["goal_ms"] = GOAL_MS
    result["bare_phases_ms"] = {phase: stats(values, 1)["median"] for phase, values in laps.items()}
    return result


# -- profiling ----------------------------------------------------------------------------------

def import_times(argv: list[str], env: dict[str, str], repeat: int = 5) -> dict[str, Any]:
    """`python -X importtime`: cumulative import time of each top-level import (median of `repeat`)."""
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True,
                                text=True, timeout=60)
        per: dict[str, float] = {}
        for line in result.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            indent = len(m.group(3))
            if indent <= 1:  # a top-level import of the script itself
                name = m.group(4)
                per[name] = per.get(name, 0.0) + int(m.group(2)) / 1000
        runs.append(per)
    names = {n for per in runs for n in per}
    median = {n: sorted(per.get(n, 0.0) for per in runs)[len(runs) // 2] for n in names}
    top = sorted(median.items(), key=lambda kv: -kv[1])
    return {"total_ms": round(sum(median.values()), 1),
            "top": [(n, round(ms, 1)) for n, ms in top[:12]]}


def deep_imports(argv: list[str], env: dict[str, str], prefixes: tuple[str, ...]) -> list[tuple[str, float]]:
    """Cumulative import time of selected packages wherever they are first imported (one run)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True,
                            timeout=60)
    out: dict[str, float] = {}
    for line in result.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and m.group(4).split(".")[0] in prefixes and "." not in m.group(4):
            out[m.group(4)] = out.get(m.group(4), 0.0) + int(m.group(2)) / 1000
    return sorted(((n, round(ms, 1)) for n, ms in out.items()), key=lambda kv: -kv[1])


def cprofile(argv: list[str], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """cProfile of one whole run: the hook's own steps (cumulative), and self time by package."""
    out = workdir / "hook.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *argv], env=env, capture_output=True,
                   timeout=60)
    st = pstats.Stats(str(out))
    entries = st.stats.items()  # type: ignore[attr-defined]
    steps = []
    by_package: dict[str, float] = {}
    for (filename, line, func), (cc, nc, tt, ct, callers) in entries:
        where = _short_path(filename)
        if where.startswith("triton_mysql/") and func != "<module>":
            steps.append((round(ct * 1000, 1), f"{where}:{line}({func})"))
        key = _package(where, func)
        by_package[key] = by_package.get(key, 0.0) + tt * 1000
    steps.sort(reverse=True)
    return {
        "profiled_total_ms": round(st.total_tt * 1000, 1),  # type: ignore[attr-defined]
        "hook_steps_cumulative": [(name, ms) for ms, name in steps[:20]],
        "self_time_by_package": sorted(((k, round(v, 1)) for k, v in by_package.items()), key=lambda kv: -kv[1])[:15],
    }


def _short_path(filename: str) -> str:
    """site-packages/x/y.py -> x/y.py; the standard library -> stdlib:x.py; our code -> triton_mysql/..."""
    if "/triton_mysql/" in filename:
        return "triton_mysql/" + filename.split("/triton_mysql/", 1)[1]
    m = re.search(r"/lib/python3\.\d+/(site-packages/)?(.*)$", filename)
    if m:
        return m.group(2) if m.group(1) else "stdlib:" + m.group(2)
    return filename


def _package(where: str, func: str) -> str:
    """What a profile entry's self time is charged to: a package, the stdlib, imports, or a C call."""
    if where == "~":  # a C function: name the call (socket reads are waits for mysqld/etcd)
        if "recv" in func or "connect" in func or "sendall" in func or "poll" in func:
            return "C: socket I/O (waiting for mysqld/etcd)"
        if "exec" in func or "compile" in func or "marshal" in func or "__import__" in func:
            return "C: executing/loading modules"
        return "C: other"
    if where.startswith("<frozen importlib"):
        return "import machinery"
    if where.startswith("stdlib:"):
        return "stdlib:" + where[len("stdlib:"):].split("/", 1)[0].removesuffix(".py")
    return where.split("/", 1)[0].removesuffix(".py")


def profile(replica: Node, bare_path: Path, workdir: Path) -> dict[str, Any]:
    env = hook_env(replica)
    hook_argv = [TRITON, "health"]
    return {
        "hook_imports": import_times(hook_argv, env),
        "bare_imports": import_times([str(bare_path)], env),
        "hook_packages": deep_imports(hook_argv, env, ("click", "pymysql", "etcd3gw", "requests", "urllib3",
                                                       "json", "logging", "dataclasses", "typing", "fcntl",
                                                       "consul", "boto3", "botocore", "cryptography", "ssl",
                                                       "http", "email", "importlib_metadata", "pbr",
                                                       "charset_normalizer", "idna", "certifi", "triton_mysql")),
        "hook_cprofile": cprofile(hook_argv, env, workdir),
    }


def breakdown(result: dict[str, Any], prof: dict[str, Any]) -> dict[str, Any]:
    """How much of the hook's extra time over the bare script (replica, medians) its extra imports explain."""
    extra = result["hook_replica"]["median"] - result["bare_replica"]["median"]
    extra_imports = prof["hook_imports"]["total_ms"] - prof["bare_imports"]["total_ms"]
    return {"hook_minus_bare_ms": round(extra, 1), "imports_hook_minus_bare_ms": round(extra_imports, 1)}


# -- report ---------------------------------------------------------------------------------------

def print_report(result: dict[str, Any], prof: dict[str, Any] | None) -> None:
    log(f"\n`triton-mysql health`, steady state, whole process, {result['hook_replica']['runs']} interleaved "
        f"rounds (ms: median / p90 / max)")
    labels = {"hook_replica": "hook on a replica", "hook_primary": "hook on the primary",
              "bare_replica": "bare script, replica", "bare_primary": "bare script, primary",
              "python_pass": "python -c pass"}
    for name, label in labels.items():
        r = result[name]
        log(f"  {label:<24}{r['median']:>8.1f}{r['p90']:>8.1f}{r['max']:>8.1f}")
    for role in ("replica", "primary"):
        log(f"  {role}: hook / bare script = {result[f'ratio_{role}_vs_bare']:.2f}, hook / python -c pass = "
            f"{result[f'ratio_{role}_vs_python']:.2f}; goal median < {GOAL_MS:g} ms: "
            f"{'met' if result[f'goal_met_{role}'] else 'MISSED'}")
    log("  bare script phases (median ms, both nodes; interpreter start-up before them not counted): " +
        ", ".join(f"{k} {v}" for k, v in result["bare_phases_ms"].items()))
    if prof:
        log(f"\nimport time (python -X importtime, median of 5): hook {prof['hook_imports']['total_ms']} ms, "
            f"bare script {prof['bare_imports']['total_ms']} ms")
        b = prof["breakdown"]
        log(f"  replica: the hook takes {b['hook_minus_bare_ms']} ms more than the bare script (medians); its imports "
            f"take {b['imports_hook_minus_bare_ms']} ms more")
        log("  hook's top-level imports: " + ", ".join(f"{n} {ms} ms" for n, ms in prof["hook_imports"]["top"][:8]))
        log("  packages (cumulative, first import): " + ", ".join(f"{n} {ms}" for n, ms in prof["hook_packages"][:12]))
        log("  cProfile, the hook's steps (cumulative ms): " + "; ".join(
            f"{n} {ms}" for n, ms in prof["hook_cprofile"]["hook_steps_cumulative"][:12]))
        log("  cProfile, self time by package (ms): " + "; ".join(
            f"{n} {ms}" for n, ms in prof["hook_cprofile"]["self_time_by_package"][:10]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="interleaved rounds (default 50)")
    parser.add_argument("--no-profile", action="store_true", help="skip importtime/cProfile")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    workdir = Path(tempfile.mkdtemp(prefix="bench-health-"))
    settings = {**{k: float(v) for k, v in CLUSTER_ENV.items()}, "runs": args.runs, "nodes": 3, "discovery": "etcd"}
    try:
        bare_path = workdir / "bare_health.py"
        bare_path.write_text(BARE_SCRIPT)
        settings["bytecode"] = ensure_bytecode()
        b = settings["bytecode"]
        log(f"triton_mysql: {b['pyc_before']} .pyc for {b['modules']} modules in the checkout; without bytecode a "
            f"health pass compiles its {b['hook_modules']} modules: {b['compile_ms']} ms; measuring compiled, as installed")
        log("starting etcd and 3 nodes")
        with running_cluster(workdir) as (cluster, primary, replica):
            log(f"primary {primary.name}, replica {replica.name}; measuring")
            result = measure(primary, replica, args.runs, bare_path)
            prof = None if args.no_profile else profile(replica, bare_path, workdir)
            if prof:
                prof["breakdown"] = breakdown(result, prof)
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        log(f"cannot measure: {type(exc).__name__}: {exc}")
        emit("health", {}, ok=False, error=f"{type(exc).__name__}: {exc}", settings=settings)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(result, prof)
    if prof:
        result["profile"] = prof
    emit("health", result, settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
