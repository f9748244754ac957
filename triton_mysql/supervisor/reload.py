"""SIGHUP: apply a re-read config to the running supervisor.

Only the difference is applied, matched by name: a service, backend or task
that kept its name keeps its state (registration, last instance list, next
due time); a removed service is deregistered; a new one (a rename is "one
removed, one added") is health-checked at once, or the moment the old name's
check that is still running ends (one run of a hook at a time; that check's
result belongs to the old name and is not used).  New discovery endpoints
deregister everything from the old service first.  Coprocesses are matched by
name and command: unchanged ones keep running.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Protocol, TypeVar

from .backends import BackendRunner
from .config import SupervisorConfig
from .context import Context
from .process import Child, now
from .services import ServiceRunner
from .tasks import CoprocessRunner, TaskConfig, TaskRunner
from .worker import DiscoveryWorker, discovery_timeout

log = logging.getLogger("containerbuddy")


class Reloadable(Protocol):
    """What a reload changes: the config, the runners built from it, the discovery worker."""

    ctx: Context
    config: SupervisorConfig
    services: list[ServiceRunner]
    backends: list[BackendRunner]
    tasks: list[TaskRunner]
    coprocesses: list[CoprocessRunner]

    def set_worker(self, worker: DiscoveryWorker | None) -> None: ...


def apply(sup: Reloadable, new: SupervisorConfig) -> list[str]:
    """Make the running supervisor follow `new`; one short description per change."""
    old = sup.config
    sup.config = new
    if new.discovery != old.discovery or (new.discovery is not None and old.discovery is not None
                                          and new.discovery.settings != old.discovery.settings):
        switch_discovery(sup, new)
    return [*services(sup, new), *backends(sup, new), *tasks(sup, new), *coprocesses(sup, new)]


def switch_discovery(sup: Reloadable, new: SupervisorConfig) -> None:
    """New discovery endpoints: deregister everything from the old service first."""
    jobs = [s.deregister("discovery endpoints changed") for s in sup.services]
    worker = sup.ctx.worker
    if worker is not None:
        worker.wait(jobs, worker.timeout * (len(jobs) + 1))
    log.info("discovery: switching to %s", new.discovery.describe() if new.discovery else "none")
    sup.set_worker(DiscoveryWorker(new.discovery, discovery_timeout(os.environ)) if new.discovery else None)
    for backend in sup.backends:
        backend.next_due = now()


def services(sup: Reloadable, new: SupervisorConfig) -> list[str]:
    changes: list[str] = []
    old_by_name = {s.config.name: s for s in sup.services}
    new_names = {c.name for c in new.services}
    orphan_checks: list[Child] = []
    for service in sup.services:
        if service.config.name not in new_names:
            service.removed = True
            if not sup.ctx.maintenance:
                service.deregister("removed from the config")
            if service.check is not None and service.check.running:
                orphan_checks.append(service.check)
            changes.append(f"service {service.config.name} removed")
    runners: list[ServiceRunner] = []
    for conf in new.services:
        runner = old_by_name.get(conf.name)
        if runner is None:
            runner = ServiceRunner(conf, sup.ctx)
            earlier = next((c for c in orphan_checks if c.argv == tuple(conf.health.argv)), None)
            if earlier is not None:
                orphan_checks.remove(earlier)
                runner.follow(earlier)
                changes.append(f"service {conf.name} added (health check as soon as the running one ends)")
            else:
                changes.append(f"service {conf.name} added (health check now)")
        elif runner.config != conf:
            if runner.config.spec() != conf.spec():
                runner.registered = False
            runner.config = conf
            runner.next_due = now()
            changes.append(f"service {conf.name} changed (health check now)")
        runners.append(runner)
    for check in orphan_checks:
        check.ignore_result = True
    sup.services = runners
    return changes


def backends(sup: Reloadable, new: SupervisorConfig) -> list[str]:
    sup.backends, changes = _match_by_name("backend", sup.backends, new.backends,
                                           lambda conf: BackendRunner(conf, sup.ctx))
    return changes


def tasks(sup: Reloadable, new: SupervisorConfig) -> list[str]:
    def changed(runner: TaskRunner, conf: TaskConfig) -> None:
        if runner.config.frequency != conf.frequency:
            runner.next_due = now() + conf.frequency

    sup.tasks, changes = _match_by_name("task", sup.tasks, new.tasks, lambda conf: TaskRunner(conf, sup.ctx), changed)
    return changes


R = TypeVar("R", BackendRunner, TaskRunner)


def _match_by_name(kind: str, current: list[R], confs: Iterable[Any], make: Callable[[Any], R],
                   changed: Callable[[R, Any], None] | None = None) -> tuple[list[R], list[str]]:
    """The runners for `confs`: one that kept its name keeps its state (with the new config,
    `changed` called first), a new name gets a new runner, a name gone marks its runner removed."""
    changes: list[str] = []
    old_by_name = {runner.config.name: runner for runner in current}
    runners = []
    for conf in confs:
        runner = old_by_name.pop(conf.name, None)
        if runner is None:
            runner = make(conf)
            changes.append(f"{kind} {conf.name} added")
        elif runner.config != conf:
            if changed is not None:
                changed(runner, conf)
            runner.config = conf
            changes.append(f"{kind} {conf.name} changed")
        runners.append(runner)
    for runner in old_by_name.values():
        runner.removed = True
        changes.append(f"{kind} {runner.config.name} removed")
    return runners, changes


def coprocesses(sup: Reloadable, new: SupervisorConfig) -> list[str]:
    changes: list[str] = []
    old = {(c.config.name, c.config.command): c for c in sup.coprocesses}
    runners = []
    for conf in new.coprocesses:
        runner = old.pop((conf.name, conf.command), None)
        if runner is None:
            runner = CoprocessRunner(conf, sup.ctx)
            runner.start()
            changes.append(f"coprocess {conf.name} started")
        else:
            runner.config = conf
        runners.append(runner)
    for runner in old.values():
        runner.stop("removed from the config")
        changes.append(f"coprocess {runner.config.name} stopped")
    sup.coprocesses = runners
    return changes
