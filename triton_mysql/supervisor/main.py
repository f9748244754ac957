"""`containerbuddy [-config CFG] CMD ARGS…`: the supervisor's command line and main loop.

Life of the process (SPEC §4):

1. parse the config (any mistake: one line, exit 2);
2. run `onStart`; a non-zero exit ends the supervisor with that code;
3. start the app, the coprocesses, and the polling (services, backends, tasks);
4. loop: sleep until the next due time, a signal or a discovery answer;
   reap every exited process; run whatever is due;
5. on SIGTERM/SIGINT or when the app exits: stop polling, deregister, run
   `preStop` (signal only), stop the app (SIGTERM, SIGKILL after
   `stopTimeout`), terminate what is left, run `postStop`, exit with the
   app's code (128+N when killed by signal N).

SIGHUP re-reads the config and applies the difference (`reload.py`: a renamed
service is deregistered under its old name and checked at once under its new one);
SIGUSR1 toggles maintenance.  The loop is single-threaded apart from the
discovery worker (`worker.py`) and, with a `telemetry` section, the HTTP
server's threads (`telemetry/`: told of hook exits, late wake-ups,
maintenance and stop through `Telemetry`'s few methods), and sleeps in
`select()` when idle.
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import sys
from dataclasses import dataclass, field

from triton_mysql import log as logsetup
from triton_mysql.config import secret_values
from triton_mysql.hook_env import CONFIG_ENV, PID_ENV

from . import config as cfgmod
from .backends import BackendRunner
from .config import ConfigError, SupervisorConfig
from .context import Context
from .environment import app_environment
from .reload import apply as apply_reload
from .process import (KILL_GRACE, FORWARDED_SIGNALS, Child, ProcessTable, SignalInbox, become_subreaper,
                      descendants_of, describe_exit, now, stray_processes)
from .services import LOOP_SLACK, ServiceRunner
from .tasks import CoprocessRunner, TaskRunner
from .worker import DiscoveryWorker, ErrorLog, Job, discovery_timeout

log = logging.getLogger("containerbuddy")

USAGE = "usage: containerbuddy [-config CFG] [-template] CMD [ARGS...]"
VERSION = "containerbuddy (triton-mysql) 1.0"
POLLING_HOOKS = ("health ", "onChange ", "task ")


class UsageError(Exception):
    pass


@dataclass
class Args:
    config: str | None = None
    template: bool = False
    version: bool = False
    command: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Args:
    """Go-style flags (`-config X`, `--config=X`) up to the first non-flag word or `--`."""
    args = Args()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name, eq, value = word.lstrip("-").partition("=")
        if name == "config":
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError("-config needs a value")
                value = argv[i]
            args.config = value
        elif name in ("template", "version", "help", "h"):
            if name in ("help", "h"):
                raise UsageError("help")
            setattr(args, name, True)
        else:
            raise UsageError(f"{word}: unknown flag")
        i += 1
    args.command = argv[i:]
    return args


class Supervisor:
    """The running supervisor: its config, its children and its polling state."""

    def __init__(self, config: SupervisorConfig, command: list[str]) -> None:
        self.config = config
        self.command = command
        env = dict(os.environ)
        env[PID_ENV] = str(os.getpid())
        if config.source:
            env[CONFIG_ENV] = config.source
        self.table = ProcessTable(env)
        self.errors = ErrorLog()
        self.ctx = Context(self.table, self.errors)
        """What the runners read (stopping, maintenance, the worker, the loop's time): they get only this."""
        self.services: list[ServiceRunner] = []
        self.backends: list[BackendRunner] = []
        self.tasks: list[TaskRunner] = []
        self.coprocesses: list[CoprocessRunner] = []
        self.app: Child | None = None
        self.app_code: int | None = None
        self.term_signal: int | None = None
        self.reload_requested = False
        self.maintenance_toggles = 0
        self.selector = selectors.DefaultSelector()
        self.inbox: SignalInbox | None = None
        self.telemetry = None
        """The HTTP endpoints and metrics (`telemetry.runtime.Telemetry`), when configured."""

    # -- start --------------------------------------------------------------
    def run(self) -> int:
        become_subreaper()
        self.inbox = SignalInbox()
        self.selector.register(self.inbox.fd, selectors.EVENT_READ)
        for warning in self.config.warnings:
            log.warning("config: %s", warning)
        log.info("containerbuddy starting (pid %d, config %s, discovery %s)", os.getpid(),
                 self.config.path or ("literal JSON" if self.config.source else "none"),
                 self.config.discovery.describe() if self.config.discovery else "none")
        if not self.start_telemetry():
            return 2
        if self.config.on_start is not None:
            code = self.run_on_start()
            if code != 0:
                return code
        app_env = app_environment(os.environ)
        app = self.table.spawn("app", self.command, on_exit=self._app_exited, group=False, stdin_devnull=False,
                               env=app_env)
        if app is None:
            return self.table.spawn_error
        self.app = app
        log.info("app started: pid %d: %s (environment: %d of %d variables, see supervisor/environment.py)",
                 app.pid, " ".join(self.command), len(app_env), len(os.environ))
        if self.telemetry is not None:
            self.telemetry.app_started()
        self.start_polling()
        reason = self.loop()
        return self.shutdown(reason)

    def run_on_start(self) -> int:
        """Run onStart to completion; SIGTERM/SIGINT meanwhile stops it (and the app never starts)."""
        assert self.config.on_start is not None
        log.info("running onStart: %s", self.config.on_start)
        child = self.table.spawn("onStart", self.config.on_start.argv)
        if child is None:
            return self.table.spawn_error
        stopped = False
        while child.running:
            if self.term_signal is not None and not stopped:
                stopped = True
                self.table.terminate(child, grace=self.config.stop_timeout, why="supervisor is stopping")
            self.pump(None)
        code = child.code or 0
        if self.term_signal is not None:
            log.info("onStart ended (%s) after %s; not starting the app", describe_exit(code),
                     signal.Signals(self.term_signal).name)
            return 128 + self.term_signal
        if code != 0:
            log.error("onStart failed (%s): not starting the app; exiting with its code", describe_exit(code))
        else:
            log.info("onStart finished after %.1f s", now() - child.started)
        return code

    def start_polling(self) -> None:
        if self.config.discovery is not None:
            self.set_worker(DiscoveryWorker(self.config.discovery, discovery_timeout(os.environ)))
        self.services = [ServiceRunner(c, self.ctx) for c in self.config.services]
        self.backends = [BackendRunner(c, self.ctx) for c in self.config.backends]
        self.tasks = [TaskRunner(c, self.ctx) for c in self.config.tasks]
        self.coprocesses = [CoprocessRunner(c, self.ctx) for c in self.config.coprocesses]
        for coprocess in self.coprocesses:
            coprocess.start()

    def start_telemetry(self) -> bool:
        """Serve the HTTP endpoints when the config asks; False (exit 2) when the port cannot be bound.

        A node that cannot answer its load balancer's checks would never get
        writes when it is the primary: better to fail at once, loudly.
        """
        tconf = self.config.telemetry
        if tconf is None:
            return True
        from .telemetry.runtime import Telemetry
        telemetry = Telemetry(tconf, node=self.config.node, env=os.environ, kv_root=self.kv_root(),
                              submit=self.submit_discovery, state_path=self.state_path(),
                              health_max_age=self.health_max_age(), connect=self.discovery_client_factory())
        try:
            telemetry.start()
        except OSError as exc:
            log.error("telemetry: cannot listen on %s:%d: %s (set HTTP_PORT/HTTP_BIND_ADDRESS, or port 0 to turn "
                      "the endpoints off)", tconf.address, tconf.port, exc.strerror or exc)
            return False
        self.telemetry = telemetry
        self.table.observer = lambda child, ended: telemetry.child_exited(
            child.kind, child.started, ended, child.code if child.code is not None else 0, child.ignore_result)
        self.errors.on_failure = lambda what: telemetry.discovery_error(what.rsplit(": ", 1)[-1])
        return True

    def kv_root(self) -> str | None:
        """Where the cluster records live (SPEC §5), for the discovery this supervisor talks to."""
        if self.config.discovery is None:
            return None
        from triton_mysql.config import Config
        d = self.config.discovery
        return Config(consul=d.consul, etcd=d.etcd, etcd_prefix=d.etcd_prefix,
                      service_name=os.environ.get("SERVICE_NAME") or "mysql").kv_prefix

    def discovery_client_factory(self):
        """How the HTTP threads build a discovery client of their own (None without discovery)."""
        d = self.config.discovery
        if d is None:
            return None
        timeout = discovery_timeout(os.environ)

        def connect():
            from triton_mysql.discovery import connect_endpoints
            return connect_endpoints(consul=d.consul, etcd=list(d.etcd) if d.etcd else None,
                                     etcd_prefix=d.etcd_prefix, timeout=timeout)
        return connect

    def state_path(self) -> str | None:
        """A small file beside this node's own config copy (app start count); None for literal JSON."""
        return os.path.join(os.path.dirname(os.path.abspath(self.config.path)), ".containerbuddy-state.json") \
            if self.config.path else None

    def health_max_age(self) -> float:
        """How old a health result may be and still count as current (a poll, a timeout, slack)."""
        return max((s.poll + s.timeout for s in self.config.services), default=30.0) + 2 * LOOP_SLACK

    def submit_discovery(self, key: str, fn, done) -> Job | None:
        return self.ctx.worker.submit(key, fn, done) if self.ctx.worker is not None else None

    def set_worker(self, worker: DiscoveryWorker | None) -> None:
        if self.ctx.worker is not None:
            self.selector.unregister(self.ctx.worker.fd)
            self.ctx.worker.stop()
        self.ctx.worker = worker
        if worker is not None:
            self.selector.register(worker.fd, selectors.EVENT_READ)

    # -- the loop -------------------------------------------------------------
    def loop(self) -> str:
        """Run until the app exits ("app") or a stop signal arrives ("signal")."""
        self.pump(0)
        while True:
            if self.app_code is not None:
                return "app"
            if self.term_signal is not None:
                return "signal"
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            while self.maintenance_toggles:
                self.maintenance_toggles -= 1
                self.toggle_maintenance()
            t = now()
            for runner in self.runners():
                runner.tick(t)
            wake = self.next_wake()
            self.pump(None if wake is None else max(0.0, wake - now()))

    def runners(self) -> list:
        extra = [self.telemetry] if self.telemetry is not None and not self.ctx.stopping else []
        return [*self.services, *self.backends, *self.tasks, *self.coprocesses, *extra]

    def next_wake(self) -> float | None:
        times = [t for r in self.runners() if (t := r.due()) is not None]
        return min(times) if times else None

    def pump(self, timeout: float | None) -> None:
        """Wait (≤ timeout) for a signal, a discovery answer or a deadline; then handle what happened."""
        deadline = self.table.next_deadline()
        if deadline is not None:
            left = max(0.0, deadline - now())
            timeout = left if timeout is None else min(timeout, left)
        assert self.inbox is not None
        if self.inbox.pending:
            timeout = 0
        before = now()
        if self.telemetry is not None:
            self.telemetry.loop_sleeping(None if timeout is None else before + timeout)
        self.selector.select(timeout)
        t = now()
        late = timeout is not None and t > before + timeout + LOOP_SLACK
        if not self.ctx.stopping:
            for service in self.services:
                if service.active() and service.late(t) > 0:
                    service.frozen(t)
                    late = True
        if self.telemetry is not None:
            self.telemetry.loop_woke(t, late)
        self.ctx.loop_time = t  # after the freeze check: see ServiceRunner.heartbeat
        self.inbox.drain()
        while (sig := self.inbox.pop()) is not None:
            self.on_signal(sig)
        self.table.reap()
        if self.ctx.worker is not None:
            self.ctx.worker.complete()
        self.table.enforce_deadlines(now())

    def on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if sig == signal.SIGCHLD:
            return
        if sig in FORWARDED_SIGNALS:
            if self.app is not None and self.app.running:
                log.info("%s: forwarding to the app (pid %d)", name, self.app.pid)
                self.app.signal(sig)
            return
        if self.ctx.stopping or self.term_signal is not None:
            log.info("%s: already stopping; ignored", name)
            return
        if sig in (signal.SIGTERM, signal.SIGINT):
            log.info("%s: stopping", name)
            self.term_signal = sig
            if self.telemetry is not None:
                self.telemetry.set_state(stopping=True)
        elif sig == signal.SIGHUP:
            self.reload_requested = True
        elif sig == signal.SIGUSR1:
            self.maintenance_toggles += 1

    def _app_exited(self, child: Child, code: int) -> None:
        self.app_code = code
        log.info("app (pid %d) exited: %s", child.pid, describe_exit(code))

    # -- SIGHUP ---------------------------------------------------------------
    def reload(self) -> None:
        source = self.config.source
        if not source:
            log.info("SIGHUP: no config source to re-read; nothing to do")
            return
        try:
            new = cfgmod.load(source)
        except ConfigError as exc:
            log.error("SIGHUP: config not reloaded (%s); keeping the current one", exc)
            return
        changes = apply_reload(self, new)
        self.reload_telemetry(new)
        setup_logging(new)
        for warning in new.warnings:
            log.warning("config: %s", warning)
        log.info("SIGHUP: config reloaded from %s: %s", new.path or "literal JSON",
                 "; ".join(changes) if changes else "nothing changed")

    def reload_telemetry(self, new: SupervisorConfig) -> None:
        """A SIGHUP: listen where the new config says, and re-read the cluster records now.

        (The hooks send SIGHUP when this node is promoted or demoted: /primary
        should see the new lock at once, not a poll later.)
        """
        if self.telemetry is None:
            if new.telemetry is not None:
                self.start_telemetry()
            return
        if new.telemetry is None:
            log.info("telemetry: the HTTP endpoints are turned off")
            self.telemetry.stop()
            self.telemetry = None
            self.table.observer = None
            self.errors.on_failure = None
            return
        self.telemetry.kv_root = self.kv_root()
        self.telemetry.connect = self.discovery_client_factory()
        self.telemetry.box.update(health_max_age=self.health_max_age())
        self.telemetry.reconfigure(new.telemetry)
        self.telemetry.refresh_now()

    # -- SIGUSR1 --------------------------------------------------------------
    def toggle_maintenance(self) -> None:
        self.ctx.maintenance = not self.ctx.maintenance
        if self.telemetry is not None:
            self.telemetry.set_state(maintenance=self.ctx.maintenance)
        if self.ctx.maintenance:
            log.info("SIGUSR1: entering maintenance: services deregistered, backends paused; health checks run "
                     "in maintenance mode (hand-over and fencing only)")
            for service in self.services:
                if service.check is not None and service.check.running:
                    service.check.ignore_result = True
                service.deregister("maintenance")
                service.next_due = now()  # the primary hands over at once
            for backend in self.backends:
                backend.pause()
        else:
            log.info("SIGUSR1: leaving maintenance: health checks and backends resume now")
            for service in self.services:
                service.next_due = now()
            for backend in self.backends:
                backend.resume()

    # -- stop -----------------------------------------------------------------
    def shutdown(self, reason: str) -> int:
        """Stop polling, deregister, (preStop), stop the app, clean up, postStop; the app's exit code."""
        self.ctx.stopping = True
        if self.telemetry is not None:
            self.telemetry.set_state(stopping=True)
        why = "app exited" if reason == "app" else f"{signal.Signals(self.term_signal or 15).name} received"
        log.info("stopping (%s): no more health checks, backends or tasks", why)
        for child in list(self.table.children.values()):
            if child.kind.startswith(POLLING_HOOKS):
                self.table.terminate(child, why="supervisor is stopping")
        deregistrations = self.deregister_all()
        if reason == "signal":
            if self.config.pre_stop is not None and self.app_running():
                self.run_hook("preStop", self.config.pre_stop.argv)
            self.stop_app()
        self.terminate_leftovers()
        if self.config.post_stop is not None:
            self.run_hook("postStop", self.config.post_stop.argv)
        self.table.reap()
        if self.ctx.worker is not None and not all(j is None or j.finished.is_set() for j in deregistrations):
            if not self.ctx.worker.wait(deregistrations, 1.0):
                log.warning("deregistration did not finish; the services expire with their ttl")
        self.set_worker(None)
        if self.telemetry is not None:
            self.telemetry.stop()
        code = self.app_code if self.app_code is not None else 0
        log.info("exiting with the app's exit code %d", code)
        return code

    def app_running(self) -> bool:
        return self.app is not None and self.app.running

    def deregister_all(self) -> list[Job | None]:
        """Deregister every service; wait about one request timeout, not more.

        The stop sequence must not stall on an unreachable discovery service
        (the container runtime's stop timeout is short): what is not done by
        then goes on in the background, and the services expire with their ttl.
        """
        jobs: list[Job | None] = [s.deregister("stopping") for s in self.services if not self.ctx.maintenance]
        if self.ctx.worker is not None and any(jobs):
            if not self.ctx.worker.wait(jobs, self.ctx.worker.timeout + 1):
                log.warning("deregistration not finished yet; going on (it continues in the background)")
        return jobs

    def run_hook(self, kind: str, argv: tuple[str, ...]) -> int:
        """Run a stop hook to completion (it has no timeout: the container runtime bounds it)."""
        log.info("running %s: %s", kind, " ".join(argv))
        child = self.table.spawn(kind, argv)
        if child is None:
            return self.table.spawn_error
        while child.running:
            self.pump(None)
        code = child.code if child.code is not None else 0
        log.log(logging.INFO if code == 0 else logging.WARNING, "%s finished (%s) after %.1f s", kind,
                describe_exit(code), now() - child.started)
        return code

    def stop_app(self) -> None:
        """SIGTERM the app; SIGKILL it (and its descendants) after stopTimeout."""
        if not self.app_running():
            return
        assert self.app is not None
        timeout = self.config.stop_timeout
        log.info("sending SIGTERM to the app (pid %d); SIGKILL in %g s if it is still running", self.app.pid, timeout)
        self.app.signal(signal.SIGTERM)
        self.wait_for(lambda: not self.app_running(), timeout)
        if self.app_running():
            log.warning("app (pid %d) still running %g s after SIGTERM: SIGKILL", self.app.pid, timeout)
            for pid in [self.app.pid, *descendants_of(self.app.pid)]:
                kill(pid, signal.SIGKILL)
            if not self.wait_for(lambda: not self.app_running(), 10.0):
                log.error("app (pid %d) survived SIGKILL for 10 s (uninterruptible sleep?); going on", self.app.pid)

    def terminate_leftovers(self) -> None:
        """SIGTERM everything still running that is not a stop hook; SIGKILL after a grace period."""
        for coprocess in self.coprocesses:
            coprocess.stop("supervisor is stopping")
        tracked = {pid for pid, c in self.table.children.items() if c.running}
        strays = stray_processes(tracked)
        if strays:
            log.info("terminating %d leftover process(es) of the app: %s", len(strays), " ".join(map(str, strays)))
            for pid in strays:
                kill(pid, signal.SIGTERM)
        for child in self.table.children.values():
            if child.running and child.kill_at is None:
                self.table.terminate(child, why="supervisor is stopping")
        grace = min(self.config.stop_timeout, KILL_GRACE) or 0.1

        def done() -> bool:
            return not self.table.children and not stray_processes(set())
        self.wait_for(done, grace)
        if not done():
            left = stray_processes(set())
            log.warning("SIGKILL to %d process(es) still running: %s", len(left), " ".join(map(str, left)))
            for pid in left:
                kill(pid, signal.SIGKILL)
            for child in self.table.children.values():
                child.signal(signal.SIGKILL)
            self.wait_for(lambda: not self.table.children, 2.0)

    def wait_for(self, predicate, timeout: float | None) -> bool:
        """Keep reaping and handling signals until `predicate()` or `timeout` seconds."""
        deadline = None if timeout is None else now() + timeout
        while not predicate():
            if deadline is not None and now() >= deadline:
                return False
            self.pump(None if deadline is None else min(0.2, max(0.0, deadline - now())))
        return True


def kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def setup_logging(config: SupervisorConfig | None) -> None:
    env = os.environ
    node = config.node if config else cfgmod.node_name(env)
    if config is not None and config.logging is not None:
        level, fmt, output = config.logging.level, config.logging.format, config.logging.output
    else:
        level = (env.get("LOG_LEVEL") or "INFO").upper()
        fmt = (env.get("LOG_FORMAT") or "text").lower()
        output = "stderr"
    logsetup.setup("containerbuddy", level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO",
                   fmt="json" if fmt == "json" else "text", node=node,
                   stream=sys.stdout if output == "stdout" else sys.stderr, secrets=secret_values(env))


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"containerbuddy: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: never a traceback for a user mistake."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        fail(USAGE if str(exc) == "help" else f"{exc} ({USAGE})")
        return
    if args.version:
        print(VERSION)
        return
    source = args.config if args.config is not None else os.environ.get(CONFIG_ENV, "")
    try:
        if args.template:
            raw, _path = cfgmod.read_source(source)
            sys.stdout.write(cfgmod.render_text(raw, os.environ))
            return
        config = cfgmod.load(source) if source.strip() else None
    except ConfigError as exc:
        fail(f"config error: {exc}")
        return
    if not args.command:
        fail(f"no command to run ({USAGE})")
    setup_logging(config)
    if config is None:
        log.warning("no config (-config or CONTAINERBUDDY): running the app with no services, backends or hooks")
        config = SupervisorConfig(source="", path=None, node=cfgmod.node_name(os.environ))
    code = Supervisor(config, args.command).run()
    logging.shutdown()
    sys.stdout.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
