"""`Telemetry`: the one object the supervisor holds for its HTTP endpoints and metrics.

The narrow interface (all called on the supervisor's main thread):

* `start()` / `stop()` / `reconfigure(config)`: the HTTP server's life;
* `loop_sleeping(deadline)` before the loop waits, `loop_woke(t, late)`
  after: how the HTTP threads tell a late (frozen) loop from a live one;
* `child_exited(kind, started, ended, code, ignored)`: every hook run
  (health passes, onChange, tasks, stop hooks);
* `set_state(stopping=…, maintenance=…)`, `app_started()`,
  `discovery_error(operation)`;
* `due()` / `tick(t)` like every runner of the loop: the periodic read of
  the cluster records, through the supervisor's discovery worker
  (`submit`), also asked for at once by `refresh_now()` (after a SIGHUP:
  a hook renaming the service on promotion or demotion).

Everything is triton-mysql aware only through the environment the hooks
read too (SERVICE_NAME, NODE_NAME, MYSQL_SOCKET, MYSQL_ROOT_PASSWORD,
MAX_LAG) and the key layout (`keys.ClusterKeys`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ..process import now
from . import rules
from .config import TelemetryConfig
from .facts import FactsBox, HealthPass, ViewRead

log = logging.getLogger("containerbuddy")

DIRECT_READ_GAP = 0.25
"""Seconds between two reads of the cluster records by the HTTP threads themselves (see _read_view_now)."""
REFRESH = 2.0
"""Seconds between reads of the cluster records (one `list` of the cluster prefix): one discovery
request every 2 s per node.  A SIGHUP (a hook renaming the service on promotion or demotion) and a
late wake-up ask for one at once, and a /primary request on a writable node that the view does not
name reads them itself (`_read_view_now`), so a new primary is not kept waiting for the timer."""
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY")
JSON = "application/json"


class Telemetry:
    def __init__(self, config: TelemetryConfig, *, node: str, env: Mapping[str, str], kv_root: str | None,
                 submit: Callable[..., Any] | None, state_path: str | None = None,
                 health_max_age: float = 30.0, connect: Callable[[], Any] | None = None) -> None:
        from prometheus_client import disable_created_metrics

        from .metrics import Metrics
        from .probe import LocalServer
        disable_created_metrics()
        self.config = config
        self.node = node
        self.service = env.get("SERVICE_NAME") or "mysql"
        self.max_lag = _float(env.get("MAX_LAG"), 30.0)
        self.kv_root = kv_root
        self.submit = submit
        self.state_path = state_path
        self.box = FactsBox(now())
        self.box.update(health_max_age=health_max_age)
        socket_path = env.get("MYSQL_SOCKET") or "/run/mysqld/mysqld.sock"
        password = env.get("MYSQL_ROOT_PASSWORD") or None
        # One connection per kind of caller: a slow /metrics scrape must never make a load
        # balancer's /primary check wait (HAProxy marks a node down after one failed check).
        self.local_primary = LocalServer(socket_path, password)
        self.local_replica = LocalServer(socket_path, password)
        self.local = LocalServer(socket_path, password)
        self.metrics = Metrics(self.service, node, self._scrape)
        self.secrets = _secrets(env)
        self.next_due: float = now()
        self.views_read = 0
        self.app_started_wall: float | None = None
        self.app_restarts = 0
        self.snapshot_task_code: int | None = None
        self._view_error = ""
        self._server: Any = None
        self.connect = connect
        """Builds a discovery client of the HTTP threads' own (None: no discovery)."""
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._last_direct_read = -1e9

    # -- the HTTP server -------------------------------------------------------------
    def start(self) -> None:
        """Listen; raises OSError (address in use, no such address) for the caller to report."""
        from .server import HttpServer
        routes = {"/primary": self._primary, "/replica": self._replica, "/health": self._health,
                  "/status": self._status, "/metrics": self._metrics}
        server = HttpServer(self.config.address, self.config.port, routes, self.secrets)
        server.start()
        self._server = server
        log.info("telemetry: HTTP endpoints on %s:%d (/primary /replica /health /status /metrics)",
                 self.config.address, server.port)

    @property
    def port(self) -> int | None:
        return self._server.port if self._server is not None else None

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        for local in (self.local_primary, self.local_replica, self.local):
            local.close()
        with self._client_lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None

    def reconfigure(self, config: TelemetryConfig) -> None:
        """SIGHUP with another port or address: listen there instead (keep the old one if that fails)."""
        if config == self.config:
            return
        old_config, old = self.config, self._server
        self.config = config
        if old is not None:
            old.stop()
        try:
            self.start()
        except OSError as exc:
            log.error("telemetry: cannot listen on %s:%d (%s); staying on %s:%d", config.address, config.port,
                      exc.strerror or exc, old_config.address, old_config.port)
            self.config = old_config
            self.start()

    # -- events from the supervisor ------------------------------------------------------
    def loop_sleeping(self, deadline: float | None) -> None:
        if self.box.get().loop_deadline != deadline:
            self.box.update(loop_deadline=deadline)

    def loop_woke(self, t: float, late: bool) -> None:
        if late:
            log.warning("telemetry: the loop woke late (frozen?): /primary, /replica and /health answer 503 "
                        "until a health pass has run and the cluster records are read again")
            self.box.update(woke_at=t)
            self.refresh_now()

    def set_state(self, **changes: bool) -> None:
        self.box.update(**changes)

    def app_started(self) -> None:
        self.app_started_wall = time.time()
        self.app_restarts = _count_start(self.state_path)

    def discovery_error(self, operation: str) -> None:
        self.metrics.discovery_error(operation)

    def child_exited(self, kind: str, started: float, ended: float, code: int, ignored: bool) -> None:
        hook = hook_label(kind)
        if hook is None:
            return
        is_health = hook == "health"
        self.metrics.hook_finished(hook, code, ended - started, is_health and not ignored)
        if kind == "task snapshot":
            self.snapshot_task_code = code
        if is_health and not ignored and started >= self.box.get().woke_at:
            self.box.update(last_health=HealthPass(started=started, ended=ended, code=code))

    # -- the cluster records (a runner of the supervisor's loop) ---------------------------
    def refresh_now(self) -> None:
        self.next_due = min(self.next_due, now())

    def due(self) -> float | None:
        return self.next_due if self.submit is not None and self.kv_root else None

    def tick(self, t: float) -> None:
        if t < self.next_due or self.submit is None or not self.kv_root:
            return
        self.next_due = t + REFRESH
        from triton_mysql.view import read_view
        from triton_mysql.keys import ClusterKeys
        keys = ClusterKeys(self.kv_root)

        def job(client: Any) -> ViewRead:
            started = now()
            return ViewRead(started=started, view=read_view(client, keys))

        self.submit("telemetry: cluster records", job, self._view_done)

    def _view_done(self, result: ViewRead | None, error: BaseException | None) -> None:
        if error is not None:
            self.metrics.discovery_error("cluster records")
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            if message != self._view_error:
                log.warning("telemetry: reading the cluster records failed: %s (retrying every %g s)", message,
                            REFRESH)
                self._view_error = message
            return
        if result is None:
            return
        if self._view_error:
            log.info("telemetry: reading the cluster records works again")
            self._view_error = ""
        if result.started < self.box.get().woke_at:
            return  # read before a freeze was noticed: stale
        self.box.update(view=result)
        self.metrics.saw_failover(result.view.failover_last, first_read=self.views_read == 0)
        self.views_read += 1

    # -- the endpoints (HTTP threads) --------------------------------------------------------
    def answer_primary(self) -> rules.Answer:
        f, t = self.box.get(), now()
        early = rules.primary_before_query(f, t, self.node)
        if early is not None and (rules.gate(f, t) is not None or not self._writable_now()
                                  or not self._read_view_now()):
            return early
        # The view names this node the ready holder (or a read just now does): ask mysqld, then
        # decide on fresh facts and a fresh clock (a freeze in between is caught by the gate).
        local = self.local_primary.local(with_replica=False)
        return rules.primary(self.box.get(), now(), self.node, local)

    def _writable_now(self) -> bool:
        local = self.local_primary.local(with_replica=False)
        return local is not None and not local.read_only

    def _read_view_now(self) -> bool:
        """Read the cluster records from this thread, at most every DIRECT_READ_GAP s; True if read.

        Only asked when the supervisor's view says "not the primary" but mysqld is writable:
        what a node looks like right after its promotion, before the loop's next read.  This
        saves the new primary up to one REFRESH before a load balancer sees it.
        """
        if self.connect is None or not self.kv_root:
            return False
        from triton_mysql.view import read_view
        from triton_mysql.keys import ClusterKeys
        if not self._client_lock.acquire(timeout=0.5):
            return False
        try:
            if now() - self._last_direct_read < DIRECT_READ_GAP:
                return False
            self._last_direct_read = now()
            started = now()
            try:
                if self._client is None:
                    self._client = self.connect()
                view = read_view(self._client, ClusterKeys(self.kv_root))
            except Exception as exc:  # noqa: BLE001 - discovery down: keep the supervisor's view
                log.debug("telemetry: direct read of the cluster records failed: %s", exc)
                return False
            self.box.offer_view(ViewRead(started=started, view=view))
            return True
        finally:
            self._client_lock.release()

    def answer_replica(self, max_lag: float | None = None) -> rules.Answer:
        lag = self.max_lag if max_lag is None else max_lag
        early = rules.gate(self.box.get(), now())
        if early is not None:
            return rules.Answer(503, early)
        local = self.local_replica.local(with_replica=True)
        return rules.replica(self.box.get(), now(), self.node, local, lag)

    def _answer(self, answer: rules.Answer, what: str) -> tuple[int, str, bytes]:
        body = {"node": self.node, "service": self.service, what: answer.ok, "reason": answer.reason}
        return answer.code, JSON, (json.dumps(body) + "\n").encode()

    def _primary(self, _query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        return self._answer(self.answer_primary(), "primary")

    def _replica(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        lag = None
        if "lag" in query:
            lag = _float(query["lag"][-1], -1.0)
            if lag < 0:
                return 400, JSON, b'{"error": "lag must be a number of seconds"}\n'
        return self._answer(self.answer_replica(lag), "replica")

    def _health(self, _query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        return self._answer(rules.health(self.box.get(), now()), "healthy")

    def _status(self, _query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        return 200, JSON, (json.dumps(self.status(), indent=2, sort_keys=True, default=str) + "\n").encode()

    def _metrics(self, _query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST
        return 200, CONTENT_TYPE_LATEST, self.metrics.exposition()

    def status(self) -> dict[str, Any]:
        """This node's member record and role, the lock, and why each endpoint answers as it does."""
        f, t = self.box.get(), now()
        view = f.view.view if f.view is not None else None
        member = view.members.get(self.node) if view is not None else None
        lock = view.lock if view is not None else None
        last = f.last_health
        answers = {"primary": self.answer_primary(), "replica": self.answer_replica(), "health": rules.health(f, t)}
        return {
            "node": self.node,
            "service": self.service,
            "role": member.role if member is not None else ("down" if view is not None else None),
            "member": (dict(view.nodes.get(self.node) or {}) or None) if member is not None else None,
            "lock": None if lock is None else {"node": lock.node, "address": lock.address, "port": lock.port,
                                               "state": lock.state, "since": lock.since},
            "holds_lock": lock is not None and lock.node == self.node,
            "endpoints": {name: {"code": a.code, "reason": a.reason} for name, a in answers.items()},
            "supervisor": {
                "maintenance": f.maintenance,
                "stopping": f.stopping,
                "last_health_pass": None if last is None else {
                    "exit_code": last.code, "duration_seconds": round(last.duration, 3),
                    "ended_seconds_ago": round(t - last.ended, 1), "since_wake_up": last.started >= f.woke_at},
                "cluster_records_age_seconds": None if f.view is None else round(t - f.view.started, 2),
                "app_restarts": self.app_restarts,
            },
        }

    def _scrape(self) -> dict[str, Any]:
        f, t = self.box.get(), now()
        offset = time.time() - t
        view = f.view.view if f.view is not None else None
        return {
            "facts": f,
            "wall_of": lambda moment: moment + offset,
            "server": self.local.state(),
            "view": view,
            "view_age": None if f.view is None else round(t - f.view.started, 3),
            "primary_ok": self.answer_primary().ok,
            "replica_ok": self.answer_replica().ok,
            "app_started_wall": self.app_started_wall,
            "app_restarts": self.app_restarts,
            "snapshot_task_code": self.snapshot_task_code,
        }


def hook_label(kind: str) -> str | None:
    """The `hook` label of a child kind ("health mysql" -> health, "task snapshot" -> snapshot); None: not a hook."""
    if kind.startswith("task "):
        return kind[len("task "):].split()[0]
    first = kind.split()[0] if kind else ""
    if first in ("health", "onChange", "onStart", "preStop", "postStop"):
        return first
    return None


def _float(text: Any, default: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return default
    return value if value == value and value not in (float("inf"), float("-inf")) else default


def _secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """Values no answer may contain: the secret variables of config.VARIABLES and any *PASSWORD/SECRET/TOKEN."""
    from triton_mysql.config import VARIABLES
    names = {v.name for v in VARIABLES if v.secret} | {n for n in env if _SECRET_NAME.search(n)}
    return tuple(sorted({env[n] for n in names if env.get(n)}, key=len, reverse=True))


def _count_start(state_path: str | None) -> int:
    """Record one more start of the app in `state_path`; the number of starts before this one."""
    if not state_path:
        return 0
    path = Path(state_path)
    try:
        starts = int(json.loads(path.read_text()).get("app_starts", 0))
    except (OSError, ValueError, AttributeError):
        starts = 0
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"app_starts": starts + 1}) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("telemetry: cannot record the app start in %s: %s", path, exc)
    return starts
