"""`python -m bench` (`make bench`): run every benchmark and write BENCHMARKS.md.

Each benchmark runs as its own child process (`python -m bench.<module>`): its
servers are its own, a crash or a hang of one cannot take the others down, and
its output (echoed here, kept in .bench/<name>.log) ends with one machine-readable
result line (bench/common.py).  The runner keeps the latest result of every
benchmark in .bench/results.json, so `--only NAME` re-measures one benchmark
(for instance one that another agent's test run disturbed) and BENCHMARKS.md is
written again from all of them, each with the date and the load it was measured
under.  Turning the stored results into BENCHMARKS.md is bench/render.py.

    python -m bench                    # everything, full size (~25-35 min on 2 cores)
    python -m bench --quick            # smoke run: fewer runs, smaller data -> .bench/BENCHMARKS-quick.md
    python -m bench --only health      # one benchmark (repeatable, or a comma list)
    python -m bench --render           # rewrite BENCHMARKS.md from .bench/results.json only

Exits non-zero when a benchmark of this invocation could not measure; such a
benchmark is written to BENCHMARKS.md as failed, with the reason.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.render import render

ROOT = common.ROOT
STATE_DIR = ROOT / ".bench"

# name -> (title, group); a group is one child process.
BENCHMARKS = {
    "discovery": "Discovery: one cluster view",
    "supervisor": "Supervisor at idle",
    "health": "`health` hook, steady state",
    "failover-etcd": "Failover on etcd (planned stop, crash)",
    "fencing": "Fencing window of a frozen primary (etcd)",
    "failover-consul": "Failover on the Consul double (planned stop, crash)",
    "snapshot": "Snapshot and replica clone (restore)",
    "routing": "HTTP endpoints and HAProxy routing",
    "image": "Docker image and compose cluster (etcd variant)",
    "semisync": "Semi-synchronous replication: cost, crash failover, Galera side by side",
    "node-etcd": "Steady-state cost of a node on etcd (warm start vs cold)",
    "node-consul": "Steady-state cost of a node on the Consul double (warm start vs cold)",
    "warm-pass": "A warm pass taken apart (forked vs in-process)",
}
ALIASES = {"failover": ["failover-etcd", "failover-consul"], "clone": ["snapshot"], "restore": ["snapshot"],
           "sync": ["semisync"], "galera": ["semisync"],
           "node": ["node-etcd", "node-consul"], "cost": ["node-etcd", "node-consul", "warm-pass"],
           "view": ["discovery"], "idle": ["supervisor"], "all": list(BENCHMARKS)}


@dataclass
class Group:
    """One child process measuring one or more benchmarks."""

    name: str
    members: list[str]
    argv: list[str]
    timeout: float
    log_path: Path = field(default_factory=Path)


def plan(selected: list[str], quick: bool) -> list[Group]:
    """The child processes to run for `selected`, cheapest first, the long snapshot run last."""
    py = [sys.executable, "-m"]
    groups: list[Group] = []
    if "discovery" in selected:
        groups.append(Group("discovery", ["discovery"], py + ["bench.discovery_view", "--reads", "50" if quick else "200"],
                            600))
    if "supervisor" in selected:
        groups.append(Group("supervisor", ["supervisor"],
                            py + ["bench.supervisor_idle", "--seconds", "10" if quick else "60"], 600))
    if "health" in selected:
        groups.append(Group("health", ["health"], py + ["bench.health_hook", "--runs", "10" if quick else "50"],
                            1800))
    runs = ["--runs", "2" if quick else "5", "--consul-runs", "1" if quick else "3",
            "--fencing-runs", "2" if quick else "5"]
    etcd = [s for s, member in (("planned,crash", "failover-etcd"), ("fencing", "fencing")) if member in selected]
    if etcd:
        members = [m for m in ("failover-etcd", "fencing") if m in selected]
        groups.append(Group("failover-etcd" if "failover-etcd" in members else "fencing", members,
                            py + ["bench.failover", "--backends", "etcd", "--scenarios", ",".join(etcd)] + runs,
                            3600))
    if "failover-consul" in selected:
        groups.append(Group("failover-consul", ["failover-consul"],
                            py + ["bench.failover", "--backends", "consul", "--scenarios", "planned,crash"] + runs,
                            3600))
    if "routing" in selected:
        groups.append(Group("routing", ["routing"],
                            py + ["bench.routing", "--requests", "50" if quick else "200",
                                  "--planned", "1" if quick else "3", "--crash", "1" if quick else "3"], 1800))
    if "semisync" in selected:
        groups.append(Group("semisync", ["semisync"],
                            py + ["bench.semisync", "--runs", "2" if quick else "15", "--seconds", "2",
                                  "--crash-runs", "1" if quick else "3", "--galera-kills", "1" if quick else "3"],
                            3600))
    for kind in ("etcd", "consul"):
        if f"node-{kind}" in selected:
            groups.append(Group(f"node-{kind}", [f"node-{kind}"],
                                py + ["bench.node_idle", "--backend", kind, "--seconds", "15" if quick else "60",
                                      "--latency-seconds", "10" if quick else "40",
                                      "--modes", "warm,cold" if quick else "warm,cold,warm"], 3600))
    if "warm-pass" in selected:
        groups.append(Group("warm-pass", ["warm-pass"], py + ["bench.warm_pass", "--runs", "10" if quick else "40"],
                            1200))
    if "snapshot" in selected:
        groups.append(Group("snapshot", ["snapshot"],
                            py + ["bench.snapshot_restore", "--size-mb", "64" if quick else "1024"], 3 * 3600))
    if "image" in selected:
        groups.append(Group("image", ["image"], py + ["bench.image"], 3600))
    return groups


# -- running one child ---------------------------------------------------------------------------

def run_group(group: Group) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one child; returns (result records for each member, load info).  Never raises for a failure."""
    STATE_DIR.mkdir(exist_ok=True)
    group.log_path = STATE_DIR / f"{group.name}.log"
    print(f"\n=== {group.name}: {' '.join(group.argv[1:])}", flush=True)
    watch = common.LoadWatch()
    started = time.monotonic()
    lines: list[str] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(group.log_path, "w") as log:
        child = subprocess.Popen(group.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, bufsize=1, start_new_session=True)
        stop = threading.Event()
        timed_out = threading.Event()
        helper = threading.Thread(target=_supervise, args=(child, group.timeout, watch, stop, timed_out), daemon=True)
        helper.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                log.write(line)
                lines.append(line.rstrip("\n"))
                if not line.startswith(common.MARKER):
                    print(f"  [{group.name}] {line.rstrip()}", flush=True)
            code = child.wait()
        except KeyboardInterrupt:
            _terminate(child)
            raise
        finally:
            stop.set()
            helper.join(5)
    load = watch.finish()
    load["duration_s"] = round(time.monotonic() - started, 1)
    records = {r["benchmark"]: r for r in common.parse_result("\n".join(lines))}
    tail = "\n".join(line for line in lines if not line.startswith(common.MARKER))[-1500:]
    out = []
    for member in group.members:
        record = records.get(member)
        if record is None:
            why = "timed out after %g s" % group.timeout if timed_out.is_set() else f"exited {code}"
            record = {"benchmark": member, "ok": False, "figures": {}, "settings": {}, "notes": [],
                      "error": f"no result: the benchmark {why}; last output:\n{tail}"}
        elif code != 0 and record.get("ok"):
            record = {**record, "ok": False, "error": f"exited {code} after reporting; last output:\n{tail}"}
        out.append(record)
    return out, load


def _supervise(child: subprocess.Popen, timeout: float, watch: common.LoadWatch, stop: threading.Event,
               timed_out: threading.Event) -> None:
    """Sample the machine's other load every 5 s; stop the child when it overruns `timeout`."""
    deadline = time.monotonic() + timeout
    while not stop.wait(5.0):
        try:
            watch.sample()
        except Exception:  # noqa: BLE001 - best effort
            pass
        if time.monotonic() > deadline and child.poll() is None:
            print(f"  benchmark overran {timeout:g} s: stopping it", flush=True)
            timed_out.set()
            _terminate(child)
            return


def _terminate(child: subprocess.Popen) -> None:
    """SIGTERM (the benchmark stops its servers), then SIGKILL of it and everything it left."""
    from tests.harness.procs import descendants

    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(90)
        return
    except subprocess.TimeoutExpired:
        pass
    for pid, _ in reversed(descendants(child.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    child.kill()
    child.wait(30)


# -- results store ---------------------------------------------------------------------------------

def load_store(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"results": {}}


def save_store(path: Path, store: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1, default=str))
    tmp.replace(path)


def select(names: list[str] | None) -> list[str]:
    if not names:
        return list(BENCHMARKS)
    out: list[str] = []
    for item in names:
        for name in item.split(","):
            name = name.strip()
            if not name:
                continue
            expanded = ALIASES.get(name, [name])
            for n in expanded:
                if n not in BENCHMARKS:
                    raise SystemExit(f"unknown benchmark {name!r}; choose from: "
                                     f"{', '.join(list(BENCHMARKS) + sorted(ALIASES))}")
                if n not in out:
                    out.append(n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer runs, smaller data")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only these (repeatable or comma list): {', '.join(BENCHMARKS)}; "
                             f"aliases: {', '.join(sorted(ALIASES))}")
    parser.add_argument("--output", type=Path, help="where to write the report (default BENCHMARKS.md; "
                                                    "with --quick .bench/BENCHMARKS-quick.md)")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from the stored results")
    args = parser.parse_args(argv)
    common.stop_on_sigterm()
    store_path = STATE_DIR / ("results-quick.json" if args.quick else "results.json")
    output = args.output or (STATE_DIR / "BENCHMARKS-quick.md" if args.quick else ROOT / "BENCHMARKS.md")
    store = load_store(store_path)
    store.setdefault("results", {})
    failed: list[str] = []
    if not args.render:
        selected = select(args.only)
        store["machine"] = common.machine()
        store["versions"] = common.versions()
        store["quick"] = args.quick
        begun = time.monotonic()
        for group in plan(selected, args.quick):
            records, load = run_group(group)
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            for record in records:
                record["measured_at"] = now
                record["load"] = load
                record["command"] = "python " + " ".join(group.argv[1:])
                store["results"][record["benchmark"]] = record
                if not record.get("ok"):
                    failed.append(record["benchmark"])
                    print(f"  {record['benchmark']}: FAILED: {str(record.get('error'))[:300]}", flush=True)
            print(f"  {group.name}: {load['duration_s']} s; other load on the machine meanwhile: "
                  f"{load['foreign_cores']} cores on average", flush=True)
            save_store(store_path, store)
        store["last_run"] = {"at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                             "benchmarks": selected, "duration_s": round(time.monotonic() - begun, 1)}
        if set(selected) == set(BENCHMARKS):
            store["last_full_run"] = store["last_run"]
        save_store(store_path, store)
    if not store["results"]:
        print("nothing measured yet: run `python -m bench` first", file=sys.stderr)
        return 1
    output.write_text(render(store, BENCHMARKS))
    print(f"\nwrote {output}")
    if failed:
        print(f"FAILED to measure: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
