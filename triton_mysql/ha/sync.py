"""Semi-synchronous replication in the health pass: read, decide, act, publish.

Every `health` pass of a node with mysqld up reads the server's semi-sync
state (one query), decides the source side with `decide.decide_sync`, sets it
when that differs, and returns the member record's `sync` field:

    {"mode": "semi"|"strict"|"off", "status": "on"|"off", "since": <epoch>,
     "phase": ..., "clients": n, "waiting": n, "fallbacks": n, "timeout_s": s}

`status` is the server's own word: on the primary, the source side is enabled
and not fallen back (`Rpl_semi_sync_*_status`), so every commit acknowledged
to a client since it turned on is in a replica's relay log; on a replica, its
IO thread negotiated semi-sync with its source.  `since` is when that status
last changed.

Hooks are separate processes, so what must outlive one pass lives elsewhere:
the previous `sync` record is read back from this node's `nodes/<node>` record
in the view (a change is logged once, when the record first shows it), and
whether a replica has acknowledged since the source side turned on (`strict`)
is kept in the node state in the datadir.  The source side is off on every
node but the primary and after every restart, so a new term (a failover, a
restart) starts again in the "waiting for a replica" phase, unacknowledged.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from .. import node_state
from ..mysql import semisync
from ..mysql.connection import DBError
from . import decide as d

log = logging.getLogger("triton_mysql.sync")

PRIMARY_ACTIONS = (d.PRIMARY, d.TAKE_BOOTSTRAP_LOCK)
STATE_KEY = "sync"


def sync_pass(agent, decision: d.Decision, observed, local: d.Local, view) -> dict[str, Any] | None:
    """One pass of the semi-sync rule; returns the `sync` record (None: mysqld down or unreadable)."""
    config = agent.config
    mode = config.sync_replication
    if observed.server is None:
        return None
    previous = _previous(view, config.node_name)
    if mode == "off":
        return _record(previous, mode, "off", d.SYNC_OFF, {})
    primary = decision.action in PRIMARY_ACTIONS and not local.read_only
    try:
        conn = agent.conn()
        state = semisync.read(conn, agent.flavor)
        if not state.available and primary:
            state = semisync.ensure_loaded(conn, agent.flavor, state)
        if not primary and state.replica_loaded and not state.replica_enabled:
            semisync.ensure_replica_side(conn, agent.flavor, mode, local.io_running)
        term = decision.lock.since if (primary and decision.lock is not None) else None
        acknowledged = _acknowledged(agent, observed, state, mode)
        facts = d.SyncFacts(mode=mode, primary=primary, source_enabled=state.source_enabled,
                            clients=state.clients, caught_up=state.dump_caught_up,
                            wait_sessions=state.wait_sessions, acknowledged=acknowledged)
        plan = d.decide_sync(facts, semisync.timeout_ms(config.sync_timeout), semisync.TIMEOUT_MAX_MS)
        if state.available and semisync.apply_source(conn, agent.flavor, state, plan.source_enabled,
                                                     plan.timeout_ms):
            if plan.source_enabled and not state.source_enabled:
                _remember_enable(agent, observed, term, state.yes_tx, mode)
            log.debug("semi-sync source side %s: %s", "on" if plan.source_enabled else "off", plan.reason)
            state = semisync.read(conn, agent.flavor)
    except DBError as exc:
        log.warning("could not read or set semi-sync: %s", exc)
        return None
    if primary:
        status = "on" if state.source_enabled and state.source_on else "off"
    else:
        status = "on" if state.replica_enabled and state.replica_on else "off"
    extra = {"clients": state.clients, "waiting": state.wait_sessions, "fallbacks": state.off_times,
             "timeout_s": round(state.timeout_ms / 1000, 3) if state.source_enabled else None}
    if not state.available:
        extra["error"] = "this server has no semi-sync (plugins not loaded)"
    record = _record(previous, mode, status, plan.phase, extra)
    _log_change(previous, record, primary, config.sync_timeout)
    return record


def _previous(view, node: str) -> dict[str, Any] | None:
    if view is None:
        return None
    record = (view.nodes.get(node) or {}).get("sync")
    return record if isinstance(record, dict) else None


def _record(previous: dict[str, Any] | None, mode: str, status: str, phase: str,
            extra: dict[str, Any]) -> dict[str, Any]:
    same = previous is not None and previous.get("mode") == mode and previous.get("status") == status
    since = float(previous.get("since") or 0.0) if same and previous else 0.0
    return {"mode": mode, "status": status, "since": since or time.time(), "phase": phase, **extra}


def _log_change(previous: dict[str, Any] | None, record: dict[str, Any], primary: bool, timeout: float) -> None:
    """One line when the published state changes (first publication included)."""
    status, phase = record["status"], record["phase"]
    unchanged = previous is not None and all(previous.get(k) == record[k] for k in ("mode", "status", "phase"))
    if unchanged:
        before = previous.get("fallbacks") if previous else None
        if (primary and status == "on" and isinstance(before, int) and record["fallbacks"] > before):
            log.warning("semi-sync fell back to asynchronous and came back between two passes (%d time(s)): "
                        "a replica caught up again", record["fallbacks"] - before)
        return
    clients = record.get("clients", 0)
    if not primary:
        log.info("semi-sync replica side %s (SYNC_REPLICATION=%s)", status, record["mode"])
    elif phase == d.SYNC_WAITING:
        log.info("semi-sync waiting for a replica to connect and catch up; commits are asynchronous until then")
    elif status == "off":
        log.warning("semi-sync fell back to asynchronous: no replica acknowledged within SYNC_TIMEOUT=%g s "
                    "(%d semi-sync replica(s) connected); the server turns it back on when one catches up",
                    timeout, clients)
    elif phase == d.SYNC_STRICT:
        log.info("semi-sync on, strict: a replica has acknowledged; commits wait for one however long it takes "
                 "(%d replica(s) connected)", clients)
    else:
        log.info("semi-sync on: commits wait for a replica's acknowledgement, at most SYNC_TIMEOUT=%g s "
                 "(%d replica(s) connected)", timeout, clients)


def _acknowledged(agent, observed, state: semisync.SemisyncState, mode: str) -> bool:
    """Strict: has a replica acknowledged a commit since the source side last turned on?

    Kept in the node state (a later pass is another process).  Turning the
    source side on starts a new count (`_remember_enable`); it is off on every
    node but the primary and after every restart, so a new term or a restarted
    server always starts again from "not acknowledged".
    """
    if mode != "strict" or not state.source_enabled or observed.state is None:
        return False
    stored = observed.state.extra.get(STATE_KEY)
    if not isinstance(stored, dict):  # on, but never recorded (e.g. the state file was replaced): count from now
        _save(agent, observed, {"yes_tx": state.yes_tx, "acknowledged": False, "enabled_at": time.time()})
        return False
    if stored.get("acknowledged"):
        return True
    if state.yes_tx > int(stored.get("yes_tx") or 0):
        _save(agent, observed, {**stored, "acknowledged": True, "acknowledged_at": time.time()})
        return True
    return False


def _remember_enable(agent, observed, term: float | None, yes_tx: int, mode: str) -> None:
    """Strict: the source side just turned on; acknowledgements count from `yes_tx` on."""
    if mode != "strict" or observed.state is None:
        return
    _save(agent, observed, {"term": term, "yes_tx": yes_tx, "acknowledged": False, "enabled_at": time.time()})


def _save(agent, observed, value: dict[str, Any]) -> None:
    state = observed.state
    extra = {**state.extra, STATE_KEY: value}
    observed.state = state.update(extra=extra)
    node_state.save(agent.config.mysql_datadir, observed.state)
