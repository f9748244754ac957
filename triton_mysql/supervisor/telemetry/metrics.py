"""Prometheus metrics, `triton_mysql_` namespace, labels `service` and `node` on every series.

Built with prometheus_client in a private registry (nothing global).  Three
sources, each named in the HELP text:

* **the cluster records** the supervisor last read (this node's member
  record, the lock, `failover/last`, `snapshots/last`, `snapshots/lock`):
  role, health, candidacy, lag and GTIDs as the cluster sees them, the same
  values `triton-mysql status --json` shows;
* **the local mysqld at scrape time** (one `read_state`, three queries):
  writable, replication threads;
* **the supervisor itself**: health pass durations and results, hook runs
  and exit codes, discovery request errors, app (container) restarts.

Names follow mysqld_exporter where one exists (`…_io_running`,
`…_sql_running`, `…_lag_seconds`); booleans are 0/1 gauges; timestamps are
Unix seconds (`…_timestamp_seconds`).  Failovers are counted as this
supervisor sees `failover/last` change (a counter that starts at 0 with the
process, as Prometheus counters do); the last one's time and kind come from
the record itself.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from ...mysql import gtid
from ...records import FailoverRecord
from ...timestamps import parse_time

NS = "triton_mysql"
ROLES = ("primary", "replica", "starting", "fenced", "down")
HEALTH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _sequences(flavor: str, text: str | None) -> dict[str, int]:
    """The position's highest sequences, read in the flavor its member record names (none for a
    record without one, or with text of another family: no guessing from the text)."""
    try:
        return gtid.highest_per_source(flavor, text)
    except gtid.GtidError:
        return {}


class Metrics:
    """The registry: event metrics updated by the supervisor, the rest computed at each scrape."""

    def __init__(self, service: str, node: str, scrape: Callable[[], dict[str, Any]]) -> None:
        self.labels = (service, node)
        self.registry = CollectorRegistry(auto_describe=False)
        base = ["service", "node"]
        self.health_duration = Histogram(
            f"{NS}_health_pass_duration_seconds", "Duration of the health checks the supervisor ran (supervisor)",
            base, buckets=HEALTH_BUCKETS, registry=self.registry)
        self.hook_runs = Counter(
            f"{NS}_hook_runs", "Hook runs that ended, by hook and exit code (128+N: killed by signal N) "
            "(supervisor)", base + ["hook", "exit_code"], registry=self.registry)
        self.discovery_errors = Counter(
            f"{NS}_discovery_errors", "Failed discovery requests of the supervisor (heartbeats, reads of "
            "healthy instances and of the cluster records), by operation", base + ["operation"],
            registry=self.registry)
        self.last_exit: dict[str, int] = {}
        self.failovers: dict[str, int] = {}
        self._failover_seen: tuple[Any, ...] | None = None
        self._scrape = scrape
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)

    # -- events (supervisor main thread) ---------------------------------------------
    def hook_finished(self, hook: str, code: int, duration: float, is_health: bool) -> None:
        self.hook_runs.labels(*self.labels, hook, str(code)).inc()
        self.last_exit[hook] = code
        if is_health:
            self.health_duration.labels(*self.labels).observe(max(0.0, duration))

    def discovery_error(self, operation: str) -> None:
        self.discovery_errors.labels(*self.labels, operation).inc()

    def saw_failover(self, record: FailoverRecord | None, first_read: bool) -> None:
        """Count a `failover/last` that differs from the one seen before (not the one found at start)."""
        if record is None:
            return
        key = (record.at, record.source, record.to, record.kind)
        if key == self._failover_seen:
            return
        previous, self._failover_seen = self._failover_seen, key
        if previous is None and first_read:
            return
        kind = record.kind or "unknown"
        self.failovers[kind] = self.failovers.get(kind, 0) + 1

    def exposition(self) -> bytes:
        from prometheus_client.exposition import generate_latest
        return generate_latest(self.registry)


class _Collector:
    """Everything computed at scrape time from the facts the scrape callback gathers."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterable[Any]:
        s = self.m._scrape()
        labels = list(self.m.labels)
        out: list[Any] = []

        def gauge(name: str, doc: str, value: float | None, extra: dict[str, str] | None = None) -> None:
            if value is None:
                return
            family = GaugeMetricFamily(f"{NS}_{name}", doc, labels=["service", "node", *(extra or {})])
            family.add_metric(labels + list((extra or {}).values()), float(value))
            out.append(family)

        def flag(value: Any) -> float | None:
            return None if value is None else (1.0 if value else 0.0)

        # -- the supervisor ---------------------------------------------------------
        f = s["facts"]
        gauge("maintenance", "1 while the supervisor is in maintenance mode (SIGUSR1) (supervisor)", flag(f.maintenance))
        last = f.last_health
        gauge("health_pass_last_success", "1 when the last health pass passed (supervisor)",
              flag(last.passed) if last else None)
        gauge("health_pass_last_timestamp_seconds", "When the last health pass ended (supervisor)",
              s["wall_of"](last.ended) if last else None)
        gauge("app_start_time_seconds", "When the supervisor started the app (supervisor)", s.get("app_started_wall"))
        restarts = CounterMetricFamily(f"{NS}_app_restarts", "Times the app (mysqld) was started again in this "
                                       "container: container restarts, counted across supervisor runs (supervisor)",
                                       labels=["service", "node"])
        restarts.add_metric(labels, float(s.get("app_restarts") or 0))
        out.append(restarts)
        exits = GaugeMetricFamily(f"{NS}_hook_last_exit_code", "Exit code of each hook's last run (supervisor)",
                                  labels=["service", "node", "hook"])
        for hook, code in sorted(dict(self.m.last_exit).items()):  # a copy: the main thread may add one
            exits.add_metric(labels + [hook], float(code))
        out.append(exits)
        for name, ok in (("primary", s.get("primary_ok")), ("replica", s.get("replica_ok"))):
            gauge(f"{name}_endpoint_ok", f"1 when GET /{name} answers 200 at this scrape (supervisor)", flag(ok))

        # -- the local server -------------------------------------------------------
        server = s.get("server")
        gauge("mysqld_up", "1 when mysqld answered on its socket at this scrape (server)", flag(server is not None))
        if server is not None:
            gauge("writable", "1 when read_only is OFF (server)", flag(server.writable))
            replica = server.replica
            gauge("replication_configured", "1 when replication is configured (server)", flag(replica is not None))
            if replica is not None:
                gauge("replication_io_running", "1 while the replication IO thread is connected (server)",
                      flag(replica.io_running))
                gauge("replication_sql_running", "1 while the replication SQL thread runs (server)",
                      flag(replica.sql_running))

        # -- the cluster records ----------------------------------------------------
        view = s.get("view")
        if view is None:
            return out
        node = self.m.labels[1]
        gauge("view_age_seconds", "Age of the supervisor's last read of the cluster records (supervisor)",
              s.get("view_age"))
        member = view.members.get(node)
        role = member.role if member is not None else "down"
        roles = GaugeMetricFamily(f"{NS}_role", "1 for this node's role in its member record; down: no live "
                                  "record (cluster)", labels=["service", "node", "role"])
        for name in ROLES if role in ROLES else (*ROLES, role):
            roles.add_metric(labels + [name], 1.0 if name == role else 0.0)
        out.append(roles)
        lock = view.lock
        gauge("lock_held", "1 when this node holds the primary lock, in any state (cluster)",
              flag(lock is not None and lock.node == node))
        gauge("cluster_primary_ready", "1 when some node holds the primary lock in state ready (cluster)",
              flag(lock is not None and lock.state == "ready"))
        if member is not None:
            gauge("healthy", "1 when this node's last health pass passed, per its member record (cluster)",
                  flag(member.healthy))
            gauge("candidate", "1 when this node is a failover candidate, per its member record (cluster)",
                  flag(member.candidate))
            gauge("replication_lag_seconds", "Replication lag in this node's member record (cluster)",
                  member.lag_seconds)
            gauge("member_updated_timestamp_seconds", "When this node last wrote its member record (cluster)",
                  member.updated)
            for name, text, doc in (("gtid_executed_sequence", member.gtid, "executed"),
                                    ("gtid_received_sequence", member.received_gtid, "executed or received")):
                family = GaugeMetricFamily(f"{NS}_{name}", f"Highest {doc} GTID sequence number per domain "
                                           "(MySQL: per source uuid), per the member record (cluster)",
                                           labels=["service", "node", "domain"])
                for domain, seq in sorted(_sequences(member.flavor, text).items()):
                    family.add_metric(labels + [domain], float(seq))
                out.append(family)
        sync = (view.nodes.get(node) or {}).get("sync") if member is not None else None
        if isinstance(sync, dict):
            mode = str(sync.get("mode") or "")
            gauge("sync_replication_on", "1 while semi-synchronous replication is on, per the member record's "
                  "`sync` (cluster)", flag(sync.get("status") == "on"), {"mode": mode})
            since = sync.get("since")
            gauge("sync_replication_since_timestamp_seconds", "Since when `sync.status` has its value (cluster)",
                  since if isinstance(since, (int, float)) else None, {"mode": mode})
        failovers = CounterMetricFamily(f"{NS}_failovers", "Changes of failover/last this supervisor saw, by "
                                        "kind (cluster)", labels=["service", "node", "kind"])
        counts = dict(self.m.failovers)
        for kind in sorted({"automatic", "planned", *counts}):
            failovers.add_metric(labels + [kind], float(counts.get(kind, 0)))
        out.append(failovers)
        last = view.failover_last
        if last is not None:
            gauge("failover_last_timestamp_seconds", "When the last failover happened, from failover/last "
                  "(cluster)", last.at, {"kind": last.kind or "unknown"})
        snap = view.snapshot_last or {}
        created = parse_time(snap.get("created"))
        if created is not None:
            gauge("snapshot_last_timestamp_seconds", "When the newest complete snapshot was started (cluster)",
                  created)
            gauge("snapshot_age_seconds", "Age of the newest complete snapshot (cluster)",
                  round(max(0.0, time.time() - created), 1))
            completed = parse_time(snap.get("completed"))
            gauge("snapshot_duration_seconds", "How long the newest complete snapshot took (cluster)",
                  None if completed is None else max(0.0, completed - created))
        gauge("snapshot_size_bytes", "Size of the newest complete snapshot's stored object (cluster)",
              snap.get("size") if isinstance(snap.get("size"), (int, float)) else None)
        gauge("snapshot_running", "1 while a node holds snapshots/lock (cluster)", flag(bool(view.snapshot_lock)))
        task = s.get("snapshot_task_code")
        gauge("snapshot_last_run_success", "1 when this node's last `snapshot` task run exited 0 (taken or not "
              "due) (supervisor)", None if task is None else flag(task == 0))
        return out
