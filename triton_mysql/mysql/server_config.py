"""The generated server config (`MYSQL_CNF`), written by onStart before mysqld starts.

mysqld always runs with `--defaults-file=$MYSQL_CNF` as its first argument, so
this file is the whole configuration: the defaults (durability, binlog
format, timeouts, TLS, semi-sync), then `!includedir $MYSQL_CONF_DIR` so the
user's tuning wins over them, then what replication and fencing rely on
(unique server_id, one GTID domain, binlog + log_slave_updates, read-only at
boot, replication not started by the server itself) last: the last value read
wins, so a user file that sets `read_only=OFF` or another `server_id` cannot
defeat them.

Why sync_binlog=1 and innodb_flush_log_at_trx_commit=1: after a host crash a
commit must be in both InnoDB and the binary log, or replicas diverge from the
primary (users may still trade that away in MYSQL_CONF_DIR, as the tests do for
speed).  Why binlog_expire_logs_seconds=0: binary logs are purged by the snapshot
rule only (SPEC §6), never by age (MySQL 8 expires them after 30 days by default).

Why skip_name_resolve: without it a TCP client on a loopback address is
`localhost`, so `root@localhost` (which keeps READ ONLY ADMIN: the hooks write
on a read-only server over the socket) would also take TCP logins with
MYSQL_ROOT_PASSWORD and write on a fenced node; with it, every TCP client is
matched by address (`root@'%'`, which read_only stops), and name lookups never
delay a login.  The accounts this tool creates all use host '%'.

Why read_only at boot: only the lock holder may be writable; the health hook
turns it off after it has taken/renewed the lock.  Why skip_slave_start: the
health hook starts replication only after checking who holds the lock and that
this node has no errant transactions.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

from ..config import Config
from . import tls
from . import semisync
from .datadir import chown_mysql
from .flavor import Flavor

logger = logging.getLogger(__name__)

BINLOG_BASENAME = "mysql-bin"
RELAY_LOG_BASENAME = "relay-bin"
GTID_DOMAIN_ID = 0
NET_TIMEOUT = 5
HEADER = ("# Written by triton-mysql onStart at every start: do not edit.\n"
          "# Put tuning in *.cnf files of the included directory at the end (MYSQL_CONF_DIR).\n")


def pid_file_for(config: Config) -> str:
    """mysqld's pid file: next to the socket, not in the datadir (a restored datadir must not carry one)."""
    return str(Path(config.mysql_socket).parent / "mysqld.pid")


def render_cnf(config: Config, flavor: Flavor, server_id: int, as_root: bool | None = None) -> str:
    """The text of MYSQL_CNF for this node.  `as_root` defaults to whether we run as root."""
    if not 1 <= int(server_id) <= 4294967295:
        raise ValueError(f"server_id must be 1..4294967295, got {server_id}")
    as_root = os.geteuid() == 0 if as_root is None else as_root
    client = [f"socket={config.mysql_socket}", f"port={config.mysql_port}"]
    mysqld: list[str] = []
    if as_root:
        mysqld.append("user=mysql")
    mysqld += [
        f"datadir={config.mysql_datadir}",
        f"socket={config.mysql_socket}",
        f"pid-file={pid_file_for(config)}",
        f"port={config.mysql_port}",
        f"bind-address={config.mysql_bind_address}",
        f"relay_log={RELAY_LOG_BASENAME}",
        "binlog_format=ROW",
        "sync_binlog=1",
        "innodb_flush_log_at_trx_commit=1",
        "binlog_expire_logs_seconds=0",
        "skip_name_resolve=ON",
    ]
    mysqld.append(flavor.net_timeout_cnf(NET_TIMEOUT))
    mysqld += tls.server_options(config)
    if config.sync_replication != "off":  # semi-sync: mysql/semisync.py; the source side is turned on by health
        mysqld += flavor.semisync_cnf(semisync.timeout_ms(config.sync_timeout))
    sections = [
        HEADER,
        "[client]", *client, "",
        flavor.client_cnf_section, *client[:1], "",
        "[mysqld]", *mysqld, "",
        f"!includedir {config.mysql_conf_dir}",
        "",
        "# After the included files, so none of them can turn these off: the server's identity, its",
        "# binary log, GTIDs, read-only at boot and replication started only by the hooks.",
        "[mysqld]",
        f"server_id={int(server_id)}",
        f"log_bin={BINLOG_BASENAME}",
        *flavor.pinned_cnf(GTID_DOMAIN_ID),
    ]
    return "\n".join(sections) + "\n"


def write_cnf(config: Config, flavor: Flavor, server_id: int, as_root: bool | None = None) -> None:
    """Write MYSQL_CNF atomically; create MYSQL_CONF_DIR (the include must exist) and the socket directory."""
    text = render_cnf(config, flavor, server_id, as_root)
    Path(config.mysql_conf_dir).mkdir(parents=True, exist_ok=True)
    _ensure_socket_dir(Path(config.mysql_socket).parent, os.geteuid() == 0 if as_root is None else as_root)
    tls.install(config, os.geteuid() == 0 if as_root is None else as_root)
    target = Path(config.mysql_cnf)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".triton-mysql-cnf-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    logger.info("wrote %s (server_id %d, %s)", target, server_id, flavor.name)
    warning = flavor.semisync_crash_warning() if config.sync_replication != "off" else None
    if warning:
        logger.warning("%s", warning)


def _ensure_socket_dir(path: Path, as_root: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if as_root:
        chown_mysql(path, recursive=False, must_exist=False)


_SERVER_ID_RE = re.compile(r"^\s*server[-_]id\s*=\s*(\d+)\s*$", re.IGNORECASE)


def read_server_id(path: str | os.PathLike) -> int | None:
    """The server_id in an existing cnf (so a restarted node keeps its id), or None."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        match = _SERVER_ID_RE.match(line)
        if match:
            return int(match[1])
    return None
