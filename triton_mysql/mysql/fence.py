"""Fencing: make sure this server accepts no more writes, within a time budget.

Order matters.  Client connections are killed first (an idle session may hold
locks), then read_only is set and checked, then clients are killed again: on
MariaDB a transaction that wrote before read_only was set may still COMMIT
afterwards, so killing its session (which rolls it back) is what closes the
door.  If any of that fails or the budget runs short, mysqld itself is stopped:
SIGTERM through its pid file, SIGKILL if it is still alive when the budget ends.

Replication threads, binlog dump threads (replicas still fetching the last
events) and the server's own daemon threads are never killed.

Semi-synchronous replication changes the last resort.  A commit waiting for a
replica's acknowledgement is already in the binary log; KILLing its session,
or a clean shutdown, commits it locally while its client gets an error, so the
old primary keeps a transaction the new one may never receive.  Such sessions
are never killed, and `read_only` cannot be set under them (it waits for
them), so with no replica answering the SQL path fails; with `hard_stop`
mysqld is then stopped with SIGKILL, which leaves the commit prepared, and the
restart (`init_rpl_role=SLAVE`, server_config) removes it from the binary log.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Callable

from .connection import ER_NO_SUCH_THREAD, Connection, DBError
from .flavor import Flavor
from .semisync import WAITING_STATE

logger = logging.getLogger(__name__)

# Threads that are not clients: MariaDB and MySQL names.
_SYSTEM_USERS = frozenset({"system user", "event_scheduler", "system_user"})
_SYSTEM_COMMANDS = frozenset({"binlog dump", "binlog dump gtid", "daemon", "slave_io", "slave_sql", "slave_worker",
                              "register slave"})
_MYSQLD_NAMES = ("mariadbd", "mysqld")


class FenceError(Exception):
    """read_only could not be set (or verified)."""


def _waits_for_ack(row: dict) -> bool:
    return WAITING_STATE in str(row.get("STATE") or "").lower()


def _is_client(row: dict, own_id: int) -> bool:
    if int(row["ID"]) == own_id:
        return False
    if _waits_for_ack(row):  # see the module docstring
        return False
    if str(row.get("USER") or "").lower() in _SYSTEM_USERS:
        return False
    return str(row.get("COMMAND") or "").lower() not in _SYSTEM_COMMANDS


def kill_client_connections(conn: Connection) -> int:
    """Kill every client connection except `conn` itself; returns how many were killed."""
    own = conn.connection_id
    rows = conn.query("SELECT ID, USER, COMMAND, STATE FROM information_schema.PROCESSLIST")
    killed = 0
    for row in rows:
        if not _is_client(row, own):
            continue
        try:
            conn.execute("KILL CONNECTION %s", (int(row["ID"]),))
            killed += 1
        except DBError as exc:
            if exc.errno != ER_NO_SUCH_THREAD:  # it left by itself meanwhile
                raise
    return killed


def is_read_only(conn: Connection, flavor: Flavor) -> bool:
    """True when read_only (and, on MySQL, super_read_only) is ON."""
    row = conn.one(flavor.read_only_query()) or {}
    return bool(row) and all(int(v or 0) == 1 for v in row.values())


def set_read_only(conn: Connection, flavor: Flavor, on: bool, lock_wait_timeout: float = 1,
                  timeout: float | None = None) -> None:
    """Turn read-only on or off and verify it took; FenceError otherwise (DBError if the server fails).

    `lock_wait_timeout` (whole seconds, at least 1) bounds how long the server
    waits for locks held by running transactions; `timeout` bounds the client's
    wait for the answer (default: lock_wait_timeout + 1).
    """
    wait = max(1, int(lock_wait_timeout))
    conn.execute("SET SESSION lock_wait_timeout = %s", (wait,))
    for stmt in flavor.set_read_only(on):
        conn.execute(stmt, timeout=wait + 1 if timeout is None else timeout)
    row = conn.one(flavor.read_only_query()) or {}
    values = [int(v or 0) for v in row.values()]
    if not values or any(v != (1 if on else 0) for v in values):
        raise FenceError(f"read_only did not turn {'on' if on else 'off'} (server reports {row})")
    logger.info("read_only is %s", "ON" if on else "OFF")


def _read_pid(pid_file: str | os.PathLike) -> int | None:
    try:
        return int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return None


def _is_mysqld(pid: int) -> bool:
    """The process exists, is not a zombie, and is a mysqld (a recycled pid must never be signalled)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").strip().startswith(("Z", "X")):
        return False
    return fields.get("Name", "").strip() in _MYSQLD_NAMES


def stop_mysqld(pid_file: str | os.PathLike, timeout: float, hard: bool = False) -> str:
    """SIGTERM the mysqld named by `pid_file`; SIGKILL if it is still alive after `timeout` s.

    `hard`: SIGKILL at once (a clean shutdown would commit what waits for a
    semi-sync acknowledgement).  Returns "not running", "stopped" (exited on
    SIGTERM) or "killed".
    """
    pid = _read_pid(pid_file)
    if pid is None or not _is_mysqld(pid):
        return "not running"
    if hard:
        timeout = 0.0
    deadline = time.monotonic() + max(0.0, timeout)
    if not hard:
        _signal(pid, signal.SIGTERM)
    while time.monotonic() < deadline:
        if not _is_mysqld(pid):
            logger.info("mysqld (pid %d) stopped on SIGTERM", pid)
            return "stopped"
        time.sleep(0.02)
    if not _is_mysqld(pid):
        return "stopped"
    _signal(pid, signal.SIGKILL)
    for _ in range(100):  # SIGKILL is immediate but the kernel needs a moment
        if not _is_mysqld(pid):
            break
        time.sleep(0.01)
    if hard:
        logger.warning("mysqld (pid %d) killed (SIGKILL, no clean shutdown)", pid)
    else:
        logger.warning("mysqld (pid %d) did not stop within %.1f s of SIGTERM: killed", pid, timeout)
    return "killed"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def fence(conn_factory: Callable[[float], Connection], flavor: Flavor, pid_file: str | os.PathLike,
          budget: float = 2.0, hard_stop: bool = False) -> str:
    """Stop this server from taking writes within `budget` seconds; returns what was done.

    `conn_factory(timeout)` opens a root connection with that connect/read
    timeout (e.g. ``lambda t: connect_local(socket, password, timeout=t)``).
    Half the budget goes to the SQL path (kill clients, read_only=ON, check,
    kill again); if that fails or overruns, mysqld is stopped with what remains.
    Sessions whose commit waits for a semi-sync acknowledgement are never
    killed: `read_only` waits for them (a replica acknowledging answers within
    milliseconds); when none does, `read_only` fails and, with `hard_stop`
    (semi-sync configured), mysqld is stopped with SIGKILL.
    """
    start = time.monotonic()
    sql_deadline = start + budget / 2
    hard = hard_stop
    try:
        result = _fence_sql(conn_factory, flavor, sql_deadline)
        elapsed = time.monotonic() - start
        if elapsed > budget:  # read_only is on and checked: late, but stopping mysqld would add nothing
            logger.warning("fenced in %.1f s, over the %.1f s budget", elapsed, budget)
        logger.info("fenced: %s", result)
        return result
    except (DBError, FenceError, OSError) as exc:
        reason = str(exc)
    remaining = max(0.0, start + budget - time.monotonic())
    logger.warning("fencing through SQL failed (%s): stopping mysqld%s", reason,
                   " with SIGKILL (a clean shutdown would commit what waits for a semi-sync acknowledgement)"
                   if hard else "")
    outcome = stop_mysqld(pid_file, remaining, hard=hard)
    return f"mysqld {outcome} ({reason})"


def _fence_sql(conn_factory: Callable[[float], Connection], flavor: Flavor, deadline: float) -> str:
    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FenceError("fencing budget exhausted")
        return remaining

    with conn_factory(max(0.2, left())) as conn:
        killed = kill_client_connections(conn)
        set_read_only(conn, flavor, True, lock_wait_timeout=max(1, int(left())), timeout=left())
        killed += kill_client_connections(conn)
    return f"read_only ON, {killed} client connection(s) killed"
