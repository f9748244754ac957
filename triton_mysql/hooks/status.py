"""`triton-mysql status`: the cluster as discovery sees it.

Works from any machine that reaches the discovery service: it reads records
only (member records for live nodes, `nodes/` records for nodes that are down)
and never connects to mysqld.
"""
from __future__ import annotations

import json
import time
from typing import Any

import click

from ..discovery import connect
from ..timestamps import parse_time
from ..backup.progress import human_bytes
from ..view import READY, ClusterView, read_view
from ..keys import ClusterKeys
from ..log import scrub  # records come from discovery: whatever a node wrote there, no secret is shown


def build(view: ClusterView, ttl: float | None = None) -> dict[str, Any]:
    """The status as one JSON-able object: `primary`, `nodes`, `last_snapshot` (+ extras).

    Each row shows what the evidence supports, not just the newest claim:
    * a member record not rewritten for longer than `ttl` (SESSION_TTL) is
      `stale` (its node stopped publishing: crashed, frozen or cut off), with
      its age, and never healthy, even while its session keeps it listed;
    * the lock decides who is primary: the holder's row is `primary` (or the
      lock's state, e.g. `promoting`) as soon as the header names it, and a
      node whose record still says `primary` without holding the lock is
      `fenced` (a primary fences itself before its lock can pass on, and a new
      holder fences its predecessor before it is `ready`).
    """
    primary = None
    if view.lock is not None:
        lock = view.lock
        primary = {"node": lock.node, "address": lock.address, "port": lock.port,
                   "server_id": lock.server_id, "since": lock.since, "state": lock.state}
    names = sorted(set(view.members) | set(view.nodes))
    nodes = [_row(view, name, primary, ttl) for name in names]
    snapshot = None
    if view.snapshot_last:
        snap = view.snapshot_last
        snapshot = {key: snap.get(key) for key in ("id", "created", "gtid", "size", "source_node", "sha256")}
        created = parse_time(snap.get("created"))
        snapshot["age_seconds"] = round(view.now - created, 1) if created else None
    return {
        "primary": primary,
        "sync": cluster_sync(primary, nodes),
        "nodes": nodes,
        "last_snapshot": snapshot,
        "last_failover": view.failover_last.to_record() if view.failover_last else None,
        "switchover": view.switchover.to_record() if view.switchover else None,
        "snapshot_running": view.snapshot_lock,
        "session_ttl": ttl,
        "time": view.now,
    }


def _row(view: ClusterView, name: str, primary: dict[str, Any] | None, ttl: float | None) -> dict[str, Any]:
    member = view.members.get(name)
    record: dict[str, Any] = dict(view.nodes.get(name) or {})
    if member is not None:
        record.update({
            "address": member.address, "port": member.port, "server_id": member.server_id,
            "role": member.role, "gtid": member.gtid, "received_gtid": member.received_gtid,
            "lag_seconds": member.lag_seconds, "healthy": member.healthy,
            "candidate": member.candidate, "snapshot_id": member.snapshot_id, "updated": member.updated,
        })
    up = member is not None
    last_seen = float(record.get("updated") or 0.0)
    age = round(view.now - last_seen, 1) if last_seen else None
    stale = up and ttl is not None and (age is None or age > ttl)
    holds_lock = primary is not None and primary["node"] == name
    claimed = record.get("role", "starting")
    if not up:
        role = "down"
    elif stale:
        role = "stale"
    elif holds_lock:
        role = "primary" if primary["state"] == READY else str(primary["state"])
    elif claimed == "primary":
        role = "fenced"
    else:
        role = claimed
    live = up and not stale
    return {
        "node": name,
        "role": role,
        "last_role": record.get("role"),
        "up": up,
        "stale": stale,
        "address": record.get("address"),
        "port": record.get("port"),
        "server_id": record.get("server_id"),
        "gtid": record.get("gtid"),
        "received_gtid": record.get("received_gtid"),
        "lag_seconds": record.get("lag_seconds") if live else None,
        "healthy": bool(record.get("healthy")) and live and role in ("primary", "replica"),
        "candidate": bool(record.get("candidate")) and live,
        "snapshot_id": record.get("snapshot_id"),
        "last_seen": last_seen or None,
        "last_seen_ago": age,
        "holds_lock": holds_lock,
        "sync": record.get("sync") if live else None,
        "verdict": record.get("verdict"),
    }


def cluster_sync(primary: dict[str, Any] | None, nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cluster's semi-sync state: the lock holder's `sync` record, and the replicas acknowledging."""
    holder = next((n for n in nodes if primary and n["node"] == primary["node"] and n["up"]), None)
    if holder is None or not isinstance(holder.get("sync"), dict):
        return None
    sync = dict(holder["sync"])
    sync["replicas_on"] = sorted(n["node"] for n in nodes if n is not holder and n["up"]
                                 and (n.get("sync") or {}).get("status") == "on")
    return sync


def _sync_cell(sync: Any) -> str:
    if not isinstance(sync, dict):
        return "-"
    if sync.get("mode") == "off":
        return "off (async)"
    phase = sync.get("phase")
    if sync.get("status") == "on":
        return "on, strict" if phase == "strict" else "on"
    if phase == "waiting":
        return "off, waiting"
    if phase in ("on", "strict"):
        return "OFF (fallback)"
    return "off"


def _sync_line(sync: dict[str, Any] | None, now: float) -> str | None:
    if not sync:
        return None
    since = _ago(now - float(sync.get("since") or now))
    mode = sync.get("mode")
    if mode == "off":
        return "semi-sync: off (SYNC_REPLICATION=off, asynchronous replication)"
    replicas = ", ".join(sync.get("replicas_on") or []) or "none"
    waiting = f"; {sync['waiting']} commit(s) waiting for an acknowledgement" if sync.get("waiting") else ""
    if sync.get("status") == "on":
        return f"semi-sync: on ({mode}) since {since}; replicas acknowledging: {replicas}{waiting}"
    if sync.get("phase") == "waiting":
        return (f"semi-sync: waiting for a replica to connect and catch up ({mode}); commits are asynchronous "
                f"since {since}")
    return (f"semi-sync: OFF ({mode}), fell back to asynchronous since {since}: no replica acknowledged within "
            f"SYNC_TIMEOUT{waiting}")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def render(status: dict[str, Any], title: str) -> str:
    """The human table (same data as the JSON)."""
    lines = [title]
    primary = status["primary"]
    if primary:
        state = "" if primary["state"] == READY else f" ({primary['state']})"
        lines.append(f"primary: {primary['node']} at {primary['address']}:{primary['port']}{state}, "
                     f"lock held since {_ago(status['time'] - primary['since'])}")
    else:
        lines.append("primary: none (the lock is free)")
    sync_line = _sync_line(status.get("sync"), status["time"])
    if sync_line:
        lines.append(sync_line)
    header = ("NODE", "ROLE", "ADDRESS", "GTID", "LAG", "HEALTHY", "SYNC", "LAST SEEN")
    rows = [header]
    for node in status["nodes"]:
        lag = node["lag_seconds"]
        rows.append((
            node["node"] + (" *" if node["holds_lock"] else ""),
            node["role"],
            f"{node['address']}:{node['port']}" if node["address"] else "-",
            node["gtid"] or "-",
            "-" if lag is None else f"{lag:g}s",
            "yes" if node["healthy"] else "no",
            _sync_cell(node.get("sync")),
            _ago(node["last_seen_ago"]),
        ))
    if len(rows) == 1:
        lines.append("no nodes have registered yet")
    else:
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    snap = status["last_snapshot"]
    if snap:
        lines.append(f"newest snapshot: {snap['id']} ({_ago(snap['age_seconds'])}, gtid {snap['gtid'] or '-'}, "
                     f"{human_bytes(snap['size'] or 0)})")
    else:
        lines.append("newest snapshot: none recorded")
    if status["snapshot_running"]:
        lines.append(f"snapshot running on {status['snapshot_running'].get('node')}")
    failover = status["last_failover"]
    if failover:
        loss = ""
        if failover.get("lost_possible"):
            missing = failover.get("missing_gtids")
            loss = f"; writes may be lost{f' (missing {missing})' if missing else ''}"
        lines.append(f"last failover: {failover.get('from') or '-'} -> {failover.get('to')} "
                     f"({failover.get('kind')}, {_ago(status['time'] - float(failover.get('at') or 0))}{loss})")
    if status["switchover"]:
        lines.append(f"switchover requested to {status['switchover'].get('to')}")
    for node in status["nodes"]:
        verdict = node.get("verdict")
        if isinstance(verdict, dict) and verdict.get("kind"):
            lines.append(f"{node['node']} diverged from {verdict.get('against') or 'the primary'}: "
                         f"{verdict['kind']} {verdict.get('gtids') or ''}".rstrip())
    return "\n".join(lines)


def run(config, as_json: bool = False) -> int:
    discovery = connect(config)
    try:
        view = read_view(discovery, ClusterKeys.for_config(config))
    finally:
        discovery.close()
    status = build(view, config.session_ttl)
    if as_json:
        click.echo(scrub(json.dumps(status, indent=2, sort_keys=True)))
    else:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(view.now))
        click.echo(scrub(render(status, f"cluster {config.service_name} ({discovery.describe()}) at {stamp}")))
    return 0
