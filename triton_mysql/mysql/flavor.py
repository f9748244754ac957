"""Server families (MariaDB, MySQL 8 / Percona Server 8) and their dialects.

Everything that differs between the families lives here, as methods that
return SQL text (`Sql`: text plus parameters for PyMySQL's `%s` quoting) or
argv lists, so that the MySQL 8 side, which cannot run on these machines, is
tested at statement level and the rest of the code never branches on the
family itself.

    flavor = detect_from_binary()                # before mysqld runs
    flavor = of_connection(conn)                 # afterwards
    conn.execute(flavor.stop_replica())
    for stmt in flavor.seed_after_restore(gtid):
        conn.execute(stmt)

A flavor may carry the server version: MySQL 8.4 removed `RESET MASTER` and
`SHOW MASTER STATUS`, so the statements it returns depend on it.  Flavors
compare equal by family name (`flavor == MARIADB` whatever the version).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Any, Mapping, NamedTuple, Sequence


class Sql(NamedTuple):
    """One statement: text with `%s` placeholders and the values for them."""

    text: str
    args: tuple = ()


class ReplicationTLS(NamedTuple):
    """TLS for a replica's connection to its source: files as mysqld reads them (see mysql/tls.py)."""

    ca: str
    cert: str
    key: str
    verify_identity: bool = False


class FlavorError(Exception):
    """The server family or version cannot be determined."""


# Replica status, normalised: our name -> (MariaDB column, MySQL column).
_STATUS_COLUMNS: dict[str, tuple[str, str]] = {
    "source_host": ("Master_Host", "Source_Host"),
    "source_port": ("Master_Port", "Source_Port"),
    "io_running": ("Slave_IO_Running", "Replica_IO_Running"),
    "sql_running": ("Slave_SQL_Running", "Replica_SQL_Running"),
    "last_io_errno": ("Last_IO_Errno", "Last_IO_Errno"),
    "last_io_error": ("Last_IO_Error", "Last_IO_Error"),
    "last_sql_errno": ("Last_SQL_Errno", "Last_SQL_Errno"),
    "last_sql_error": ("Last_SQL_Error", "Last_SQL_Error"),
    "seconds_behind": ("Seconds_Behind_Master", "Seconds_Behind_Source"),
    "received_gtid": ("Gtid_IO_Pos", "Retrieved_Gtid_Set"),
}

BINLOG_INFO_FILE = "xtrabackup_binlog_info"

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, eq=False)
class Flavor:
    """One server family.  Use the MARIADB / MYSQL instances or the detection functions."""

    name: str = ""
    version: tuple[int, int, int] | None = None

    # -- identity --------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flavor) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        v = ".".join(map(str, self.version)) if self.version else "?"
        return f"<Flavor {self.name} {v}>"

    def with_version(self, version: tuple[int, int, int] | None) -> "Flavor":
        return replace(self, version=version)

    @property
    def is_mariadb(self) -> bool:
        return self.name == "mariadb"

    # -- replication (overridden) ----------------------------------------
    def change_source(self, host: str, port: int, user: str, password: str,
                      tls: ReplicationTLS | None = None) -> Sql:
        """Point replication at host:port with GTID auto-positioning and short timers (over TLS with `tls`)."""
        raise NotImplementedError

    def start_replica(self) -> Sql:
        raise NotImplementedError

    def stop_replica(self) -> Sql:
        raise NotImplementedError

    def reset_replica_all(self) -> Sql:
        """Forget the source entirely (used on promotion)."""
        raise NotImplementedError

    def show_replica_status(self) -> Sql:
        raise NotImplementedError

    def replica_status(self, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The replica status row with normalised keys (see _STATUS_COLUMNS), or None if not a replica."""
        if not row:
            return None
        index = 0 if self.is_mariadb else 1
        return {ours: row.get(cols[index]) for ours, cols in _STATUS_COLUMNS.items()}

    def prepare_rejoin(self) -> list[Sql]:
        """Statements run (replication stopped) before `change_source` so that local history counts.

        MariaDB replicates from `gtid_slave_pos`, which ignores what this server
        wrote itself as a primary: copy the binlog position into it.  MySQL's
        auto-positioning uses `gtid_executed` directly: nothing to do.
        """
        return []

    # -- GTID ------------------------------------------------------------
    def executed_gtid(self) -> Sql:
        """One row, column `gtid`: every transaction executed here."""
        raise NotImplementedError

    def binlog_gtid(self) -> Sql:
        """One value: the position this server's own binlog reached (what a snapshot taken now
        records; non-empty when it has history of its own to keep on a rejoin)."""
        return Sql("SELECT @@GLOBAL.gtid_executed")

    def restored_position(self, gtid: str) -> str:
        """The position a server restored from a snapshot recording `gtid` is seeded with."""
        from . import gtid as gtids
        return gtids.normalize(self, gtid)

    def gtid_server_ids(self, gtid: str) -> frozenset[int]:
        """The server_ids that wrote the transactions of `gtid`: a restored node must not use one (it
        would skip those servers' events).  MySQL GTIDs name a server_uuid, never a server_id: none."""
        return frozenset()

    def binlog_state(self) -> Sql:
        """One row, column `gtid`: what the errant-transaction check compares (gtid.classify)."""
        raise NotImplementedError

    def wait_for_gtid(self, gtid: str, timeout: float) -> Sql:
        """One row, column `result`: 0 when `gtid` was applied within `timeout` s (see wait_succeeded)."""
        raise NotImplementedError

    @staticmethod
    def wait_succeeded(result: Any) -> bool:
        """Both MASTER_GTID_WAIT and WAIT_FOR_EXECUTED_GTID_SET return 0 on success."""
        return result is not None and int(result) == 0

    def seed_after_restore(self, gtid: str) -> list[Sql]:
        """Statements that make a server restored from a snapshot start at `gtid`."""
        raise NotImplementedError

    def gtid_waiters(self) -> Sql:
        """Rows with column `ID`: client sessions blocked in a wait for a GTID (read-your-writes).

        On MariaDB a pending MASTER_GTID_WAIT() blocks `SET GLOBAL gtid_slave_pos` (and what comes
        after it) until it ends, whatever the server-side timeouts say: re-pointing replication
        kills those waits first (the client sees an error and retries)."""
        raise NotImplementedError

    def gtid_waiter_ids(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """The connection ids of the waiting sessions among the rows of `gtid_waiters()`."""
        return [int(row["ID"]) for row in rows]

    def show_binlog_status(self) -> Sql:
        """Current binlog file and position (columns File, Position)."""
        return Sql("SHOW MASTER STATUS")

    def state_query(self) -> Sql:
        """One row: version, server_id, server_uuid (NULL on MariaDB), read_only, super_read_only (NULL on
        MariaDB), gtid, binlog_state."""
        raise NotImplementedError

    # -- read-only -------------------------------------------------------
    def set_read_only(self, on: bool) -> list[Sql]:
        raise NotImplementedError

    def read_only_query(self) -> Sql:
        """One row; every column is 1 when fully read-only, 0 when fully writable."""
        return Sql("SELECT @@GLOBAL.read_only AS read_only")

    # -- accounts --------------------------------------------------------
    def replication_privileges(self) -> str:
        """Privileges of the replication account: replicate, and read binlog status; nothing else."""
        raise NotImplementedError

    def password_matches(self, user: str, host: str, password: str) -> Sql | None:
        """A query returning one row if the account's password is `password`, or None if it cannot be checked."""
        return None

    def set_root_password(self, password: str) -> Sql:
        """Give root@localhost `password` (MariaDB keeps unix_socket authentication beside it)."""
        return Sql("ALTER USER %s@%s IDENTIFIED BY %s", ("root", "localhost", password))

    def fencing_privileges(self) -> list[str]:
        """What a peer needs to fence a server over SQL: set read_only, see and kill client connections."""
        raise NotImplementedError

    def read_only_bypass_privileges(self) -> list[str]:
        """Global privileges that let an account write on a read_only server (none where
        super_read_only stops them all, as on MySQL)."""
        return []

    # -- server options (MYSQL_CNF) ---------------------------------------
    def pinned_cnf(self, domain_id: int) -> list[str]:
        """[mysqld] options for GTID replication that starts only when told (read_only at boot): what no
        user file may turn off, so the generated config writes them after MYSQL_CONF_DIR."""
        raise NotImplementedError

    def net_timeout_cnf(self, seconds: int) -> str:
        """How long a replica waits for its source before reconnecting (tuning: a user file may change it)."""
        raise NotImplementedError

    @property
    def client_cnf_section(self) -> str:
        """The option-file section read by this family's command-line client only."""
        return "[mysql]"

    def semisync_crash_warning(self) -> str | None:
        """Why semi-sync on this server may keep unacknowledged commits after a crash, or None."""
        return None

    # -- datadir and backups ---------------------------------------------
    def initialize_argv(self, cnf: str, mysqld: str | None = None) -> list[str]:
        raise NotImplementedError

    @property
    def backup_tool(self) -> str:
        raise NotImplementedError

    @property
    def stream_tool(self) -> str:
        raise NotImplementedError

    @property
    def binlog_info_file(self) -> str:
        """File in a backup naming the binlog file, position and GTID at backup time."""
        return BINLOG_INFO_FILE

    def backup_argv(self, cnf: str, target_dir: str, extra: Sequence[str] = ()) -> list[str]:
        """Stream a hot backup (xbstream) to stdout; `target_dir` holds the tool's scratch files."""
        return [self.backup_tool, f"--defaults-file={cnf}", "--backup", "--stream=xbstream",
                f"--target-dir={target_dir}", *extra]

    def extract_argv(self, directory: str) -> list[str]:
        """Unpack an xbstream read on stdin into `directory`."""
        return [self.stream_tool, "-x", "-C", directory]

    def prepare_argv(self, target_dir: str, cnf: str | None = None) -> list[str]:
        """Make an extracted backup consistent (apply its redo log)."""
        first = f"--defaults-file={cnf}" if cnf else "--no-defaults"
        return [self.backup_tool, first, "--prepare", f"--target-dir={target_dir}"]

    def move_back_argv(self, cnf: str, target_dir: str) -> list[str]:
        """Move a prepared backup into the (empty) datadir named by `cnf`."""
        return [self.backup_tool, f"--defaults-file={cnf}", "--move-back", f"--target-dir={target_dir}"]

    # -- semi-synchronous replication (used by mysql/semisync.py) ---------
    # Our neutral names: source_enabled, source_timeout (ms), source_wait_point,
    # source_wait_no_replica, replica_enabled.  MariaDB has them built in as
    # rpl_semi_sync_master_* / _slave_*; MySQL 8.0.26+ in plugins, as
    # rpl_semi_sync_source_* / _replica_*.
    semisync_source_word = "master"
    semisync_replica_word = "slave"

    def semisync_variable(self, name: str) -> str:
        """The server's name for one of our neutral semi-sync names (see above)."""
        side, _, rest = name.partition("_")
        word = {"source": self.semisync_source_word, "replica": self.semisync_replica_word}[side]
        rest = rest.replace("no_replica", f"no_{self.semisync_replica_word}")
        return f"rpl_semi_sync_{word}_{rest}"

    def set_semisync(self, name: str, value: Any) -> Sql:
        """SET GLOBAL of one semi-sync variable (booleans as ON/OFF)."""
        if isinstance(value, bool):
            value = "ON" if value else "OFF"
        return Sql(f"SET GLOBAL {self.semisync_variable(name)} = %s", (value,))

    def semisync_state(self) -> Sql:
        """Rows (name, value): every semi-sync variable and status counter, lower case, plus
        `dump_threads` and `dump_caught_up` (binlog dump threads, and those that have sent
        everything: "… has sent all binlog to …")."""
        raise NotImplementedError

    def install_semisync(self, source: bool, replica: bool) -> list[Sql]:
        """Load the semi-sync plugins that are missing (MariaDB: built in, nothing to do)."""
        return []

    def restart_replica_io(self) -> list[Sql]:
        """Restart the IO thread: the replica side of semi-sync is negotiated when it connects."""
        raise NotImplementedError

    def semisync_cnf(self, timeout_ms: int) -> list[str]:
        """Server options for semi-sync: replica side on, AFTER_SYNC, the timeout; source side off at boot."""
        return []

    @property
    def cuts_unacknowledged_tail(self) -> bool | None:
        """Does a restarted server cut the commits it prepared but never had acknowledged?  (MariaDB only)"""
        return False


@dataclass(frozen=True, eq=False)
class MariaDBFlavor(Flavor):
    name: str = "mariadb"

    def change_source(self, host: str, port: int, user: str, password: str,
                      tls: ReplicationTLS | None = None) -> Sql:
        text = ("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1")
        args: tuple = (host, int(port), user, password)
        if tls is not None:
            text += (", MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_CERT=%s, MASTER_SSL_KEY=%s, "
                     f"MASTER_SSL_VERIFY_SERVER_CERT={int(tls.verify_identity)}")
            args += (tls.ca, tls.cert, tls.key)
        return Sql(text, args)

    def start_replica(self) -> Sql:
        return Sql("START SLAVE")

    def stop_replica(self) -> Sql:
        return Sql("STOP SLAVE")

    def reset_replica_all(self) -> Sql:
        return Sql("RESET SLAVE ALL")

    def show_replica_status(self) -> Sql:
        return Sql("SHOW SLAVE STATUS")

    def prepare_rejoin(self) -> list[Sql]:
        return [Sql("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos")]

    def executed_gtid(self) -> Sql:
        return Sql("SELECT @@GLOBAL.gtid_current_pos AS gtid")

    def binlog_gtid(self) -> Sql:
        return Sql("SELECT @@GLOBAL.gtid_binlog_pos")

    def restored_position(self, gtid: str) -> str:
        # A snapshot records gtid_binlog_state (one GTID per domain and server):
        # the position is its per-domain maximum.
        from . import gtid as gtids
        return gtids.merge(self, gtid, "")

    def gtid_server_ids(self, gtid: str) -> frozenset[int]:
        from . import gtid as gtids
        return frozenset(server for _, server, _ in gtids.parse_mariadb(gtid))

    def binlog_state(self) -> Sql:
        return Sql("SELECT @@GLOBAL.gtid_binlog_state AS gtid")

    def wait_for_gtid(self, gtid: str, timeout: float) -> Sql:
        return Sql("SELECT MASTER_GTID_WAIT(%s, %s) AS result", (gtid, float(timeout)))

    def seed_after_restore(self, gtid: str) -> list[Sql]:
        # gtid_binlog_state too: without it, replicas cloned later from this node
        # would ask for history its binlog cannot give (error 1236) or miss it.
        return [
            Sql("RESET MASTER"),
            Sql("SET GLOBAL gtid_binlog_state = %s", (gtid,)),
            Sql("SET GLOBAL gtid_slave_pos = %s", (gtid,)),
        ]

    def gtid_waiters(self) -> Sql:
        # SHOW PROCESSLIST, filtered here, not information_schema.PROCESSLIST: the I_S query fills an
        # Aria temporary table, and MariaDB 10.11.19 died of signal 11 freeing it (ha_maria::drop_table)
        # when a hook ran it less than a second after the server started (seen once in CI).
        return Sql("SHOW PROCESSLIST")

    def gtid_waiter_ids(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        return [int(row["Id"]) for row in rows
                if str(row.get("State") or "").startswith("Waiting in MASTER_GTID_WAIT")]

    def set_read_only(self, on: bool) -> list[Sql]:
        return [Sql(f"SET GLOBAL read_only = {'ON' if on else 'OFF'}")]

    def replication_privileges(self) -> str:
        # REPLICATION CLIENT is BINLOG MONITOR since 10.5 (SHOW MASTER STATUS);
        # reading @@gtid_binlog_state needs no privilege.
        return "REPLICATION SLAVE, REPLICATION CLIENT"

    def password_matches(self, user: str, host: str, password: str) -> Sql | None:
        # global_priv holds every authentication alternative (root: unix_socket OR password).
        return Sql(
            "SELECT 1 AS ok FROM mysql.global_priv WHERE User = %s AND Host = %s "
            "AND JSON_SEARCH(Priv, 'one', PASSWORD(%s)) IS NOT NULL",
            (user, host, password),
        )

    def set_root_password(self, password: str) -> Sql:
        return Sql("ALTER USER %s@%s IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(%s)",
                   ("root", "localhost", password))

    def fencing_privileges(self) -> list[str]:
        return ["READ ONLY ADMIN", "CONNECTION ADMIN", "PROCESS"]

    def read_only_bypass_privileges(self) -> list[str]:
        # SUPER implied READ ONLY ADMIN before MariaDB 10.11.
        if self.version is not None and self.version < (10, 11, 0):
            return ["READ ONLY ADMIN", "SUPER"]
        return ["READ ONLY ADMIN"]

    def pinned_cnf(self, domain_id: int) -> list[str]:
        return [
            f"gtid_domain_id={domain_id}",
            "gtid_strict_mode=ON",
            "log_slave_updates=ON",
            "read_only=ON",
            "skip_slave_start=ON",
        ]

    def net_timeout_cnf(self, seconds: int) -> str:
        return f"slave_net_timeout={seconds}"

    @property
    def client_cnf_section(self) -> str:
        return "[mariadb-client]"

    def semisync_crash_warning(self) -> str | None:
        if self.cuts_unacknowledged_tail is not False:
            return None
        return (f"this MariaDB ({self}) has no init_rpl_role (10.6.19/10.11.9+): after a crash it commits the "
                "transactions it never had acknowledged instead of cutting them")

    def state_query(self) -> Sql:
        return Sql("SELECT VERSION() AS version, @@GLOBAL.server_id AS server_id, NULL AS server_uuid, "
                   "@@GLOBAL.read_only AS read_only, NULL AS super_read_only, @@GLOBAL.gtid_current_pos AS gtid, "
                   "@@GLOBAL.gtid_binlog_state AS binlog_state")

    def initialize_argv(self, cnf: str, mysqld: str | None = None) -> list[str]:
        return ["mariadb-install-db", f"--defaults-file={cnf}", "--auth-root-authentication-method=socket",
                "--skip-test-db"]

    @property
    def backup_tool(self) -> str:
        return "mariabackup"

    @property
    def stream_tool(self) -> str:
        return "mbstream"

    def semisync_state(self) -> Sql:
        return Sql(
            r"SELECT LOWER(VARIABLE_NAME) AS name, VARIABLE_VALUE AS value FROM information_schema.GLOBAL_VARIABLES "
            r"WHERE VARIABLE_NAME LIKE 'RPL\_SEMI\_SYNC\_%' "
            r"UNION ALL SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
            r"WHERE VARIABLE_NAME LIKE 'RPL\_SEMI\_SYNC\_%' "
            r"UNION ALL SELECT 'dump_threads', COUNT(*) FROM information_schema.PROCESSLIST "
            r"WHERE COMMAND LIKE 'Binlog Dump%' "
            r"UNION ALL SELECT 'dump_caught_up', COUNT(*) FROM information_schema.PROCESSLIST "
            r"WHERE COMMAND LIKE 'Binlog Dump%' AND STATE LIKE '%sent all binlog to%'")

    def restart_replica_io(self) -> list[Sql]:
        return [Sql("STOP SLAVE IO_THREAD"), Sql("START SLAVE IO_THREAD")]

    def semisync_cnf(self, timeout_ms: int) -> list[str]:
        # init_rpl_role=SLAVE: after a crash the server truncates the binlog tail it had
        # prepared but not committed (written, never acknowledged) instead of committing it;
        # MariaDB 10.6.19/10.11.9+ (MDEV-33465), read at start-up only.
        # rpl_semi_sync_slave_kill_conn_timeout: a semi-sync replica's STOP SLAVE first connects to its
        # source to kill its dump thread; with a frozen or cut-off source that waits this long (default
        # 5 s), which a promotion pays.  Measured here: 2.5 s with the default, 1.4 s with 1.
        lines = ["rpl_semi_sync_master_enabled=OFF", "rpl_semi_sync_slave_enabled=ON",
                 "rpl_semi_sync_master_wait_point=AFTER_SYNC", f"rpl_semi_sync_master_timeout={int(timeout_ms)}",
                 "rpl_semi_sync_slave_kill_conn_timeout=1"]
        support = self.cuts_unacknowledged_tail
        if support is None:  # version unknown: `loose-` makes an older server warn instead of refusing to start
            lines.append("loose-init_rpl_role=SLAVE")
        elif support:
            lines.append("init_rpl_role=SLAVE")
        return lines

    @property
    def cuts_unacknowledged_tail(self) -> bool | None:
        """Does this server know `init_rpl_role` (MDEV-33465: 10.6.19, 10.11.9, 11.1.6, 11.2.5, 11.4.3)?
        None when the version is unknown."""
        if self.version is None:
            return None
        fixed = {(10, 6): 19, (10, 11): 9, (11, 1): 6, (11, 2): 5}
        line = self.version[:2]
        if line in fixed:
            return self.version[2] >= fixed[line]
        return self.version >= (11, 4, 3)


@dataclass(frozen=True, eq=False)
class MySQLFlavor(Flavor):
    """MySQL 8.0.23+ and Percona Server 8 (`CHANGE REPLICATION SOURCE TO` needs 8.0.23)."""

    name: str = "mysql"

    @property
    def _is_84(self) -> bool:
        return self.version is not None and self.version >= (8, 4, 0)

    def change_source(self, host: str, port: int, user: str, password: str,
                      tls: ReplicationTLS | None = None) -> Sql:
        # Always TLS, never GET_SOURCE_PUBLIC_KEY (caching_sha2_password's RSA key exchange
        # over plain TCP, whose unauthenticated key a man in the middle can replace).
        # Without MYSQL_TLS_* the server's auto-generated certificate encrypts the link.
        text = ("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, SOURCE_PASSWORD=%s, "
                "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, SOURCE_SSL=1")
        args: tuple = (host, int(port), user, password)
        if tls is not None:
            text += (", SOURCE_SSL_CA=%s, SOURCE_SSL_CERT=%s, SOURCE_SSL_KEY=%s, "
                     f"SOURCE_SSL_VERIFY_SERVER_CERT={int(tls.verify_identity)}")
            args += (tls.ca, tls.cert, tls.key)
        return Sql(text, args)

    def start_replica(self) -> Sql:
        return Sql("START REPLICA")

    def stop_replica(self) -> Sql:
        return Sql("STOP REPLICA")

    def reset_replica_all(self) -> Sql:
        return Sql("RESET REPLICA ALL")

    def show_replica_status(self) -> Sql:
        return Sql("SHOW REPLICA STATUS")

    def executed_gtid(self) -> Sql:
        return Sql("SELECT @@GLOBAL.gtid_executed AS gtid")

    def binlog_state(self) -> Sql:
        return Sql("SELECT @@GLOBAL.gtid_executed AS gtid")

    def wait_for_gtid(self, gtid: str, timeout: float) -> Sql:
        return Sql("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS result", (gtid, float(timeout)))

    def gtid_waiters(self) -> Sql:
        return Sql("SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for GTID to be committed'")

    def seed_after_restore(self, gtid: str) -> list[Sql]:
        reset = "RESET BINARY LOGS AND GTIDS" if self._is_84 else "RESET MASTER"
        return [Sql(reset), Sql("SET GLOBAL gtid_purged = %s", (gtid,))]

    def show_binlog_status(self) -> Sql:
        if self.version is not None and self.version >= (8, 2, 0):
            return Sql("SHOW BINARY LOG STATUS")
        return Sql("SHOW MASTER STATUS")

    def set_read_only(self, on: bool) -> list[Sql]:
        # super_read_only=ON implies read_only=ON; turning read_only OFF clears both.
        if on:
            return [Sql("SET GLOBAL super_read_only = ON")]
        return [Sql("SET GLOBAL super_read_only = OFF"), Sql("SET GLOBAL read_only = OFF")]

    def read_only_query(self) -> Sql:
        return Sql("SELECT @@GLOBAL.read_only AS read_only, @@GLOBAL.super_read_only AS super_read_only")

    def fencing_privileges(self) -> list[str]:
        return ["SYSTEM_VARIABLES_ADMIN", "CONNECTION_ADMIN", "PROCESS"]

    def pinned_cnf(self, domain_id: int) -> list[str]:
        # MySQL 8.0.26+ names (the replica-named options); no GTID domains.
        return [
            "gtid_mode=ON",
            "enforce_gtid_consistency=ON",
            "log_replica_updates=ON",
            "read_only=ON",
            "super_read_only=ON",
            "skip_replica_start=ON",
        ]

    def net_timeout_cnf(self, seconds: int) -> str:
        return f"replica_net_timeout={seconds}"

    def replication_privileges(self) -> str:
        return "REPLICATION SLAVE, REPLICATION CLIENT"

    def state_query(self) -> Sql:
        return Sql("SELECT VERSION() AS version, @@GLOBAL.server_id AS server_id, @@GLOBAL.server_uuid AS server_uuid, "
                   "@@GLOBAL.read_only AS read_only, @@GLOBAL.super_read_only AS super_read_only, "
                   "@@GLOBAL.gtid_executed AS gtid, @@GLOBAL.gtid_executed AS binlog_state")

    def initialize_argv(self, cnf: str, mysqld: str | None = None) -> list[str]:
        return [mysqld or "mysqld", f"--defaults-file={cnf}", "--initialize-insecure"]

    @property
    def backup_tool(self) -> str:
        return "xtrabackup"

    @property
    def stream_tool(self) -> str:
        return "xbstream"

    semisync_source_word = "source"
    semisync_replica_word = "replica"

    def semisync_state(self) -> Sql:
        return Sql(
            r"SELECT LOWER(VARIABLE_NAME) AS name, VARIABLE_VALUE AS value FROM performance_schema.global_variables "
            r"WHERE VARIABLE_NAME LIKE 'rpl\_semi\_sync\_%' "
            r"UNION ALL SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM performance_schema.global_status "
            r"WHERE VARIABLE_NAME LIKE 'rpl\_semi\_sync\_%' "
            r"UNION ALL SELECT 'dump_threads', COUNT(*) FROM performance_schema.processlist "
            r"WHERE COMMAND LIKE 'Binlog Dump%' "
            r"UNION ALL SELECT 'dump_caught_up', COUNT(*) FROM performance_schema.processlist "
            r"WHERE COMMAND LIKE 'Binlog Dump%' AND STATE LIKE '%sent all binlog to%'")

    def install_semisync(self, source: bool, replica: bool) -> list[Sql]:
        out = []
        if source:
            out.append(Sql("INSTALL PLUGIN rpl_semi_sync_source SONAME 'semisync_source.so'"))
        if replica:
            out.append(Sql("INSTALL PLUGIN rpl_semi_sync_replica SONAME 'semisync_replica.so'"))
        return out

    def restart_replica_io(self) -> list[Sql]:
        return [Sql("STOP REPLICA IO_THREAD"), Sql("START REPLICA IO_THREAD")]

    def semisync_cnf(self, timeout_ms: int) -> list[str]:
        # Loaded at start-up: INSTALL PLUGIN writes mysql.plugin, which super_read_only
        # refuses on every node but the primary.  `loose-`: a server without the plugin
        # files still starts (semi-sync then stays off and the tool reports it).
        return ["plugin-load-add=semisync_source.so", "plugin-load-add=semisync_replica.so",
                "loose-rpl_semi_sync_source_enabled=OFF", "loose-rpl_semi_sync_replica_enabled=ON",
                "loose-rpl_semi_sync_source_wait_point=AFTER_SYNC",
                f"loose-rpl_semi_sync_source_timeout={int(timeout_ms)}"]


MARIADB: Flavor = MariaDBFlavor()
MYSQL: Flavor = MySQLFlavor()
FLAVORS: dict[str, Flavor] = {MARIADB.name: MARIADB, MYSQL.name: MYSQL}


# ----------------------------------------------------------------------
# Detection

def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first x.y.z in `text`, skipping MariaDB's '5.5.5-' replication-compatibility prefix."""
    text = text.strip()
    if text.startswith("5.5.5-"):
        text = text[len("5.5.5-"):]
    match = _VERSION_RE.search(text)
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


def from_version(version: str) -> Flavor:
    """The flavor for `SELECT VERSION()` (or any text naming the server): MariaDB if it says so."""
    if not version or not version.strip():
        raise FlavorError("empty server version")
    parsed = parse_version(version)
    base = MARIADB if "mariadb" in version.lower() else MYSQL
    if parsed is None:
        raise FlavorError(f"cannot read a version number in {version!r}")
    return base.with_version(parsed)


def of_connection(conn: Any) -> Flavor:
    """The flavor of the server behind `conn`: from the version of its handshake when the
    connection knows it (no round trip), else `SELECT VERSION()`."""
    version = conn.server_version or conn.scalar("SELECT VERSION()")
    return from_version(str(version))


def by_name(name: str) -> Flavor:
    """The flavor named in a snapshot manifest ('mariadb' or 'mysql')."""
    try:
        return FLAVORS[name.strip().lower()]
    except KeyError:
        raise FlavorError(f"unknown flavor {name!r}; expected one of {', '.join(FLAVORS)}") from None


def default_binary() -> str | None:
    """mariadbd, else mysqld, from PATH (also /usr/sbin, where Debian puts them)."""
    search = None
    path = os.environ.get("PATH", "")
    if "/usr/sbin" not in path.split(":"):
        search = path + ":/usr/sbin:/usr/local/sbin"
    return shutil.which("mariadbd", path=search) or shutil.which("mysqld", path=search)


def detect_from_binary(path: str | None = None, timeout: float = 10.0) -> Flavor:
    """Run `<binary> --version` (default: mariadbd, else mysqld) and name the family and version."""
    binary = path or default_binary()
    if not binary:
        raise FlavorError("no server binary found: neither mariadbd nor mysqld is on PATH (set MYSQLD)")
    try:
        result = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FlavorError(f"cannot run {binary} --version: {exc}") from None
    if result.returncode != 0:
        raise FlavorError(f"{binary} --version exited {result.returncode}: {result.stdout.strip()[:200]}")
    return from_version(result.stdout)


def parse_binlog_info(text: str) -> tuple[str, int, str]:
    """(binlog file, position, GTID) from a backup's xtrabackup_binlog_info.

    Tab-separated; the GTID field may be empty, hold a comma-separated list and,
    with xtrabackup, continue on the following lines.
    """
    lines = text.strip().splitlines()
    if not lines:
        raise ValueError("empty binlog info")
    fields = lines[0].split("\t") if "\t" in lines[0] else lines[0].split()
    if len(fields) < 2:
        raise ValueError(f"malformed binlog info: {lines[0]!r}")
    gtid_parts = [fields[2]] if len(fields) > 2 else []
    gtid_parts += lines[1:]
    gtid = ",".join(p.strip().strip(",") for p in gtid_parts if p.strip().strip(","))
    return fields[0].strip(), int(fields[1].strip()), gtid
