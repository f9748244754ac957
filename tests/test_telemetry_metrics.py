"""The Prometheus exporter (telemetry/metrics.py) on a synthetic cluster view and server state:
the exposition parses with Prometheus' own parser, every series carries `service` and `node`,
values come from the right source, and every metric examples/prometheus/alerts.yml uses exists."""
from __future__ import annotations

import re
import time

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.cluster import ROOT
from triton_mysql.view import ClusterView, Lock, Member
from triton_mysql.records import FailoverRecord
from triton_mysql.mysql.flavor import MARIADB
from triton_mysql.mysql.state import ReplicaStatus, ServerState
from triton_mysql.supervisor.telemetry.facts import Facts, HealthPass
from triton_mysql.supervisor.telemetry.metrics import Metrics


def view() -> ClusterView:
    now = time.time()
    member = Member(node="n2", address="10.0.0.2", port=3306, server_id=2, role="replica", gtid="0-1-41",
                    received_gtid="0-1-42", candidate=True, healthy=True, lag_seconds=1.0, snapshot_id=None,
                    updated=now, flavor="mariadb")
    record = {"node": "n2", "role": "replica", "sync": {"mode": "semi", "status": "on", "since": now - 60}}
    return ClusterView(
        now=now, lock=Lock("n1", "10.0.0.1", 3306, 1, now - 100, "s", 1, "ready"), members={"n2": member},
        nodes={"n2": record}, bootstrap=None, bootstrap_index=0, switchover=None, switchover_index=0,
        failover_last=FailoverRecord(source="n3", to="n1", at=now - 30, kind="automatic"),
        snapshot_last={"id": "x", "created": "2026-01-01T00:00:00Z", "completed": "2026-01-01T00:00:12Z",
                       "size": 12345},
        snapshot_lock=None)


def server() -> ServerState:
    replica = ReplicaStatus(source_host="10.0.0.1", source_port=3306, io_running=True, io_state="Yes",
                            sql_running=False, last_io_errno=0, last_io_error="", last_sql_errno=0,
                            last_sql_error="", seconds_behind=1.0, received_gtid="0-1-42")
    return ServerState(flavor=MARIADB, version="10.11", server_id=2, server_uuid=None, read_only=True, super_read_only=None,
                       executed_gtid="0-1-41", binlog_state="0-1-41", binlog_file="b.1", binlog_pos=4,
                       replica=replica)


def scrape_text() -> str:
    facts = Facts(started=0.0, last_health=HealthPass(1.0, 1.2, 0))
    metrics = Metrics("mysql", "n2", lambda: {
        "facts": facts, "wall_of": lambda t: t + 1e9, "server": server(), "view": view(), "view_age": 0.4,
        "primary_ok": False, "replica_ok": True, "app_started_wall": 1e9, "app_restarts": 2,
        "snapshot_task_code": 0})
    metrics.hook_finished("health", 0, 0.2, is_health=True)
    metrics.hook_finished("snapshot", 1, 3.0, is_health=False)
    metrics.discovery_error("heartbeat")
    found_at_start = FailoverRecord(source=None, to="n1", at=1, kind="planned")
    metrics.saw_failover(found_at_start, first_read=True)   # not counted
    metrics.saw_failover(FailoverRecord(source=None, to="n2", at=2, kind="automatic"), first_read=False)
    return metrics.exposition().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            if s.name.startswith("triton_mysql_"):
                assert (labels.pop("service"), labels.pop("node")) == ("mysql", "n2"), s
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def test_exposition_values_and_labels():
    m = samples(scrape_text())

    def v(name, **labels):
        return m.get((f"triton_mysql_{name}", tuple(sorted(labels.items()))))
    assert v("role", role="replica") == 1 and v("role", role="primary") == 0
    assert v("lock_held") == 0 and v("cluster_primary_ready") == 1
    assert v("writable") == 0 and v("replication_io_running") == 1 and v("replication_sql_running") == 0
    assert v("replication_lag_seconds") == 1.0
    assert v("gtid_executed_sequence", domain="0") == 41 and v("gtid_received_sequence", domain="0") == 42
    assert v("sync_replication_on", mode="semi") == 1
    assert v("failovers_total", kind="automatic") == 1 and v("failovers_total", kind="planned") == 0
    assert v("failover_last_timestamp_seconds", kind="automatic") > 0
    assert v("snapshot_size_bytes") == 12345 and v("snapshot_duration_seconds") == 12
    assert v("snapshot_running") == 0 and v("snapshot_last_run_success") == 1
    assert v("hook_runs_total", hook="snapshot", exit_code="1") == 1
    assert v("hook_last_exit_code", hook="snapshot") == 1
    assert v("health_pass_duration_seconds_count") == 1
    assert v("discovery_errors_total", operation="heartbeat") == 1
    assert v("app_restarts_total") == 2 and v("replica_endpoint_ok") == 1 and v("primary_endpoint_ok") == 0
    assert v("health_pass_last_success") == 1 and v("mysqld_up") == 1


def test_every_metric_the_example_alerts_use_is_exported():
    exported = {name for name, _ in samples(scrape_text())}
    rules = yaml.safe_load((ROOT / "examples" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\btriton_mysql_\w+", expr)}
    assert len(exprs) >= 5 and used
    assert used <= exported, f"alerts use metrics the exporter does not have: {sorted(used - exported)}"
    scrape = yaml.safe_load((ROOT / "examples" / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["alerts.yml"] and scrape["scrape_configs"][0]["dns_sd_configs"][0]["port"] == 9090
