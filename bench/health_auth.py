"""What does etcd auth cost a `triton-mysql health` pass?  `python -m bench.health_auth [--runs 30]`

One real etcd with `auth enable` and a user whose role covers only the cluster's
prefix, and a two-node cluster using it (ETCD_USER/ETCD_PASSWORD).  In the same
run, on the same replica, rounds alternate between (order rotated each round):

* `auth, cached token`: the hook as it runs under the supervisor (the token
  cached in `<dir of MYSQL_CNF>/.triton-mysql-etcd-token` by an earlier pass);
* `auth, no cache`: the cache file removed before the run, so the hook
  authenticates first (bcrypt on the server): what every pass would pay
  without the cache;
* `no auth`: the same hook against a second etcd without auth and its own
  two-node cluster (the baseline measured in the same run).

Reports median / p90 / max wall milliseconds and the ratios to the baseline.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

from bench.common import emit, machine, ratio, stats, stop_on_sigterm
from bench.health_hook import TRITON, hook_env, timed
from tests.harness.cluster import Cluster, Node
from tests.harness.etcd import EtcdServer
from tests.harness.mariadb import mysql_tmp_dir
from triton_mysql.discovery import TOKEN_CACHE_NAME

# DISCOVERY_TIMEOUT must cover one authentication (bcrypt on the server): ~80 ms idle, ~1 s on a
# loaded 2-core machine; the harness's 0.5 s would refuse every authentication there.
CLUSTER_ENV = {"SESSION_TTL": "20", "HEALTH_POLL": "5", "DISCOVERY_TIMEOUT": "2"}
USER, PASSWORD = "triton", "bench#Pass"


def log(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def cluster_on(workdir: Path, name: str, auth: bool) -> Iterator[Node]:
    etcd = EtcdServer(workdir / f"etcd-{name}").start()
    env = dict(CLUSTER_ENV)
    if auth:
        etcd.add_user(USER, PASSWORD, "/triton-mysql/")
        etcd.enable_auth()
        env.update({"ETCD_USER": USER, "ETCD_PASSWORD": PASSWORD})
    nodes_dir = mysql_tmp_dir(f"bench-auth-{name}")
    cluster = Cluster(nodes_dir, {"ETCD": etcd.endpoint}, env=env)
    try:
        nodes = cluster.start(2)
        try:
            primary = cluster.wait_for_primary(120)
        except TimeoutError:
            log(cluster.dump_logs(40))
            raise
        replica = next(n for n in nodes if n is not primary)
        cluster.wait_replicating(replica, primary, 120)
        time.sleep(2 * float(CLUSTER_ENV["HEALTH_POLL"]))
        yield replica
    finally:
        try:
            cluster.stop_all(timeout=30)
        finally:
            cluster.kill_all()
            etcd.stop()
            shutil.rmtree(nodes_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    workdir = Path(mysql_tmp_dir("bench-auth-work"))
    times: dict[str, list[float]] = {"auth, cached token": [], "auth, no cache": [], "no auth": []}
    failures = 0
    try:
        with cluster_on(workdir, "auth", True) as secured, cluster_on(workdir, "plain", False) as plain:
            cache = Path(secured.env()["MYSQL_CNF"]).parent / TOKEN_CACHE_NAME
            variants = {
                "auth, cached token": lambda: timed([TRITON, "health"], hook_env(secured)),
                "auth, no cache": lambda: (cache.unlink(missing_ok=True), timed([TRITON, "health"], hook_env(secured)))[1],
                "no auth": lambda: timed([TRITON, "health"], hook_env(plain)),
            }
            names = list(variants)
            timed([TRITON, "health"], hook_env(secured))  # warm: token cached, bytecode written
            for round_no in range(args.runs):
                order = names[round_no % 3:] + names[:round_no % 3]
                for name in order:
                    run = variants[name]()
                    if run.code != 0:
                        failures += 1
                        log(f"{name}: exit {run.code}: {run.out[-300:]}")
                    times[name].append(run.ms)
            assert cache.exists(), "the cached-token variant left no cache file"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base = stats(times["no auth"], 1)
    figures = {"runs": args.runs, "failures": failures, "machine": machine()}
    for name, values in times.items():
        figures[name] = stats(values, 1)
        figures[f"{name} / no auth"] = ratio(figures[name]["median"], base["median"])
        log(f"{name:20s} median {figures[name]['median']:7.1f} ms  p90 {figures[name]['p90']:7.1f}  "
            f"max {figures[name]['max']:7.1f}  ratio to no auth {figures[f'{name} / no auth']}")
    emit("health_auth", figures, ok=failures == 0)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
