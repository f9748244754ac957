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
