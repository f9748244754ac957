"""Tasks (periodic commands) and coprocesses (long-running companions of the app).

A task runs every `frequency` (the first run one `frequency` after the app
starts), never twice at once; after `timeout` its process group gets SIGTERM
and, 5 s later, SIGKILL.  Tasks keep running in maintenance mode: only
health checks and backends pause.

A coprocess starts with the app and is restarted after it exits according to
`restarts` ("never", a number, "unlimited"), one second later so that a
command that fails at once cannot spin the supervisor.
"""
from __future__ import annotations

import logging

from .config import CoprocessConfig, TaskConfig
from .context import Context, Periodic
from .process import KILL_GRACE, Child, describe_exit, now

log = logging.getLogger("containerbuddy")

RESTART_DELAY = 1.0


class TaskRunner(Periodic):
    def __init__(self, config: TaskConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.next_due: float = now() + config.frequency
        self.child: Child | None = None
        self.removed = False

    @property
    def key(self) -> str:
        return f"task {self.config.name}"

    def active(self) -> bool:
        return not (self.removed or self.ctx.stopping)

    def tick(self, t: float) -> None:
        if not self.take_turn(t, self.config.frequency):
            return
        if self.child is not None and self.child.running:
            log.info("%s: previous run (pid %d) still running; skipping this one", self.key, self.child.pid)
            return
        self.child = self.ctx.table.spawn(self.key, self.config.command.argv, on_exit=self._done,
                                          timeout=self.config.timeout, grace=KILL_GRACE)

    def _done(self, child: Child, code: int) -> None:
        if child is self.child:
            self.child = None
        level = logging.DEBUG if code == 0 else logging.WARNING
        log.log(level, "%s: finished (%s) after %.1f s", self.key, describe_exit(code), now() - child.started)


class CoprocessRunner:
    def __init__(self, config: CoprocessConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.child: Child | None = None
        self.restarts = 0
        self.restart_at: float | None = None
        self.removed = False

    @property
    def key(self) -> str:
        return f"coprocess {self.config.name}"

    def start(self) -> None:
        self.restart_at = None
        self.child = self.ctx.table.spawn(self.key, self.config.command.argv, on_exit=self._exited)
        if self.child is None:
            self._schedule_restart(127)

    def active(self) -> bool:
        return not (self.removed or self.ctx.stopping)

    def due(self) -> float | None:
        return self.restart_at if self.active() else None

    def tick(self, t: float) -> None:
        if self.restart_at is not None and t >= self.restart_at and self.active():
            self.restarts += 1
            log.info("%s: restarting (restart %d%s)", self.key, self.restarts,
                     "" if self.config.restarts is None else f" of {self.config.restarts}")
            self.start()

    def _exited(self, child: Child, code: int) -> None:
        if child is self.child:
            self.child = None
        if not self.active():
            log.debug("%s: exited (%s)", self.key, describe_exit(code))
            return
        self._schedule_restart(code)

    def _schedule_restart(self, code: int) -> None:
        limit = self.config.restarts
        if limit is None or self.restarts < limit:
            log.warning("%s: exited (%s); restarting in %g s", self.key, describe_exit(code), RESTART_DELAY)
            self.restart_at = now() + RESTART_DELAY
        else:
            log.warning("%s: exited (%s); not restarted (restarts: %s, done: %d)", self.key, describe_exit(code),
                        "never" if limit == 0 else limit, self.restarts)

    def stop(self, why: str) -> None:
        self.removed = True
        self.restart_at = None
        if self.child is not None and self.child.running:
            self.ctx.table.terminate(self.child, why=why)
