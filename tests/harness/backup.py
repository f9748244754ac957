"""Shared pieces of the snapshot tests: a module-scoped source
server with >= 50 MB of data, configs and CLI runs against real servers,
checksums, restored servers and GTID seeding."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.harness.mariadb import MariaDBServer, start_servers, stop_all
from triton_mysql.config import Config
from triton_mysql.mysql.flavor import MARIADB

ROOT = Path(__file__).resolve().parents[2]
BLOB_ROWS = 65536          # x ~1 KB of random bytes: ~64 MB of table data, incompressible
SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "sys")
# InnoDB's persistent statistics are rewritten in the background after big
# writes: they are not user data and may legitimately differ.
VOLATILE_TABLES = {"mysql.innodb_table_stats", "mysql.innodb_index_stats"}


def fill(server: MariaDBServer, rows: int = BLOB_ROWS) -> None:
    """app.blobs (InnoDB, random bytes, doubled with INSERT … SELECT), app.notes (Aria), app.ticks."""
    server.sql("CREATE DATABASE IF NOT EXISTS app")
    server.sql("CREATE TABLE app.blobs (id INT AUTO_INCREMENT PRIMARY KEY, payload VARBINARY(1024)) ENGINE=InnoDB")
    server.sql("CREATE TABLE app.notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT) ENGINE=Aria")
    server.sql("CREATE TABLE app.ticks (n INT PRIMARY KEY) ENGINE=InnoDB")
    first = min(rows, 1024)
    server.sql(f"INSERT INTO app.blobs (payload) SELECT RANDOM_BYTES(1000) FROM app.seq_1_to_{first}")
    count = first
    while count < rows:
        server.sql(f"INSERT INTO app.blobs (payload) SELECT RANDOM_BYTES(1000) FROM app.blobs LIMIT {rows - count}")
        count = int(server.scalar("SELECT COUNT(*) FROM app.blobs"))
    server.sql("INSERT INTO app.notes (body) SELECT CONCAT('note ', seq, ' ', REPEAT('lorem ipsum ', 20)) "
               "FROM app.seq_1_to_2000")


def tables(server: MariaDBServer) -> list[str]:
    rows = server.sql("SELECT CONCAT(table_schema, '.', table_name) AS t FROM information_schema.tables "
                      "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN %s", (SYSTEM_SCHEMAS,))
    return sorted(r["t"] for r in rows if r["t"] not in VOLATILE_TABLES)


def checksums(server: MariaDBServer, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """CHECKSUM TABLE … EXTENDED of every table (user and mysql schemas)."""
    out = {}
    for table in tables(server):
        if table in exclude:
            continue
        schema, name = table.split(".", 1)
        row = server.sql(f"CHECKSUM TABLE `{schema}`.`{name}` EXTENDED")[0]
        out[table] = row["Checksum"]
    return out


def env_for(server: MariaDBServer, url: str, extra: dict[str, str] | None = None, node: str = "n1") -> dict[str, str]:
    return {
        "NODE_NAME": node,
        "SERVICE_NAME": "mysql",
        "BACKUP_URL": url,
        "MYSQL_SOCKET": server.socket,
        "MYSQL_CNF": str(server.cnf_path),
        "MYSQL_DATADIR": str(server.datadir),
        "ADVERTISE_ADDRESS": server.address,
        "MYSQL_PORT": str(server.port),
        **(extra or {}),
    }


def backups_url(tmp_path: Path, name: str = "backups") -> str:
    """A file:// BACKUP_URL whose root exists (a missing root is an error, not "no snapshots")."""
    (tmp_path / name).mkdir(parents=True, exist_ok=True)
    return f"file://{tmp_path}/{name}"


def hold_primary_lock(discovery: Any, keys: Any, node: str = "n1", ttl: float = 600) -> str:
    """Make `node` the lock holder in discovery, as the cluster would (only the lock holder or a
    healthy replica may write BACKUP_URL's clone source); returns the session (destroy it to let go)."""
    from triton_mysql.keys import encode
    session = discovery.create_session(f"test-primary-{node}", ttl)
    assert discovery.acquire(keys.primary, encode({"node": node, "address": "127.0.0.1", "port": 3306}), session)
    return session


def config_for(server: MariaDBServer, url: str, extra: dict[str, str] | None = None, node: str = "n1") -> Config:
    return Config.from_env(env_for(server, url, extra, node))


def triton_mysql() -> str:
    """The installed console script (as operators and the supervisor run it)."""
    found = shutil.which("triton-mysql", path=str(Path(sys.executable).parent)) or shutil.which("triton-mysql")
    if found is None:
        pytest.skip("the triton-mysql console script is not installed (pip install -e .)")
    return found


def cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `triton-mysql ARGS` as a separate process with `env` over the current environment."""
    return subprocess.run([triton_mysql(), *args], env={**os.environ, **env},
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


def cli_popen(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([triton_mysql(), *args], env={**os.environ, **env}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def seed(server: MariaDBServer, gtid: str) -> None:
    """What the hooks do after a restore: start the server at the snapshot's GTID position."""
    for stmt in MARIADB.seed_after_restore(gtid):
        server.sql(stmt.text, stmt.args or None)


def gtid_seq(gtid: str, domain: int = 0) -> int:
    for part in gtid.split(","):
        d, _s, n = part.split("-")
        if int(d) == domain:
            return int(n)
    return 0


class Ticker:
    """Writes one row per transaction into app.ticks while a backup runs.

    Each insert is exactly one GTID, so a restored snapshot must hold exactly
    the ticks its manifest's GTID counts: the data and the position agree.
    """

    def __init__(self, server: MariaDBServer) -> None:
        self.server = server
        self.start_seq = gtid_seq(str(server.scalar("SELECT @@gtid_binlog_pos")))
        self.base = int(server.scalar("SELECT COALESCE(MAX(n), 0) FROM app.ticks"))
        self.stop = threading.Event()
        self.written = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = self.server.connect_socket()
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute("INSERT INTO app.ticks (n) VALUES (%s)", (self.base + self.written + 1,))
                    self.written += 1
        finally:
            conn.close()

    def __enter__(self) -> "Ticker":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One MariaDB server with ~70 MB of data, shared by a test module."""
    servers = start_servers(tmp_path_factory.mktemp("source"), 1)
    try:
        fill(servers[0])
        yield servers[0]
    finally:
        stop_all(servers)


@pytest.fixture
def spare(tmp_path):
    """`make() -> MariaDBServer`: a server with an empty datadir (not initialised), stopped at teardown."""
    made: list[MariaDBServer] = []

    def make() -> MariaDBServer:
        server = MariaDBServer(tmp_path / f"restored{len(made)}")
        server.tmpdir.mkdir(parents=True, exist_ok=True)
        made.append(server)
        return server

    try:
        yield make
    finally:
        stop_all(made)


def start_restored(server: MariaDBServer) -> MariaDBServer:
    """Start a server on a restored datadir (its run/tmp dirs owned by mysql)."""
    from tests.harness.mariadb import chown_mysql
    Path(server.rundir).mkdir(parents=True, exist_ok=True)
    chown_mysql(server.tmpdir)
    return server.start()


def wait_gtid(server: MariaDBServer, gtid: str, timeout: float = 30) -> None:
    from tests.harness.procs import wait_for
    wait_for(lambda: server.scalar("SELECT @@gtid_slave_pos") == gtid, timeout, what=f"replica at {gtid}")

