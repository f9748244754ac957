"""Backends: watch a service's healthy instances and run `onChange` when they change.

Every `poll` seconds the healthy instances are read; the sorted list of
`address:port` is compared with the previous read (the first read always
counts as a change).  One `onChange` runs at a time: a change seen while it
is still running is remembered, and `onChange` runs once more when the
current run ends, so the hook always gets to see the latest state.

The config's `backends` section is parsed here too (`parse_backend`), beside
the runner that uses it; config.py assembles the sections.
"""
from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import Any

from triton_mysql.discovery import Discovery

from . import schema
from .context import Context, Periodic
from .process import Child, describe_exit, now
from .schema import Command, ConfigError

log = logging.getLogger("containerbuddy")


# --------------------------------------------------------------------------
# The `backends` section of the config

@dataclass(frozen=True)
class BackendConfig:
    """One entry of `backends`: which service to watch, how often, and what to run when it changes."""

    name: str
    poll: float
    on_change: Command
    timeout: float | None = None
    tag: str | None = None


BACKEND_KEYS = {"name", "poll", "onChange", "timeout", "tag"}


def parse_backend(obj: Any, path: str, warnings: list[str]) -> BackendConfig:
    """One entry of `backends` (at `path`); without `timeout`, onChange runs as long as it takes."""
    schema.check_keys(obj, path, BACKEND_KEYS, set(), warnings)
    tag = obj.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise ConfigError(f"{path}.tag", "must be a string")
    return BackendConfig(
        name=schema.name(schema.required(obj, "name", path), f"{path}.name"),
        poll=schema.duration(schema.required(obj, "poll", path), f"{path}.poll"),
        on_change=schema.command(obj.get("onChange"), f"{path}.onChange", required=True),  # type: ignore[arg-type]
        timeout=schema.optional_duration(obj, "timeout", path, None),
        tag=tag or None,
    )


# --------------------------------------------------------------------------
# The runner


class BackendRunner(Periodic):
    def __init__(self, config: BackendConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.next_due: float = now()
        self.last: tuple[str, ...] | None = None
        self.hook: Child | None = None
        self.pending = False
        self.removed = False
        self.runs = 0

    @property
    def key(self) -> str:
        return f"backend {self.config.name}"

    def active(self) -> bool:
        return not (self.removed or self.ctx.stopping or self.ctx.maintenance)

    def tick(self, t: float) -> None:
        if not self.take_turn(t, self.config.poll):
            return
        if self.ctx.worker is None:
            return
        name, tag = self.config.name, self.config.tag

        def read(client: Discovery) -> tuple[str, ...]:
            instances = client.healthy(name)
            return tuple(sorted(i.address_port for i in instances if tag is None or tag in i.tags))

        self.ctx.worker.submit(f"healthy {name}", read, self._read_done)

    def _read_done(self, addresses: tuple[str, ...] | None, error: BaseException | None) -> None:
        what = f"{self.key}: reading healthy instances"
        if error is not None:
            self.ctx.errors.failed(what, error)
            return
        self.ctx.errors.succeeded(what)
        if not self.active() or addresses is None:
            return
        if addresses == self.last:
            return
        before = "first read" if self.last is None else ", ".join(self.last) or "none"
        log.info("%s: healthy instances changed (%s -> %s): running onChange", self.key, before,
                 ", ".join(addresses) or "none")
        self.last = addresses
        self.run_on_change()

    def run_on_change(self) -> None:
        if self.hook is not None and self.hook.running:
            if not self.pending:
                log.info("%s: onChange still running (pid %d); it runs once more when it ends",
                         self.key, self.hook.pid)
            self.pending = True
            return
        self.pending = False
        self.runs += 1
        self.hook = self.ctx.table.spawn(f"onChange {self.config.name}", self.config.on_change.argv,
                                         on_exit=self._hook_done, timeout=self.config.timeout)

    def _hook_done(self, child: Child, code: int) -> None:
        if child is self.hook:
            self.hook = None
        level = logging.INFO if code == 0 else logging.WARNING
        log.log(level, "%s: onChange finished (%s) after %.1f s", self.key, describe_exit(code), now() - child.started)
        if self.pending and self.active():
            self.run_on_change()

    def pause(self) -> None:
        """Entering maintenance: an onChange in progress is stopped (it must not take the lock
        now); it runs again when maintenance ends."""
        if self.hook is not None and self.hook.running:
            log.info("%s: stopping onChange (pid %d) for maintenance", self.key, self.hook.pid)
            self.hook.signal(signal.SIGTERM)
            self.pending = True

    def resume(self) -> None:
        """After maintenance: poll at once, and run a change remembered while paused."""
        self.next_due = now()
        if self.pending and (self.hook is None or not self.hook.running):
            self.run_on_change()
