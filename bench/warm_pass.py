"""What one warm `health` pass costs, and why: `python -m bench.warm_pass [--runs 40]`

The node benchmark (bench.node_idle) gives the total; this one takes a pass
apart.  A real converged 2-node cluster on etcd (containerbuddy + mariadbd +
the real hooks); this process then plays the warm-start helper: it imports
what the helper preloads (`supervisor.warm.PRELOAD` + the etcd client),
`gc.freeze()`s, and forks one child per pass exactly as the helper does
(same environment as the node's own hooks), for:

* `fork only`: a child that exits at once (what fork + exit cost);
* `health` on the replica and on the primary, `snapshot` on both (the task
  every SNAPSHOT_POLL), `onChange` on the replica;
* `health` run in this process, without a fork (the pass's own work, with
  nothing to copy).

For each: CPU time of the child (user and system, from the rusage of reaped
children), the page faults it took (minor faults: mostly copy-on-write
copies of pages it shares with the helper, written by reference counts and
the allocator), the helper's CPU per fork, and the wall time.  The
difference between a forked pass and the same pass in-process is what a
process per pass costs on this machine.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import emit, stop_on_sigterm
from bench.failover import discovery_service
from bench.node_idle import SHIPPED
from tests.harness.cluster import Cluster
from tests.harness.mariadb import mysql_tmp_dir


def _usage(who: int) -> tuple[float, float, int]:
    r = resource.getrusage(who)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _run_cli(env: dict[str, str], argv: list[str]) -> int:
    """One hook as the warm child runs it: its environment, its argv, the console script's entry."""
    from triton_mysql import cli
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["triton-mysql", *argv]
    cli._exit_now = sys.exit  # return here instead of os._exit (the forked child exits itself)
    try:
        cli.main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def forked(env: dict[str, str], argv: list[str], runs: int) -> dict[str, Any]:
    """`runs` children forked from this (preloaded, frozen) process, one after the other."""
    child0, self0, wall0 = _usage(resource.RUSAGE_CHILDREN), _usage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(runs):
        pid = os.fork()
        if pid == 0:
            code = _run_cli(env, argv) if argv else 0
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        os.waitpid(pid, 0)
    wall = time.perf_counter() - wall0
    child1, self1 = _usage(resource.RUSAGE_CHILDREN), _usage(resource.RUSAGE_SELF)
    per = lambda a, b: round(1000 * (b - a) / runs, 2)  # noqa: E731 - ms per run
    return {"runs": runs, "child_user_ms": per(child0[0], child1[0]), "child_sys_ms": per(child0[1], child1[1]),
            "child_cpu_ms": per(child0[0] + child0[1], child1[0] + child1[1]),
            "child_faults": round((child1[2] - child0[2]) / runs),
            "helper_cpu_ms": per(self0[0] + self0[1], self1[0] + self1[1]), "wall_ms": round(1000 * wall / runs, 1)}


def in_process(env: dict[str, str], argv: list[str], runs: int) -> dict[str, Any]:
    """The same pass run `runs` times in this process (after one run to warm it): the work alone."""
    saved = dict(os.environ)
    try:
        _run_cli(env, argv)
        values = []
        for _ in range(runs):
            t0 = time.process_time()
            _run_cli(env, argv)
            values.append(1000 * (time.process_time() - t0))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"runs": runs, "cpu_ms": round(statistics.median(values), 2)}


def measure(runs: int) -> dict[str, Any]:
    workdir = mysql_tmp_dir("bench-warm-pass")
    service_dir = Path(tempfile.mkdtemp(prefix="bench-warm-pass-"))
    try:
        with discovery_service("etcd", service_dir) as env:
            cluster = Cluster(workdir, env, env=dict(SHIPPED))
            try:
                cluster.start(2)
                primary = cluster.converge(180)
                time.sleep(5)
                envs = {}
                for node in cluster.nodes:
                    role = "primary" if node is primary else "replica"
                    envs[role] = {**node.env(), "CONTAINERBUDDY_SERVICE": "mysql-primary" if role == "primary" else "mysql"}
                from triton_mysql.supervisor import warm
                for module in (*warm.PRELOAD, "triton_mysql.discovery.etcd"):
                    importlib.import_module(module)
                gc.collect()
                gc.freeze()
                cases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                    ("fork only", lambda: forked({}, [], runs)),
                    ("health, replica", lambda: forked(envs["replica"], ["health"], runs)),
                    ("health, primary", lambda: forked(envs["primary"], ["health"], runs)),
                    ("snapshot, replica", lambda: forked(envs["replica"], ["snapshot"], max(5, runs // 4))),
                    ("snapshot, primary", lambda: forked(envs["primary"], ["snapshot"], max(5, runs // 4))),
                    ("onChange, replica", lambda: forked(envs["replica"], ["onChange"], max(5, runs // 4))),
                    ("health in-process, replica", lambda: in_process(envs["replica"], ["health"], runs)),
                    ("health in-process, primary", lambda: in_process(envs["primary"], ["health"], runs)),
                ]
                results = {}
                for name, case in cases:
                    results[name] = case()
                    print(f"  {name}: {results[name]}", flush=True)
                return results
            finally:
                try:
                    cluster.stop_all(timeout=60)
                finally:
                    cluster.kill_all()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(service_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    stop_on_sigterm()
    settings = {"runs": args.runs, "backend": "etcd", **{k: float(v) for k, v in SHIPPED.items()}}
    try:
        results = measure(args.runs)
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        import traceback
        traceback.print_exc()
        emit("warm-pass", {}, ok=False, error=f"{type(exc).__name__}: {exc}", settings=settings)
        return 1
    print(json.dumps(results, indent=2))
    emit("warm-pass", results, ok=True, settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
