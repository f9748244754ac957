"""Consul backend (HTTP API through py-consul).

How the contract (`base.Discovery`) maps onto Consul:

* Sessions: lock-delay 0, behavior `delete` (the keys a session holds are
  deleted when it ends).  Never bound to the agent's `serfHealth`: a gossip
  flap or an agent restart would invalidate the primary's session at once,
  before its next health pass could fence it.  Consul accepts session TTLs
  from 10 s to 24 h and ends a session no sooner than its TTL and up to 2x
  its TTL after the last renewal (the server doubles it).
* A node's own session (`create_session(..., keepalive=ID)`) is bound to a
  TTL check of this node instead, so that it ends at its TTL, not up to
  twice that (issue 19): the check `service:<ID>` of a service (id `<ID>`,
  name `triton-mysql-keepalive`) that exists for nothing else (a *service* check: a node-level check would mark
  every service of the agent's node unhealthy when it turns critical, and
  several nodes may share one agent).  It is registered passing with a TTL
  of `ttl`; `renew_session(session, keepalive=ID)` passes it, then renews
  the session.  Consul invalidates every session bound to a check the moment
  the check turns critical (its TTL ran out) or is deregistered, and refuses
  to create one while a listed check is critical or missing
  (tests/test_consul_double.py pins each of these against Consul's source).
  So the session ends `ttl` after the last pass, plus the agent's sync of the
  status change to the servers: `expiry_bounds(ttl, keepalive=True)` =
  (ttl, ttl + KEEPALIVE_SYNC).  The session keeps a TTL of its own, one
  request timeout longer than the check's (`session_ttl()`), renewed by the
  same pass right after the check: if the agent that runs the check dies
  together with the node, nothing would ever turn the check critical, and
  this TTL ends the session (then up to 2x it).  Being one request longer,
  it never ends a session before the check would, whichever of the two
  requests of a pass was the last to succeed (fencing rule: see
  `session_ttl`).  Other sessions (the snapshot lock): TTL only,
  `expiry_bounds(ttl)` = (ttl, 2 * ttl).
  The session is created with `NodeChecks: []` and `ServiceChecks`, not
  py-consul's `checks=` (the `Checks` field): Consul's HTTP handler keeps its
  default `NodeChecks: [serfHealth]` beside a non-empty `Checks` list, and an
  empty `NodeChecks` beside it drops `Checks` altogether
  (agent/session_endpoint.go, fixupEmptySessionChecks).
* Locks: `acquire` = `PUT ?acquire=<session>`; `release` reads the key, checks
  that our session holds it and deletes it with `?cas=<ModifyIndex>`, so a
  free lock is an absent key (as with etcd).  `put(session=)` binds with
  `?acquire` as well.  `create(session=)` is a transaction
  (check-not-exists + lock) so that it is create-only *and* bound.
* Compare-and-set uses `ModifyIndex` (`KV.index`); `cas(index=0)` is
  create-only.  A plain PUT keeps the key's session (Consul semantics).
* Services: registered on the agent with one TTL check (id
  `service:<id>`, `DeregisterCriticalServiceAfter` = `DEREGISTER_AFTER`);
  `heartbeat` passes the check; when the agent answers 404 (it lost the
  service, e.g. it restarted without its state) the service is registered
  again and passed again.  `healthy` = `health.service(name, passing=True)`.
* `wait` is a blocking query (`?index=&wait=`), repeated until the key's
  ModifyIndex differs from the caller's or the time is up.

Keys never start with '/' in Consul: a leading '/' is stripped.

Transport (`base.Transport`): scheme, CA, client certificate, verification and
ACL token are passed to py-consul explicitly, never through its own reading of
CONSUL_HTTP_* variables.  The token is set *after* constructing the client:
py-consul 1.8.0 replaces an explicit token with `os.getenv("CONSUL_HTTP_TOKEN")`
whenever that variable exists, even empty (as an `.env` file leaves it).
"""
from __future__ import annotations

import base64
import json
import logging
import math
import time
from typing import Any, Callable, TypeVar

import consul
import requests
from consul.callback import CB
from consul.exceptions import ACLPermissionDenied, ClientError, ConsulException, NotFound

from .base import KV, Discovery, DiscoveryError, Instance, ServiceSpec, Transport, settle_environment, short_error

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Consul's bounds for a session TTL (seconds).
MIN_SESSION_TTL = 10
MAX_SESSION_TTL = 86400
#: How long the agent keeps a service whose check stays critical (Consul's minimum is 1 minute).
DEREGISTER_AFTER = "1m"
#: Consul answers a blocking query up to wait/16 late (random jitter).
_JITTER = 1 / 16
#: Seconds between a keepalive check turning critical on its agent and the servers ending the sessions
#: bound to it: the agent syncs a status change at once (agent/local/state.go, UpdateCheck), one RPC.
KEEPALIVE_SYNC = 1.0
#: Name of the services that only carry a node's keepalive check (their ids are the keepalive ids).
KEEPALIVE_SERVICE = "triton-mysql-keepalive"
_CHECK_NOT_READY = ("is in critical state", "Missing check")
"""Session creation refused for a check the servers do not see passing yet (the agent syncs its
checks to them asynchronously)."""


def session_ttl(ttl: float, timeout: float) -> int:
    """The own TTL of a session bound to a keepalive check of `ttl` seconds: ceil(ttl + timeout).

    Why one request timeout longer: a health pass reads the view, passes the
    check, then renews the session (three requests, each bounded by
    `timeout`).  If the renewal fails after the pass succeeded, the node fences
    itself within that pass, at most HEALTH_POLL + 3 x timeout + FENCE_BUDGET
    after the previous pass; the check was just passed, so only the session's
    own TTL, counted from the previous pass, could end the session first.  With
    the extra `timeout` that needs HEALTH_POLL + 2 x timeout + FENCE_BUDGET
    (+ margin) <= ttl: exactly the fencing rule start-up enforces
    (config.py, `_check_consistency`).  A failure at the read or at the check
    pass is covered by the check itself, as before by the session's TTL.
    """
    return max(MIN_SESSION_TTL, math.ceil(ttl + timeout))


def _duration(seconds: float) -> str:
    """A Go duration string for `seconds` ("10s", "2500ms")."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{max(1, int(round(seconds * 1000)))}ms"


class ConsulDiscovery(Discovery):
    """The discovery contract on Consul.  See the module docstring."""

    def __init__(self, host: str, port: int, timeout: float = 2.0, transport: Transport | None = None) -> None:
        self.host = host
        self.port = int(port)
        self.timeout = float(timeout)
        self.transport = transport or Transport()
        t = self.transport
        self._consul = consul.Consul(host=host, port=self.port, scheme=t.scheme, verify=t.verify_arg,
                                     cert=t.cert_arg, token=None, connections_timeout=self.timeout)
        # After construction: py-consul took CONSUL_HTTP_TOKEN from the environment over ours.
        self._consul.token = t.token or None
        if not t.verify:
            # CONSUL_HTTP_SSL_VERIFY=false was asked for (and is warned about once at start):
            # not a warning on every request.
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        settle_environment(self._consul.http.session, self._consul.http.base_uri, holder=self._consul.http)

    # -- plumbing ---------------------------------------------------------
    def describe(self) -> str:
        scheme = "https://" if self.transport.scheme == "https" else ""
        return f"consul at {scheme}{self.host}:{self.port}"

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        """Run one py-consul call; every failure becomes DiscoveryError naming the agent and `op`."""
        try:
            return fn()
        except requests.exceptions.Timeout:
            raise DiscoveryError(f"consul at {self.host}:{self.port}: {op} failed: "
                                 f"no answer within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise DiscoveryError(f"consul at {self.host}:{self.port}: {op} failed: {short_error(exc)}") from None
        except ACLPermissionDenied as exc:
            raise DiscoveryError(f"{self.describe()}: {op} failed: ACL permission denied "
                                 f"({short_error(exc, 120)}; check CONSUL_HTTP_TOKEN)") from None
        except (requests.RequestException, ConsulException) as exc:
            raise DiscoveryError(f"consul at {self.host}:{self.port}: {op} failed: {short_error(exc)}") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise DiscoveryError(f"consul at {self.host}:{self.port}: {op} failed: "
                                 f"malformed answer ({exc!r})") from None

    @staticmethod
    def _key(key: str) -> str:
        return key.lstrip("/")

    @staticmethod
    def _kv(entry: dict[str, Any]) -> KV:
        value = entry.get("Value")
        if isinstance(value, str):
            value = value.encode()
        return KV(key=str(entry["Key"]), value=value or b"", index=int(entry["ModifyIndex"]),
                  session=entry.get("Session") or None)

    # -- sessions ---------------------------------------------------------
    def create_session(self, name: str, ttl: float, keepalive: str | None = None) -> str:
        seconds = math.ceil(ttl)
        if not MIN_SESSION_TTL <= seconds <= MAX_SESSION_TTL:
            raise ValueError(f"a Consul session TTL must be {MIN_SESSION_TTL}..{MAX_SESSION_TTL} s (got {ttl:g})")
        body: dict[str, Any] = {"Name": name, "LockDelay": "0s", "Behavior": "delete", "NodeChecks": []}
        if keepalive is None:
            body.update(TTL=f"{seconds}s", Checks=[])
        else:
            self._keepalive_passing(keepalive, seconds)
            body.update(TTL=f"{session_ttl(seconds, self.timeout)}s", Checks=[],
                        ServiceChecks=[{"ID": self._check_id(keepalive)}])
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                session = self._call(f"create session {name}", lambda: self._consul.http.put(
                    CB.json(is_id=True), "/v1/session/create", params=self._dc(),
                    headers=self._consul.prepare_headers(None), data=json.dumps(body)))
                break
            except DiscoveryError as exc:
                # The agent syncs a new or newly passing check to the servers asynchronously: a
                # create right behind the pass may still find it missing or critical.
                if keepalive is None or not any(m in str(exc) for m in _CHECK_NOT_READY) \
                        or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        if not isinstance(session, str) or not session:
            raise DiscoveryError(f"{self.describe()}: create session {name} failed: no session id in the answer")
        return session

    def renew_session(self, session: str, keepalive: str | None = None) -> bool:
        if keepalive is not None:
            check = self._check_id(keepalive)
            if not self._call(f"pass check {check}", lambda: self._consul.agent.check.ttl_pass(check)):
                # Unknown to the agent (it lost its state, or reaped the service after it stayed
                # critical): Consul ended every session bound to it with it.
                log.info("consul: keepalive check %s is gone: session %s ended with it", check, session)
                return False
        try:
            renewed = self._call(f"renew session {session}", lambda: self._consul.session.renew(session))
        except DiscoveryError as exc:
            if isinstance(exc.__context__, NotFound):
                return False
            raise
        if not isinstance(renewed, dict) or renewed.get("ID") != session:
            raise DiscoveryError(f"{self.describe()}: renew session {session} failed: "
                                 f"malformed answer ({str(renewed)[:100]})")
        return True

    def destroy_session(self, session: str) -> None:
        self._call(f"destroy session {session}", lambda: self._consul.session.destroy(session))

    def drop_keepalive(self, keepalive: str) -> None:
        # False (404): the agent did not know it: fine.
        self._call(f"deregister service {keepalive}", lambda: self._consul.agent.service.deregister(keepalive))

    def expiry_bounds(self, ttl: float, keepalive: bool = False) -> tuple[float, float]:
        seconds = float(max(MIN_SESSION_TTL, math.ceil(ttl)))
        if keepalive:
            return seconds, seconds + KEEPALIVE_SYNC
        return seconds, 2 * seconds

    @staticmethod
    def _check_id(keepalive: str) -> str:
        return f"service:{keepalive}"

    def _dc(self) -> list[tuple[str, str]]:
        dc = getattr(self._consul, "dc", None)
        return [("dc", dc)] if dc else []

    def _keepalive_passing(self, keepalive: str, ttl: int) -> None:
        """Pass the keepalive check; register its service first (passing) when the agent does not know it."""
        check = self._check_id(keepalive)
        if self._call(f"pass check {check}", lambda: self._consul.agent.check.ttl_pass(check)):
            return
        spec = {"ttl": f"{ttl}s", "Status": "passing", "DeregisterCriticalServiceAfter": DEREGISTER_AFTER}
        ok = self._call(f"register keepalive {keepalive}", lambda: self._consul.agent.service.register(
            KEEPALIVE_SERVICE, service_id=keepalive, check=spec))
        if not ok:
            raise DiscoveryError(f"{self.describe()}: register keepalive {keepalive} failed")
        log.info("consul: registered keepalive check %s (ttl %d s)", check, ttl)

    # -- key/value --------------------------------------------------------
    def get(self, key: str) -> KV | None:
        key = self._key(key)
        _, entry = self._call(f"get {key}", lambda: self._consul.kv.get(key))
        return self._call(f"get {key}", lambda: self._kv(entry)) if entry else None

    def _get_indexed(self, key: str, index: int | None = None, wait: float | None = None) -> tuple[int, KV | None]:
        params: dict[str, Any] = {}
        if index:
            params = {"index": index, "wait": _duration(wait or 0.001)}
        idx, entry = self._call(f"get {key}", lambda: self._consul.kv.get(key, **params))
        return self._call(f"get {key}", lambda: (int(idx), self._kv(entry) if entry else None))

    def list(self, prefix: str) -> list[KV]:
        prefix = self._key(prefix)
        _, entries = self._call(f"list {prefix}", lambda: self._consul.kv.get(prefix, recurse=True))
        return self._call(f"list {prefix}", lambda: sorted((self._kv(e) for e in entries or []),
                                                           key=lambda kv: kv.key))

    def put(self, key: str, value: bytes, session: str | None = None) -> bool:
        if session is not None:
            return self.acquire(key, value, session)
        key = self._key(key)
        return bool(self._call(f"put {key}", lambda: self._consul.kv.put(key, value)))

    def create(self, key: str, value: bytes, session: str | None = None) -> bool:
        key = self._key(key)
        if session is None:
            return bool(self._call(f"create {key}", lambda: self._consul.kv.put(key, value, cas=0)))
        ops = [{"KV": {"Verb": "check-not-exists", "Key": key}},
               {"KV": {"Verb": "lock", "Key": key, "Value": base64.b64encode(value).decode(), "Session": session}}]
        try:
            self._call(f"create {key}", lambda: self._txn(ops))
        except DiscoveryError as exc:
            if isinstance(exc.__context__, ClientError) and str(exc.__context__).startswith("409"):
                log.debug("consul: create %s refused: %s", key, exc.__context__)
                return False
            raise
        return True

    def _txn(self, ops: list[dict[str, Any]]) -> Any:
        """`PUT /v1/txn` with the ACL token: py-consul 1.8.0's `txn.put` sends no token at all."""
        return self._consul.http.put(CB.json(), "/v1/txn", data=json.dumps(ops),
                                     headers=self._consul.prepare_headers())

    def cas(self, key: str, value: bytes, index: int) -> bool:
        key = self._key(key)
        return bool(self._call(f"compare-and-set {key}", lambda: self._consul.kv.put(key, value, cas=int(index))))

    def delete(self, key: str, index: int | None = None) -> bool:
        key = self._key(key)
        if index is None:
            return bool(self._call(f"delete {key}", lambda: self._consul.kv.delete(key)))
        if index == 0:
            # Consul ignores ?cas=0 on DELETE: "only if absent" is a read.
            return self.get(key) is None
        return bool(self._call(f"delete {key} at index {index}",
                               lambda: self._consul.kv.delete(key, cas=int(index))))

    def acquire(self, key: str, value: bytes, session: str) -> bool:
        key = self._key(key)
        try:
            return bool(self._call(f"acquire {key}", lambda: self._consul.kv.put(key, value, acquire=session)))
        except DiscoveryError as exc:
            if "invalid session" in str(exc).lower():
                log.warning("consul: acquire %s: session %s no longer exists", key, session)
                return False
            raise

    def release(self, key: str, session: str) -> bool:
        kv = self.get(key)
        if kv is None or kv.session != session:
            return False
        return self.delete(key, index=kv.index)

    def wait(self, key: str, index: int, timeout: float) -> KV | None:
        key = self._key(key)
        deadline = time.monotonic() + max(0.0, timeout)
        blocking_index, kv = self._get_indexed(key)
        while (kv.index if kv else 0) == index:
            left = deadline - time.monotonic()
            if left <= 0.001:
                break
            # Ask for less than what is left: Consul may add up to wait/16 of jitter.
            new_index, kv = self._get_indexed(key, blocking_index, left / (1 + _JITTER))
            # An index that went backwards (a restarted or wiped server) restarts the query.
            blocking_index = new_index if new_index >= blocking_index else 0
            if not blocking_index:
                blocking_index, kv = self._get_indexed(key)
        return kv

    # -- services ---------------------------------------------------------
    def register_service(self, spec: ServiceSpec) -> None:
        check = {"ttl": _duration(spec.ttl), "DeregisterCriticalServiceAfter": DEREGISTER_AFTER}
        ok = self._call(f"register service {spec.id}", lambda: self._consul.agent.service.register(
            spec.name, service_id=spec.id, address=spec.address, port=int(spec.port), tags=list(spec.tags),
            check=check))
        if not ok:
            raise DiscoveryError(f"{self.describe()}: register service {spec.id} failed")

    def heartbeat(self, spec: ServiceSpec) -> None:
        check_id = f"service:{spec.id}"
        if self._call(f"heartbeat service {spec.id}", lambda: self._consul.agent.check.ttl_pass(check_id)):
            return
        log.info("consul: agent does not know service %s (restarted?); registering it again", spec.id)
        self.register_service(spec)
        if not self._call(f"heartbeat service {spec.id}", lambda: self._consul.agent.check.ttl_pass(check_id)):
            raise DiscoveryError(f"{self.describe()}: heartbeat service {spec.id} failed: "
                                 f"check {check_id} unknown right after registering it")

    def deregister_service(self, spec: ServiceSpec) -> None:
        # False (404) means the agent did not know it: fine.
        self._call(f"deregister service {spec.id}", lambda: self._consul.agent.service.deregister(spec.id))

    def healthy(self, name: str) -> list[Instance]:
        _, nodes = self._call(f"healthy {name}", lambda: self._consul.health.service(name, passing=True))

        def parse() -> list[Instance]:
            out = []
            for node in nodes or []:
                svc = node["Service"]
                address = svc.get("Address") or (node.get("Node") or {}).get("Address") or ""
                out.append(Instance(id=str(svc["ID"]), name=str(svc["Service"]), address=str(address),
                                    port=int(svc["Port"]), tags=tuple(svc.get("Tags") or ())))
            return sorted(out, key=lambda inst: inst.id)

        return self._call(f"healthy {name}", parse)

    def close(self) -> None:
        session = getattr(self._consul.http, "session", None)
        if session is not None:
            session.close()

