"""The local mysqld, read at request time: a persistent connection over its socket.

`/primary` and `/replica` must judge the server as it is *now* (a fenced
node turned read-only a moment ago), so each request asks mysqld: one
query for `/primary` (`read_only`), two for `/replica` (plus the replica
status), the three of `mysql.state.read_state` for a `/metrics` scrape.  Each
`LocalServer` is one connection (runtime.py keeps one for /primary, one for
/replica, one for scrapes, so that they never wait for each other).  It is kept open (a new one costs an authentication round trip per
load-balancer check), used by one request at a time, and re-opened when it
breaks (fencing kills every client connection, this one included).  Every
call is bounded by `timeout`: a frozen or hung server makes the endpoint
answer 503 quickly, never hang the balancer's check.

The supervisor stays small: PyMySQL is imported without `cryptography`
(which it loads, if installed, only for RSA password exchange, ~11 MiB of
resident memory), and the connection has TLS off (PyMySQL's default would
load the system CA store, ~90 ms of CPU and ~10 MiB, for every connect).  This connection never needs it: it is root over the
local socket, which MariaDB authenticates by unix_socket or password, and
MySQL 8's caching_sha2 treats as a secure channel (no RSA).
"""
from __future__ import annotations

import importlib
import logging
import sys
import threading
from typing import Any

from .rules import Local

log = logging.getLogger("containerbuddy")

DEFAULT_TIMEOUT = 0.3


def import_pymysql_lean() -> None:
    """Import PyMySQL with `cryptography` hidden (see the module docstring); later imports are unaffected."""
    if "pymysql" in sys.modules:
        return
    hide = "cryptography" not in sys.modules
    if hide:
        sys.modules["cryptography"] = None  # type: ignore[assignment]  # makes `import cryptography` fail
    try:
        importlib.import_module("pymysql")
    finally:
        if hide:
            del sys.modules["cryptography"]


class LocalServer:
    """mysqld on `socket_path`, as root; every method returns None when it does not answer in time."""

    def __init__(self, socket_path: str, password: str | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        import_pymysql_lean()
        self.socket_path = socket_path
        self.password = password
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._flavor: Any = None
        self._last_error = ""

    # -- what the endpoints ask ----------------------------------------------
    def local(self, with_replica: bool) -> Local | None:
        """read_only (and the replica status when asked) now."""
        return self._run(lambda conn, flavor: _local(conn, flavor, with_replica))

    def state(self) -> Any:
        """The full `mysql.state.ServerState` (three queries), for a metrics scrape."""
        from triton_mysql.mysql.state import read_state
        return self._run(read_state)

    # -- plumbing ----------------------------------------------------------------
    def _run(self, fn) -> Any:
        if not self._lock.acquire(timeout=self.timeout):
            return None
        try:
            for attempt in (1, 2):
                try:
                    conn, flavor = self._connection()
                    return fn(conn, flavor)
                except Exception as exc:  # noqa: BLE001 - any failure is "no answer"
                    self._drop()
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    if message != self._last_error:
                        log.info("telemetry: mysqld on %s: %s", self.socket_path, message)
                        self._last_error = message
                    if attempt == 2 or not _retryable(exc):
                        return None
            return None
        finally:
            self._lock.release()

    def _connection(self):
        if self._conn is None:
            from triton_mysql.mysql.connection import connect_local
            from triton_mysql.mysql.flavor import of_connection
            # No TLS over the local socket (see connect_local): it would cost every (re)connect ~90 ms.
            conn = connect_local(self.socket_path, self.password, timeout=self.timeout, ssl_disabled=True)
            try:
                flavor = self._flavor or of_connection(conn)
            except Exception:
                conn.close()
                raise
            self._conn, self._flavor = conn, flavor
            if self._last_error:
                log.info("telemetry: mysqld on %s answers again", self.socket_path)
                self._last_error = ""
        return self._conn, self._flavor

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _retryable(exc: BaseException) -> bool:
    """A connection killed since the last request (fencing kills clients): reconnect once at once."""
    errno = getattr(exc, "errno", None)
    return errno in (2006, 2013, 1927, 4031) or "Lost connection" in str(exc) or "gone away" in str(exc)


def _local(conn: Any, flavor: Any, with_replica: bool) -> Local:
    row = conn.one(flavor.read_only_query()) or {}
    values = [int(v or 0) for v in row.values()]
    read_only = not values or any(values)
    if not with_replica:
        return Local(read_only=read_only)
    rows = conn.query(flavor.show_replica_status())
    status = flavor.replica_status(rows[0] if rows else None)
    if not status or not status.get("source_host"):
        return Local(read_only=read_only)
    behind = status.get("seconds_behind")
    return Local(
        read_only=read_only,
        source=(str(status["source_host"]), int(status.get("source_port") or 0)),
        io_running=str(status.get("io_running") or "") == "Yes",
        sql_running=str(status.get("sql_running") or "") == "Yes",
        seconds_behind=None if behind is None else float(behind),
    )
