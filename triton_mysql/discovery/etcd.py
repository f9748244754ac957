"""etcd v3 backend (through etcd's HTTP/JSON gateway, with etcd3gw).

How the contract (`base.Discovery`) maps onto etcd:

* Sessions are leases.  A session id is the lease id as a decimal string.
  etcd grants at least 2 s and deletes a lease's keys 0-0.5 s after its TTL,
  so `expiry_bounds(ttl)` is (ttl, ttl + 0.5) with ttl rounded up to whole
  seconds and at least 2.
* Atomic writes are transactions: "only if absent" compares
  `create_revision == 0`; compare-and-set and conditional deletes compare
  `mod_revision` (the `KV.index`).  A failed transaction has no `succeeded`
  key in its answer.
* A plain write (no session) keeps the lease a key is bound to
  (`ignore_lease`), like a plain Consul PUT keeps the key's session.
* Services live under `<prefix>/services/<name>/<id>` as JSON
  `{"ID","Name","Address","Port","Tags"}`, bound to a lease of the service
  TTL.  `register_service` writes nothing: a key exists only between a
  heartbeat and the end of its lease, so "present" means "healthy".
* `wait()` polls every `POLL_INTERVAL` s (a watch over the gateway is a
  streaming request that is awkward to bound; polling keeps every request
  within `timeout`).

Several endpoints: each call starts at the endpoint that worked last and moves
on only when a connection could not be made (refused, connect timeout, 503),
never after a request was sent, so a write is never applied twice.

Transport (`base.Transport`): `https://` endpoints, a CA, a client
certificate, and etcd auth.  The CA and certificate go with every request
(`verify=`/`cert=`), not on the requests session: a session's `verify` loses
to REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment (requests merges
those over it), which would silently trust another CA.  etcd3gw has no auth:
`/v3/auth/authenticate` gives a token sent in the `Authorization` header.
Authenticating costs ~80 ms on the server (bcrypt) against ~1 ms for a read,
so the token is cached in a 0600 file (`Transport.token_cache`) for the next
short-lived hook, and requested again only when etcd answers "invalid auth
token" (it expires after `--auth-token-ttl` seconds unused, or with a
restart of the member).
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import tempfile
import time
from typing import Any, Callable, Sequence, TypeVar

import requests
from etcd3gw.client import Etcd3Client

from .. import log as logsetup
from ..config import DEFAULT_ETCD_PREFIX
from .base import KV, Discovery, DiscoveryError, Instance, ServiceSpec, Transport, settle_environment, short_error

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two reads while `wait()` polls a key.
POLL_INTERVAL = 0.1
#: The smallest lease TTL etcd honours.
MIN_LEASE_TTL = 2
#: How late after its TTL etcd may delete a lease's keys.
EXPIRY_SLACK = 0.5


class _Unreachable(Exception):
    """The request never reached the server: safe to try the next endpoint."""


#: What etcd answers for a token it does not know (expired, or issued before a restart).
INVALID_TOKEN = "invalid auth token"


class _InvalidToken(Exception):
    """etcd refused the auth token: the request was not applied; authenticate again."""


class _EtcdError(Exception):
    """etcd answered with an error (HTTP status != 200)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range_end)."""
    raw = bytearray(prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"  # the whole key space
    raw[-1] += 1
    return bytes(raw)


def lease_ttl(ttl: float) -> int:
    """The TTL etcd will really grant for a requested `ttl`."""
    return max(MIN_LEASE_TTL, math.ceil(ttl))


class EtcdDiscovery(Discovery):
    """The discovery contract on etcd v3.  See the module docstring."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], prefix: str = DEFAULT_ETCD_PREFIX,
                 timeout: float = 2.0, transport: Transport | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [(str(h), int(p)) for h, p in endpoints]
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.timeout = float(timeout)
        self.transport = transport or Transport()
        # api_path given: no /version round trip before the first request.
        self._clients = [Etcd3Client(host=h, port=p, protocol=self.transport.scheme, timeout=timeout,
                                     api_path="/v3/") for h, p in self.endpoints]
        for client in self._clients:
            settle_environment(client.session, client.get_url(""))
        self._current = 0
        self._service_leases: dict[str, int] = {}
        self._token: str | None = None
        self._token_loaded = False

    # -- plumbing ---------------------------------------------------------
    def describe(self) -> str:
        scheme = "https://" if self.transport.scheme == "https" else ""
        return "etcd at " + ",".join(f"{scheme}{h}:{p}" for h, p in self.endpoints)

    def _endpoint(self, i: int) -> str:
        host, port = self.endpoints[i]
        return f"{host}:{port}"

    def _post(self, client: Etcd3Client, path: str, payload: dict[str, Any],
              connect_timeout: float, read_timeout: float, token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": token} if token else None
        try:
            resp = client.session.post(client.get_url(path), data=json.dumps(payload), headers=headers,
                                       verify=self.transport.verify_arg, cert=self.transport.cert_arg,
                                       timeout=(connect_timeout, read_timeout))
        except requests.exceptions.ConnectTimeout as exc:
            raise _Unreachable(short_error(exc, 160)) from None
        except requests.exceptions.ConnectionError as exc:
            if any(m in str(exc) for m in ("Connection aborted", "RemoteDisconnected", "Connection reset")):
                # The request may have been applied: do not send it again elsewhere.
                raise DiscoveryError(f"lost the connection ({short_error(exc, 160)})") from None
            raise _Unreachable(short_error(exc, 160)) from None
        except requests.exceptions.Timeout:
            raise DiscoveryError(f"no answer within {read_timeout:.2g} s") from None
        except requests.RequestException as exc:
            raise DiscoveryError(f"request failed ({short_error(exc, 160)})") from None
        if resp.status_code == 503:
            raise _Unreachable(f"HTTP 503 {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError:
            raise DiscoveryError(f"HTTP {resp.status_code}, not JSON: {resp.text[:200]!r}") from None
        if resp.status_code != 200:
            message = body.get("message") or body.get("error") or resp.text[:200] if isinstance(body, dict) else resp.text[:200]
            raise _EtcdError(resp.status_code, str(message))
        if not isinstance(body, dict):
            raise DiscoveryError(f"malformed answer: {resp.text[:200]!r}")
        return body

    def _call(self, op: str, path: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST with the auth token when etcd auth is configured; a token etcd no longer knows
        (expired, member restarted) is replaced once.  A rejected token means the request was
        not applied, so sending it again is safe."""
        if not self.transport.user:
            return self._send(op, path, payload, timeout)
        # One deadline for authenticating and the request: a call stays within its bound
        # (the fencing timing rule counts on it), authentication or not.
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        token = self._auth_token(op, left())
        try:
            return self._send(op, path, payload, left(), token)
        except _InvalidToken:
            log.info("etcd: auth token no longer valid; authenticating again")
            self._drop_token(token)
            return self._send(op, path, payload, left(), self._auth_token(op, left()))

    def _send(self, op: str, path: str, payload: dict[str, Any], timeout: float | None = None,
              token: str | None = None) -> dict[str, Any]:
        """POST to the first endpoint that accepts a connection; errors become DiscoveryError."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        count = len(self._clients)
        failures: list[str] = []
        for attempt in range(count):
            i = (self._current + attempt) % count
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            connect_timeout = max(remaining / (count - attempt), 0.05)
            try:
                body = self._post(self._clients[i], path, payload, connect_timeout, remaining, token)
            except _Unreachable as exc:
                failures.append(f"{self._endpoint(i)}: {exc}")
                continue
            except _EtcdError as exc:
                if token and INVALID_TOKEN in exc.message:
                    raise _InvalidToken() from None
                raise DiscoveryError(f"etcd at {self._endpoint(i)}: {op} failed: {exc}{self._hint(exc)}") from None
            except DiscoveryError as exc:
                raise DiscoveryError(f"etcd at {self._endpoint(i)}: {op} failed: {exc}") from None
            if i != self._current:
                log.info("etcd: using endpoint %s from now on (%s)", self._endpoint(i), "; ".join(failures))
                self._current = i
            return body
        tried = "; ".join(failures) or f"no time left within {budget:g} s"
        raise DiscoveryError(f"etcd: {op} failed, no endpoint reachable ({tried})")

    def _hint(self, exc: "_EtcdError") -> str:
        if "user name is empty" in exc.message:
            return " (etcd auth is enabled: set ETCD_USER and ETCD_PASSWORD)"
        if "permission denied" in exc.message:
            return f" (the role of ETCD_USER {self.transport.user} needs readwrite on the prefix {self.prefix or '/'}/)"
        return ""

    # -- etcd auth --------------------------------------------------------
    def _auth_token(self, op: str, timeout: float | None = None) -> str:
        """The token to send: in memory, else from the cache file, else a new one."""
        if self._token is None and not self._token_loaded:
            self._token_loaded = True
            self._token = self._read_cached_token()
        if self._token is None:
            self._token = self._authenticate(op, timeout)
            self._write_cached_token(self._token)
        return self._token

    def _authenticate(self, op: str, timeout: float | None = None) -> str:
        t = self.transport
        try:
            body = self._send(f"authenticate as {t.user} (for {op})", "auth/authenticate",
                              {"name": t.user, "password": t.password or ""}, timeout)
        except DiscoveryError as exc:
            hint = "an authentication (bcrypt on the server) must fit in DISCOVERY_TIMEOUT" \
                if "no answer within" in str(exc) else "check ETCD_USER/ETCD_PASSWORD"
            raise DiscoveryError(f"{exc} ({hint})") from None
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise DiscoveryError(f"{self.describe()}: authenticate as {t.user} failed: no token in the answer "
                                 f"(is auth enabled on the server?)")
        logsetup.add_secret(token)
        log.debug("etcd: authenticated as %s", t.user)
        return token

    def _cache_key(self) -> dict[str, Any]:
        return {"user": self.transport.user, "endpoints": [f"{h}:{p}" for h, p in self.endpoints],
                "scheme": self.transport.scheme}

    def _read_cached_token(self) -> str | None:
        path = self.transport.token_cache
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or {k: data.get(k) for k in self._cache_key()} != self._cache_key():
            return None
        token = data.get("token")
        if isinstance(token, str) and token:
            logsetup.add_secret(token)
            return token
        return None

    def _write_cached_token(self, token: str) -> None:
        """Atomically, mode 0600 (mkstemp's), so a reader sees the old token or the new one."""
        path = self.transport.token_cache
        if not path:
            return
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".etcd-token.", dir=os.path.dirname(path))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**self._cache_key(), "token": token, "at": time.time()}, f)
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            log.debug("etcd: cannot cache the auth token in %s: %s", path, exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _drop_token(self, token: str | None) -> None:
        self._token = None
        self._token_loaded = True
        path = self.transport.token_cache
        if path and token and self._read_cached_token() == token:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _parse(self, op: str, fn: Callable[[], T]) -> T:
        """Turn a malformed answer (missing field, bad number) into DiscoveryError."""
        try:
            return fn()
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DiscoveryError(f"etcd at {self._endpoint(self._current)}: {op} failed: "
                                 f"malformed answer ({exc!r})") from None

    def _txn(self, op: str, compare: list[dict], success: list[dict], failure: list[dict] | None = None,
             lease_may_be_gone: bool = False) -> dict[str, Any] | None:
        """Run a transaction; None when it refers to a lease that no longer exists (and that is allowed)."""
        payload = {"compare": compare, "success": success, "failure": failure or []}
        try:
            return self._call(op, "kv/txn", payload)
        except DiscoveryError as exc:
            if lease_may_be_gone and "lease not found" in str(exc):
                return None
            raise

    @staticmethod
    def _kv(item: dict[str, Any]) -> KV:
        lease = int(item.get("lease", 0) or 0)
        return KV(
            key=_unb64(item["key"]).decode("utf-8", errors="surrogateescape"),
            value=_unb64(item.get("value")),
            index=int(item["mod_revision"]),
            session=str(lease) if lease else None,
        )

    @staticmethod
    def _lease_id(session: str) -> int | None:
        try:
            value = int(session)
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    # -- sessions ---------------------------------------------------------
    def create_session(self, name: str, ttl: float, keepalive: str | None = None) -> str:
        granted = lease_ttl(ttl)
        body = self._call(f"grant lease for {name}", "lease/grant", {"TTL": granted, "ID": 0})
        lease = self._parse("grant lease", lambda: int(body["ID"]))
        if not lease:
            raise DiscoveryError(f"etcd at {self._endpoint(self._current)}: grant lease for {name} failed: "
                                 f"{body.get('error') or 'no lease id'}")
        log.debug("etcd: lease %d granted for %s (ttl %d s)", lease, name, granted)
        return str(lease)

    def renew_session(self, session: str, keepalive: str | None = None) -> bool:
        lease = self._lease_id(session)
        if lease is None:
            return False
        body = self._call(f"renew lease {session}", "lease/keepalive", {"ID": lease})
        ttl = self._parse("renew lease", lambda: int(body["result"].get("TTL", -1)))
        return ttl > 0

    def destroy_session(self, session: str) -> None:
        lease = self._lease_id(session)
        if lease is None:
            return
        try:
            self._call(f"revoke lease {session}", "kv/lease/revoke", {"ID": lease})
        except DiscoveryError as exc:
            if "lease not found" not in str(exc):
                raise

    def expiry_bounds(self, ttl: float, keepalive: bool = False) -> tuple[float, float]:
        granted = float(lease_ttl(ttl))
        return granted, granted + EXPIRY_SLACK

    # -- key/value --------------------------------------------------------
    def get(self, key: str) -> KV | None:
        body = self._call(f"get {key}", "kv/range", {"key": _b64(key)})
        kvs = body.get("kvs") or []
        return self._parse(f"get {key}", lambda: self._kv(kvs[0])) if kvs else None

    def list(self, prefix: str) -> list[KV]:
        raw = prefix.encode()
        body = self._call(f"list {prefix}", "kv/range",
                          {"key": _b64(raw), "range_end": _b64(_prefix_end(raw)), "sort_order": 1, "sort_target": 0})
        return self._parse(f"list {prefix}", lambda: [self._kv(item) for item in body.get("kvs") or []])

    def _bind(self, op: str, key: str, value: bytes, session: str) -> bool:
        """Write `key` bound to lease `session` unless another lease holds it (Consul's ?acquire)."""
        lease = self._lease_id(session)
        if lease is None:
            return False
        k, v = _b64(key), _b64(value)
        put = [{"request_put": {"key": k, "value": v, "lease": lease}}]
        # Already ours (a renewal: every health pass, so tried first and one request in the
        # steady state), or free (absent, or present without a lease): write.  The three
        # conditions exclude one another, so their order changes nothing but the cost.
        for compare in ([{"key": k, "result": "EQUAL", "target": "LEASE", "lease": lease}],
                        [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
                        [{"key": k, "result": "EQUAL", "target": "LEASE", "lease": 0}]):
            result = self._txn(op, compare, put, lease_may_be_gone=True)
            if result is None:
                log.warning("etcd: %s: lease %s no longer exists", op, session)
                return False
            if result.get("succeeded"):
                return True
        return False

    def put(self, key: str, value: bytes, session: str | None = None) -> bool:
        if session is not None:
            return self._bind(f"put {key}", key, value, session)
        k, v = _b64(key), _b64(value)
        # Keep the key's lease if it has one (as a plain Consul PUT keeps the session).
        self._txn(f"put {key}", [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
                  [{"request_put": {"key": k, "value": v}}],
                  [{"request_put": {"key": k, "value": v, "ignore_lease": True}}])
        return True

    def create(self, key: str, value: bytes, session: str | None = None) -> bool:
        k = _b64(key)
        request: dict[str, Any] = {"key": k, "value": _b64(value)}
        if session is not None:
            lease = self._lease_id(session)
            if lease is None:
                return False
            request["lease"] = lease
        result = self._txn(f"create {key}", [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
                           [{"request_put": request}], lease_may_be_gone=True)
        if result is None:
            log.warning("etcd: create %s: lease %s no longer exists", key, session)
            return False
        return bool(result.get("succeeded"))

    def cas(self, key: str, value: bytes, index: int) -> bool:
        if index == 0:
            return self.create(key, value)
        k = _b64(key)
        result = self._txn(f"compare-and-set {key}",
                           [{"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": int(index)}],
                           [{"request_put": {"key": k, "value": _b64(value), "ignore_lease": True}}])
        return bool(result and result.get("succeeded"))

    def delete(self, key: str, index: int | None = None) -> bool:
        k = _b64(key)
        if index is None:
            self._call(f"delete {key}", "kv/deleterange", {"key": k})
            return True
        result = self._txn(f"delete {key} at index {index}",
                           [{"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": int(index)}],
                           [{"request_delete_range": {"key": k}}],
                           [{"request_range": {"key": k}}])
        if result is None:
            return False
        if result.get("succeeded"):
            return True
        # Like Consul's DELETE ?cas=: a key that is already gone counts as deleted.
        responses = result.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or []
        return not kvs

    def acquire(self, key: str, value: bytes, session: str) -> bool:
        return self._bind(f"acquire {key}", key, value, session)

    def release(self, key: str, session: str) -> bool:
        kv = self.get(key)
        if kv is None or kv.session != str(self._lease_id(session)):
            return False
        return self.delete(key, index=kv.index)

    def wait(self, key: str, index: int, timeout: float) -> KV | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            kv = self.get(key)
            if (kv.index if kv else 0) != index:
                return kv
            left = deadline - time.monotonic()
            if left <= 0:
                return kv
            time.sleep(min(POLL_INTERVAL, left))

    # -- services ---------------------------------------------------------
    def _service_key(self, name: str, service_id: str = "") -> str:
        return f"{self.prefix}/services/{name}/{service_id}"

    def register_service(self, spec: ServiceSpec) -> None:
        # Nothing to write: in etcd a service exists only while its heartbeats
        # keep its lease alive (SPEC §5: "written only while healthy").
        log.debug("etcd: service %s known; listed from its first heartbeat", spec.id)

    def heartbeat(self, spec: ServiceSpec) -> None:
        lease = self._service_leases.get(spec.id)
        if lease is not None and not self.renew_session(str(lease)):
            log.info("etcd: lease of service %s expired; granting a new one", spec.id)
            lease = None
        if lease is None:
            lease = int(self.create_session(f"service {spec.id}", spec.ttl))
            self._service_leases[spec.id] = lease
        record = {"ID": spec.id, "Name": spec.name, "Address": spec.address, "Port": int(spec.port),
                  "Tags": list(spec.tags)}
        payload = {"key": _b64(self._service_key(spec.name, spec.id)),
                   "value": _b64(json.dumps(record, sort_keys=True)), "lease": lease}
        try:
            self._call(f"heartbeat service {spec.id}", "kv/put", payload)
        except DiscoveryError as exc:
            if "lease not found" not in str(exc):
                raise
            # The lease ended between the renewal and the write: start over once.
            self._service_leases.pop(spec.id, None)
            lease = int(self.create_session(f"service {spec.id}", spec.ttl))
            self._service_leases[spec.id] = lease
            payload["lease"] = lease
            self._call(f"heartbeat service {spec.id}", "kv/put", payload)

    def deregister_service(self, spec: ServiceSpec) -> None:
        key = self._service_key(spec.name, spec.id)
        kv = self.get(key)
        self.delete(key)
        leases = {self._service_leases.pop(spec.id, None)}
        if kv is not None and kv.session:
            leases.add(int(kv.session))
        for lease in leases - {None}:
            self.destroy_session(str(lease))

    def healthy(self, name: str) -> list[Instance]:
        out = []
        for kv in self.list(self._service_key(name)):
            try:
                record = json.loads(kv.value)
                out.append(Instance(id=str(record["ID"]), name=str(record.get("Name") or name),
                                    address=str(record["Address"]), port=int(record["Port"]),
                                    tags=tuple(record.get("Tags") or ())))
            except (ValueError, KeyError, TypeError):
                log.warning("etcd: ignoring malformed service record %s", kv.key)
        return sorted(out, key=lambda inst: inst.id)

    def close(self) -> None:
        for client in self._clients:
            client.session.close()
