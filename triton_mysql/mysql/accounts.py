"""The accounts every cluster has: replication, application, root.

Run once on the first primary (writable, holding the lock): the statements go
to the binary log, so replicas and every later snapshot get the same accounts.
Running it on a read-only server would write errant transactions, so it
refuses unless told otherwise.

- replication account `MYSQL_REPL_USER@'%'`: replication privileges plus what
  a peer needs to fence this server over SQL (SPEC §3, §5): `READ ONLY ADMIN`
  (MySQL: `SYSTEM_VARIABLES_ADMIN`) to set read_only, `CONNECTION ADMIN`
  (`CONNECTION_ADMIN`) to kill client connections, `PROCESS` to see them.  No
  table privilege, so it still cannot write data, and no SUPER;
- application account `MYSQL_USER@'%'`: ALL PRIVILEGES on `MYSQL_DATABASE`.*
  only, so `read_only` stops it (error 1290 on a replica);
- root: `root@localhost` keeps unix_socket authentication (the hooks use it) and
  gains `MYSQL_ROOT_PASSWORD` when set; `root@'%'` exists only while it is set,
  with every privilege except the one that ignores read_only (MariaDB: `READ
  ONLY ADMIN`, and SUPER before 10.11), so a fenced node refuses its writes too
  (MySQL: `super_read_only`, which the server config and fencing set, stops it).

Idempotent: an account whose password and grants are already right is not
touched (MariaDB; MySQL cannot compare passwords, so it re-sets them).
Existing clusters get the grants of a newer version once: the primary's
health pass calls `upgrade_once`, which runs `ensure_accounts` when the node
state's `accounts_version` is older than ACCOUNTS_VERSION.
Passwords travel as statement parameters and never appear in returned text.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .. import node_state
from ..config import Config
from .connection import Connection
from .flavor import Flavor

logger = logging.getLogger(__name__)

ANY_HOST = "%"

#: Bumped whenever ensure_accounts grants something new that existing clusters must get (upgrade_once).
ACCOUNTS_VERSION = 2


class AccountsError(Exception):
    """Accounts cannot be set up on this server now."""


def _db_ident(database: str) -> str:
    """`database` quoted for a GRANT, with LIKE wildcards escaped (`app_db` must not match `appXdb`)."""
    escaped = database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return f"`{escaped}`"


def _pct(text: str) -> str:
    """Escape % for PyMySQL's parameter interpolation."""
    return text.replace("%", "%%")


def _exists(conn: Connection, user: str, host: str) -> bool:
    return conn.one("SELECT 1 AS ok FROM mysql.user WHERE User = %s AND Host = %s", (user, host)) is not None


def _grants(conn: Connection, user: str, host: str) -> str:
    return "\n".join(str(next(iter(r.values()))) for r in conn.query("SHOW GRANTS FOR %s@%s", (user, host)))


def _password_ok(conn: Connection, flavor: Flavor, user: str, host: str, password: str) -> bool:
    check = flavor.password_matches(user, host, password)
    return check is not None and conn.one(check) is not None


def _ensure_user(conn: Connection, flavor: Flavor, user: str, host: str, password: str, done: list[str]) -> None:
    if not _exists(conn, user, host):
        conn.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))
        done.append(f"created '{user}'@'{host}'")
    elif not _password_ok(conn, flavor, user, host, password):
        conn.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
        done.append(f"set the password of '{user}'@'{host}'")


def _ensure_grant(conn: Connection, user: str, host: str, privileges: str, on: str, marker: str,
                  done: list[str], grant_option: bool = False) -> None:
    if marker in _grants(conn, user, host):
        return
    suffix = " WITH GRANT OPTION" if grant_option else ""
    conn.execute(f"GRANT {privileges} ON {_pct(on)} TO %s@%s{suffix}", (user, host))
    done.append(f"granted {privileges} ON {on} to '{user}'@'{host}'")


def _ensure_replication(conn: Connection, flavor: Flavor, config: Config, done: list[str]) -> None:
    user, password = config.mysql_repl_user, config.mysql_repl_password
    if not user or not password:
        return
    _ensure_user(conn, flavor, user, ANY_HOST, password, done)
    _ensure_grant(conn, user, ANY_HOST, flavor.replication_privileges(), "*.*", "REPLICATION SLAVE", done)
    missing = [p for p in flavor.fencing_privileges() if not _has_global(_grants(conn, user, ANY_HOST), p)]
    if missing:
        conn.execute(f"GRANT {', '.join(missing)} ON *.* TO %s@%s", (user, ANY_HOST))
        done.append(f"granted {', '.join(missing)} ON *.* to '{user}'@'%' (so a peer can fence this server)")
    if config.mysql_tls:
        _ensure_x509(conn, user, ANY_HOST, done)


def _ensure_x509(conn: Connection, user: str, host: str, done: list[str]) -> None:
    """Replicas must present a certificate signed by the CA (REQUIRE SSL would accept any TLS client)."""
    if str(conn.scalar("SELECT ssl_type FROM mysql.user WHERE User = %s AND Host = %s", (user, host)) or "") \
            .upper() == "X509":
        return
    conn.execute("ALTER USER %s@%s REQUIRE X509", (user, host))
    done.append(f"'{user}'@'{host}' requires a client certificate (REQUIRE X509)")


def _global_grants(grants: str) -> str:
    """The privilege lists of the `ON *.*` lines, with `READ_ONLY ADMIN` spelled as in GRANT."""
    lines = [line.split(" ON *.* ", 1)[0] for line in grants.splitlines() if " ON *.* " in line]
    return " ".join(lines).replace("_", " ").upper()


def _has_global(grants: str, privilege: str) -> bool:
    text = _global_grants(grants)
    if "ALL PRIVILEGES" in text:
        return True
    return re.search(rf"(?:GRANT |, ){re.escape(privilege.replace('_', ' ').upper())}(?:,|$| GRANT )", text) is not None


def _ensure_application(conn: Connection, flavor: Flavor, config: Config, done: list[str]) -> None:
    database = config.mysql_database
    if database and not conn.query("SHOW DATABASES LIKE %s", (database.replace("_", "\\_").replace("%", "\\%"),)):
        conn.execute(f"CREATE DATABASE IF NOT EXISTS `{_pct(database)}`")
        done.append(f"created database `{database}`")
    if not config.mysql_user or not config.mysql_password:
        return
    _ensure_user(conn, flavor, config.mysql_user, ANY_HOST, config.mysql_password, done)
    if database:
        on = f"{_db_ident(database)}.*"
        _ensure_grant(conn, config.mysql_user, ANY_HOST, "ALL PRIVILEGES", on, f"ALL PRIVILEGES ON {on}", done)
    else:
        logger.warning("MYSQL_USER is set without MYSQL_DATABASE: the application account has no privileges")


def _ensure_root(conn: Connection, flavor: Flavor, config: Config, done: list[str]) -> None:
    password = config.mysql_root_password
    if not password:
        if _exists(conn, "root", ANY_HOST):
            conn.execute("DROP USER %s@%s", ("root", ANY_HOST))
            done.append("dropped 'root'@'%' (MYSQL_ROOT_PASSWORD is not set)")
        return
    if not _password_ok(conn, flavor, "root", "localhost", password):
        conn.execute(flavor.set_root_password(password))
        done.append("set the password of 'root'@'localhost'")
    _ensure_user(conn, flavor, "root", ANY_HOST, password, done)
    _ensure_root_grants(conn, flavor, done)


def _ensure_root_grants(conn: Connection, flavor: Flavor, done: list[str]) -> None:
    """root@'%': every privilege (with grant option) except those that ignore read_only.

    A fenced node must refuse writes from every account this tool creates that
    can write tables (SPEC §5); root over TCP is one of them.
    """
    grants = _grants(conn, "root", ANY_HOST)
    if not _has_global(grants, "INSERT") or "WITH GRANT OPTION" not in grants:
        conn.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", ("root", ANY_HOST))
        done.append("granted ALL PRIVILEGES ON *.* to 'root'@'%'")
        grants = _grants(conn, "root", ANY_HOST)
    bypass = [p for p in flavor.read_only_bypass_privileges() if _has_global(grants, p)]
    if bypass:
        conn.execute(f"REVOKE {', '.join(bypass)} ON *.* FROM %s@%s", ("root", ANY_HOST))
        done.append(f"revoked {', '.join(bypass)} from 'root'@'%' (read_only must stop it)")


def ensure_accounts(conn: Connection, flavor: Flavor, config: Config, allow_read_only: bool = False) -> list[str]:
    """Create or fix the accounts; returns what was done (empty when everything was already right).

    Refuses (AccountsError) on a read-only server unless `allow_read_only`:
    the statements are binlogged and would be errant transactions on a replica.
    """
    if not allow_read_only and int(conn.scalar("SELECT @@GLOBAL.read_only") or 0):
        raise AccountsError("refusing to change accounts on a read-only server (they would be errant transactions)")
    done: list[str] = []
    _ensure_replication(conn, flavor, config, done)
    _ensure_application(conn, flavor, config, done)
    _ensure_root(conn, flavor, config, done)
    for action in done:
        logger.info("accounts: %s", action)
    return done



def upgrade_once(conn: Connection, flavor: Flavor, config: Config) -> list[str]:
    """On the primary: bring the accounts of an existing cluster up to ACCOUNTS_VERSION, once.

    Cheap when there is nothing to do (one read of the node state file): the
    accounts are created once on a cluster's first boot, so grants added by a
    newer version reach existing clusters only this way.  The node state records
    the version done; a replica promoted later checks again (a no-op then: the
    grants came through replication).
    """
    state = node_state.load(config.mysql_datadir)
    if state is None or state.accounts_version >= ACCOUNTS_VERSION:
        return []
    try:
        done = ensure_accounts(conn, flavor, config)
    except AccountsError as exc:
        logger.warning("accounts not brought up to version %d yet: %s", ACCOUNTS_VERSION, exc)
        return []
    node_state.save(Path(config.mysql_datadir), state.update(accounts_version=ACCOUNTS_VERSION))
    if done:
        logger.info("accounts brought up to version %d: %s", ACCOUNTS_VERSION, "; ".join(done))
    return done
