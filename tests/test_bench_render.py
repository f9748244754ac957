"""BENCHMARKS.md is rendered from stored results alone (bench/render.py): no benchmark runs here.

A small fake results store: one measured benchmark, one that failed, the rest never measured.
"""
from __future__ import annotations

from bench.__main__ import BENCHMARKS
from bench.render import HOW_TO_READ, render

LOAD = {"duration_s": 12.0, "our_cores": 0.9, "foreign_cores": 0.1, "loadavg_start": 0.5, "loadavg_end": 0.7,
        "foreign_processes": []}


def store() -> dict:
    discovery = {"benchmark": "discovery", "ok": True, "measured_at": "2026-01-02 03:04 UTC", "load": LOAD,
                 "figures": {"etcd": {"reads": 200, "median_ms": 4.0, "p90_ms": 5.0, "max_ms": 9.5,
                                      "bare_median_ms": 3.2, "ratio_vs_bare": 0.8}}}
    health = {"benchmark": "health", "ok": False, "measured_at": "2026-01-02 03:10 UTC", "command": "python -m x",
              "error": "mysqld did not start"}
    return {"results": {"discovery": discovery, "health": health},
            "machine": {"cpu": "test cpu", "cores": 2, "ram_gib": 4, "kernel": "6.1", "os": "Linux"},
            "versions": {"python": "3.11"},
            "last_run": {"at": "2026-01-02 03:10 UTC", "benchmarks": ["discovery", "health"], "duration_s": 60.0}}


def test_a_measured_benchmark_has_its_row_and_section():
    text = render(store(), BENCHMARKS)
    assert text.startswith("# Benchmarks\n")
    assert "| Discovery view (etcd 3.4) | 4.00 ms | 9.50 ms | bare client 3.20 ms | 0.80 × | < 20 ms | met |" in text
    assert "## Discovery: one cluster view" in text and "Measured 2026-01-02 03:04 UTC." in text
    assert "| discovery | 2026-01-02 03:04 UTC | 12.0 s | 0.9 | 0.1 | 0.5 → 0.7 | none |" in text
    assert "- CPU: test cpu, 2 cores; RAM 4 GiB; kernel 6.1; Linux" in text
    assert text.endswith(HOW_TO_READ + "\n")


def test_failed_and_missing_benchmarks_are_said_so():
    text = render(store(), BENCHMARKS)
    assert "**Could not be measured** (2026-01-02 03:10 UTC, `python -m x`):" in text
    assert "mysqld did not start" in text
    assert "Not measured yet: run `python -m bench --only fencing`." in text


def test_rendering_is_a_function_of_the_store():
    assert render(store(), BENCHMARKS) == render(store(), BENCHMARKS)


def _pass(cpu: float, user: float, sys_ms: float, faults: int) -> dict:
    return {"runs": 40, "child_cpu_ms": cpu, "child_user_ms": user, "child_sys_ms": sys_ms, "child_faults": faults,
            "helper_cpu_ms": 1.2, "wall_ms": cpu + 10}


def test_warm_pass_section_derives_its_conclusion_from_the_figures():
    figures = {"fork only": _pass(2.6, 1.0, 1.6, 300),
               "health, replica": _pass(26.0, 14.0, 11.6, 2300), "health, primary": _pass(24.0, 13.0, 11.6, 2300),
               "health in-process, replica": {"runs": 40, "cpu_ms": 8.0},
               "health in-process, primary": {"runs": 40, "cpu_ms": 7.0}}
    data = store()
    data["results"]["warm-pass"] = {"benchmark": "warm-pass", "ok": True, "measured_at": "2026-01-02 03:20 UTC",
                                    "figures": figures}
    text = render(data, BENCHMARKS)
    assert "| health, replica | 40 | 26.0 ms (14.0 + 11.6) | 2,300 | 1.2 ms | 36.0 ms |" in text
    assert "| health in-process, primary (median, no fork) | 40 | 7.0 ms | – | – | – |" in text
    # (11.6 - 1.6) ms over (2300 - 300) faults = 5 µs a page; 24 ms every 2 s = 1.2 % of a core
    assert "24–26 ms of CPU against 7.0–8.0 ms" in text and "~5 µs of kernel time per copied page" in text
    assert "~1.2 % of a core for `health` alone" in text and "cold caches after the copies" in text


def test_node_section_says_whether_the_http_endpoints_were_checked():
    run = {"round": 0, "load_start": 0.1, "load_end": 0.2, "python_pass_cpu_ms": 20.0,
           "cpu": {"median_node_cpu_percent": 2.0, "max_node_cpu_percent": 2.2, "median_mysqld_percent": 0.1,
                   "nodes": {"node1": {"node_cpu_percent": 2.0, "supervisor_own_percent": 0.5, "hooks_percent": 1.5,
                                       "mysqld_percent": 0.1, "supervisor_rss_mib": 36.0, "helper_rss_mib": 45.0}}},
           "latency": {"primary": {"runs": 20, "median_ms": 40.0, "p95_ms": 50.0},
                       "replica": {"runs": 40, "median_ms": 41.0, "p95_ms": 52.0}}}
    data = store()
    data["results"]["node-etcd"] = {"benchmark": "node-etcd", "ok": True, "measured_at": "2026-01-02 03:30 UTC",
                                    "figures": {"warm": [run]}, "settings": {"modes": ["warm"]}}
    assert "*HTTP checks*: none" in render(data, BENCHMARKS)
    run["http_checks"] = {"requests": 315, "failures": 0}
    text = render(data, BENCHMARKS)
    assert "/metrics every 15 s: 315 requests per mode, 0 failed" in text
