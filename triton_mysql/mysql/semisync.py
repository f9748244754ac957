"""Semi-synchronous replication on the local server: read its state, set it.

Both families wait *after sync* (AFTER_SYNC): a commit is written and synced
to the binary log, then waits until one replica has acknowledged receiving it
(written to its relay log), and only then is committed in the engine and
acknowledged to the client.  So while semi-sync is on, every commit a client
was told about is in at least one replica's relay log; when no replica answers
within the timeout, the server falls back to asynchronous by itself and comes
back once a replica has caught up.

What to set and when is decided elsewhere (`ha/decide.py` `decide_sync`, from
the state read here); this module only reads (`read`, one query) and carries
out (`apply_source`, `ensure_replica_side`), each change logged in one line.
The dialect (names, plugins, statements) comes from the flavor.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .connection import Connection
from .flavor import Flavor

logger = logging.getLogger(__name__)

# rpl_semi_sync_*_timeout is in milliseconds (an unsigned 32-bit value): "never fall back".
TIMEOUT_MAX_MS = 4294967295
# What a session waiting for an acknowledgement shows in the process list (MariaDB:
# "Waiting for semi-sync ACK from slave", MySQL: "… from replica").
WAITING_STATE = "waiting for semi-sync ack"

MODES = ("semi", "strict", "off")


@dataclass(frozen=True)
class SemisyncState:
    """The server's semi-sync variables and counters, with our neutral names.

    `available` is False when the server has no semi-sync at all (MySQL without
    its plugins loaded); every other field is then at its zero value.
    """

    available: bool = False
    source_loaded: bool = False
    replica_loaded: bool = False
    source_enabled: bool = False       # rpl_semi_sync_{master,source}_enabled
    timeout_ms: int = 0                # rpl_semi_sync_{master,source}_timeout
    wait_point: str = ""
    wait_no_replica: bool = True
    replica_enabled: bool = False      # rpl_semi_sync_{slave,replica}_enabled
    source_on: bool = False            # Rpl_semi_sync_*_status: commits wait for an ACK (not fallen back)
    clients: int = 0                   # semi-sync replicas connected
    wait_sessions: int = 0             # commits waiting for an ACK right now
    yes_tx: int = 0                    # commits acknowledged by a replica (since the server started)
    no_tx: int = 0                     # commits not acknowledged (fallback)
    off_times: int = 0                 # times the source side fell back to asynchronous
    replica_on: bool = False           # Rpl_semi_sync_{slave,replica}_status
    dump_threads: int = 0              # replicas connected (binlog dump threads)
    dump_caught_up: int = 0            # ... of which have been sent everything


def _bool(value: Any) -> bool:
    return str(value or "").strip().upper() in ("ON", "1", "YES", "TRUE")


def _int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def _neutral(flavor: Flavor, name: str) -> str:
    """rpl_semi_sync_master_clients -> source_clients, rpl_semi_sync_slave_status -> replica_status."""
    name = name.lower()
    for word, side in ((flavor.semisync_source_word, "source"), (flavor.semisync_replica_word, "replica")):
        prefix = f"rpl_semi_sync_{word}_"
        if name.startswith(prefix):
            rest = name[len(prefix):].replace(f"no_{flavor.semisync_replica_word}", "no_replica")
            return f"{side}_{rest}"
    return name


def parse(flavor: Flavor, rows: list[dict[str, Any]]) -> SemisyncState:
    """The state from the rows of `flavor.semisync_state()` (name, value)."""
    values = {_neutral(flavor, str(row.get("name") or "")): row.get("value") for row in rows}
    source_loaded = "source_enabled" in values
    replica_loaded = "replica_enabled" in values
    return SemisyncState(
        available=source_loaded or replica_loaded,
        source_loaded=source_loaded,
        replica_loaded=replica_loaded,
        source_enabled=_bool(values.get("source_enabled")),
        timeout_ms=_int(values.get("source_timeout")),
        wait_point=str(values.get("source_wait_point") or "").upper(),
        wait_no_replica=_bool(values.get("source_wait_no_replica", "ON")),
        replica_enabled=_bool(values.get("replica_enabled")),
        source_on=_bool(values.get("source_status")),
        clients=_int(values.get("source_clients")),
        wait_sessions=_int(values.get("source_wait_sessions")),
        yes_tx=_int(values.get("source_yes_tx")),
        no_tx=_int(values.get("source_no_tx")),
        off_times=_int(values.get("source_no_times")),
        replica_on=_bool(values.get("replica_status")),
        dump_threads=_int(values.get("dump_threads")),
        dump_caught_up=_int(values.get("dump_caught_up")),
    )


def read(conn: Connection, flavor: Flavor) -> SemisyncState:
    """One query: the variables, the counters and the binlog dump threads."""
    return parse(flavor, conn.query(flavor.semisync_state()))


def timeout_ms(seconds: float) -> int:
    """SYNC_TIMEOUT in the server's unit, within its range."""
    return max(1, min(TIMEOUT_MAX_MS, int(round(seconds * 1000))))


def ensure_loaded(conn: Connection, flavor: Flavor, state: SemisyncState) -> SemisyncState:
    """MySQL: INSTALL PLUGIN what is missing (normally loaded at start-up by the generated config)."""
    statements = flavor.install_semisync(source=not state.source_loaded, replica=not state.replica_loaded)
    if not statements:
        return state
    conn.execute_all(statements)
    logger.info("semi-sync plugins installed: %s", ", ".join(s.text.split()[2] for s in statements))
    return read(conn, flavor)


def apply_source(conn: Connection, flavor: Flavor, state: SemisyncState, enabled: bool, timeout: int) -> bool:
    """Set the source side (enabled, AFTER_SYNC, timeout in ms); True when something changed.

    The timeout and wait point are set before enabling, so the first commit
    that waits already waits the right way.  Turning the source side *off*
    releases every waiting commit (it commits and its client is told so), so
    the caller never asks for that while sessions wait (decide_sync).
    """
    changed = []
    if enabled or state.source_enabled:
        if state.timeout_ms != timeout:
            conn.execute(flavor.set_semisync("source_timeout", int(timeout)))
            changed.append(f"timeout {_ms(timeout)}")
        if state.wait_point != "AFTER_SYNC":
            conn.execute(flavor.set_semisync("source_wait_point", "AFTER_SYNC"))
            changed.append("wait point AFTER_SYNC")
        if not state.wait_no_replica:
            conn.execute(flavor.set_semisync("source_wait_no_replica", True))
            changed.append("wait with no replica")
    if enabled != state.source_enabled:
        conn.execute(flavor.set_semisync("source_enabled", enabled))
        changed.append("source side " + ("on" if enabled else "off"))
    if changed:
        logger.debug("semi-sync: %s", ", ".join(changed))
    return bool(changed)


def ensure_replica_side(conn: Connection, flavor: Flavor, mode: str, io_running: bool) -> bool:
    """The replica side on (off with mode `off`); True when it changed.

    A replica negotiates semi-sync when its IO thread connects, so a change
    while the IO thread runs restarts it (the relay log is kept: only the IO
    thread stops).
    """
    state = read(conn, flavor)
    if mode != "off" and not state.replica_loaded:
        state = ensure_loaded(conn, flavor, state)
    wanted = mode != "off"
    if not state.replica_loaded or state.replica_enabled == wanted:
        return False
    conn.execute(flavor.set_semisync("replica_enabled", wanted))
    if io_running:
        conn.execute_all(flavor.restart_replica_io())
    logger.info("semi-sync replica side %s%s", "on" if wanted else "off",
                " (IO thread restarted to negotiate it)" if io_running else "")
    return True


def prepare_replica(conn: Connection, flavor: Flavor, mode: str, io_running: bool) -> None:
    """Before (re)starting replication: source side off, replica side on.

    A server that was primary (a switchover leaves mysqld running) may still
    have its source side on; as a replica its own applier's commits would then
    wait for acknowledgements nobody sends (in `strict`, forever).  It is only
    turned off when no commit waits (after fencing, none can).
    """
    state = read(conn, flavor)
    if state.source_enabled:
        if state.wait_sessions:
            logger.warning("semi-sync source side left on: %d commit(s) still wait for an acknowledgement",
                           state.wait_sessions)
        else:
            conn.execute(flavor.set_semisync("source_enabled", False))
            logger.info("semi-sync source side off: this server replicates now")
    ensure_replica_side(conn, flavor, mode, io_running)


def _ms(value: int) -> str:
    return "never" if value >= TIMEOUT_MAX_MS else f"{value / 1000:g} s"


def describe_timeout(value: int) -> str:
    """A timeout in ms as the log shows it ("10 s", or "never" for strict)."""
    return _ms(value)
