"""How much does an idle containerbuddy cost?  `python -m bench.supervisor_idle [--seconds 60]`

Starts a real etcd and one `containerbuddy` with a single service polled every
second (health = `true`, heartbeat to etcd), lets it settle, then measures
for `--seconds`:

* RSS of the supervisor process (VmRSS from /proc/PID/status; max and last);
* CPU% of the supervisor process itself (utime+stime from /proc/PID/stat,
  its discovery thread included, its children excluded);
* separately, the CPU% of the health checks it ran (cutime+cstime: the
  children it reaped), so the hook's own cost is not counted as the
  supervisor's.

Baseline for the RSS, in the same run: an idle bare Python interpreter
(`python -c "import time; time.sleep(...)"`), the floor for any supervisor
written in Python.

The measured supervisor runs as shipped: with its HTTP endpoints on
(`telemetry`), checked the way one HAProxy checks a node (GET /primary and
/replica every 500 ms each, a new connection per check) and scraped by
Prometheus (GET /metrics every 15 s).  Beside it, in the same run, the same
supervisor with `telemetry` off: the difference is what the endpoints cost.

Goal (issue 5): < 40 MB RSS, < 1 % CPU for the supervisor itself.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.common import HttpChecker, emit, stop_on_sigterm
from tests.harness.etcd import EtcdServer
from tests.harness.procs import Proc, free_port, wait_for

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return utime + stime, cutime + cstime


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def run(seconds: float, settle: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as tmp:
        work = Path(tmp)
        etcd = EtcdServer(work / "etcd").start()
        try:
            config = {
                "etcd": {"endpoints": [etcd.endpoint], "prefix": "/bench"},
                "services": [{"name": "idle", "port": 3306, "health": "true", "poll": 1, "ttl": 3}],
            }
            http_port = free_port("127.0.0.1")
            (work / "cb.json").write_text(json.dumps({**config, "telemetry": {"port": http_port,
                                                                                 "interfaces": "127.0.0.1"}}))
            plain = {**config, "services": [{**config["services"][0], "name": "idle-plain"}]}
            (work / "plain.json").write_text(json.dumps(plain))
            containerbuddy = str(Path(sys.executable).parent / "containerbuddy")
            env = {**os.environ, "NODE_NAME": "bench", "ADVERTISE_ADDRESS": "127.0.0.1", "LOG_LEVEL": "INFO",
                   "MYSQL_SOCKET": str(work / "no-mysqld.sock")}
            proc = Proc("containerbuddy", [containerbuddy, "-config", f"file://{work / 'cb.json'}", "sleep", "3600"],
                        work / "cb.log", env=env)
            plain_proc = Proc("containerbuddy (telemetry off)", [containerbuddy, "-config",
                              f"file://{work / 'plain.json'}", "sleep", "3600"], work / "plain.log",
                              env={**env, "NODE_NAME": "bench-plain"})
            bare = Proc("bare python", [sys.executable, "-c", "import time; time.sleep(3600)"], work / "bare.log")
            checker = HttpChecker("127.0.0.1", http_port, interval=0.5)
            try:
                pid = proc.pid
                client = __import__("triton_mysql.discovery", fromlist=["connect_endpoints"]).connect_endpoints(
                    etcd=[(etcd.host, etcd.port)], etcd_prefix="/bench")
                wait_for(lambda: client.healthy("idle") and client.healthy("idle-plain"), 15,
                         what="service registered")
                checker.start()
                time.sleep(settle)
                own0, kids0 = cpu_ticks(pid)
                plain0, _ = cpu_ticks(plain_proc.pid)
                t0 = time.monotonic()
                rss_max = plain_max = 0
                while time.monotonic() - t0 < seconds:
                    rss_max = max(rss_max, rss_kib(pid))
                    plain_max = max(plain_max, rss_kib(plain_proc.pid))
                    time.sleep(1.0)
                own1, kids1 = cpu_ticks(pid)
                plain1, _ = cpu_ticks(plain_proc.pid)
                elapsed = time.monotonic() - t0
                result = {
                    "seconds": round(elapsed, 1),
                    "rss_mib_max": round(rss_max / 1024, 1),
                    "rss_mib_last": round(rss_kib(pid) / 1024, 1),
                    "threads": threads(pid),
                    "supervisor_cpu_percent": round(100.0 * (own1 - own0) / CLK_TCK / elapsed, 2),
                    "health_checks_cpu_percent": round(100.0 * (kids1 - kids0) / CLK_TCK / elapsed, 2),
                    "still_listed": bool(client.healthy("idle")),
                    "bare_python_rss_mib": round(rss_kib(bare.pid) / 1024, 1),
                    "telemetry_off_rss_mib_max": round(plain_max / 1024, 1),
                    "telemetry_off_cpu_percent": round(100.0 * (plain1 - plain0) / CLK_TCK / elapsed, 2),
                    "http_requests": checker.requests,
                    "http_failures": checker.failures,
                }
                client.close()
            finally:
                checker.stop()
                plain_proc.send(signal.SIGTERM)
                plain_proc.stop(timeout=15)
                bare.stop(timeout=5)
                proc.send(signal.SIGTERM)
                proc.stop(timeout=15)
        finally:
            etcd.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (default 60)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after registration")
    args = parser.parse_args()
    stop_on_sigterm()
    settings = {"seconds": args.seconds, "poll_s": 1, "service_ttl_s": 3, "health": "true"}
    try:
        result = run(args.seconds, args.settle)
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        print(f"cannot measure: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit("supervisor", {}, ok=False, error=f"{type(exc).__name__}: {exc}", settings=settings)
        return 1
    print(f"containerbuddy idle, one service polled every 1 s against etcd, {result['seconds']} s:")
    print(f"  RSS                      {result['rss_mib_max']} MiB max, {result['rss_mib_last']} MiB at the end"
          f"   (goal < 40 MB)")
    print(f"  CPU, supervisor itself   {result['supervisor_cpu_percent']} %   (goal < 1 %; "
          f"{result['threads']} threads)")
    print(f"  CPU, health checks       {result['health_checks_cpu_percent']} %   (the `true` command, reaped children)")
    print(f"  RSS of a bare idle Python interpreter (baseline) {result['bare_python_rss_mib']} MiB")
    print(f"  with the HTTP endpoints checked: {result['http_requests']} requests ({result['http_failures']} failed); "
          f"the same supervisor with telemetry off: {result['telemetry_off_rss_mib_max']} MiB, "
          f"{result['telemetry_off_cpu_percent']} % CPU")
    ok = result["still_listed"] and result["rss_mib_max"] > 0 and result["http_requests"] > 0
    emit("supervisor", result, ok=ok, error=None if ok else "the service was not listed as healthy at the end",
         settings=settings)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
