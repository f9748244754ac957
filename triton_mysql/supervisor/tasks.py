"""Tasks (periodic commands) and coprocesses (long-running companions of the app).

A task runs every `frequency` (the first run one `frequency` after the app
starts), never twice at once; after `timeout` its process group gets SIGTERM
and, 5 s later, SIGKILL.  Tasks keep running in maintenance mode: only
health checks and backends pause.

A coprocess starts with the app and is restarted after it exits according to
`restarts` ("never", a number, "unlimited"), one second later so that a
command that fails at once cannot spin the supervisor.

The config's `tasks` and `coprocesses` sections are parsed here too
(`parse_task`, `parse_coprocess`), beside the runners that use them;
config.py assembles the sections.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from . import schema
from .context import Context, Periodic
from .process import KILL_GRACE, Child, describe_exit, now
from .schema import Command, ConfigError

log = logging.getLogger("containerbuddy")


# --------------------------------------------------------------------------
# The `tasks` and `coprocesses` sections of the config

@dataclass(frozen=True)
class TaskConfig:
    """One entry of `tasks`: a command run every `frequency`, stopped after `timeout`."""

    name: str
    command: Command
    frequency: float
    timeout: float


@dataclass(frozen=True)
class CoprocessConfig:
    """One entry of `coprocesses`: a command kept running beside the app."""

    name: str
    command: Command
    restarts: int | None
    """How many times it is restarted after exiting; None means without limit."""


TASK_KEYS = {"name", "command", "frequency", "timeout"}
COPROCESS_KEYS = {"name", "command", "restarts"}


def parse_task(obj: Any, path: str, warnings: list[str]) -> TaskConfig:
    """One entry of `tasks` (at `path`); without `name`, the command's base name names it (logs, reloads)."""
    schema.check_keys(obj, path, TASK_KEYS, set(), warnings)
    cmd = schema.command(obj.get("command"), f"{path}.command", required=True)
    assert cmd is not None
    frequency = schema.duration(schema.required(obj, "frequency", path), f"{path}.frequency")
    timeout = schema.optional_duration(obj, "timeout", path, frequency)
    name = obj.get("name") or os.path.basename(cmd.argv[0])
    return TaskConfig(name=schema.name(name, f"{path}.name"), command=cmd, frequency=frequency, timeout=timeout)


def parse_coprocess(obj: Any, path: str, warnings: list[str]) -> CoprocessConfig:
    """One entry of `coprocesses` (at `path`); without `name`, the command's base name names it, as a task's."""
    schema.check_keys(obj, path, COPROCESS_KEYS, set(), warnings)
    cmd = schema.command(obj.get("command"), f"{path}.command", required=True)
    assert cmd is not None
    name = obj.get("name") or os.path.basename(cmd.argv[0])
    return CoprocessConfig(name=schema.name(name, f"{path}.name"), command=cmd,
                           restarts=_restarts(obj.get("restarts"), f"{path}.restarts"))


def _restarts(value: Any, where: str) -> int | None:
    """ContainerPilot's `restarts`: "never" (the default), "unlimited" (None) or a count."""
    if value is None or value == "never":
        return 0
    if value == "unlimited":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(where, f"must be \"unlimited\", \"never\" or a number of restarts (got {value!r})")


# --------------------------------------------------------------------------
# The runners

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
