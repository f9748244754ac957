"""Discovery calls on one background thread, results back on the main loop.

A discovery request may take up to the client's timeout (seconds, when the
service is down or partitioned).  The supervisor's loop must not stall for
that: signals, reaping and health-check timeouts keep running.  So every call
goes through this worker: `submit()` queues a job, the worker thread runs it,
and the loop runs the job's `done` callback on the main thread when the
worker's pipe becomes readable.  Jobs run one at a time in submission order,
so "deregister old, register new, heartbeat" happen in that order.

Jobs are keyed: a job whose key is already queued is not queued again (a
heartbeat or a backend read that is still waiting for a slow server is not
stacked up behind itself).  Errors never escape: every exception becomes the
`done` callback's `error` argument, and the client is built lazily on the
worker thread so that even a failure to construct it is just an error to
log and retry at the next poll.

The config's discovery endpoints (its top-level `consul` or `etcd` key) are
parsed here too (`parse_discovery`), beside the worker that connects to
them; config.py assembles the sections.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from triton_mysql.config import (DEFAULT_CONSUL_PORT, DEFAULT_ETCD_PORT, DEFAULT_ETCD_PREFIX, DISCOVERY_VARIABLES,
                                  Config, endpoint_scheme, parse_host_port, valid_etcd_prefix)
from triton_mysql.discovery import Discovery, connect, connect_endpoints

from . import schema
from .schema import ConfigError

log = logging.getLogger("containerbuddy")


# --------------------------------------------------------------------------
# The discovery endpoints of the config (its `consul` or `etcd` key)

@dataclass(frozen=True)
class DiscoveryConfig:
    """Where the discovery service is: what the worker's client connects to."""

    consul: tuple[str, int] | None = None
    etcd: tuple[tuple[str, int], ...] | None = None
    etcd_prefix: str = DEFAULT_ETCD_PREFIX
    scheme: str = "http"
    settings: Any = field(default=None, compare=False, repr=False)
    """A `triton_mysql.config.Config` for these endpoints with the environment's TLS and
    credential settings (CONSUL_*/ETCD_*): the hooks' `discovery.connect` builds the
    supervisor's client from it, so both end with the same settings."""

    @property
    def kind(self) -> str:
        return "consul" if self.consul is not None else "etcd"

    def describe(self) -> str:
        scheme = "https://" if self.scheme == "https" else ""
        if self.consul is not None:
            return f"consul at {scheme}{self.consul[0]}:{self.consul[1]}"
        return "etcd at " + ",".join(f"{scheme}{h}:{p}" for h, p in self.etcd or ()) + f" (prefix {self.etcd_prefix})"


ETCD_KEYS = {"endpoints", "prefix"}


def parse_discovery(data: dict[str, Any], env: Mapping[str, str], warnings: list[str]) -> DiscoveryConfig | None:
    """The endpoints of the top-level `consul` or `etcd` key (one of them; None: neither).

    Parsed beside the worker that connects to them, by the hooks' rules
    (triton_mysql.config), so that the supervisor and its hooks read the same
    endpoints, scheme and prefix from the same text.
    """
    consul = _consul(data.get("consul"))
    etcd, prefix = _etcd(data.get("etcd"), warnings)
    if consul is not None and etcd:
        raise ConfigError("consul", "set either consul or etcd endpoints, not both")
    if consul is not None:
        scheme = _scheme(data.get("consul"), "consul")
        return DiscoveryConfig(consul=consul, scheme=scheme, settings=_settings(env, consul=consul, scheme=scheme))
    if etcd:
        scheme = _scheme(data["etcd"].get("endpoints"), "etcd.endpoints")
        return DiscoveryConfig(etcd=etcd, etcd_prefix=prefix, scheme=scheme,
                               settings=_settings(env, etcd=etcd, prefix=prefix, scheme=scheme))
    return None


def _scheme(value: Any, where: str) -> str:
    """The endpoints' scheme, by the hooks' rule (one scheme for all)."""
    joined = ",".join(str(item) for item in value) if isinstance(value, list) else str(value or "")
    try:
        return endpoint_scheme(joined)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def _settings(env: Mapping[str, str], *, consul: tuple[str, int] | None = None,
              etcd: tuple[tuple[str, int], ...] = (), prefix: str = DEFAULT_ETCD_PREFIX, scheme: str = "http") -> Any:
    """The discovery settings the hooks use (triton_mysql.config), for this config's endpoints.

    The endpoints come from this file (its `consul`/`etcd` keys); the TLS and
    credential variables (CONSUL_*, ETCD_*) from the environment, validated as
    the hooks validate them: a mistake there is exit 2 at start, naming it.
    """
    sub = {name: env[name] for name in DISCOVERY_VARIABLES if env.get(name)}
    sub["NODE_NAME"] = "containerbuddy"  # not used for discovery; config.build checks it on its own
    if consul is not None:
        sub.update({"CONSUL": f"{scheme}://{_bracket(consul[0])}:{consul[1]}", "ETCD": ""})
    else:
        sub.update({"ETCD": ",".join(f"{scheme}://{_bracket(h)}:{p}" for h, p in etcd), "CONSUL": "",
                    "ETCD_PREFIX": prefix})
    return Config.from_env(sub)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _consul(value: Any) -> tuple[str, int] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError("consul", "must be a \"host:port\" string")
    return host_port(value.strip(), "consul", DEFAULT_CONSUL_PORT)


def _etcd(value: Any, warnings: list[str]) -> tuple[tuple[tuple[str, int], ...], str]:
    if value is None:
        return (), DEFAULT_ETCD_PREFIX
    schema.check_keys(value, "etcd", ETCD_KEYS, set(), warnings)
    endpoints = value.get("endpoints")
    if isinstance(endpoints, str):
        items = [part.strip() for part in endpoints.split(",")]
    elif isinstance(endpoints, list) and all(isinstance(item, str) for item in endpoints):
        items = [item.strip() for item in endpoints]
    elif endpoints is None:
        items = []
    else:
        raise ConfigError("etcd.endpoints", "must be a list of \"host:port\" strings or a comma-separated string")
    parsed = tuple(host_port(item, "etcd.endpoints", DEFAULT_ETCD_PORT) for item in items if item)
    prefix = value.get("prefix")
    if prefix is None or prefix == "":
        prefix = DEFAULT_ETCD_PREFIX
    if not isinstance(prefix, str):
        raise ConfigError("etcd.prefix", f"must be a path starting with '/' (got {prefix!r})")
    try:
        return parsed, valid_etcd_prefix(prefix.rstrip("/") or "/")
    except ValueError as exc:
        raise ConfigError("etcd.prefix", f"{exc} (got {prefix!r})") from None


def host_port(text: str, where: str, default_port: int) -> tuple[str, int]:
    """(host, port) from "host[:port]", "http(s)://host[:port]" or "[v6]:port": the hooks' reading."""
    try:
        return parse_host_port(text, default_port)
    except ValueError as exc:
        raise ConfigError(where, f"{exc} (got {text!r})") from None


# --------------------------------------------------------------------------
# The worker

DEFAULT_TIMEOUT = 2.0


def discovery_timeout(env: Mapping[str, str]) -> float:
    """Seconds one discovery request may take: DISCOVERY_TIMEOUT (SPEC §3) when sane, else 2."""
    try:
        value = float(env.get("DISCOVERY_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if 0.1 <= value <= 60 else DEFAULT_TIMEOUT


Done = Callable[[Any, "BaseException | None"], None]


@dataclass
class Job:
    key: str
    fn: Callable[[Discovery], Any]
    done: Done | None
    finished: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class DiscoveryWorker:
    """One thread that owns the discovery client and runs queued jobs."""

    def __init__(self, config: DiscoveryConfig, timeout: float) -> None:
        self.config = config
        self.timeout = timeout
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._finished: deque[Job] = deque()
        self._queued: set[str] = set()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._client: Discovery | None = None
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)
        self._thread.start()

    @property
    def fd(self) -> int:
        """Readable when finished jobs wait for `complete()`."""
        return self._read_fd

    def submit(self, key: str, fn: Callable[[Discovery], Any], done: Done | None = None) -> Job | None:
        """Queue `fn(client)`; None when a job with this key is still queued."""
        if key in self._queued:
            return None
        job = Job(key, fn, done)
        self._queued.add(key)
        self._jobs.put(job)
        return job

    def complete(self) -> None:
        """Run the callbacks of finished jobs (main thread only)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._read_fd, 4096):
                pass
        while self._finished:
            job = self._finished.popleft()
            self._queued.discard(job.key)
            if job.done is not None:
                job.done(job.result, job.error)

    def wait(self, jobs: list[Job | None], timeout: float) -> bool:
        """Block until `jobs` have run (or `timeout` passes); then run finished callbacks."""
        deadline = time.monotonic() + timeout
        ok = True
        for job in jobs:
            if job is not None and not job.finished.wait(max(0.0, deadline - time.monotonic())):
                ok = False
        self.complete()
        return ok

    def stop(self) -> None:
        """Let the thread end after the queued jobs (it is a daemon: exit never waits for it)."""
        self._jobs.put(None)

    # -- worker thread ----------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            try:
                job.result = job.fn(self._connect())
            except BaseException as exc:  # noqa: BLE001 - reported to the main loop, never fatal
                job.error = exc
            self._finished.append(job)
            job.finished.set()
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._write_fd, b".")
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    def _connect(self) -> Discovery:
        if self._client is None and self.config.settings is not None:
            # The hooks' way (TLS, token, etcd user); the token lives in memory here, no cache file.
            self._client = connect(self.config.settings.with_overrides(discovery_timeout=self.timeout),
                                   token_cache=False)
        if self._client is None:
            self._client = connect_endpoints(
                consul=self.config.consul, etcd=list(self.config.etcd) if self.config.etcd else None,
                etcd_prefix=self.config.etcd_prefix, timeout=self.timeout,
            )
        return self._client


class ErrorLog:
    """Log discovery failures calmly: a warning when a failure starts or changes, then debug."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}
        self.on_failure: Callable[[str], None] | None = None
        """Told of every failure (telemetry counts them), with `what` failed."""

    def failed(self, what: str, error: BaseException, then: str = "retrying at the next poll") -> None:
        if self.on_failure is not None:
            self.on_failure(what)
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if self._last.get(what) != message:
            log.warning("%s failed: %s (%s)", what, message, then)
        else:
            log.debug("%s failed again: %s", what, message)
        self._last[what] = message

    def succeeded(self, what: str) -> None:
        if self._last.pop(what, None) is not None:
            log.info("%s works again", what)
