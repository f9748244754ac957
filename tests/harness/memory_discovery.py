"""The discovery contract in memory, on a clock the test moves: for in-process tests of the hooks.

Patroni's test_ha.py drives its HA cycle against a fake DCS; this is ours.
It keeps the contract's semantics (create-only, compare-and-set on an index,
session-bound keys deleted when the session ends, services healthy only
between heartbeat and TTL) with sessions ending exactly `ttl` after their last
renewal (`expiry_bounds` = (ttl, ttl)).  `wait()` does not block: it moves the
clock forward, so a test of a 20-second election runs in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from triton_mysql.discovery.base import KV, Discovery, DiscoveryError, Instance, ServiceSpec


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class _Session:
    ttl: float
    expires: float


@dataclass
class _Service:
    spec: ServiceSpec
    healthy_until: float = 0.0


@dataclass
class MemoryDiscovery(Discovery):
    clock: Clock = field(default_factory=Clock)
    timeout: float = 2.0
    kv: dict[str, KV] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    services: dict[str, _Service] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)
    """Every successful change as (operation, key): the sequence a test checks."""
    idle: Callable[[float], None] | None = None
    """Lets `seconds` pass while a caller waits (default: the clock jumps; a test world runs the
    other nodes' health passes meanwhile)."""
    journal: list[tuple[str, str]] | None = None
    """When set (a FakeNet's journal), every change is also appended there as ("discovery", "op key"),
    so that a test can order discovery writes against SQL statements."""
    keepalive_passes: list[tuple[float, str]] = field(default_factory=list)
    """(time, keepalive id) of every time a session's keepalive check was passed (Consul's TTL check
    that ends the session when it is not passed for SESSION_TTL; etcd has none)."""
    _index: int = 0
    _session_ids: int = 0

    # -- bookkeeping ----------------------------------------------------------
    def _next(self) -> int:
        self._index += 1
        return self._index

    def _expire(self) -> None:
        now = self.clock()
        for sid, session in list(self.sessions.items()):
            if session.expires <= now:
                self._end(sid)

    def _wrote(self, op: str, key: str) -> None:
        self.writes.append((op, key))
        if self.journal is not None:
            self.journal.append(("discovery", f"{op} {key}"))

    def _end(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        for key, kv in list(self.kv.items()):
            if kv.session == sid:
                del self.kv[key]
                self._wrote("expire", key)

    def _set(self, op: str, key: str, value: bytes, session: str | None) -> None:
        self.kv[key] = KV(key, value, self._next(), session)
        self._wrote(op, key)

    def live(self, sid: str | None) -> bool:
        self._expire()
        return bool(sid) and sid in self.sessions

    def wipe(self) -> None:
        """Everything gone, as after a discovery service lost its data."""
        self.kv.clear()
        self.sessions.clear()
        self.services.clear()

    # -- sessions -------------------------------------------------------------
    def create_session(self, name: str, ttl: float, keepalive: str | None = None) -> str:
        if keepalive:
            self.keepalive_passes.append((self.clock(), keepalive))
        self._session_ids += 1
        sid = f"s{self._session_ids}-{name}"
        self.sessions[sid] = _Session(ttl, self.clock() + ttl)
        return sid

    def renew_session(self, session: str, keepalive: str | None = None) -> bool:
        if keepalive:  # Consul passes the node's keepalive check first, whatever the session's fate
            self.keepalive_passes.append((self.clock(), keepalive))
        if not self.live(session):
            return False
        entry = self.sessions[session]
        entry.expires = self.clock() + entry.ttl
        return True

    def destroy_session(self, session: str) -> None:
        self._end(session)

    def expiry_bounds(self, ttl: float, keepalive: bool = False) -> tuple[float, float]:
        return ttl, ttl

    # -- key/value ------------------------------------------------------------
    def get(self, key: str) -> KV | None:
        self._expire()
        return self.kv.get(key)

    def list(self, prefix: str) -> list[KV]:
        self._expire()
        return [self.kv[k] for k in sorted(self.kv) if k.startswith(prefix)]

    def put(self, key: str, value: bytes, session: str | None = None) -> bool:
        self._expire()
        old = self.kv.get(key)
        if session is not None:
            if not self.live(session) or (old is not None and old.session and old.session != session):
                return False
            self._set("put", key, value, session)
            return True
        self._set("put", key, value, old.session if old else None)
        return True

    def create(self, key: str, value: bytes, session: str | None = None) -> bool:
        self._expire()
        if key in self.kv or (session is not None and not self.live(session)):
            return False
        self._set("create", key, value, session)
        return True

    def cas(self, key: str, value: bytes, index: int) -> bool:
        self._expire()
        old = self.kv.get(key)
        if (old.index if old else 0) != index:
            return False
        self._set("cas", key, value, old.session if old else None)
        return True

    def delete(self, key: str, index: int | None = None) -> bool:
        self._expire()
        old = self.kv.get(key)
        if old is None:
            return True
        if index is not None and old.index != index:
            return False
        del self.kv[key]
        self._wrote("delete", key)
        return True

    def acquire(self, key: str, value: bytes, session: str) -> bool:
        self._expire()
        old = self.kv.get(key)
        if not self.live(session) or (old is not None and old.session and old.session != session):
            return False
        self._set("acquire", key, value, session)
        return True

    def release(self, key: str, session: str) -> bool:
        self._expire()
        old = self.kv.get(key)
        if old is None or old.session != session:
            return False
        del self.kv[key]
        self._wrote("release", key)
        return True

    def pass_time(self, seconds: float) -> None:
        if self.idle is not None:
            self.idle(seconds)
        else:
            self.clock.advance(seconds)

    def wait(self, key: str, index: int, timeout: float) -> KV | None:
        """No blocking in memory: time passes (in steps of at most a second) until the key changes."""
        deadline = self.clock() + timeout
        while True:
            kv = self.get(key)
            if (kv is not None) if index == 0 else (kv is None or kv.index != index):
                return kv
            left = deadline - self.clock()
            if left <= 0:
                return kv
            self.pass_time(min(1.0, left))

    # -- services ---------------------------------------------------------------
    def register_service(self, spec: ServiceSpec) -> None:
        self.services.setdefault(spec.id, _Service(spec))

    def heartbeat(self, spec: ServiceSpec) -> None:
        entry = self.services.setdefault(spec.id, _Service(spec))
        entry.spec, entry.healthy_until = spec, self.clock() + spec.ttl

    def deregister_service(self, spec: ServiceSpec) -> None:
        self.services.pop(spec.id, None)

    def healthy(self, name: str) -> list[Instance]:
        now = self.clock()
        return [Instance(s.spec.id, s.spec.name, s.spec.address, s.spec.port, s.spec.tags)
                for s in sorted(self.services.values(), key=lambda s: s.spec.id)
                if s.spec.name == name and s.healthy_until > now]


class Unreachable:
    """A discovery client whose every request fails, as when the discovery service cannot be
    reached: for one hook while the others keep the real (memory) discovery.  `expiry_bounds` is
    the backend's own arithmetic, not a request: it still answers."""

    def __init__(self, real: Any = None) -> None:
        self.real = real

    def expiry_bounds(self, ttl: float, keepalive: bool = False) -> tuple[float, float]:
        if self.real is None:
            raise DiscoveryError("expiry_bounds: discovery unreachable (test)")
        return self.real.expiry_bounds(ttl, keepalive=keepalive)

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise DiscoveryError(f"{name}: discovery unreachable (test)")
        return fail

    def close(self) -> None:
        pass
