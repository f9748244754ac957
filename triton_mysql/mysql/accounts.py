"""The accounts every cluster has: replication, application, root.

Run once on the first primary (writable, holding the lock): the statements go
to the binary log, so replicas and every later snapshot get the same accounts.
Running it on a read-only server would write errant transactions, so it
refuses unless told otherwise.

- replication account `MYSQL_REPL_USER@'%'`: replication privileges only
  (no SUPER, no READ ONLY ADMIN, no data access);
- application account `MYSQL_USER@'%'`: ALL PRIVILEGES on `MYSQL_DATABASE`.*
  only, so `read_only` stops it (error 1290 on a replica);
- root: `root@localhost` keeps unix_socket authentication (the hooks use it) and
  gains `MYSQL_ROOT_PASSWORD` when set; `root@'%'` exists only while it is set.

Idempotent: an account whose password and grants are already right is not
touched (MariaDB; MySQL cannot compare passwords, so it re-sets them).
Passwords travel as statement parameters and never appear in returned text.
"""
from __future__ import annotations

import logging

from ..config import Config
from .connection import Connection
from .flavor import Flavor

logger = logging.getLogger(__name__)

ANY_HOST = "%"


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
    if config.mysql_tls:
        _ensure_x509(conn, user, ANY_HOST, done)


def _ensure_x509(conn: Connection, user: str, host: str, done: list[str]) -> None:
    """Replicas must present a certificate signed by the CA (REQUIRE SSL would accept any TLS client)."""
    if str(conn.scalar("SELECT ssl_type FROM mysql.user WHERE User = %s AND Host = %s", (user, host)) or "") \
            .upper() == "X509":
        return
    conn.execute("ALTER USER %s@%s REQUIRE X509", (user, host))
    done.append(f"'{user}'@'{host}' requires a client certificate (REQUIRE X509)")


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
        if flavor.is_mariadb:
            conn.execute("ALTER USER %s@%s IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(%s)",
                         ("root", "localhost", password))
        else:
            conn.execute("ALTER USER %s@%s IDENTIFIED BY %s", ("root", "localhost", password))
        done.append("set the password of 'root'@'localhost'")
    _ensure_user(conn, flavor, "root", ANY_HOST, password, done)
    _ensure_grant(conn, "root", ANY_HOST, "ALL PRIVILEGES", "*.*", "ALL PRIVILEGES ON *.*", done, grant_option=True)


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

