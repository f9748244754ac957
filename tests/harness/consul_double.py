"""A test double of Consul's HTTP API: a real HTTP server on loopback.

No Consul server can be installed here, so the Consul backend is exercised
against this double.  It implements the endpoints py-consul calls for
triton-mysql, with Consul's documented semantics (tests/test_consul_double.py
pins each one).  It is a test tool, not a product feature.

Run it
------
* ``ConsulDouble(workdir).start()`` ... ``.stop()`` (also a context manager),
  from pytest or any script; ``python -m tests.harness.consul_double --port P``
  runs the server in the foreground.
* pytest fixture ``consul_double``: a started double per test, stopped at
  teardown.  Options through a marker:
  ``@pytest.mark.consul_double(ttl_multiplier=1.0, min_session_ttl=1)``.

The server runs in a child process (stopped by its PID), so ``stop()`` is a
real outage: connections are refused until ``start()``, which listens on the
same host and port again.

State across restarts
---------------------
With ``keep_state=True`` (the default) a graceful ``stop()`` (SIGTERM) saves
the whole state and the next ``start()`` loads it, like a Consul server that
restarts with its raft log: KV entries, indexes, sessions and the agent's
services and checks come back.  As in Consul after a leader election, every
session TTL timer restarts in full; a check keeps its status, a passing TTL
check gets a full TTL from the restart.  Lock-delays are forgotten.
``kill()`` (SIGKILL) is a crash that also loses the disk: the next start is
empty.  ``keep_state=False``: every start is empty.

Semantics implemented (Consul 1.x)
----------------------------------
* Raft-like index: one counter shared by KV, sessions and the catalog; every
  answer of a read endpoint carries ``X-Consul-Index`` (404 included), never
  below 1.
* Blocking queries: ``?index=N&wait=D`` holds the answer until the index of
  what is read exceeds N or the wait (default 5 min, at most 10 min, plus up
  to wait/16 of random jitter unless ``blocking_jitter=False``) ends.  The index
  of one key is its ModifyIndex, of a missing key the KV table index; of a
  prefix the highest ModifyIndex or deletion under it.  Spurious wake-ups
  (the index grew for an unrelated reason) can happen, as in Consul.
* KV: GET (``recurse``, ``keys`` [+ ``separator``], ``raw``), PUT (``flags``,
  ``cas``, ``acquire``, ``release``; body is the raw value, at most 512 KiB),
  DELETE (``recurse``, ``cas``).  Entries carry CreateIndex, ModifyIndex,
  LockIndex, Flags, Session and a base64 Value.  A plain PUT keeps the key's
  session.  ``?acquire`` needs a live session (500 "invalid session"
  otherwise), fails while another session holds the key or a lock-delay is in
  force, bumps LockIndex when the key changes hands.  ``?release`` succeeds
  only for the holding session, clears Session and writes the body.
  ``DELETE ?cas=N`` deletes only at ModifyIndex N and answers true when the
  key is already gone (as Consul does).  ``PUT /v1/txn`` runs KV operations
  atomically (set, cas, lock, unlock, get, delete, delete-cas, check-index,
  check-session, check-not-exists): 200 with Results, or 409 with Errors.
* Sessions: create (Name, LockDelay, Behavior ``release``/``delete``, TTL,
  Checks, NodeChecks, ServiceChecks, combined exactly as Consul's HTTP handler
  does: ``session_checks()``; with none of them the node's ``serfHealth`` is
  bound, ``Checks: []`` binds none, and a non-empty ``Checks`` alone still
  binds ``serfHealth`` beside it), renew (404 for an
  unknown session), destroy, info, list, node.  TTL must be 0 (none) or from
  ``min_session_ttl`` (10 s) to 24 h, else 400.  A session with a TTL is
  invalidated ``ttl * ttl_multiplier`` after its creation or last renewal
  (Consul's server uses 2.0; the documented guarantee is "no sooner than TTL,
  up to 2x").  Invalidation (TTL, destroy, or one of its checks turning
  critical/deregistered) releases (behavior release: Session cleared) or
  deletes (behavior delete) the keys it holds, and starts their lock-delay
  (default 15 s, at most 60 s; a number below 1000 counts as seconds,
  otherwise nanoseconds).
* ``serfHealth`` passes unless a test fails it (``PUT /_double/serf?status=
  critical``, not a Consul API: in Consul a gossip flap or an agent restart
  does this): then every session bound to it is invalidated at once, new
  sessions naming it are refused, and the node's services are not passing.
* Agent: service register (Name, ID, Address, Port, Tags, Meta, Check/Checks
  with TTL; single check id ``service:<id>``, several ``service:<id>:<n>``),
  deregister (404 for an unknown id), check pass/warn/fail/update (404 for an
  unknown check).  A TTL check starts critical (unless Status is given),
  becomes passing on pass, and critical again ``ttl`` after the last pass.
  Re-registering keeps an existing check's status and deadline (Consul
  restores persisted TTL check state).  DeregisterCriticalServiceAfter
  removes a service that stayed critical that long (values below
  ``min_deregister_critical``, 60 s like Consul, are raised to it; checked
  continuously, where Consul's reaper runs every 30 s).
  The health index of a service changes on registration, deregistration and
  check *status* changes, not on a pass that keeps it passing.
* Health: ``GET /v1/health/service/<name>`` (``passing``, ``tag``), Consul's
  entry format (Node, Service, Checks with the node's serfHealth).
* Also: ``/v1/agent/services``, ``/v1/agent/checks``, ``/v1/agent/self``,
  ``/v1/catalog/services``, ``/v1/catalog/service/<name>``,
  ``/v1/status/leader``, ``/v1/status/peers``.

Security (options of ``ConsulDouble``)
--------------------------------------
* ``acl_token="…"``: ACLs on with default policy deny and one token allowed
  everything, like a Consul agent with ``acl.enabled`` and a management token.
  The token is read from ``X-Consul-Token``, ``Authorization: Bearer`` or
  ``?token=`` (Consul's three ways).  No token: 403 "Permission denied:
  anonymous token lacks permission …" (the anonymous token is used); an
  unknown token: 403 "ACL not found".  ``/v1/status/*`` needs no token, as in
  Consul.  py-consul turns 403 into ``ACLPermissionDenied``.
* ``tls=(cert_file, key_file)``: HTTPS only (like ``ports.http = -1`` with
  ``ports.https``); ``client_ca=ca_file`` also requires a client certificate
  signed by that CA (Consul's ``verify_incoming``).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

MAX_VALUE_SIZE = 512 * 1024
MAX_SESSION_TTL = 86400.0
MAX_LOCK_DELAY = 60.0
DEFAULT_LOCK_DELAY = 15.0
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
TICK = 0.02

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("10s", "1m30s", "250ms", "0").  ValueError if malformed."""
    text = text.strip()
    if text in ("", "0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(body):
        if match.start() != pos:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the values we emit ("10s", "1m0s", "1.5s", "250ms")."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    return out + f"{secs:g}s"


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _field(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """Consul decodes JSON field names case-insensitively (and accepts snake_case)."""
    want = _norm(name)
    for key, value in obj.items():
        if _norm(key) == want:
            return value
    return default


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------
# State

@dataclass
class Entry:
    key: str
    value: bytes
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""

    def to_api(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "LockIndex": self.lock_index, "Key": self.key, "Flags": self.flags,
            "Value": base64.b64encode(self.value).decode() if self.value is not None else None,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }
        if self.session:
            entry["Session"] = self.session
        return entry


@dataclass
class Session:
    id: str
    name: str
    node: str
    lock_delay: float
    behavior: str
    ttl: float
    checks: list[str]
    create_index: int
    modify_index: int
    expires_at: float | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Name": self.name, "Node": self.node,
            "LockDelay": int(self.lock_delay * 1e9), "Behavior": self.behavior,
            "TTL": format_duration(self.ttl) if self.ttl else "",
            "NodeChecks": [c for c in self.checks if not c.startswith("service:")],
            "ServiceChecks": [{"ID": c, "Namespace": ""} for c in self.checks if c.startswith("service:")] or None,
            "Checks": list(self.checks),
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }


@dataclass
class Check:
    id: str
    name: str
    service_id: str
    service_name: str
    ttl: float
    status: str = "critical"
    output: str = ""
    notes: str = ""
    deregister_after: float = 0.0
    expires_at: float | None = None
    critical_since: float | None = None
    create_index: int = 0
    modify_index: int = 0


@dataclass
class Service:
    id: str
    name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    check_ids: list[str] = field(default_factory=list)
    create_index: int = 0
    modify_index: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Service": self.name, "Tags": list(self.tags), "Address": self.address,
            "Meta": dict(self.meta), "Port": self.port, "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False, "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }


def session_checks(body: dict[str, Any]) -> list[str]:
    """The checks a session create request binds, as Consul's HTTP handler computes them.

    agent/session_endpoint.go, SessionCreate: the request starts from
    `NodeChecks: [serfHealth]` and `Checks: [serfHealth]`; fields present in
    the body replace them (JSON `null` or `[]`: empty); then
    fixupEmptySessionChecks: an empty `Checks` empties `NodeChecks` too; a
    `Checks` of just serfHealth is dropped (NodeChecks rules); otherwise an
    empty `NodeChecks` drops `Checks`.  The session is bound to Checks +
    NodeChecks + the IDs of ServiceChecks (structs.Session.CheckIDs).
    """
    def ids(name: str, default: list[str]) -> list[str]:
        present = any(_norm(k) == _norm(name) for k in body)
        raw = _field(body, name, None) if present else default
        return [str(_field(c, "ID", "")) if isinstance(c, dict) else str(c) for c in (raw or [])]

    checks = ids("Checks", ["serfHealth"])
    node_checks = ids("NodeChecks", ["serfHealth"])
    service_checks = ids("ServiceChecks", [])
    if not checks:
        node_checks = []
    elif checks == ["serfHealth"]:
        checks = []
    elif not node_checks:
        checks = []
    return list(dict.fromkeys(checks + node_checks + service_checks))


class ConsulState:
    """Everything the double knows, behind one condition variable.

    Time is `time.monotonic()`; `_tick()` applies every deadline that has
    passed (session TTLs, check TTLs, critical-service reaping).  It runs
    before every request and every `TICK` s in a background thread, so that
    blocking queries wake up when something expires.
    """

    def __init__(self, *, node_name: str = "consul-double", address: str = "127.0.0.1",
                 ttl_multiplier: float = 2.0, min_session_ttl: float = 10.0,
                 min_deregister_critical: float = 60.0, blocking_jitter: bool = True) -> None:
        self.node_name = node_name
        self.node_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, node_name))
        self.address = address
        self.ttl_multiplier = ttl_multiplier
        self.min_session_ttl = min_session_ttl
        self.min_deregister_critical = min_deregister_critical
        self.blocking_jitter = blocking_jitter
        self.cond = threading.Condition()
        self.index = 10
        self.kvs: dict[str, Entry] = {}
        self.tombstones: dict[str, int] = {}
        self.kv_table_index = 1
        self.lock_delays: dict[str, float] = {}
        self.sessions: dict[str, Session] = {}
        self.sessions_index = 1
        self.services: dict[str, Service] = {}
        self.checks: dict[str, Check] = {}
        self.service_index: dict[str, int] = {}
        self.services_index = 1
        self.serf_status = "passing"

    # -- helpers -------------------------------------------------------
    @staticmethod
    def now() -> float:
        return time.monotonic()

    def _next(self) -> int:
        self.index += 1
        return self.index

    def _touch_service(self, name: str, idx: int) -> None:
        self.service_index[name] = idx
        self.services_index = idx

    def _kv_write(self, entry: Entry, idx: int) -> None:
        self.kvs[entry.key] = entry
        self.tombstones.pop(entry.key, None)
        self.kv_table_index = idx

    def _kv_delete(self, key: str, idx: int) -> None:
        if self.kvs.pop(key, None) is not None:
            self.tombstones[key] = idx
            self.kv_table_index = idx

    # -- time ----------------------------------------------------------
    def _tick(self) -> bool:
        """Apply every deadline that has passed; True if anything changed."""
        now = self.now()
        changed = False
        for session in list(self.sessions.values()):
            if session.expires_at is not None and session.expires_at <= now:
                self._invalidate_session(session.id)
                changed = True
        for check in list(self.checks.values()):
            if check.status != "critical" and check.expires_at is not None and check.expires_at <= now:
                self._set_check_status(check, "critical", "TTL expired")
                changed = True
        for check in list(self.checks.values()):
            if (check.status == "critical" and check.deregister_after and check.critical_since is not None
                    and now - check.critical_since >= check.deregister_after and check.service_id in self.services):
                self._deregister_service(check.service_id)
                changed = True
        for key, until in list(self.lock_delays.items()):
            if until <= now:
                del self.lock_delays[key]
        return changed

    def tick(self) -> None:
        with self.cond:
            if self._tick():
                self.cond.notify_all()

    def blocking(self, read: Callable[[], tuple[int, Any]], min_index: int | None, wait: float | None) -> tuple[int, Any]:
        """Run `read` (under the lock) until its index exceeds `min_index` or the wait ends."""
        with self.cond:
            self._tick()
            idx, data = read()
            if not min_index or min_index <= 0:
                return max(1, idx), data
            wait = DEFAULT_WAIT if wait is None else min(max(wait, 0.0), MAX_WAIT)
            if self.blocking_jitter:
                wait += random.uniform(0, wait / 16)
            deadline = self.now() + wait
            while idx <= min_index:
                remaining = deadline - self.now()
                if remaining <= 0:
                    break
                self.cond.wait(min(remaining, 0.25))
                self._tick()
                idx, data = read()
            return max(1, idx), data

    def mutate(self, fn: Callable[[], Any]) -> Any:
        with self.cond:
            self._tick()
            try:
                return fn()
            finally:
                self.cond.notify_all()

    # -- KV ------------------------------------------------------------
    def kv_read(self, key: str, recurse: bool) -> tuple[int, list[Entry]]:
        if not recurse:
            entry = self.kvs.get(key)
            return (entry.modify_index, [entry]) if entry else (self.kv_table_index, [])
        entries = sorted((e for k, e in self.kvs.items() if k.startswith(key)), key=lambda e: e.key)
        idx = max([e.modify_index for e in entries] + [i for k, i in self.tombstones.items() if k.startswith(key)],
                  default=0)
        return (idx or self.kv_table_index), entries

    def kv_set(self, key: str, value: bytes, flags: int | None, idx: int) -> None:
        old = self.kvs.get(key)
        self._kv_write(Entry(
            key=key, value=value, flags=flags if flags is not None else 0,
            create_index=old.create_index if old else idx, modify_index=idx,
            lock_index=old.lock_index if old else 0, session=old.session if old else "",
        ), idx)

    def kv_cas(self, key: str, value: bytes, flags: int | None, cas: int) -> bool:
        old = self.kvs.get(key)
        if (cas == 0 and old is not None) or (cas != 0 and (old is None or old.modify_index != cas)):
            return False
        self.kv_set(key, value, flags, self._next())
        return True

    def kv_lock(self, key: str, value: bytes, flags: int | None, session: str) -> bool:
        if not session:
            raise HTTPError(500, "missing session")
        if session not in self.sessions:
            raise HTTPError(500, f'invalid session "{session}"')
        if self.lock_delays.get(key, 0.0) > self.now():
            return False
        old = self.kvs.get(key)
        if old is not None and old.session and old.session != session:
            return False
        idx = self._next()
        if old is not None and old.session == session:
            lock_index = old.lock_index
        else:
            lock_index = (old.lock_index if old else 0) + 1
        self._kv_write(Entry(key=key, value=value, flags=flags if flags is not None else 0,
                             create_index=old.create_index if old else idx, modify_index=idx,
                             lock_index=lock_index, session=session), idx)
        return True

    def kv_unlock(self, key: str, value: bytes, flags: int | None, session: str) -> bool:
        if not session:
            raise HTTPError(500, "missing session")
        old = self.kvs.get(key)
        if old is None or old.session != session:
            return False
        idx = self._next()
        self._kv_write(Entry(key=key, value=value, flags=flags if flags is not None else 0,
                             create_index=old.create_index, modify_index=idx,
                             lock_index=old.lock_index, session=""), idx)
        return True

    def kv_delete(self, key: str, recurse: bool, cas: int | None) -> bool:
        if recurse:
            keys = [k for k in self.kvs if k.startswith(key)]
            if keys:
                idx = self._next()
                for k in keys:
                    self._kv_delete(k, idx)
            return True
        old = self.kvs.get(key)
        if cas is not None:
            if old is None or old.modify_index != cas:
                return old is None
        if old is not None:
            self._kv_delete(key, self._next())
        return True

    def txn(self, ops: list[dict[str, Any]]) -> tuple[list[dict] | None, list[dict] | None]:
        """Consul's /v1/txn for KV operations: all or nothing."""
        snapshot = (dict(self.kvs), dict(self.tombstones), self.kv_table_index, self.index)
        results: list[dict] = []
        for position, op in enumerate(ops):
            kv = _field(op, "KV")
            if not isinstance(kv, dict):
                raise HTTPError(400, f"operation {position}: only KV operations are supported by the double")
            verb = str(_field(kv, "Verb", "")).lower()
            key = str(_field(kv, "Key", ""))
            raw = _field(kv, "Value")
            value = base64.b64decode(raw) if raw else b""
            flags = _field(kv, "Flags")
            index = int(_field(kv, "Index", 0) or 0)
            session = str(_field(kv, "Session", "") or "")
            error = None
            try:
                error = self._txn_op(verb, key, value, flags, index, session, results)
            except HTTPError as exc:
                error = exc.message
            if error is not None:
                self.kvs, self.tombstones, self.kv_table_index, self.index = snapshot
                return None, [{"OpIndex": position, "What": error}]
        return results, None

    def _txn_op(self, verb: str, key: str, value: bytes, flags: Any, index: int, session: str,
                results: list[dict]) -> str | None:
        existing = self.kvs.get(key)
        if verb == "set":
            self.kv_set(key, value, flags, self._next())
        elif verb == "cas":
            if not self.kv_cas(key, value, flags, index):
                return f'failed to set key "{key}", index is stale'
        elif verb == "lock":
            if not self.kv_lock(key, value, flags, session):
                return f'failed to lock key "{key}", lock is already held'
        elif verb == "unlock":
            if not self.kv_unlock(key, value, flags, session):
                return f'failed to unlock key "{key}", lock isn\'t held, or is held by another session'
        elif verb == "get":
            if existing is None:
                return f'key "{key}" doesn\'t exist'
        elif verb == "delete":
            self.kv_delete(key, False, None)
            return None
        elif verb == "delete-cas":
            if existing is None or existing.modify_index != index:
                return f'failed to delete key "{key}", index is stale'
            self.kv_delete(key, False, index)
            return None
        elif verb == "check-index":
            if existing is None or existing.modify_index != index:
                return f'current modify index {existing.modify_index if existing else 0} != {index}'
        elif verb == "check-session":
            if existing is None or existing.session != session:
                return f'current session "{existing.session if existing else ""}" != "{session}"'
        elif verb == "check-not-exists":
            if existing is not None:
                return f'key "{key}" exists'
        else:
            return f'unknown KV verb "{verb}"'
        entry = self.kvs.get(key)
        if entry is not None:
            # Consul returns the value for "get" only; other verbs get a copy without it.
            api = entry.to_api()
            if verb != "get":
                api["Value"] = None
            results.append({"KV": api})
        return None

    # -- sessions ------------------------------------------------------
    def session_create(self, body: dict[str, Any]) -> str:
        behavior = str(_field(body, "Behavior", "release") or "release").lower()
        if behavior not in ("release", "delete"):
            raise HTTPError(400, f"Invalid Behavior setting '{behavior}'")
        ttl_text = _field(body, "TTL", "") or ""
        try:
            ttl = parse_duration(str(ttl_text)) if ttl_text else 0.0
        except ValueError:
            raise HTTPError(400, f"Request decode failed: invalid TTL {ttl_text!r}") from None
        if ttl != 0 and (ttl < self.min_session_ttl or ttl > MAX_SESSION_TTL):
            raise HTTPError(400, f"Invalid Session TTL '{format_duration(ttl)}', must be between "
                                 f"[{format_duration(self.min_session_ttl)}={format_duration(MAX_SESSION_TTL)}]")
        delay_raw = _field(body, "LockDelay", None)
        if delay_raw is None:
            delay = DEFAULT_LOCK_DELAY
        elif isinstance(delay_raw, (int, float)):
            delay = float(delay_raw) if delay_raw < 1000 else float(delay_raw) / 1e9
        else:
            try:
                delay = parse_duration(str(delay_raw))
            except ValueError:
                raise HTTPError(400, f"Request decode failed: invalid LockDelay {delay_raw!r}") from None
        delay = min(max(delay, 0.0), MAX_LOCK_DELAY)
        checks = session_checks(body)
        for check_id in checks:
            if check_id == "serfHealth":
                if self.serf_status == "critical":
                    raise HTTPError(500, "Check 'serfHealth' is in critical state")
                continue
            check = self.checks.get(check_id)
            if check is None:
                raise HTTPError(500, f"Missing check '{check_id}' registration")
            if check.status == "critical":
                raise HTTPError(500, f"Check '{check_id}' is in critical state")
        node = str(_field(body, "Node", "") or self.node_name)
        if node != self.node_name:
            raise HTTPError(500, f"Missing node registration: {node}")
        idx = self._next()
        session = Session(id=str(uuid.uuid4()), name=str(_field(body, "Name", "") or ""), node=node,
                          lock_delay=delay, behavior=behavior, ttl=ttl, checks=checks,
                          create_index=idx, modify_index=idx)
        if ttl:
            session.expires_at = self.now() + ttl * self.ttl_multiplier
        self.sessions[session.id] = session
        self.sessions_index = idx
        return session.id

    def session_renew(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise HTTPError(404, f"Session id '{session_id}' not found")
        if session.ttl:
            session.expires_at = self.now() + session.ttl * self.ttl_multiplier
        return session

    def session_destroy(self, session_id: str) -> None:
        if session_id in self.sessions:
            self._invalidate_session(session_id)

    def _invalidate_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        idx = self._next()
        self.sessions_index = idx
        now = self.now()
        for key, entry in list(self.kvs.items()):
            if entry.session != session_id:
                continue
            if session.behavior == "delete":
                self._kv_delete(key, idx)
            else:
                entry.session = ""
                entry.modify_index = idx
                self.kv_table_index = idx
            if session.lock_delay > 0:
                self.lock_delays[key] = now + session.lock_delay

    # -- agent: services and checks ------------------------------------
    def service_register(self, body: dict[str, Any]) -> None:
        name = _field(body, "Name")
        if not name:
            raise HTTPError(400, "Missing service name")
        service_id = str(_field(body, "ID", "") or name)
        port = int(_field(body, "Port", 0) or 0)
        tags = [str(t) for t in (_field(body, "Tags", None) or [])]
        meta = {str(k): str(v) for k, v in (_field(body, "Meta", None) or {}).items()}
        specs = []
        single = _field(body, "Check", None)
        if single:
            specs.append(single)
        specs.extend(_field(body, "Checks", None) or [])
        checks: list[Check] = []
        for n, spec in enumerate(specs, start=1):
            ttl_raw = _field(spec, "TTL", "")
            if not ttl_raw:
                raise HTTPError(400, "the Consul double supports TTL checks only")
            try:
                ttl = parse_duration(str(ttl_raw))
                dcsa_raw = _field(spec, "DeregisterCriticalServiceAfter", "") or ""
                dcsa = parse_duration(str(dcsa_raw)) if dcsa_raw else 0.0
            except ValueError as exc:
                raise HTTPError(400, f"Request decode failed: {exc}") from None
            if dcsa:
                dcsa = max(dcsa, self.min_deregister_critical)
            default_id = f"service:{service_id}" if len(specs) == 1 else f"service:{service_id}:{n}"
            check_id = str(_field(spec, "CheckID", "") or _field(spec, "ID", "") or default_id)
            status = str(_field(spec, "Status", "") or "critical")
            checks.append(Check(id=check_id, name=str(_field(spec, "Name", "") or f"Service '{name}' check"),
                                service_id=service_id, service_name=str(name), ttl=ttl, status=status,
                                notes=str(_field(spec, "Notes", "") or ""), deregister_after=dcsa))
        idx = self._next()
        old = self.services.get(service_id)
        if old is not None and old.name != name:
            self._touch_service(old.name, idx)
        now = self.now()
        keep = set()
        for check in checks:
            previous = self.checks.get(check.id)
            if previous is not None and previous.ttl and check.ttl:
                # Consul restores a TTL check's persisted state on re-registration.
                check.status, check.output = previous.status, previous.output
                check.expires_at, check.critical_since = previous.expires_at, previous.critical_since
                check.create_index = previous.create_index
            else:
                check.create_index = idx
                if check.status == "passing":
                    check.expires_at = now + check.ttl
                elif check.status == "critical":
                    check.critical_since = now
            check.modify_index = idx
            self.checks[check.id] = check
            keep.add(check.id)
        if old is not None:
            for check_id in old.check_ids:
                if check_id not in keep:
                    self._remove_check(check_id)
        self.services[service_id] = Service(
            id=service_id, name=str(name), address=str(_field(body, "Address", "") or ""), port=port,
            tags=tags, meta=meta, check_ids=[c.id for c in checks],
            create_index=old.create_index if old else idx, modify_index=idx)
        self._touch_service(str(name), idx)

    def service_deregister(self, service_id: str) -> None:
        if service_id not in self.services:
            raise HTTPError(404, f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                                 f"not the service name.")
        self._deregister_service(service_id)

    def _deregister_service(self, service_id: str) -> None:
        service = self.services.pop(service_id)
        for check_id in service.check_ids:
            self._remove_check(check_id)
        self._touch_service(service.name, self._next())

    def _remove_check(self, check_id: str) -> None:
        if self.checks.pop(check_id, None) is not None:
            self._invalidate_sessions_with_check(check_id)

    def _invalidate_sessions_with_check(self, check_id: str) -> None:
        for session in list(self.sessions.values()):
            if check_id in session.checks:
                self._invalidate_session(session.id)

    def _set_check_status(self, check: Check, status: str, output: str) -> None:
        now = self.now()
        check.output = output
        if status == "passing" or status == "warning":
            check.expires_at = now + check.ttl if check.ttl else None
        if status == check.status:
            return
        check.status = status
        idx = self._next()
        check.modify_index = idx
        check.critical_since = now if status == "critical" else None
        self._touch_service(check.service_name, idx)
        if status == "critical":
            self._invalidate_sessions_with_check(check.id)

    def check_update(self, check_id: str, status: str, output: str) -> None:
        check = self.checks.get(check_id)
        if check is None:
            raise HTTPError(404, f'Unknown check ID "{check_id}". Ensure that the check ID is passed, '
                                 f"not the check name.")
        if status not in ("passing", "warning", "critical"):
            raise HTTPError(400, f"Invalid check status: '{status}'")
        self._set_check_status(check, status, output)

    # -- catalog / health views ----------------------------------------
    def _node_api(self) -> dict[str, Any]:
        return {"ID": self.node_id, "Node": self.node_name, "Address": self.address, "Datacenter": "dc1",
                "TaggedAddresses": {"lan": self.address, "wan": self.address}, "Meta": {},
                "CreateIndex": 5, "ModifyIndex": 5}

    def set_serf_status(self, status: str) -> None:
        """A test fails (or heals) the node's gossip health: sessions bound to it end at once."""
        if status not in ("passing", "critical"):
            raise HTTPError(400, f"Invalid check status: '{status}'")
        self.serf_status = status
        idx = self._next()
        for name in {s.name for s in self.services.values()}:
            self._touch_service(name, idx)
        if status == "critical":
            self._invalidate_sessions_with_check("serfHealth")

    def _serf_check(self) -> dict[str, Any]:
        return {"Node": self.node_name, "CheckID": "serfHealth", "Name": "Serf Health Status",
                "Status": self.serf_status, "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "",
                "ServiceName": "", "ServiceTags": [], "Type": "", "CreateIndex": 5, "ModifyIndex": 5}

    def _check_api(self, check: Check) -> dict[str, Any]:
        service = self.services.get(check.service_id)
        return {"Node": self.node_name, "CheckID": check.id, "Name": check.name, "Status": check.status,
                "Notes": check.notes, "Output": check.output, "ServiceID": check.service_id,
                "ServiceName": check.service_name, "ServiceTags": list(service.tags) if service else [],
                "Type": "ttl", "Definition": {"TTL": format_duration(check.ttl)} if check.ttl else {},
                "CreateIndex": check.create_index, "ModifyIndex": check.modify_index}

    def health_service(self, name: str, passing: bool, tags: list[str]) -> tuple[int, list[dict]]:
        out = []
        for service in sorted(self.services.values(), key=lambda s: s.id):
            if service.name != name or not all(t in service.tags for t in tags):
                continue
            checks = [self._serf_check()] + [self._check_api(self.checks[c]) for c in service.check_ids
                                             if c in self.checks]
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            out.append({"Node": self._node_api(), "Service": service.to_api(), "Checks": checks})
        return self.service_index.get(name, self.services_index), out

    # -- persistence ---------------------------------------------------
    def dump(self) -> dict[str, Any]:
        with self.cond:
            return {
                "index": self.index, "kv_table_index": self.kv_table_index,
                "sessions_index": self.sessions_index, "services_index": self.services_index,
                "service_index": self.service_index, "tombstones": self.tombstones,
                "kvs": [{**asdict(e), "value": base64.b64encode(e.value).decode()} for e in self.kvs.values()],
                "sessions": [{**asdict(s), "expires_at": None} for s in self.sessions.values()],
                "services": [asdict(s) for s in self.services.values()],
                "checks": [{**asdict(c), "expires_at": None, "critical_since": None} for c in self.checks.values()],
            }

    def load(self, data: dict[str, Any]) -> None:
        now = self.now()
        with self.cond:
            self.index = data["index"]
            self.kv_table_index = data["kv_table_index"]
            self.sessions_index = data["sessions_index"]
            self.services_index = data["services_index"]
            self.service_index = dict(data["service_index"])
            self.tombstones = dict(data["tombstones"])
            self.kvs = {e["key"]: Entry(**{**e, "value": base64.b64decode(e["value"])}) for e in data["kvs"]}
            self.sessions = {}
            for raw in data["sessions"]:
                session = Session(**raw)
                if session.ttl:
                    session.expires_at = now + session.ttl * self.ttl_multiplier
                self.sessions[session.id] = session
            self.services = {s["id"]: Service(**s) for s in data["services"]}
            self.checks = {}
            for raw in data["checks"]:
                check = Check(**raw)
                if check.status == "critical":
                    check.critical_since = now
                elif check.ttl:
                    check.expires_at = now + check.ttl
                self.checks[check.id] = check


# ---------------------------------------------------------------------------
# HTTP

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ConsulDouble/1.0"
    state: ConsulState  # set on the subclass made by make_server

    acl_token: str | None = None  # set on the subclass made by make_server

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without TCP_NODELAY, Nagle plus
        # the client's delayed ACK adds ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            # In this request's thread, not in the accept loop: a client that never
            # finishes its handshake must not stall the whole server.
            self.connection.settimeout(10)
            self.connection.do_handshake()
            self.connection.settimeout(None)

    def _check_acl(self, path: str, query: dict[str, list[str]]) -> None:
        """Consul with ACLs on, default policy deny: only the configured token may do anything."""
        if self.acl_token is None or path.startswith("/v1/status/"):
            return
        token = self.headers.get("X-Consul-Token") or ""
        bearer = self.headers.get("Authorization") or ""
        if not token and bearer.lower().startswith("bearer "):
            token = bearer[len("bearer "):].strip()
        if not token and query.get("token"):
            token = query["token"][-1]
        if not token:
            raise HTTPError(403, "Permission denied: anonymous token lacks permission. The anonymous token is "
                                 "used implicitly when a request does not specify a token.")
        if token != self.acl_token:
            raise HTTPError(403, "ACL not found")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if os.environ.get("CONSUL_DOUBLE_DEBUG"):
            sys.stderr.write("consul-double: " + (format % args) + "\n")

    # -- plumbing ------------------------------------------------------
    def _send(self, status: int, body: Any = None, index: int | None = None, raw: bytes | None = None,
              content_type: str = "application/json") -> None:
        if raw is None:
            raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        if index is not None:
            self.send_header("X-Consul-Index", str(index))
            self.send_header("X-Consul-Knownleader", "true")
            self.send_header("X-Consul-Lastcontact", "0")
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        raw = self._body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise HTTPError(400, f"Request decode failed: {exc}") from None

    def _dispatch(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        params = {k: v[-1] for k, v in query.items()}
        params_all = query
        try:
            self._check_acl(path, query)
            for prefix, route in _ROUTES:
                if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                    route(self, method, path[len(prefix):], params, params_all)
                    return
            raise HTTPError(404, f"no such endpoint: {path}")
        except HTTPError as exc:
            self._send(exc.status, raw=exc.message.encode(), content_type="text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -- blocking parameters -------------------------------------------
    @staticmethod
    def _blocking(params: dict[str, str]) -> tuple[int | None, float | None]:
        index = None
        if params.get("index"):
            try:
                index = int(params["index"])
            except ValueError:
                raise HTTPError(400, f"Invalid index: {params['index']!r}") from None
        wait = None
        if params.get("wait"):
            try:
                wait = parse_duration(params["wait"])
            except ValueError:
                raise HTTPError(400, f"Invalid wait time: {params['wait']!r}") from None
        return index, wait

    @staticmethod
    def _flags(params: dict[str, str]) -> int | None:
        if "flags" not in params:
            return None
        try:
            return int(params["flags"])
        except ValueError:
            raise HTTPError(400, "Invalid flags") from None

    @staticmethod
    def _index_param(params: dict[str, str], name: str) -> int:
        try:
            return int(params[name])
        except ValueError:
            raise HTTPError(400, f"Invalid {name} index") from None

    def _method(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HTTPError(405, f"method {method} not allowed")

    # -- KV ------------------------------------------------------------
    def route_kv(self, method: str, key: str, params: dict[str, str], _all: Any) -> None:
        state = self.state
        if method == "GET":
            index, wait = self._blocking(params)
            if "keys" in params:
                separator = params.get("separator", "")

                def read_keys() -> tuple[int, list[str]]:
                    idx, entries = state.kv_read(key, True)
                    keys: list[str] = []
                    for entry in entries:
                        k = entry.key
                        if separator:
                            cut = k.find(separator, len(key))
                            if cut >= 0:
                                k = k[:cut + len(separator)]
                        if not keys or keys[-1] != k:
                            keys.append(k)
                    return idx, keys

                idx, keys = state.blocking(read_keys, index, wait)
                self._send(200 if keys else 404, keys if keys else None, index=idx)
                return
            recurse = "recurse" in params
            idx, entries = state.blocking(lambda: (lambda r: (r[0], [e.to_api() for e in r[1]]))(
                state.kv_read(key, recurse)), index, wait)
            if not entries:
                self._send(404, index=idx)
            elif "raw" in params and not recurse:
                self._send(200, raw=base64.b64decode(entries[0]["Value"] or ""), index=idx,
                           content_type="application/octet-stream")
            else:
                self._send(200, entries, index=idx)
            return
        if method == "PUT" or method == "POST":
            if not key:
                raise HTTPError(400, "Missing key name")
            value = self._body()
            if len(value) > MAX_VALUE_SIZE:
                raise HTTPError(413, f"Request body({len(value)} bytes) too large, max size: {MAX_VALUE_SIZE} bytes")
            flags = self._flags(params)
            op: Callable[[], bool] = lambda: (state.kv_set(key, value, flags, state._next()), True)[1]  # noqa: E731
            if "cas" in params:
                cas = self._index_param(params, "cas")
                op = lambda: state.kv_cas(key, value, flags, cas)  # noqa: E731
            if "acquire" in params:
                op = lambda: state.kv_lock(key, value, flags, params["acquire"])  # noqa: E731
            if "release" in params:
                op = lambda: state.kv_unlock(key, value, flags, params["release"])  # noqa: E731
            self._send(200, state.mutate(op))
            return
        if method == "DELETE":
            recurse = "recurse" in params
            cas = self._index_param(params, "cas") if "cas" in params else None
            if recurse and cas is not None:
                raise HTTPError(400, "Conflicting flags: recurse and cas")
            if not key and not recurse:
                raise HTTPError(400, "Missing key name")
            self._send(200, state.mutate(lambda: state.kv_delete(key, recurse, cas)))
            return
        raise HTTPError(405, f"method {method} not allowed")

    def route_txn(self, method: str, _rest: str, _params: dict[str, str], _all: Any) -> None:
        self._method(method, "PUT", "POST")
        ops = self._json_body()
        if not isinstance(ops, list):
            raise HTTPError(400, "Failed to parse body: expected a list of operations")
        results, errors = self.state.mutate(lambda: self.state.txn(ops))
        if errors:
            self._send(409, {"Results": None, "Errors": errors})
        else:
            self._send(200, {"Results": results, "Errors": None}, index=self.state.index)

    # -- sessions ------------------------------------------------------
    def route_session(self, method: str, rest: str, params: dict[str, str], _all: Any) -> None:
        state = self.state
        action, _, session_id = rest.partition("/")
        if action == "create":
            self._method(method, "PUT")
            body = self._json_body()
            if not isinstance(body, dict):
                raise HTTPError(400, "Request decode failed: expected an object")
            self._send(200, {"ID": state.mutate(lambda: state.session_create(body))})
        elif action == "renew":
            self._method(method, "PUT")
            session = state.mutate(lambda: state.session_renew(session_id))
            self._send(200, [session.to_api()])
        elif action == "destroy":
            self._method(method, "PUT")
            state.mutate(lambda: state.session_destroy(session_id))
            self._send(200, True)
        elif action in ("info", "list", "node"):
            self._method(method, "GET")
            index, wait = self._blocking(params)

            def read() -> tuple[int, list[dict]]:
                sessions = sorted(state.sessions.values(), key=lambda s: s.create_index)
                if action == "info":
                    sessions = [s for s in sessions if s.id == session_id]
                elif action == "node":
                    sessions = [s for s in sessions if s.node == session_id]
                return state.sessions_index, [s.to_api() for s in sessions]

            idx, data = state.blocking(read, index, wait)
            self._send(200, data, index=idx)
        else:
            raise HTTPError(404, f"no such endpoint: /v1/session/{rest}")

    # -- agent ---------------------------------------------------------
    def route_agent(self, method: str, rest: str, params: dict[str, str], _all: Any) -> None:
        state = self.state
        if rest == "service/register":
            self._method(method, "PUT")
            body = self._json_body()
            if not isinstance(body, dict):
                raise HTTPError(400, "Request decode failed: expected an object")
            state.mutate(lambda: state.service_register(body))
            self._send(200)
        elif rest.startswith("service/deregister/"):
            self._method(method, "PUT")
            service_id = rest[len("service/deregister/"):]
            state.mutate(lambda: state.service_deregister(service_id))
            self._send(200)
        elif rest.startswith(("check/pass/", "check/warn/", "check/fail/")):
            self._method(method, "PUT")
            verb, check_id = rest[len("check/"):].split("/", 1)
            status = {"pass": "passing", "warn": "warning", "fail": "critical"}[verb]
            note = params.get("note", "")
            state.mutate(lambda: state.check_update(check_id, status, note))
            self._send(200)
        elif rest.startswith("check/update/"):
            self._method(method, "PUT")
            body = self._json_body()
            check_id = rest[len("check/update/"):]
            status = str(_field(body, "Status", "") or "")
            state.mutate(lambda: state.check_update(check_id, status, str(_field(body, "Output", "") or "")))
            self._send(200)
        elif rest == "services":
            self._method(method, "GET")
            with state.cond:
                state._tick()
                data = {s.id: {**s.to_api(), "Datacenter": "dc1"} for s in state.services.values()}
            self._send(200, data)
        elif rest == "checks":
            self._method(method, "GET")
            with state.cond:
                state._tick()
                data = {c.id: state._check_api(c) for c in state.checks.values()}
            self._send(200, data)
        elif rest == "self":
            self._method(method, "GET")
            self._send(200, {"Config": {"Datacenter": "dc1", "NodeName": state.node_name, "NodeID": state.node_id,
                                        "Server": True, "Version": "1.17.0-double"},
                             "Member": {"Name": state.node_name, "Addr": state.address, "Port": 8301,
                                        "Status": 1}})
        else:
            raise HTTPError(404, f"no such endpoint: /v1/agent/{rest}")

    # -- health / catalog / status --------------------------------------
    def route_health_service(self, method: str, name: str, params: dict[str, str], params_all: Any) -> None:
        self._method(method, "GET")
        index, wait = self._blocking(params)
        passing = "passing" in params and params["passing"].lower() not in ("0", "false")
        tags = list(params_all.get("tag", []))
        idx, data = self.state.blocking(lambda: self.state.health_service(name, passing, tags), index, wait)
        self._send(200, data, index=idx)

    def route_catalog(self, method: str, rest: str, params: dict[str, str], params_all: Any) -> None:
        self._method(method, "GET")
        state = self.state
        index, wait = self._blocking(params)
        if rest == "services":
            def read() -> tuple[int, dict[str, list[str]]]:
                out: dict[str, list[str]] = {}
                for service in state.services.values():
                    out.setdefault(service.name, [])
                    out[service.name] = sorted(set(out[service.name]) | set(service.tags))
                return state.services_index, out
            idx, data = state.blocking(read, index, wait)
        elif rest.startswith("service/"):
            name = rest[len("service/"):]

            def read_service() -> tuple[int, list[dict]]:
                idx, entries = state.health_service(name, False, list(params_all.get("tag", [])))
                out = []
                for entry in entries:
                    svc = entry["Service"]
                    out.append({"ID": state.node_id, "Node": state.node_name, "Address": state.address,
                                "Datacenter": "dc1", "ServiceID": svc["ID"], "ServiceName": svc["Service"],
                                "ServiceTags": svc["Tags"], "ServiceAddress": svc["Address"],
                                "ServicePort": svc["Port"], "ServiceMeta": svc["Meta"],
                                "CreateIndex": svc["CreateIndex"], "ModifyIndex": svc["ModifyIndex"]})
                return idx, out
            idx, data = state.blocking(read_service, index, wait)
        else:
            raise HTTPError(404, f"no such endpoint: /v1/catalog/{rest}")
        self._send(200, data, index=idx)

    def route_status(self, method: str, rest: str, _params: dict[str, str], _all: Any) -> None:
        self._method(method, "GET")
        if rest == "leader":
            self._send(200, f"{self.state.address}:8300")
        elif rest == "peers":
            self._send(200, [f"{self.state.address}:8300"])
        else:
            raise HTTPError(404, f"no such endpoint: /v1/status/{rest}")


    def route_double(self, method: str, rest: str, params: dict[str, str], _all: Any) -> None:
        """Test controls that are not Consul's API."""
        self._method(method, "PUT")
        if rest == "serf":
            self.state.mutate(lambda: self.state.set_serf_status(params.get("status", "")))
            self._send(200, True)
        else:
            raise HTTPError(404, f"no such endpoint: /_double/{rest}")


_ROUTES: list[tuple[str, Callable[..., None]]] = [
    ("/v1/kv/", _Handler.route_kv),
    ("/v1/txn", _Handler.route_txn),
    ("/v1/session/", _Handler.route_session),
    ("/v1/agent/", _Handler.route_agent),
    ("/v1/health/service/", _Handler.route_health_service),
    ("/v1/catalog/", _Handler.route_catalog),
    ("/v1/status/", _Handler.route_status),
    ("/_double/", _Handler.route_double),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(host: str, port: int, state: ConsulState, *, acl_token: str | None = None,
                tls: tuple[str, str] | None = None, client_ca: str | None = None) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"state": state, "acl_token": acl_token})
    server = _Server((host, port), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


def serve(host: str, port: int, state: ConsulState, state_file: Path | None = None, *,
          acl_token: str | None = None, tls: tuple[str, str] | None = None, client_ca: str | None = None) -> None:
    """Run the double in this process until SIGTERM/SIGINT (saving the state to `state_file` then)."""
    if state_file is not None and state_file.exists():
        state.load(json.loads(state_file.read_text()))
    server = make_server(host, port, state, acl_token=acl_token, tls=tls, client_ca=client_ca)

    def stop(signum: int, _frame: Any) -> None:
        if state_file is not None:
            tmp = state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state.dump()))
            tmp.replace(state_file)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def ticker() -> None:
        while True:
            time.sleep(TICK)
            state.tick()

    threading.Thread(target=ticker, name="consul-double-ticker", daemon=True).start()
    server.serve_forever(poll_interval=0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A Consul HTTP API double for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--ttl-multiplier", type=float, default=2.0)
    parser.add_argument("--min-session-ttl", type=float, default=10.0)
    parser.add_argument("--min-deregister-critical", type=float, default=60.0)
    parser.add_argument("--no-jitter", action="store_true", help="no random wait/16 on blocking queries")
    parser.add_argument("--node-name", default="consul-double")
    parser.add_argument("--state-file", type=Path, default=None, help="load at start, save on SIGTERM")
    parser.add_argument("--acl-token-file", type=Path, default=None,
                        help="ACLs on (default deny); the file holds the one token allowed everything")
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM) ...")
    parser.add_argument("--tls-key", default=None, help="... and this key")
    parser.add_argument("--client-ca", default=None, help="require client certificates signed by this CA")
    args = parser.parse_args(argv)
    state = ConsulState(node_name=args.node_name, address=args.host, ttl_multiplier=args.ttl_multiplier,
                        min_session_ttl=args.min_session_ttl, min_deregister_critical=args.min_deregister_critical,
                        blocking_jitter=not args.no_jitter)
    token = args.acl_token_file.read_text().strip() if args.acl_token_file else None
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    serve(args.host, args.port, state, args.state_file, acl_token=token, tls=tls, client_ca=args.client_ca)


# ---------------------------------------------------------------------------
# Control from tests and scripts

class ConsulDouble:
    """The double as a child process on a fixed loopback port (see the module docstring).

    Options: `ttl_multiplier` (2.0: session invalidated 2 x TTL after its last
    renewal, like Consul's server), `min_session_ttl` (10 s), `min_deregister_critical`
    (60 s), `blocking_jitter` (True), `keep_state` (True: state survives stop/start),
    `acl_token` (ACLs on), `ca` (a `tls.TestCA`: serve HTTPS with a certificate it
    signs), `verify_incoming` (with `ca`: require a client certificate).
    """

    def __init__(self, workdir: Path | str | None = None, host: str = "127.0.0.1", port: int | None = None, *,
                 ttl_multiplier: float = 2.0, min_session_ttl: float = 10.0,
                 min_deregister_critical: float = 60.0, blocking_jitter: bool = True,
                 keep_state: bool = True, node_name: str = "consul-double", acl_token: str | None = None,
                 ca: Any = None, verify_incoming: bool = False) -> None:
        from .procs import free_port

        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="consul-double-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.ttl_multiplier = ttl_multiplier
        self.min_session_ttl = min_session_ttl
        self.min_deregister_critical = min_deregister_critical
        self.blocking_jitter = blocking_jitter
        self.keep_state = keep_state
        self.node_name = node_name
        self.state_file = self.workdir / "consul-double-state.json"
        self.proc = None
        self.acl_token = acl_token
        self.ca = ca
        self.server_cert = ca.issue("consul-server", [host, "localhost"], directory=self.workdir / "tls") if ca else None
        self.client_cert = ca.issue("consul-client", [], directory=self.workdir / "tls") \
            if ca and verify_incoming else None

    @property
    def scheme(self) -> str:
        return "https" if self.ca else "http"

    @property
    def endpoint(self) -> str:
        """The form the `CONSUL` variable takes: `host:port`, or `https://host:port` with TLS."""
        return f"{self.host}:{self.port}" if not self.ca else self.url

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """What a node needs to reach this double: address, CA, client certificate, token."""
        env = {"CONSUL": self.endpoint}
        if self.ca:
            env["CONSUL_CACERT"] = self.ca.cert
        if self.client_cert:
            env.update({"CONSUL_CLIENT_CERT": self.client_cert.cert, "CONSUL_CLIENT_KEY": self.client_cert.key})
        if self.acl_token:
            env["CONSUL_HTTP_TOKEN"] = self.acl_token
        return env

    def client(self, timeout: float = 5.0):
        """A py-consul client for this double (with its CA, client certificate and token)."""
        import consul
        c = consul.Consul(host=self.host, port=self.port, scheme=self.scheme,
                          verify=self.ca.cert if self.ca else True,
                          cert=(self.client_cert.cert, self.client_cert.key) if self.client_cert else None,
                          connections_timeout=timeout)
        c.token = self.acl_token
        return c

    def start(self, timeout: float = 10.0) -> "ConsulDouble":
        from .procs import Proc, wait_for

        if self.proc is not None and self.proc.alive():
            return self
        if not self.keep_state and self.state_file.exists():
            self.state_file.unlink()
        root = Path(__file__).resolve().parents[2]
        argv = [sys.executable, "-m", "tests.harness.consul_double", "--host", self.host, "--port", str(self.port),
                "--ttl-multiplier", repr(self.ttl_multiplier), "--min-session-ttl", repr(self.min_session_ttl),
                "--min-deregister-critical", repr(self.min_deregister_critical), "--node-name", self.node_name,
                "--state-file", str(self.state_file)]
        if not self.blocking_jitter:
            argv.append("--no-jitter")
        if self.acl_token:
            token_file = self.workdir / "acl-token"
            token_file.write_text(self.acl_token)
            token_file.chmod(0o600)
            argv += ["--acl-token-file", str(token_file)]
        if self.server_cert:
            argv += ["--tls-cert", self.server_cert.cert, "--tls-key", self.server_cert.key]
        if self.client_cert:
            argv += ["--client-ca", self.ca.cert]
        env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = Proc("consul-double", argv, self.workdir / "consul-double.log", env=env, cwd=str(root))
        wait_for(self._ready, timeout, interval=0.02, what=f"Consul double at {self.endpoint}")
        return self

    def _ready(self) -> bool:
        if self.proc is None or not self.proc.alive():
            raise RuntimeError(f"Consul double exited:\n{self.proc.log_text() if self.proc else ''}")
        context = None
        if self.ca:
            context = ssl.create_default_context(cafile=self.ca.cert)
            if self.client_cert:
                context.load_cert_chain(self.client_cert.cert, self.client_cert.key)
        with urllib.request.urlopen(self.url + "/v1/status/leader", timeout=0.5, context=context) as r:
            return r.status == 200

    def stop(self) -> None:
        """Graceful stop (SIGTERM): the state is saved when `keep_state`."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def kill(self) -> None:
        """Crash (SIGKILL) and lose the state: the next start is empty."""
        if self.proc is not None:
            self.proc.kill_tree()
            self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def set_serf_health(self, status: str) -> None:
        """Fail ("critical") or heal ("passing") the node's serfHealth check."""
        request = urllib.request.Request(f"{self.url}/_double/serf?status={status}", method="PUT", data=b"")
        with urllib.request.urlopen(request, timeout=2) as answer:
            answer.read()

    def __enter__(self) -> "ConsulDouble":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ConsulDouble {self.endpoint} alive={self.alive()}>"


if __name__ != "__main__":  # the child process does not need pytest
    import pytest

    def pytest_configure(config) -> None:
        config.addinivalue_line(
            "markers", "consul_double(**options): options for the Consul double (ConsulDouble keyword arguments)")

    @pytest.fixture
    def consul_double(request, tmp_path_factory):
        """A started Consul double for one test, stopped afterwards whatever happens."""
        marker = request.node.get_closest_marker("consul_double")
        double = ConsulDouble(tmp_path_factory.mktemp("consul"), **(marker.kwargs if marker else {}))
        try:
            yield double.start()
        finally:
            double.stop()


if __name__ == "__main__":
    main()
