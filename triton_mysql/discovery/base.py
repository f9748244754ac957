"""The discovery contract: everything triton-mysql asks of Consul or etcd.

One abstract class, `Discovery`; one module per backend translates it
(`consul.py`, `etcd.py`).  Callers never see a backend's own types or errors.

Duties every backend must meet
------------------------------
* **Bounded calls.**  Every method returns or raises within the backend's
  request timeout (`timeout`, seconds; `wait` adds its own bound).  A
  partition or a dead server must never hang a caller: fencing deadlines are
  computed from this bound (see `config.FENCE_BUDGET`).
* **One error type.**  Anything that goes wrong talking to the service
  (refused, timed out, 5xx, malformed answer) raises `DiscoveryError` with a
  message that names the service and the operation.  "Not found" and "lost a
  race" are *not* errors: they are `None` / `False` return values.
* **Atomicity.**  `acquire` and `create` write only if no live holder/no key
  exists, atomically (Consul: `?acquire=`/`?cas=0`; etcd: a transaction on
  `create_revision == 0`).  `cas`, `release` and `delete(index=…)` act only
  if the key's modify index is still the one the caller read (Consul
  `ModifyIndex`, etcd `mod_revision`).  Exactly one of several concurrent
  contenders can win.
* **Sessions.**  A session (Consul session, etcd lease) lives `ttl` seconds
  after its last renewal, and keys bound to it are deleted when it ends.
  Backends differ in how late that can be: `expiry_bounds(ttl)` returns
  (earliest, latest).  Fencing uses the earliest (a primary must be read-only
  before anyone else *could* take its lock); failover estimates use the latest.
  A node's own session names a `keepalive` (an id unique to the node): a
  backend whose sessions may outlive their TTL (Consul: up to 2x) binds the
  session to a liveness check of that id, passed by every renewal, so that it
  ends at its TTL (`expiry_bounds(ttl, keepalive=True)`); etcd ignores it.
* **Services.**  An instance is listed by `healthy()` only from its first
  `heartbeat()` until its heartbeats stop for `ttl` seconds (plus the
  backend's expiry slack) or it is deregistered.

Keys are full paths (no leading '/' for Consul; etcd keys start with the
configured prefix).  `ClusterKeys` (in `keys.py`) owns the layout of SPEC §5.
"""
from __future__ import annotations

import abc
import re
import os
from dataclasses import dataclass, field
from typing import Any


class DiscoveryError(Exception):
    """The discovery service could not be reached or answered wrongly."""


_NETWORK_MARKERS = ("Connection refused", "timed out", "Name or service not known", "Connection reset",
                    "Remote end closed", "No route to host", "Network is unreachable")


# "[SSL: CODE] message (...)"; urllib3 may cut the text inside the code, so the message is optional.
_TLS_ERROR = re.compile(r"\[SSL(?:: ([A-Z0-9_]+))?(?:\] ([^()'\"]+))?")


def settle_environment(session: Any, url: str, holder: Any = None) -> None:
    """Take requests' settings from the environment once for this endpoint, not on every request.

    A requests.Session with `trust_env` scans the whole environment for proxy
    variables (twice) and looks for a .netrc file on *every* request: a fifth
    of a warm `health` pass's CPU time with 60 variables (make bench).  The
    same settings, read once: the proxy for `url` (honouring no_proxy) and
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE as the default certificate bundle
    (on `holder.verify` when the client passes its own `verify` per request,
    as py-consul does).  Not kept: .netrc credentials (a discovery service's
    credentials come from its own variables).
    """
    if not getattr(session, "trust_env", False):
        return
    from requests.utils import get_environ_proxies

    session.proxies.update(get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    target = holder if holder is not None else session
    if bundle and getattr(target, "verify", None) is True:
        target.verify = bundle
    session.trust_env = False


def short_error(exc: BaseException, limit: int = 200) -> str:
    """The useful part of a requests/urllib3 error message (they nest whole reprs)."""
    text = str(exc)
    tls = _TLS_ERROR.search(text)
    if tls and (tls.group(1) or tls.group(2)):
        return "TLS: " + (tls.group(2) or tls.group(1).replace("_", " ").lower()).strip()
    for marker in _NETWORK_MARKERS:
        if marker in text:
            return marker.lower()
    return text[:limit]


@dataclass(frozen=True)
class KV:
    """One key as read from discovery."""

    key: str
    value: bytes
    index: int
    """Compare-and-set token: Consul `ModifyIndex`, etcd `mod_revision`."""
    session: str | None = None
    """The session/lease the key is bound to, if any (a held lock has one)."""


@dataclass(frozen=True)
class Transport:
    """How to reach and authenticate to the discovery service (defaults: plain HTTP, no credentials).

    Built from the configuration in one place (`discovery.connect`), so the
    hooks and the supervisor end with the same settings.
    """

    scheme: str = "http"
    ca: str | None = None
    """CA file that signed the servers' certificates (None: the system's trust store)."""
    cert: str | None = None
    """Client certificate file (with `key`) for servers that require one."""
    key: str | None = None
    verify: bool = True
    """False: do not check the server's certificate (Consul's CONSUL_HTTP_SSL_VERIFY=false)."""
    token: str | None = field(default=None, repr=False)
    """Consul ACL token."""
    user: str | None = None
    """etcd user (etcd auth); `password` is its password."""
    password: str | None = field(default=None, repr=False)
    token_cache: str | None = None
    """etcd: file where the auth token is kept between short-lived processes (mode 0600)."""

    @property
    def verify_arg(self) -> bool | str:
        """The `verify` argument of a requests call: the CA file, or whether to check at all."""
        if not self.verify:
            return False
        return self.ca or True

    @property
    def cert_arg(self) -> tuple[str, str] | None:
        return (self.cert, self.key) if self.cert and self.key else None


@dataclass(frozen=True)
class ServiceSpec:
    """A service instance as the supervisor registers it."""

    id: str
    name: str
    address: str
    port: int
    ttl: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instance:
    """A healthy service instance as returned by `Discovery.healthy`."""

    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = field(default=())

    @property
    def address_port(self) -> str:
        return f"{self.address}:{self.port}"


class Discovery(abc.ABC):
    """Abstract discovery service.  See the module docstring for the duties."""

    #: Seconds one request may take before it counts as failed.
    timeout: float

    # -- sessions ---------------------------------------------------------
    @abc.abstractmethod
    def create_session(self, name: str, ttl: float, keepalive: str | None = None) -> str:
        """Create a session/lease of `ttl` seconds and return its id.

        Consul: `ttl` is rounded up to whole seconds and must be 10..86400
        (ValueError otherwise: a configuration mistake, not a service
        failure); lock-delay 0, behavior delete; with `keepalive`, bound to
        that liveness check (registered passing when new).  etcd: a lease of
        at least 2 s; the id is the lease id as a decimal string."""

    @abc.abstractmethod
    def renew_session(self, session: str, keepalive: str | None = None) -> bool:
        """Renew the session (its full TTL starts again), passing its `keepalive` check first;
        False when it no longer exists (expired/destroyed, or its check is gone): the caller
        must create a new one."""

    @abc.abstractmethod
    def destroy_session(self, session: str) -> None:
        """End the session now, deleting its keys.  An unknown session is fine."""

    def drop_keepalive(self, keepalive: str) -> None:
        """Remove a node's liveness check (the node leaves for good).  Unknown: fine."""

    @abc.abstractmethod
    def expiry_bounds(self, ttl: float, keepalive: bool = False) -> tuple[float, float]:
        """(earliest, latest) seconds after the last renewal at which a session of `ttl`
        (bound to a keepalive check, when `keepalive`) may end."""

    # -- key/value --------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> KV | None:
        """The key, or None when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[KV]:
        """Every key under `prefix` (recursively), sorted by key."""

    @abc.abstractmethod
    def put(self, key: str, value: bytes, session: str | None = None) -> bool:
        """Write unconditionally.  With `session`, the key is bound to it and
        disappears when the session ends; False if another live session holds
        it or `session` has ended (this is `acquire`).  Without `session`, a
        key that is bound stays bound to its session (Consul semantics)."""

    @abc.abstractmethod
    def create(self, key: str, value: bytes, session: str | None = None) -> bool:
        """Write only if the key does not exist; True if this call created it.
        With `session`, the new key is bound to it (False if the session has ended)."""

    @abc.abstractmethod
    def cas(self, key: str, value: bytes, index: int) -> bool:
        """Write only if the key's index is still `index` (0: only if absent)."""

    @abc.abstractmethod
    def delete(self, key: str, index: int | None = None) -> bool:
        """Delete the key (only if its index is still `index`, when given).
        True if the key is gone afterwards: deleted by this call or already
        absent (with `index` too, as Consul's `DELETE ?cas=` answers); False
        only when the key exists with another index."""

    @abc.abstractmethod
    def acquire(self, key: str, value: bytes, session: str) -> bool:
        """Take a lock: write the key bound to `session` only if no live session holds it.
        The holder may acquire again (rewriting the value); False when
        another session holds the key or `session` has ended."""

    @abc.abstractmethod
    def release(self, key: str, session: str) -> bool:
        """Give a lock up: delete the key only if `session` holds it (compare-and-set).
        A free lock is an absent key on both backends.  False when the key
        is absent or held by another session."""

    @abc.abstractmethod
    def wait(self, key: str, index: int, timeout: float) -> KV | None:
        """Block until the key's index differs from `index` (0: any existing
        value) or `timeout` seconds pass; return the key as it is then (None:
        absent; a deletion counts as a change).  Returns within `timeout`
        plus one request timeout.  Consul: blocking queries; etcd: a read
        every 0.1 s."""

    # -- services ---------------------------------------------------------
    @abc.abstractmethod
    def register_service(self, spec: ServiceSpec) -> None:
        """Make the instance known; it is not healthy until its first heartbeat."""

    @abc.abstractmethod
    def heartbeat(self, spec: ServiceSpec) -> None:
        """Mark the instance healthy for another `spec.ttl` seconds."""

    @abc.abstractmethod
    def deregister_service(self, spec: ServiceSpec) -> None:
        """Remove the instance at once.  An unknown instance is fine."""

    @abc.abstractmethod
    def healthy(self, name: str) -> list[Instance]:
        """The healthy instances of service `name`, sorted by id."""

    # -- lifecycle --------------------------------------------------------
    def close(self) -> None:
        """Release client resources (connections).  Does not end sessions."""

    def describe(self) -> str:
        """A short human description, e.g. 'etcd at 127.0.0.1:2379'."""
        return type(self).__name__

    def holder(self, key: str) -> KV | None:
        """The lock key if a live session holds it, else None."""
        kv = self.get(key)
        if kv is None or not kv.session:
            return None
        return kv
