"""Shared helpers for the benchmarks: timing statistics, machine and version facts, result records.

Every benchmark module prints its own human-readable table and, last, one
machine-readable line (`emit()`): the marker `BENCH-RESULT ` followed by a
JSON object.  `python -m bench` runs each module as a child process and picks
that line out of its output (`parse_result()`), so a module stays usable on
its own and the runner needs no knowledge of its internals.

Why ratios: the machines are shared and noisy (2 cores, other agents running
test suites).  A figure alone says little; the same figure next to a baseline
measured in the same run, interleaved, says how much our code adds.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

MARKER = "BENCH-RESULT "
ROOT = Path(__file__).resolve().parent.parent


# -- statistics -------------------------------------------------------------------------------

def stats(values: Iterable[float], digits: int = 3) -> dict[str, Any]:
    """median / max / min / p90 / runs of `values` (seconds or ms, the caller's unit)."""
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("no values: nothing was measured")
    return {
        "runs": len(data),
        "median": round(statistics.median(data), digits),
        "max": round(data[-1], digits),
        "min": round(data[0], digits),
        "p90": round(data[int(0.9 * (len(data) - 1))], digits),
    }


def ratio(ours: float, baseline: float) -> float:
    """ours / baseline (how many times the baseline ours costs); 0 when the baseline is 0."""
    return round(ours / baseline, 3) if baseline else 0.0


# -- result records ---------------------------------------------------------------------------

def emit(name: str, figures: dict[str, Any], *, ok: bool = True, error: str | None = None,
         settings: dict[str, Any] | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """Print the one-line machine-readable result of benchmark `name` and return it."""
    record = {"benchmark": name, "ok": ok, "error": error, "settings": settings or {},
              "figures": figures, "notes": notes or []}
    print(MARKER + json.dumps(record, default=str), flush=True)
    return record


def parse_result(stdout: str) -> list[dict[str, Any]]:
    """Every result record a benchmark printed (one per `emit()`), in order."""
    out = []
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            out.append(json.loads(line[len(MARKER):]))
    return out


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that `finally` blocks stop the servers a benchmark started.

    The runner sends SIGTERM to a benchmark that overran its time limit; without
    this the child would die at once and leave etcd/mysqld orphans behind.
    """
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- machine and versions ---------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, kernel: what a reader needs to compare numbers across machines."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    os_name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release(), "os": os_name}


def _tool_version(argv: list[str], pattern: str) -> str:
    binary = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
    if binary is None:
        return "not installed"
    try:
        out = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def versions() -> dict[str, str]:
    """Python, the servers and tools, and the client libraries the hooks use."""
    out = {
        "python": platform.python_version(),
        "mariadb": _tool_version(["mariadbd", "--version"], r"Ver\s+(\S+)"),
        "mariabackup": _tool_version(["mariabackup", "--version"], r"MariaDB server (\S+)"),
        "etcd": _tool_version(["etcd", "--version"], r"etcd Version:\s*(\S+)"),
        "zstd": _tool_version(["zstd", "--version"], r"v(\d+\.\d+\.\d+)"),
    }
    for dist in ("triton-mysql", "PyMySQL", "etcd3gw", "py-consul", "requests", "boto3", "moto", "click"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# -- load on the machine ----------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user/nice
    return (sum(values[:8]) - idle) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU seconds of our reaped children (and theirs, once reaped): the benchmarks' own cost."""
    usage = os.times()
    return usage.children_user + usage.children_system


def foreign_processes() -> list[str]:
    """Test runs and benchmarks of others on this machine (pytest, bench) that are not ours."""
    mine = {os.getpid()}
    try:
        from tests.harness.procs import descendants
        mine |= {pid for pid, _ in descendants(os.getpid())}
    except Exception:  # noqa: BLE001 - best effort
        pass
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if re.search(r"(-m pytest|/pytest |-m bench)", cmd):
            found.append(f"{entry}: {cmd.strip()[:120]}")
    return found


class HttpChecker:
    """GET /primary and /replica every `interval` seconds and /metrics every `metrics_every`, in a
    thread, a new connection per request: how one HAProxy (a check per backend) and one Prometheus
    check a node's HTTP endpoints."""

    def __init__(self, host: str, port: int, *, interval: float, metrics_every: float = 15.0) -> None:
        import threading
        self.host, self.port = host, port
        self.interval, self.metrics_every = interval, metrics_every
        self.requests = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "HttpChecker":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _get(self, path: str) -> None:
        import http.client
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
            self.requests += 1
        except (OSError, http.client.HTTPException):
            self.failures += 1
        finally:
            conn.close()

    def _run(self) -> None:
        next_metrics = time.monotonic()
        while not self._stop.wait(self.interval):
            self._get("/primary")
            self._get("/replica")
            if time.monotonic() >= next_metrics:
                self._get("/metrics")
                next_metrics = time.monotonic() + self.metrics_every


class LoadWatch:
    """What else ran while a benchmark ran: CPU others used, in cores, and foreign test runs seen.

    foreign cores = (machine busy CPU seconds - our children's CPU seconds) / wall seconds.
    Processes a benchmark orphaned (a killed node's mysqld) would count as foreign;
    the benchmarks reap theirs, so the error is small.
    """

    def __init__(self) -> None:
        self.start_wall = time.monotonic()
        self.start_busy = busy_cpu_seconds()
        self.start_ours = children_cpu_seconds()
        self.start_load = os.getloadavg()[0]
        self.seen: set[str] = set()

    def sample(self) -> None:
        for proc in foreign_processes():
            self.seen.add(proc)

    def finish(self) -> dict[str, Any]:
        wall = max(1e-6, time.monotonic() - self.start_wall)
        busy = busy_cpu_seconds() - self.start_busy
        ours = children_cpu_seconds() - self.start_ours
        self.sample()
        return {"wall_s": round(wall, 1), "our_cores": round(ours / wall, 2),
                "foreign_cores": round(max(0.0, busy - ours) / wall, 2),
                "loadavg_start": round(self.start_load, 2), "loadavg_end": round(os.getloadavg()[0], 2),
                "foreign_processes": sorted(self.seen)[:10]}


def python() -> str:
    return sys.executable
