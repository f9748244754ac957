"""Services: run the health check every `poll`, heartbeat on success.

An instance is advertised only while its health check passes: a pass sends a
heartbeat (registering first when needed), a failure sends nothing, so the
instance leaves the healthy list `ttl` seconds after its last pass.  The
health check is killed (its whole process group) after `timeout`.

Maintenance (SIGUSR1): the instance is deregistered and no heartbeat is sent,
but the health check keeps running with CONTAINERBUDDY_MAINTENANCE=1 in its
environment: the hook then hands over and fences instead of serving (a
primary that simply stopped checking would stay writable after its lock
lapsed).

Frozen containers: when the loop wakes more than one `poll` late, whatever
the service knew before the pause is stale.  The supervisor then discards the
result of a check that was in flight, runs a fresh check at once, and sends
no heartbeat until that fresh check has passed (`frozen()`; a heartbeat
queued before the pause is dropped by the worker thread itself).

The config's `services` section is parsed here too (`parse_service`), beside
the runner that uses it; config.py assembles the sections.
"""
from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import Any, Mapping

from triton_mysql.discovery import Discovery, ServiceSpec

from ..hook_env import MAINTENANCE_ENV
from . import netif, schema
from .context import Context, Periodic
from .process import Child, describe_exit, now
from .schema import Command, ConfigError

log = logging.getLogger("containerbuddy")


# --------------------------------------------------------------------------
# The `services` section of the config

@dataclass(frozen=True)
class ServiceConfig:
    """One entry of `services`: what to check, how often, and what to advertise while it passes."""

    name: str
    port: int
    health: Command
    poll: float
    ttl: float
    timeout: float
    address: str
    node: str
    interfaces: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name}-{self.node}"

    def spec(self) -> ServiceSpec:
        return ServiceSpec(id=self.id, name=self.name, address=self.address, port=self.port,
                           ttl=self.ttl, tags=self.tags)


SERVICE_KEYS = {"name", "port", "health", "poll", "ttl", "timeout", "interfaces", "tags"}
SERVICE_IGNORED = {"consul"}
"""ContainerPilot's per-service Consul extras: accepted with a warning."""


def parse_service(obj: Any, path: str, node: str, env: Mapping[str, str], warnings: list[str]) -> ServiceConfig:
    """One entry of `services` (at `path`), for this `node`.

    The address to advertise is resolved here, at load time: ADVERTISE_ADDRESS,
    else the first address matching `interfaces`, so that a config that names
    no usable address is exit 2 at start (or a refused SIGHUP), not a service
    that registers nowhere.
    """
    schema.check_keys(obj, path, SERVICE_KEYS, SERVICE_IGNORED, warnings)
    name = schema.name(schema.required(obj, "name", path), f"{path}.name")
    poll = schema.duration(schema.required(obj, "poll", path), f"{path}.poll")
    ttl = schema.duration(schema.required(obj, "ttl", path), f"{path}.ttl")
    timeout = schema.optional_duration(obj, "timeout", path, poll)
    interfaces = schema.strings(obj.get("interfaces"), f"{path}.interfaces")
    for spec in interfaces:
        problem = netif.check_interface_spec(spec)
        if problem:
            raise ConfigError(f"{path}.interfaces", problem)
    address = env.get("ADVERTISE_ADDRESS") or netif.pick_address(interfaces)
    if not address:
        what = f"no IPv4 address matches {list(interfaces)}" if interfaces else "no non-loopback IPv4 address found"
        raise ConfigError(f"{path}.interfaces", f"{what} (set ADVERTISE_ADDRESS)")
    return ServiceConfig(
        name=name, port=schema.port(schema.required(obj, "port", path), f"{path}.port"),
        health=schema.command(obj.get("health"), f"{path}.health", required=True),  # type: ignore[arg-type]
        poll=poll, ttl=ttl, timeout=timeout, address=address, node=node,
        interfaces=interfaces, tags=schema.strings(obj.get("tags"), f"{path}.tags"),
    )


# --------------------------------------------------------------------------
# The runner

LOOP_SLACK = 1.0
"""Seconds the loop may be later than a poll before a queued heartbeat counts as stale."""


class ServiceRunner(Periodic):
    """One configured service: its schedule, its running check, its registration."""

    def __init__(self, config: ServiceConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.next_due: float = now()
        self.check: Child | None = None
        self.registered = False
        self.healthy = False
        self.removed = False
        self.epoch = 0
        """Bumped when the loop finds it was frozen: heartbeats queued before are stale."""

    @property
    def key(self) -> str:
        return f"service {self.config.name}"

    # -- schedule -----------------------------------------------------------
    def active(self) -> bool:
        """Checks run (also in maintenance, see the module docstring)."""
        return not (self.removed or self.ctx.stopping)

    def serving(self) -> bool:
        """Results count and heartbeats are sent: active and not in maintenance."""
        return self.active() and not self.ctx.maintenance

    def late(self, t: float) -> float:
        """How far past one whole poll the loop woke for this service (> 0: frozen)."""
        return t - self.next_due - self.config.poll

    def frozen(self, t: float) -> None:
        """The loop woke more than one poll late: check at once, trust nothing from before."""
        log.warning("%s: woke %.1f s late (container frozen or suspended?): running the health check at once, "
                    "no heartbeat before it passes", self.key, t - self.next_due)
        self.epoch += 1
        if self.check is not None and self.check.running:
            self.check.ignore_result = True
            self.check.signal(signal.SIGKILL)
            self.check = None
        self.registered = False
        self.next_due = t

    def tick(self, t: float) -> None:
        """Start the health check when it is due (and the previous one has finished)."""
        if not self.take_turn(t, self.config.poll):
            return
        if self.check is not None and self.check.running:
            log.debug("%s: health check still running (pid %d); not starting another", self.key, self.check.pid)
            return
        self.start_check()

    def start_check(self) -> None:
        self.check = self.ctx.table.spawn(
            f"health {self.config.name}", self.config.health.argv,
            on_exit=self._check_done, timeout=self.config.timeout,
            add_env={MAINTENANCE_ENV: "1"} if self.ctx.maintenance else None,
        )
        if self.check is None:
            self._failed(127)

    def follow(self, check: Child) -> None:
        """A renamed service: the old name's check is still running; check again the moment it ends.

        Its result is not used (it judged the node under the old name), and the
        new check does not run beside it (one run of a hook at a time).
        """
        check.ignore_result = True
        check.kind = f"health {self.config.name} (before rename)"
        check.on_exit = self._followed_done
        self.check = check
        self.next_due = now() + self.config.poll

    def _followed_done(self, child: Child, code: int) -> None:
        if child is self.check:
            self.check = None
        log.debug("%s: health check started before the rename ended (%s)", self.key, describe_exit(code))
        if self.active():
            self.next_due = now() + self.config.poll
            self.start_check()

    # -- results ------------------------------------------------------------
    def _check_done(self, child: Child, code: int) -> None:
        if child is self.check:
            self.check = None
        if child.ignore_result or not self.serving():
            log.debug("%s: ignoring the result of a %s health check (%s)", self.key,
                      "maintenance" if self.ctx.maintenance and not child.ignore_result else "stale",
                      describe_exit(code))
            return
        if code == 0:
            if not self.healthy:
                log.info("%s: health check passed: sending heartbeats (id %s, %s:%d, ttl %g s)", self.key,
                         self.config.id, self.config.address, self.config.port, self.config.ttl)
            self.healthy = True
            self.heartbeat()
        else:
            self._failed(code)

    def _failed(self, code: int) -> None:
        if self.healthy:
            log.warning("%s: health check failed (%s): no more heartbeats; it leaves discovery within %g s",
                        self.key, describe_exit(code), self.config.ttl)
        else:
            log.debug("%s: health check failed (%s)", self.key, describe_exit(code))
        self.healthy = False

    def heartbeat(self) -> None:
        spec = self.config.spec()
        register = not self.registered
        epoch = self.epoch
        overdue = self.config.poll + LOOP_SLACK

        def job(client: Discovery) -> str:
            # Runs on the worker thread, which wakes from a freeze together with
            # the loop: drop the heartbeat if the loop has since seen the freeze
            # (epoch) or has not run for longer than it ever sleeps (it is
            # about to see it).  The loop bumps the epoch before it records
            # its wake-up time, so one of the two always catches it.
            if self.epoch != epoch or now() - self.ctx.loop_time > overdue:
                return "stale"
            if register:
                client.register_service(spec)
            client.heartbeat(spec)
            return "registered" if register else "sent"

        def done(result: str | None, error: BaseException | None) -> None:
            what = f"{self.key}: heartbeat"
            if error is not None:
                self.registered = False
                self.ctx.errors.failed(what, error)
                return
            self.ctx.errors.succeeded(what)
            if result == "registered" and not self.removed:
                self.registered = True
                log.info("%s: registered %s", self.key, spec.id)
            elif result == "stale":
                log.debug("%s: dropped a stale heartbeat", self.key)

        if self.ctx.worker is not None:
            self.ctx.worker.submit(f"heartbeat {spec.id}", job, done)

    def deregister(self, why: str):
        """Queue the removal of this instance from discovery; returns the job (or None)."""
        self.registered = False
        self.healthy = False
        if self.ctx.worker is None:
            return None
        spec = self.config.spec()
        log.info("%s: deregistering %s (%s)", self.key, spec.id, why)

        def done(_result: object, error: BaseException | None) -> None:
            if error is not None:
                self.ctx.errors.failed(f"{self.key}: deregister", error, then=f"it expires {self.config.ttl:g} s "
                                       "after its last heartbeat")

        return self.ctx.worker.submit(f"deregister {spec.id}", lambda client: client.deregister_service(spec), done)
