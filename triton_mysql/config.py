"""The environment, read once into a frozen, validated `Config`.

Every command builds one `Config` at start-up.  All values that are set are
checked for their format (a typo should fail loudly, whichever command runs);
whether a value is *required* depends on the command, which asks for it with
`Config.require(...)`.  Any mistake is a `ConfigError` naming the variable;
the CLI turns it into one line on stderr and exit code 2.

The table `VARIABLES` is the single source of truth for names, defaults and
documentation: the README's configuration table is checked against it.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from .errors import ConfigError

# Fencing must finish within this long once a health pass decides to fence
# (kill connections, read_only=ON, verify; otherwise stop mysqld).
FENCE_BUDGET = 2.0
# Safety margin added to the fencing timing rule.
FENCE_MARGIN = 1.0
CONSUL_MIN_TTL = 10
CONSUL_MAX_TTL = 86400
ETCD_MIN_TTL = 2
# rpl_semi_sync_*_timeout is in milliseconds, at most 2^32 - 1.
SYNC_TIMEOUT_MAX = 4294967.295
# What an address without a port means, as the services' own clients read it.
DEFAULT_CONSUL_PORT = 8500
DEFAULT_ETCD_PORT = 2379
DEFAULT_ETCD_PREFIX = "/triton-mysql"

__all__ = ["ConfigError"]  # re-exported: callers catch configuration mistakes from here


# --------------------------------------------------------------------------
# Parsers: each takes the raw (non-empty) string and returns the typed value or
# raises ValueError with a short description of what is expected.

def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError("must be a whole number") from None
        _check_range(value, lo, hi)
        return value
    return parse


def _seconds(lo: float | None = 0.0, hi: float | None = None, *, strict_lo: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number of seconds")
        if strict_lo and lo is not None and value <= lo:
            raise ValueError(f"must be greater than {lo:g}")
        _check_range(value, lo, hi)
        return value
    return parse


def _check_range(value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise ValueError(f"must be at least {lo:g}")
    if hi is not None and value > hi:
        raise ValueError(f"must be at most {hi:g}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be true or false")


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")


def _host(raw: str) -> str:
    value = raw.strip()
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", value) or not _HOSTNAME.match(value):
        raise ValueError("must be an IP address or a host name")
    return value


def parse_host_port(raw: str, default_port: int) -> tuple[str, int]:
    """(host, port) from "host:port", "http(s)://host:port" or "[v6 address]:port".

    The one reading of a service address, for the environment (`CONSUL`,
    `ETCD`) and the supervisor file (`consul`, `etcd.endpoints`) alike.  A bare
    host takes `default_port` (8500 for Consul, 2379 for etcd, as their own
    clients do).  Anything else is a ValueError.  An IPv6 address needs its
    brackets: in "fe80::1:2379" nobody can tell the port from the address.
    """
    value = raw.strip()
    if "://" in value:
        scheme, _, value = value.partition("://")
        if scheme not in ("http", "https"):
            raise ValueError("must be host:port (only http:// or https:// may prefix it)")
    value = value.rstrip("/")
    if not value or "/" in value:
        raise ValueError("must be host:port")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError("must be host:port")
        has_port, port = bool(rest), rest[1:]
    elif value.count(":") > 1:
        raise ValueError("must be host:port (write IPv6 addresses as [address]:port)")
    else:
        host, colon, port = value.partition(":")
        has_port = bool(colon)
    if not host:
        raise ValueError("must be host:port")
    if not has_port:
        return _host(host), default_port
    try:
        port_number = int(port, 10)
    except ValueError:
        raise ValueError("must be host:port with a numeric port") from None
    if not 1 <= port_number <= 65535:
        raise ValueError("port must be between 1 and 65535")
    return _host(host), port_number


def _consul_address(raw: str) -> tuple[str, int]:
    return parse_host_port(raw, DEFAULT_CONSUL_PORT)


def _host_port_list(raw: str) -> tuple[tuple[str, int], ...]:
    parts = [p for p in raw.split(",") if p.strip()]
    if not parts:
        raise ValueError("must be host:port[,host:port...]")
    return tuple(parse_host_port(p, DEFAULT_ETCD_PORT) for p in parts)


def endpoint_scheme(raw: str) -> str:
    """"https" when every address in `raw` (one, or a comma-separated list) says https://, else "http".

    Mixing both in one list is a ValueError: a client either verifies the
    servers or it does not.
    """
    schemes = {("https" if p.strip().startswith("https://") else "http") for p in raw.split(",") if p.strip()}
    if len(schemes) > 1:
        raise ValueError("mixes http:// and https:// endpoints; use one scheme for all")
    return schemes.pop() if schemes else "http"


def _file(raw: str) -> str:
    """An absolute path to a file this process can read, checked at start-up rather than at first use."""
    if not raw.startswith("/"):
        raise ValueError("must be an absolute path to a file")
    try:
        with open(raw, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {raw}: {exc.strerror or exc}") from None
    return raw


def _port(raw: str) -> int:
    return _int(1, 65535)(raw)


def _address(raw: str) -> str:
    value = raw.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return _host(value)
    return value


def _abs_path(raw: str) -> str:
    if not raw.startswith("/"):
        raise ValueError("must be an absolute path")
    return raw


def valid_name(raw: str) -> str:
    """The rule for SERVICE_NAME and node names (NODE_NAME, a stored name, the host name).

    1-63 characters, DNS-label-like.  The supervisor builds its service IDs
    from the node name before any hook runs, so it checks it with this too.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", raw):
        raise ValueError("must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return raw


def _sql_user(raw: str) -> str:
    if len(raw) > 80 or "'" in raw or "\\" in raw or "`" in raw:
        raise ValueError("must be at most 80 characters without quotes or backslashes")
    return raw


def _database(raw: str) -> str:
    if len(raw) > 64 or "`" in raw or raw.endswith(" "):
        raise ValueError("must be at most 64 characters, no backquotes, no trailing space")
    return raw


def _backup_url(raw: str) -> str:
    url = urlparse(raw)
    if url.scheme == "file":
        if url.netloc not in ("", "localhost") or not url.path.startswith("/"):
            raise ValueError("file:// URLs must name an absolute path, e.g. file:///var/backups/triton-mysql")
    elif url.scheme == "s3":
        if not url.netloc:
            raise ValueError("s3:// URLs must name a bucket, e.g. s3://bucket/prefix")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", url.netloc):
            raise ValueError(f"bucket name {url.netloc!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    elif url.scheme == "manta":
        if url.netloc or not re.match(r"^/[^/]+/(stor|public)(/|$)", url.path):
            raise ValueError("manta URLs look like manta:///account/stor/path")
    else:
        raise ValueError(f"unknown scheme {url.scheme + '://' if url.scheme else '(none)'}; use file://, s3:// or manta://")
    stripped = raw.rstrip("/")
    return stripped if urlparse(stripped).path else raw


def _http_url(raw: str) -> str:
    url = urlparse(raw)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


def valid_etcd_prefix(raw: str) -> str:
    if not raw.startswith("/") or raw.endswith("/") and raw != "/":
        raise ValueError("must start with '/' and not end with '/', e.g. /triton-mysql")
    return raw


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        for option in options:
            if value.lower() == option.lower():
                return option
        raise ValueError("must be one of " + ", ".join(options))
    return parse


def _text(raw: str) -> str:
    return raw


# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Var:
    """One environment variable: its parser, default and one-line description."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str
    secret: bool = False
    attr: str = ""
    file_of: str = ""
    """For `<NAME>_FILE`: the variable whose value this file holds (Docker/Kubernetes secrets)."""


VARIABLES: tuple[Var, ...] = (
    Var("CONSUL", _consul_address, None, "discovery: Consul agent `host[:port]` (port 8500 by default), or `https://host:port` for TLS (exactly one of `CONSUL`/`ETCD`)"),
    Var("ETCD", _host_port_list, None, "discovery: etcd endpoints `host[:port][,host[:port]…]` (port 2379 by default; each `https://host:port` for TLS), tried in turn"),
    Var("ETCD_PREFIX", valid_etcd_prefix, DEFAULT_ETCD_PREFIX, "etcd key prefix for KV records and services"),
    Var("CONSUL_HTTP_TOKEN", _text, None, "Consul ACL token (sent as `X-Consul-Token`)", secret=True),
    Var("CONSUL_HTTP_TOKEN_FILE", _file, None, "file holding `CONSUL_HTTP_TOKEN`", file_of="CONSUL_HTTP_TOKEN"),
    Var("CONSUL_CACERT", _file, None, "CA certificate (PEM) that signed the Consul agent's certificate (`https://` in `CONSUL`)"),
    Var("CONSUL_CLIENT_CERT", _file, None, "client certificate (PEM) for Consul's `verify_incoming`; with `CONSUL_CLIENT_KEY`"),
    Var("CONSUL_CLIENT_KEY", _file, None, "private key (PEM) of `CONSUL_CLIENT_CERT`"),
    Var("CONSUL_HTTP_SSL_VERIFY", _bool, True, "`false`: do not verify the Consul agent's certificate (not for production)"),
    Var("ETCD_CACERT", _file, None, "CA certificate (PEM) that signed the etcd servers' certificates (`https://` in `ETCD`)"),
    Var("ETCD_CERT", _file, None, "client certificate (PEM) for etcd's `--client-cert-auth`; with `ETCD_KEY`"),
    Var("ETCD_KEY", _file, None, "private key (PEM) of `ETCD_CERT`"),
    Var("ETCD_USER", _text, None, "etcd user (etcd `auth enable`); with `ETCD_PASSWORD`"),
    Var("ETCD_PASSWORD", _text, None, "password of `ETCD_USER`", secret=True),
    Var("ETCD_PASSWORD_FILE", _file, None, "file holding `ETCD_PASSWORD`", file_of="ETCD_PASSWORD"),
    Var("SERVICE_NAME", valid_name, "mysql", "replicas register as `<SERVICE_NAME>`, the primary as `<SERVICE_NAME>-primary`"),
    Var("NODE_NAME", valid_name, None, "unique name of this node (default: the name stored with its data, else the host name)"),
    Var("ADVERTISE_ADDRESS", _address, None, "address other nodes and clients use (default: first non-loopback IPv4)"),
    Var("MYSQL_PORT", _port, 3306, "mysqld TCP port"),
    Var("MYSQL_BIND_ADDRESS", _address, "0.0.0.0", "address mysqld listens on"),
    Var("MYSQL_DATADIR", _abs_path, "/var/lib/mysql", "data directory"),
    Var("MYSQL_CNF", _abs_path, "/etc/mysql/triton-mysql.cnf", "server config written by `onStart`; mysqld runs with `--defaults-file=$MYSQL_CNF`"),
    Var("MYSQL_CONF_DIR", _abs_path, "/etc/mysql/triton-mysql.d", "`*.cnf` files here are included after the generated settings (user tuning)"),
    Var("MYSQL_SOCKET", _abs_path, "/run/mysqld/mysqld.sock", "local socket the hooks use (root by unix_socket)"),
    Var("MYSQLD", _text, None, "server binary (default: `mariadbd`, else `mysqld`, from PATH)"),
    Var("MYSQL_ROOT_PASSWORD", _text, None, "root password; root gets TCP access only when set (without READ ONLY "
        "ADMIN: read_only stops it)", secret=True),
    Var("MYSQL_ROOT_PASSWORD_FILE", _file, None, "file holding `MYSQL_ROOT_PASSWORD`", file_of="MYSQL_ROOT_PASSWORD"),
    Var("MYSQL_USER", _sql_user, None, "application account, created once on the first primary (no admin privilege)"),
    Var("MYSQL_PASSWORD", _text, None, "application account password", secret=True),
    Var("MYSQL_PASSWORD_FILE", _file, None, "file holding `MYSQL_PASSWORD`", file_of="MYSQL_PASSWORD"),
    Var("MYSQL_DATABASE", _database, None, "application schema, created once on the first primary"),
    Var("MYSQL_REPL_USER", _sql_user, None, "replication account (replication privileges, plus READ ONLY ADMIN and "
        "CONNECTION ADMIN so a peer can fence a node; no table privilege); required by the hooks"),
    Var("MYSQL_REPL_PASSWORD", _text, None, "replication account password; required by the hooks", secret=True),
    Var("MYSQL_REPL_PASSWORD_FILE", _file, None, "file holding `MYSQL_REPL_PASSWORD`", file_of="MYSQL_REPL_PASSWORD"),
    Var("MYSQL_TLS_CA", _file, None, "CA certificate (PEM) of the nodes' certificates: TLS replication and peer connections"),
    Var("MYSQL_TLS_CERT", _file, None, "this node's certificate (PEM), signed by `MYSQL_TLS_CA`: server and replication client"),
    Var("MYSQL_TLS_KEY", _file, None, "private key (PEM) of `MYSQL_TLS_CERT` (copied for the mysql user by `onStart`)"),
    Var("MYSQL_TLS_VERIFY_IDENTITY", _bool, None, "check that a peer's certificate names its advertised address (default: on when `ADVERTISE_ADDRESS` is a host name)"),
    Var("BACKUP_URL", _backup_url, "file:///var/backups/triton-mysql", "snapshot storage: `file://`, `s3://bucket/prefix` or `manta:///account/stor/path`"),
    Var("S3_ENDPOINT_URL", _http_url, None, "S3 endpoint for S3-compatible servers (AWS_* variables are read by boto3)"),
    Var("S3_CREATE_BUCKET", _bool, False, "`true`: create the bucket when it does not exist"),
    Var("MANTA_URL", _http_url, None, "Manta endpoint, e.g. https://us-central.manta.mnx.io"),
    Var("MANTA_USER", _text, None, "Manta account"),
    Var("MANTA_KEY_ID", _text, None, "Manta key fingerprint (MD5, `aa:bb:…`)"),
    Var("MANTA_PRIVATE_KEY", _text, None, "Manta private key (PEM text)", secret=True),
    Var("MANTA_KEY_PATH", _abs_path, None, "Manta private key file (PEM), instead of `MANTA_PRIVATE_KEY`"),
    Var("SNAPSHOT_INTERVAL", _seconds(1), 86400.0, "seconds between snapshots when the GTID position moved"),
    Var("SNAPSHOT_KEEP", _int(1, 10000), 7, "complete snapshots kept in storage"),
    Var("SESSION_TTL", _seconds(ETCD_MIN_TTL, CONSUL_MAX_TTL), 10.0, "seconds; lock and member records expire no sooner than this after the last renewal"),
    Var("MAX_LAG", _seconds(0), 30.0, "seconds of replica lag that still count as healthy"),
    Var("STOP_GRACE", _seconds(0, 3600), 10.0, "seconds `preStop`/`switchover` wait for a candidate to catch up"),
    Var("DISCOVERY_WAIT", _seconds(0, 86400), 60.0, "seconds `onStart` waits for the discovery service"),
    Var("DISCOVERY_TIMEOUT", _seconds(0.1, 60), 2.0, "seconds before one discovery request counts as failed"),
    Var("HEALTH_POLL", _seconds(0.1, 3600), 2.0, "seconds between health passes (the supervisor config uses it)"),
    Var("SNAPSHOT_POLL", _seconds(1, 86400), 10.0, "seconds between checks whether a snapshot is due (supervisor task)"),
    Var("HTTP_PORT", _int(0, 65535), 9090, "port of the supervisor's HTTP endpoints (`/primary`, `/replica`, `/health`, `/status`, `/metrics`); `0` turns them off"),
    Var("HTTP_BIND_ADDRESS", _address, "0.0.0.0", "address the HTTP endpoints listen on"),
    Var("WARM_START", _bool, True, "`false`: the supervisor starts each `triton-mysql` hook as a new interpreter instead of forking it from its pre-imported helper"),
    Var("BOOTSTRAP_WAIT", _seconds(0, 86400), 600.0, "seconds a new node waits for the bootstrap node's first snapshot"),
    Var("NOFAILOVER", _bool, False, "`true`: this node is never a failover candidate"),
    Var("AUTO_RECLONE", _bool, False, "`true`: a node with errant transactions re-clones itself (old data kept aside)"),
    Var("FAILOVER_COOLDOWN", _seconds(0), 0.0, "seconds after an automatic failover during which another is refused (0 = off)"),
    Var("SYNC_REPLICATION", _choice("semi", "strict", "off"), "semi", "`semi`: commits wait for a replica's acknowledgement, asynchronous after `SYNC_TIMEOUT`; `strict`: never asynchronous once a replica acknowledged; `off`: asynchronous"),
    Var("SYNC_TIMEOUT", _seconds(0.001, SYNC_TIMEOUT_MAX), 10.0, "seconds a commit waits for a replica's acknowledgement before `semi` falls back to asynchronous"),
    Var("LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "log level"),
    Var("LOG_FORMAT", _choice("text", "json"), "text", "`json`: one JSON object per line"),
)

VARIABLE_NAMES = frozenset(v.name for v in VARIABLES)

#: What the supervisor's discovery client is built from, besides its own endpoints (supervisor/worker.py).
DISCOVERY_VARIABLES = frozenset(n for n in VARIABLE_NAMES if n.startswith(("CONSUL_", "ETCD_")) and n != "ETCD_PREFIX")
#: Secrets read by libraries rather than by this module (boto3): scrubbed from logs all the same.
EXTERNAL_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
#: Variables whose values may span lines (PEM text); every other value must be one line.
MULTILINE = frozenset({"MANTA_PRIVATE_KEY"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")


def _check_control(name: str, raw: str, secret: bool) -> None:
    """Reject control characters: a newline in a value would inject lines into generated files
    (a newline in MYSQL_DATADIR would add options to `[mysqld]`)."""
    pattern = _CONTROL_MULTILINE if name in MULTILINE else _CONTROL
    match = pattern.search(raw)
    if match:
        where = "" if secret else f" (got {raw!r})"
        raise ConfigError(name, f"contains a control character ({match.group()!r}, position {match.start()}){where}")


def _read_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env` with each `<NAME>_FILE` replaced by `<NAME>` = the file's content (the official
    images' convention for Docker/Kubernetes secrets).  One trailing newline is dropped, as
    `echo secret > file` adds it; setting both forms is an error."""
    files = [var for var in VARIABLES if var.file_of and env.get(var.name)]
    if not files:
        return env
    out = dict(env)
    for var in files:
        path = env[var.name]
        if env.get(var.file_of):
            raise ConfigError(var.name, f"set {var.file_of} or {var.name}, not both")
        _check_control(var.name, path, False)
        try:
            path = _file(path)
            with open(path, encoding="utf-8") as f:
                content = f.read()
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise ConfigError(var.name, str(exc) if isinstance(exc, ValueError) else
                              f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if content.endswith("\n"):
            content = content[:-1]
        try:
            _check_control(var.file_of, content, True)
        except ConfigError as exc:
            raise ConfigError(var.name, f"the file {exc.problem}") from None
        out[var.file_of] = content
        del out[var.name]
    return out


def _attr(var: Var) -> str:
    return var.attr or var.name.lower()


_DEFAULTS: dict[str, Any] = {_attr(var): var.default for var in VARIABLES if not var.file_of}


def _default(attr: str, **options: Any) -> Any:
    """A `Config` field whose default is the one `VARIABLES` gives: the table stays the single source."""
    return field(default=_DEFAULTS[attr], **options)


@dataclass(frozen=True)
class Config:
    """The validated environment.  Immutable; build it with `Config.from_env`."""

    consul: tuple[str, int] | None = _default("consul")
    etcd: tuple[tuple[str, int], ...] | None = _default("etcd")
    etcd_prefix: str = _default("etcd_prefix")
    consul_http_token: str | None = _default("consul_http_token", repr=False)
    consul_cacert: str | None = _default("consul_cacert")
    consul_client_cert: str | None = _default("consul_client_cert")
    consul_client_key: str | None = _default("consul_client_key")
    consul_http_ssl_verify: bool = _default("consul_http_ssl_verify")
    etcd_cacert: str | None = _default("etcd_cacert")
    etcd_cert: str | None = _default("etcd_cert")
    etcd_key: str | None = _default("etcd_key")
    etcd_user: str | None = _default("etcd_user")
    etcd_password: str | None = _default("etcd_password", repr=False)
    consul_scheme: str = "http"
    etcd_scheme: str = "http"
    service_name: str = _default("service_name")
    node_name: str = ""
    """Never empty once built by `from_env`: its default is computed (`default_node_name`), not a table value."""
    advertise_address: str | None = _default("advertise_address")
    mysql_port: int = _default("mysql_port")
    mysql_bind_address: str = _default("mysql_bind_address")
    mysql_datadir: str = _default("mysql_datadir")
    mysql_cnf: str = _default("mysql_cnf")
    mysql_conf_dir: str = _default("mysql_conf_dir")
    mysql_socket: str = _default("mysql_socket")
    mysqld: str | None = _default("mysqld")
    mysql_root_password: str | None = _default("mysql_root_password", repr=False)
    mysql_user: str | None = _default("mysql_user")
    mysql_password: str | None = _default("mysql_password", repr=False)
    mysql_database: str | None = _default("mysql_database")
    mysql_repl_user: str | None = _default("mysql_repl_user")
    mysql_repl_password: str | None = _default("mysql_repl_password", repr=False)
    mysql_tls_ca: str | None = _default("mysql_tls_ca")
    mysql_tls_cert: str | None = _default("mysql_tls_cert")
    mysql_tls_key: str | None = _default("mysql_tls_key")
    mysql_tls_verify_identity: bool | None = _default("mysql_tls_verify_identity")
    backup_url: str = _default("backup_url")
    s3_endpoint_url: str | None = _default("s3_endpoint_url")
    s3_create_bucket: bool = _default("s3_create_bucket")
    manta_url: str | None = _default("manta_url")
    manta_user: str | None = _default("manta_user")
    manta_key_id: str | None = _default("manta_key_id")
    manta_private_key: str | None = _default("manta_private_key", repr=False)
    manta_key_path: str | None = _default("manta_key_path")
    snapshot_interval: float = _default("snapshot_interval")
    snapshot_keep: int = _default("snapshot_keep")
    session_ttl: float = _default("session_ttl")
    max_lag: float = _default("max_lag")
    stop_grace: float = _default("stop_grace")
    discovery_wait: float = _default("discovery_wait")
    discovery_timeout: float = _default("discovery_timeout")
    health_poll: float = _default("health_poll")
    snapshot_poll: float = _default("snapshot_poll")
    http_port: int = _default("http_port")
    http_bind_address: str = _default("http_bind_address")
    warm_start: bool = _default("warm_start")
    bootstrap_wait: float = _default("bootstrap_wait")
    nofailover: bool = _default("nofailover")
    auto_reclone: bool = _default("auto_reclone")
    failover_cooldown: float = _default("failover_cooldown")
    sync_replication: str = _default("sync_replication")
    sync_timeout: float = _default("sync_timeout")
    log_level: str = _default("log_level")
    log_format: str = _default("log_format")
    external_secrets: tuple[str, ...] = field(default=(), repr=False)

    # ------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """Parse and validate `env` (default: `os.environ`).  Raises ConfigError."""
        env = _read_secret_files(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for var in VARIABLES:
            if var.file_of:
                continue
            raw = env.get(var.name, "")
            _check_control(var.name, raw, var.secret)
            if raw == "" or (var.parse is not _text and raw.strip() == "" and not var.secret):
                if var.default is not None:
                    values[_attr(var)] = var.default
                continue
            try:
                values[_attr(var)] = var.parse(raw)
            except ValueError as exc:
                shown = "" if var.secret else f" (got {raw!r})"
                raise ConfigError(var.name, f"{exc}{shown}") from None
        if values.get("consul") and values.get("etcd"):
            raise ConfigError("CONSUL", "set either CONSUL or ETCD, not both")
        for name in ("CONSUL", "ETCD"):
            try:
                values[f"{name.lower()}_scheme"] = endpoint_scheme(env.get(name, ""))
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from None
        values["external_secrets"] = tuple(env[n] for n in EXTERNAL_SECRETS if env.get(n))
        if not values.get("node_name"):
            values["node_name"] = default_node_name(values["mysql_datadir"])
        config = cls(**values)
        config._check_consistency()
        return config

    def _check_consistency(self) -> None:
        if self.consul is not None:
            if self.session_ttl < CONSUL_MIN_TTL or self.session_ttl != int(self.session_ttl):
                raise ConfigError("SESSION_TTL", f"must be a whole number from {CONSUL_MIN_TTL} to {CONSUL_MAX_TTL} with Consul (got {self.session_ttl:g})")
        needed = self.health_poll + 2 * self.discovery_timeout + FENCE_BUDGET + FENCE_MARGIN
        if needed > self.session_ttl:
            raise ConfigError(
                "SESSION_TTL",
                f"{self.session_ttl:g} s is too short: a primary that loses discovery must fence itself within "
                f"HEALTH_POLL + 2 x DISCOVERY_TIMEOUT + {FENCE_BUDGET:g} s fencing + {FENCE_MARGIN:g} s margin "
                f"= {needed:g} s, before its lock can expire; raise SESSION_TTL or lower HEALTH_POLL/DISCOVERY_TIMEOUT",
            )
        if self.mysql_user and not self.mysql_password:
            raise ConfigError("MYSQL_PASSWORD", "required when MYSQL_USER is set")
        if self.mysql_user and self.mysql_repl_user and self.mysql_user == self.mysql_repl_user:
            raise ConfigError("MYSQL_USER", "must differ from MYSQL_REPL_USER")
        if self.mysql_user and self.mysql_user == "root":
            raise ConfigError("MYSQL_USER", "must not be root (use MYSQL_ROOT_PASSWORD for root)")
        self._check_tls()

    def _check_tls(self) -> None:
        """Certificates come in pairs, and TLS settings for a plain-HTTP service are a mistake."""
        pairs = (("CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"), ("ETCD_CERT", "ETCD_KEY"), ("ETCD_USER", "ETCD_PASSWORD"))
        for first, second in pairs:
            one, two = getattr(self, first.lower()), getattr(self, second.lower())
            if bool(one) != bool(two):
                missing = second if one else first
                raise ConfigError(missing, f"required when {first if one else second} is set")
        for service, names in (("CONSUL", ("CONSUL_CACERT", "CONSUL_CLIENT_CERT")), ("ETCD", ("ETCD_CACERT", "ETCD_CERT"))):
            if getattr(self, service.lower()) is None or getattr(self, f"{service.lower()}_scheme") == "https":
                continue
            for name in names:
                if getattr(self, name.lower()):
                    raise ConfigError(name, f"set, but {service} is not an https:// address")
        tls = ("MYSQL_TLS_CA", "MYSQL_TLS_CERT", "MYSQL_TLS_KEY")
        given = [name for name in tls if getattr(self, name.lower())]
        if given and len(given) != len(tls):
            missing = next(name for name in tls if name not in given)
            raise ConfigError(missing, f"required with {', '.join(given)}: TLS replication needs the CA, "
                                       f"this node's certificate and its key")

    # ------------------------------------------------------------------
    def require(self, *groups: str) -> "Config":
        """Fail with ConfigError unless the variables a command needs are set.

        Groups: ``discovery`` (CONSUL or ETCD), ``replication`` (MYSQL_REPL_*),
        ``advertise`` (an address other nodes can reach), ``storage``
        (whatever `BACKUP_URL`'s scheme needs).
        """
        for group in groups:
            getattr(self, f"_require_{group}")()
        return self

    def _require_discovery(self) -> None:
        if self.consul is None and self.etcd is None:
            raise ConfigError("CONSUL", "set CONSUL (host:port) or ETCD (host:port[,host:port...]) to reach the discovery service")

    def _require_replication(self) -> None:
        if not self.mysql_repl_user:
            raise ConfigError("MYSQL_REPL_USER", "required (the replication account)")
        if not self.mysql_repl_password:
            raise ConfigError("MYSQL_REPL_PASSWORD", "required (the replication account's password)")

    def _require_advertise(self) -> None:
        if self.advertise_address is None:
            raise ConfigError("ADVERTISE_ADDRESS", "not set and no non-loopback IPv4 address was found")

    def _require_storage(self) -> None:
        if self.backup_scheme == "manta":
            for name in ("MANTA_URL", "MANTA_USER", "MANTA_KEY_ID"):
                if not getattr(self, name.lower()):
                    raise ConfigError(name, "required when BACKUP_URL is a manta:// URL")
            if not self.manta_private_key and not self.manta_key_path:
                raise ConfigError("MANTA_PRIVATE_KEY", "set MANTA_PRIVATE_KEY or MANTA_KEY_PATH for a manta:// BACKUP_URL")

    # ------------------------------------------------------------------
    @property
    def backup_scheme(self) -> str:
        return urlparse(self.backup_url).scheme

    @property
    def discovery_kind(self) -> str:
        return "consul" if self.consul is not None else "etcd"

    @property
    def primary_service(self) -> str:
        return f"{self.service_name}-primary"

    @property
    def kv_prefix(self) -> str:
        """Where this cluster's records live (SPEC §5), without a trailing slash."""
        if self.consul is not None:
            return f"triton-mysql/{self.service_name}"
        return f"{self.etcd_prefix.rstrip('/')}/{self.service_name}"

    def with_overrides(self, **changes: Any) -> "Config":
        """A copy with some fields replaced (used by commands with options, e.g. `backup --url`)."""
        return dataclasses.replace(self, **changes)

    @property
    def mysql_tls(self) -> bool:
        """Whether replication and peer connections use TLS (MYSQL_TLS_CA/CERT/KEY are set)."""
        return bool(self.mysql_tls_ca and self.mysql_tls_cert and self.mysql_tls_key)

    @property
    def verify_peer_identity(self) -> bool:
        """Check that a peer's certificate names the address it advertises.

        Default: only when this node advertises a host name.  Containers get
        dynamic IP addresses that no certificate lists; names are stable.
        """
        if self.mysql_tls_verify_identity is not None:
            return self.mysql_tls_verify_identity
        address = self.advertise_address
        if not address:
            return False
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return True
        return False

    def secrets(self) -> tuple[str, ...]:
        """Every secret value set, so that log output can be scrubbed of them.

        Multi-line secrets (PEM keys) also contribute each long line, so that
        a part of one that ends up in a message is still scrubbed.
        """
        out = []
        for var in VARIABLES:
            if var.secret:
                value = getattr(self, _attr(var))
                if value:
                    out += _with_lines(value)
        out += [value for value in self.external_secrets if value]
        return tuple(out)

    def plaintext_warnings(self) -> list[str]:
        """Credentials that would cross an unencrypted link to another machine (logged once at start)."""
        found = []
        if self.consul is not None and self.consul_scheme == "http" and self.consul_http_token \
                and not _is_loopback(self.consul[0]):
            found.append(f"CONSUL_HTTP_TOKEN is sent in clear text to {self.consul[0]}:{self.consul[1]} "
                         "(use https:// in CONSUL)")
        if self.consul is not None and self.consul_scheme == "https" and not self.consul_http_ssl_verify:
            found.append("CONSUL_HTTP_SSL_VERIFY=false: the Consul agent's certificate is not checked, so "
                         "anyone in the path can read and change what this node sends")
        if self.etcd and self.etcd_scheme == "http" and self.etcd_password \
                and not all(_is_loopback(host) for host, _ in self.etcd):
            found.append("ETCD_USER/ETCD_PASSWORD and etcd's auth token are sent in clear text to "
                         + ",".join(f"{h}:{p}" for h, p in self.etcd) + " (use https:// in ETCD)")
        if self.backup_scheme == "s3" and self.external_secrets and self.s3_endpoint_url:
            endpoint = urlparse(self.s3_endpoint_url)
            if endpoint.scheme == "http" and not _is_loopback(endpoint.hostname or ""):
                found.append(f"S3 requests signed with the AWS keys and the snapshots travel in clear text to "
                             f"{endpoint.netloc} (use an https:// S3_ENDPOINT_URL)")
        return found


def _with_lines(value: str) -> list[str]:
    """A secret, plus each long line of a multi-line one (PEM): a part of it in a message is scrubbed too."""
    out = [value]
    if "\n" in value:
        out += [line.strip() for line in value.splitlines()
                if len(line.strip()) >= 16 and not line.strip().startswith("-----")]
    return out


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret in `env` (and in the `_FILE`s it names), without validating anything else.

    For processes that scrub their logs but do not build a `Config` (the
    supervisor): a mistake elsewhere in the environment must not stop that.
    """
    out: list[str] = []
    for var in VARIABLES:
        if var.secret and env.get(var.name):
            out += _with_lines(env[var.name])
        elif var.file_of and env.get(var.name):
            try:
                with open(env[var.name], encoding="utf-8") as f:
                    content = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            content = content[:-1] if content.endswith("\n") else content
            if content:
                out += _with_lines(content)
    out += [env[name] for name in EXTERNAL_SECRETS if env.get(name)]
    return tuple(out)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def stored_node_name(datadir: str) -> str | None:
    """The node name kept with the data: `node` in the datadir's node state (node_state.py).

    A container that compose re-creates on the same volume gets a new host name;
    its data (and the records other nodes keep about it) still belong to the old
    name.  None when there is no readable state file (a new node).
    """
    from .node_state import path as state_path  # the file onStart writes; stdlib-only module

    try:
        with open(state_path(datadir), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    name = record.get("node") if isinstance(record, dict) else None
    return name if isinstance(name, str) and name else None


def default_node_name(datadir: str, *, check: bool = True) -> str:
    """NODE_NAME's default: the name stored with the data, else the short host name.

    The config layer and the supervisor (which builds its service IDs before
    onStart runs) both use this, so that they agree on the name.  `check=False`
    returns the name even when it breaks the rule (the supervisor logs with it
    before it reports the mistake).
    """
    stored = stored_node_name(datadir)
    name = stored if stored is not None else socket.gethostname().split(".")[0]
    if not check:
        return name
    try:
        return valid_name(name)
    except ValueError:
        if stored is not None:
            raise ConfigError("NODE_NAME", f"not set and the name stored in {datadir} ({stored!r}) "
                                           "is not a valid node name") from None
        raise ConfigError("NODE_NAME", "not set and the host name is not a valid node name") from None


def default_advertise_address() -> str | None:
    """The first non-loopback IPv4 address of this host, or None."""
    try:
        import fcntl  # noqa: F401  (Linux only; fall back below)
        addresses = _linux_ipv4_addresses()
    except Exception:  # pragma: no cover - non-Linux
        addresses = []
    for address in addresses:
        if not ipaddress.ip_address(address).is_loopback:
            return address
    try:  # a UDP "connect" sends nothing but picks the outgoing interface
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
            if not ipaddress.ip_address(address).is_loopback:
                return address
    except OSError:
        pass
    return None


def _linux_ipv4_addresses() -> list[str]:
    """IPv4 addresses of the interfaces, in the kernel's order (from /proc/net/fib_trie)."""
    found: list[str] = []
    try:
        with open("/proc/net/fib_trie", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            address = lines[i - 1].split()[-1]
            if address not in found:
                found.append(address)
    return found


def load(env: Mapping[str, str] | None = None) -> Config:
    """`Config.from_env`, with the advertise address filled in from the host when unset."""
    config = Config.from_env(env)
    if config.advertise_address is None:
        address = default_advertise_address()
        if address is not None:
            config = config.with_overrides(advertise_address=address)
    return config
