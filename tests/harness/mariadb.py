"""Real MariaDB servers for the tests, each on its own 127.0.0.x address.

One `MariaDBServer` is one mariadbd child process with its own directory
(datadir, socket, pid file, log), its own loopback address and port, and its
own config file passed as `--defaults-file` (first argument, so the machine's
/etc/mysql config is never read).  The config follows ENVIRONMENT.md for GTID
replication (one domain, strict mode, binlog + log_slave_updates, ROW, fixed
relay log name, slave_net_timeout=3) plus small InnoDB settings for speed.

Servers are created initialised (`init()`), started (`start()`, ready when a
connection succeeds), stopped by their PID (`stop()` = SIGTERM, `kill()` =
SIGKILL).  Their datadir survives `stop()`/`kill()`, so `start()` restarts them.

The `mariadb_factory` fixture builds N servers in parallel and stops them all
at teardown, whatever the test did.

For TCP tests the harness adds `root@'127.%'` (empty password, all privileges)
to each datadir: mariadb-install-db only creates `root@localhost`, and a TCP
client on 127.0.0.x is not "localhost" (skip_name_resolve is on).
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pymysql
import pytest

from .procs import Proc, free_port, wait_for

# --------------------------------------------------------------------------
# Loopback addresses: unique within this test session (the whole 127/8 answers
# on Linux).  Ports come from free_port() on that address, so two sessions that
# hand out the same address still never clash.

_address_lock = threading.Lock()
_address_counter = itertools.count(2)


def next_loopback_address() -> str:
    """A loopback address not handed out before in this process: 127.0.0.2, .3, … then 127.0.1.1 …"""
    with _address_lock:
        n = next(_address_counter)
    second, last = divmod(n - 1, 254)
    if second > 255:
        raise RuntimeError("ran out of loopback addresses")
    return f"127.0.{second}.{last + 1}"


_server_ids = itertools.count(1)
_server_id_lock = threading.Lock()


def next_server_id() -> int:
    with _server_id_lock:
        return next(_server_ids)


RUNNING_AS_ROOT = os.geteuid() == 0
UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes; keep a margin

# Small and fast: test servers hold test data only.
FAST_SETTINGS: dict[str, Any] = {
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "16M",
    "innodb_flush_log_at_trx_commit": 2,
    "innodb_doublewrite": 0,
    "sync_binlog": 0,
    "performance_schema": "OFF",
    "max_connections": 100,
    "key_buffer_size": "1M",
}


def fast_tuning_cnf() -> str:
    """FAST_SETTINGS as a cnf snippet, for a MYSQL_CONF_DIR in tests that run the real hooks."""
    return "[mysqld]\n" + "".join(f"{k}={v}\n" for k, v in FAST_SETTINGS.items())


def run_mysqld(cnf_path: Path | str, socket_path: str, log_path: Path | str, timeout: float = 30.0) -> Proc:
    """Start mariadbd with `--defaults-file=cnf_path` as a child and wait until its socket answers.

    For tests of generated configs (the server is not a MariaDBServer); stop it with `.stop()`.
    """
    proc = Proc("mariadbd", [mariadbd_binary(), f"--defaults-file={cnf_path}"], Path(log_path))

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"mariadbd exited:\n{proc.log_text()[-4000:]}")
        pymysql.connect(unix_socket=socket_path, user="root", connect_timeout=1).close()
        return True

    try:
        wait_for(ready, timeout, what=f"mariadbd on {socket_path}")
    except BaseException:
        proc.stop()
        raise
    return proc


HARNESS_TCP_USER = "root"
HARNESS_TCP_HOST = "127.%"


def mariadbd_binary() -> str:
    return shutil.which("mariadbd") or shutil.which("mysqld") or "/usr/sbin/mariadbd"


_workspace: Path | None = None
_workspace_lock = threading.Lock()


def mysql_workspace() -> Path:
    """A per-process directory under the system temp dir that the `mysql` user can always reach.

    pytest's tmp directories live below /tmp/pytest-of-<user>, which every
    pytest session resets to mode 0700 when it starts: a mysqld running as
    `mysql` below it loses access to its own files as soon as another session
    starts on the machine.  Servers therefore keep their files here (0711,
    removed when the process exits) and link them from the test's directory.
    """
    global _workspace
    with _workspace_lock:
        if _workspace is None:
            _workspace = Path(tempfile.mkdtemp(prefix=f"tmysql-{os.getpid()}-"))
            os.chmod(_workspace, 0o711)
            atexit.register(shutil.rmtree, _workspace, True)
        return _workspace


def mysql_tmp_dir(name: str = "dir") -> Path:
    """A fresh directory the `mysql` user can reach (see mysql_workspace); use it for datadirs, sockets, cnf."""
    path = Path(tempfile.mkdtemp(prefix=f"{name[:40]}-", dir=mysql_workspace()))
    os.chmod(path, 0o755)
    return path


def make_traversable(path: Path) -> None:
    """Let the `mysql` user reach `path`: add o+x to our own temp ancestors that lack it.

    Not reliable below pytest's tmp directories: another pytest session that
    starts resets /tmp/pytest-of-<user> to 0700.  Prefer `mysql_tmp_dir()`.
    Only directories below the system temp dir and owned by us are touched
    (search bit only, no listing).
    """
    if not RUNNING_AS_ROOT:
        return
    tmp_root = Path(tempfile.gettempdir()).resolve()
    path = Path(path).resolve()
    for parent in [path, *path.parents]:
        if parent == tmp_root or tmp_root not in parent.parents:
            continue
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.geteuid() and not st.st_mode & stat.S_IXOTH:
            os.chmod(parent, st.st_mode | stat.S_IXOTH)


def chown_mysql(path: Path) -> None:
    """chown -R mysql:mysql `path` (only when running as root: mariadbd then runs as mysql)."""
    if RUNNING_AS_ROOT:
        subprocess.run(["chown", "-R", "mysql:mysql", str(path)], check=True)


class MariaDBServer:
    """One real mariadbd in its own directory, on its own loopback address and port."""

    def __init__(self, workdir: Path | str, address: str | None = None, port: int | None = None,
                 server_id: int | None = None, extra_cnf: dict[str, Any] | None = None,
                 tcp_root: bool = True) -> None:
        self.link = Path(workdir)
        if RUNNING_AS_ROOT:
            # Files live where the mysql user can always reach them; `workdir` links there.
            self.workdir = mysql_tmp_dir(self.link.name)
            if not self.link.exists() and not self.link.is_symlink():
                self.link.parent.mkdir(parents=True, exist_ok=True)
                self.link.symlink_to(self.workdir, target_is_directory=True)
        else:
            self.workdir = self.link
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.address = address or next_loopback_address()
        self.port = port or free_port(self.address)
        self.server_id = server_id or next_server_id()
        self.extra_cnf = dict(extra_cnf or {})
        self.tcp_root = tcp_root
        self._short_dir: Path | None = None
        self.proc: Proc | None = None
        self.write_cnf()

    # -- paths ---------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def rundir(self) -> Path:
        """Socket and pid file live here (a short path: unix socket names are limited)."""
        candidate = self.workdir / "run"
        if len(str(candidate / "mysqld.sock")) <= UNIX_SOCKET_MAX:
            return candidate
        if self._short_dir is None:
            self._short_dir = Path(tempfile.mkdtemp(prefix="mdb-run-"))
        return self._short_dir

    @property
    def socket(self) -> str:
        return str(self.rundir / "mysqld.sock")

    @property
    def pid_file(self) -> str:
        return str(self.rundir / "mysqld.pid")

    @property
    def tmpdir(self) -> Path:
        return self.workdir / "tmp"

    @property
    def cnf_path(self) -> Path:
        return self.workdir / "my.cnf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mysqld.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.alive() else None

    def __repr__(self) -> str:
        return f"<MariaDBServer {self.address}:{self.port} id={self.server_id} pid={self.pid}>"

    # -- config --------------------------------------------------------
    def cnf_text(self) -> str:
        settings: dict[str, Any] = {
            "datadir": self.datadir,
            "socket": self.socket,
            "pid-file": self.pid_file,
            # Private temp dir: bootstraps running side by side must not share /tmp.
            "tmpdir": self.tmpdir,
            "port": self.port,
            "bind-address": self.address,
            "server_id": self.server_id,
            "gtid_domain_id": 0,
            "gtid_strict_mode": "ON",
            "log_bin": "mysql-bin",
            "log_slave_updates": "ON",
            "binlog_format": "ROW",
            "relay_log": "relay-bin",
            "slave_net_timeout": 3,
            "skip_name_resolve": "ON",
            **FAST_SETTINGS,
        }
        if RUNNING_AS_ROOT:
            settings = {"user": "mysql", **settings}
        settings.update(self.extra_cnf)
        lines = ["[client]", f"socket={self.socket}", f"port={self.port}", "", "[mysqld]"]
        for key, value in settings.items():
            lines.append(key if value is None else f"{key}={value}")
        return "\n".join(lines) + "\n"

    def write_cnf(self) -> None:
        self.cnf_path.write_text(self.cnf_text())

    # -- lifecycle -----------------------------------------------------
    def init(self) -> "MariaDBServer":
        """mariadb-install-db into an empty datadir (root@localhost with an empty password)."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        Path(self.rundir).mkdir(parents=True, exist_ok=True)
        chown_mysql(self.workdir)
        if self._short_dir is not None:
            chown_mysql(self._short_dir)
        result = subprocess.run(
            ["mariadb-install-db", f"--defaults-file={self.cnf_path}", "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed for {self}:\n{result.stdout}")
        self._needs_tcp_root = self.tcp_root
        return self

    def start(self, timeout: float = 30.0) -> "MariaDBServer":
        """Start mariadbd and wait until it accepts connections on its socket."""
        if self.proc is not None and self.proc.alive():
            return self
        Path(self.rundir).mkdir(parents=True, exist_ok=True)
        chown_mysql(self.rundir)
        self.proc = Proc(f"mariadbd-{self.address}", [mariadbd_binary(), f"--defaults-file={self.cnf_path}"],
                         self.log_path)
        wait_for(self._ready, timeout, what=f"mariadbd at {self.address}:{self.port}")
        if getattr(self, "_needs_tcp_root", False):
            self._grant_tcp_root()
            self._needs_tcp_root = False
        return self

    def _ready(self) -> bool:
        if self.proc is None or not self.proc.alive():
            raise RuntimeError(f"mariadbd exited:\n{self.proc.log_text()[-4000:] if self.proc else ''}")
        conn = self.connect_socket(connect_timeout=1)
        conn.close()
        return True

    def _grant_tcp_root(self) -> None:
        conn = self.connect_socket()
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin=0")
                cur.execute(f"CREATE USER IF NOT EXISTS '{HARNESS_TCP_USER}'@'{HARNESS_TCP_HOST}'")
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{HARNESS_TCP_USER}'@'{HARNESS_TCP_HOST}' WITH GRANT OPTION")
        finally:
            conn.close()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (clean InnoDB shutdown), SIGKILL after `timeout`.  The datadir is kept."""
        if self.proc is None:
            return None
        code = self.proc.stop(timeout=timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would (the datadir is kept; the next start recovers)."""
        if self.proc is None:
            return
        self.proc.send(signal.SIGKILL)
        self.proc.stop(timeout=10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def cleanup(self, remove_data: bool = False) -> None:
        """Stop the server; remove the short socket directory if one was made (and the datadir if asked)."""
        try:
            self.stop()
        finally:
            if self._short_dir is not None:
                shutil.rmtree(self._short_dir, ignore_errors=True)
            if remove_data:
                shutil.rmtree(self.datadir, ignore_errors=True)

    # -- clients -------------------------------------------------------
    def connect(self, user: str = "root", password: str = "", database: str | None = None,
                **kw: Any) -> pymysql.connections.Connection:
        """A PyMySQL connection over TCP to this server's own address and port."""
        kw.setdefault("connect_timeout", 5)
        kw.setdefault("read_timeout", 30)
        kw.setdefault("write_timeout", 30)
        return pymysql.connect(host=self.address, port=self.port, user=user, password=password,
                               database=database, autocommit=True, cursorclass=pymysql.cursors.DictCursor, **kw)

    def connect_socket(self, user: str = "root", password: str = "", database: str | None = None,
                       **kw: Any) -> pymysql.connections.Connection:
        """A PyMySQL connection over this server's unix socket (root@localhost)."""
        kw.setdefault("connect_timeout", 5)
        kw.setdefault("read_timeout", 30)
        kw.setdefault("write_timeout", 30)
        return pymysql.connect(unix_socket=self.socket, user=user, password=password, database=database,
                               autocommit=True, cursorclass=pymysql.cursors.DictCursor, **kw)

    def sql(self, statement: str, args: Any = None) -> list[dict]:
        """Run one statement as root over the socket and return its rows (test convenience)."""
        conn = self.connect_socket()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def scalar(self, statement: str, args: Any = None) -> Any:
        rows = self.sql(statement, args)
        return next(iter(rows[0].values())) if rows else None

    def replicate_from(self, primary: "MariaDBServer", user: str = "root", password: str = "") -> None:
        """Point this server at `primary` with GTID (slave_pos) and start replication (test shortcut)."""
        self.sql("STOP SLAVE")
        self.sql(
            "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
            (primary.address, primary.port, user, password),
        )
        self.sql("START SLAVE")


def start_servers(base: Path, n: int = 1, start: bool = True, **kw: Any) -> list[MariaDBServer]:
    """Create, init and (optionally) start `n` servers under `base`, in parallel threads.

    On any failure every server created here is stopped before the error is raised.
    """
    base = Path(base)
    servers = [MariaDBServer(base / f"mdb{i}-{os.getpid()}-{next(_dir_counter)}", **kw) for i in range(n)]

    def bring_up(server: MariaDBServer) -> None:
        server.init()
        if start:
            server.start()

    try:
        with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
            for future in [pool.submit(bring_up, s) for s in servers]:
                future.result()
    except BaseException:
        stop_all(servers, remove_data=True)
        raise
    return servers


_dir_counter = itertools.count(1)


def stop_all(servers: list[MariaDBServer], remove_data: bool = False) -> None:
    """Stop every server in parallel; never raises for one that is already gone."""
    if not servers:
        return
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        list(pool.map(lambda s: s.cleanup(remove_data), servers))


@pytest.fixture
def mariadb_factory(tmp_path_factory) -> Callable[..., list[MariaDBServer]]:
    """`make(n=1, **kw) -> list[MariaDBServer]`: n fresh servers, initialised and started in parallel.

    Keyword arguments go to MariaDBServer (e.g. `extra_cnf={...}`, `tcp_root=False`)
    plus `start=False` to only initialise.  Every server made is stopped at teardown.
    """
    made: list[MariaDBServer] = []
    base = tmp_path_factory.mktemp("mariadb")

    def make(n: int = 1, **kw: Any) -> list[MariaDBServer]:
        servers = start_servers(base, n, **kw)
        made.extend(servers)
        return servers

    try:
        yield make
    finally:
        stop_all(made, remove_data=True)
