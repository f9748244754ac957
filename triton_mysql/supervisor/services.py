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
"""
from __future__ import annotations

import logging
import signal

from triton_mysql.discovery import Discovery

from ..hook_env import MAINTENANCE_ENV
from .config import ServiceConfig
from .context import Context, Periodic
from .process import Child, describe_exit, now

log = logging.getLogger("containerbuddy")

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
