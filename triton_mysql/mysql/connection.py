"""A thin PyMySQL wrapper: bounded timeouts, dict rows, one scrubbed error type.

Every hook is a short-lived process that must finish within its supervisor
timeout, so every connection has connect, read and write timeouts: a hung
server makes a call fail (DBError), never hang.  A statement that legitimately
waits longer (MASTER_GTID_WAIT) passes its own `timeout=`.

Errors of any kind (server errors, lost connections, refused sockets) come out
as `DBError` with the server's error number and a message from which every
password is removed: the connection's own, every string parameter of the
failing statement (passwords are always passed as parameters) and every secret
registered with triton_mysql.log.
"""
from __future__ import annotations

import contextlib
import re
import socket
from typing import Any, Iterator, Sequence

import pymysql
import pymysql.converters
import pymysql.cursors

from .. import log
from .flavor import Sql

DEFAULT_TIMEOUT = 2.0

# Server error numbers the callers test for.
ER_OPTION_PREVENTS_STATEMENT = 1290   # read_only
ER_ACCESS_DENIED = 1045
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_LOCK_WAIT_TIMEOUT = 1205
ER_NO_SUCH_THREAD = 1094
CR_SERVER_LOST = 2013
CR_CONN_HOST_ERROR = 2003


class DBError(pymysql.err.MySQLError):
    """Any failure talking to the server.  `errno` is the server/client error number (or None)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        return f"({self.errno}) {self.message}" if self.errno is not None else self.message


_NEAR_RE = re.compile(r"near '.*' at line (\d+)", re.DOTALL)


def _scrub(text: str, secrets: Sequence[Any]) -> str:
    """`text` without any secret, raw or as the server echoes it back (escaped, maybe cut short)."""
    values = [s for s in secrets if isinstance(s, str) and s]
    if values:
        # A syntax error quotes the statement "near" the error, parameters included,
        # possibly cut in the middle of a password: drop that quote entirely.
        text = _NEAR_RE.sub(r"near '…' at line \1", text)
    forms = {form for s in values for form in (s, pymysql.converters.escape_string(s))}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    return log.scrub(text)


def _to_error(exc: BaseException, context: str, secrets: Sequence[Any]) -> DBError:
    errno: int | None = None
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        errno = exc.args[0]
        detail = str(exc.args[1]) if len(exc.args) > 1 else ""
    else:
        detail = str(exc) or type(exc).__name__
    return DBError(_scrub(f"{context}: {detail}", secrets), errno)


def _statement(sql: str | Sql, args: Any) -> tuple[str, Any]:
    if isinstance(sql, Sql):
        return sql.text, (sql.args or None)
    return sql, args


def _secret_args(args: Any) -> list[str]:
    if args is None:
        return []
    values = args.values() if isinstance(args, dict) else (args if isinstance(args, (list, tuple)) else [args])
    return [v for v in values if isinstance(v, str)]


class Connection:
    """One open connection; use as a context manager or call close()."""

    def __init__(self, raw: pymysql.connections.Connection, where: str, password: str | None = None) -> None:
        self.raw = raw
        self.where = where
        self._secrets = [password] if password else []

    # -- statements --------------------------------------------------------
    def query(self, sql: str | Sql, args: Any = None, timeout: float | None = None) -> list[dict]:
        """Run one statement, return its rows as dicts (empty list when it returns none)."""
        text, params = _statement(sql, args)
        with self._read_timeout(timeout):
            try:
                with self.raw.cursor() as cur:
                    cur.execute(text, params)
                    return list(cur.fetchall() or [])
            except (pymysql.err.MySQLError, OSError) as exc:
                raise _to_error(exc, f"{self.where}: {' '.join(text.split())[:100]}",
                                self._secrets + _secret_args(params)) from None

    def scalar(self, sql: str | Sql, args: Any = None, timeout: float | None = None) -> Any:
        """The first column of the first row (None when there is no row)."""
        rows = self.query(sql, args, timeout)
        return next(iter(rows[0].values())) if rows else None

    def one(self, sql: str | Sql, args: Any = None, timeout: float | None = None) -> dict | None:
        rows = self.query(sql, args, timeout)
        return rows[0] if rows else None

    def execute(self, sql: str | Sql, args: Any = None, timeout: float | None = None) -> None:
        """Run a statement for its effect."""
        self.query(sql, args, timeout)

    def execute_all(self, statements: Sequence[Sql]) -> None:
        for stmt in statements:
            self.execute(stmt)

    @contextlib.contextmanager
    def _read_timeout(self, timeout: float | None) -> Iterator[None]:
        if timeout is None:
            yield
            return
        old = self.raw._read_timeout
        self.raw._read_timeout = max(timeout, old or 0)
        try:
            yield
        finally:
            self.raw._read_timeout = old

    # -- misc --------------------------------------------------------------
    @property
    def server_version(self) -> str | None:
        """The version the server announced in its handshake (what `SELECT VERSION()` returns):
        a health pass learns the flavor without a query."""
        return self.raw.get_server_info() or None

    @property
    def connection_id(self) -> int:
        """The server's id for this connection (CONNECTION_ID())."""
        return int(self.raw.thread_id())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.where}>"


def _connect(where: str, password: str | None, **kw: Any) -> Connection:
    try:
        raw = pymysql.connect(autocommit=True, cursorclass=pymysql.cursors.DictCursor, charset="utf8mb4",
                              password=password or "", **kw)
    except (pymysql.err.MySQLError, OSError, socket.timeout) as exc:
        raise _to_error(exc, f"cannot connect to {where}", [password] if password else []) from None
    return Connection(raw, where, password)


def connect_local(socket_path: str, password: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                  user: str = "root", **options: Any) -> Connection:
    """root over the unix socket: unix_socket authentication as OS root, else `password`.

    No TLS on a local socket unless `options` say otherwise: PyMySQL >= 1.2 would build a
    "preferred" TLS context for every connection, loading the system CA store (~90 ms of CPU,
    about 2/3 of a warm health pass).  Other `options` go to pymysql.connect."""
    options.setdefault("ssl_disabled", True)
    return _connect(f"{user}@{socket_path}", password, unix_socket=socket_path, user=user,
                    connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, **options)


_PEER_TLS: dict[str, Any] = {}


def use_peer_tls(options: dict[str, Any]) -> None:
    """TLS for every `connect_tcp` of this process (PyMySQL ssl_* arguments; empty: none).

    Set once per process by the CLI from MYSQL_TLS_* (mysql/tls.py), like the
    log's secrets: every peer connection a hook makes, wherever it is made,
    then uses TLS, with no call site able to forget it.
    """
    _PEER_TLS.clear()
    _PEER_TLS.update(options)


def connect_tcp(host: str, port: int, user: str, password: str | None, timeout: float = DEFAULT_TIMEOUT,
                database: str | None = None) -> Connection:
    """A TCP connection (replication account to another node, application checks in tests)."""
    return _connect(f"{user}@{host}:{port}", password, host=host, port=int(port), user=user, database=database,
                    connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, **_PEER_TLS)
