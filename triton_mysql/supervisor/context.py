"""What the runners (services, backends, tasks, coprocesses) see of the supervisor, and their schedule.

A runner reads whether the supervisor is stopping or in maintenance, sends
discovery requests through the worker, spawns through the process table,
reports discovery failures to the error log, and (a heartbeat on the worker
thread) reads when the loop last woke.  `Context` holds exactly that; the
`Supervisor` owns it and changes it, and the runners never see the rest of
the supervisor (its app, its selector, its signal handling).

`Periodic` is the one "next run" rule of the runners that poll: a run that
is due takes its turn, and the next is one period later, or one period from
now when the loop fell behind (a frozen container): never a burst of
catch-up runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .process import ProcessTable, now
from .worker import DiscoveryWorker, ErrorLog


@dataclass
class Context:
    """The supervisor's state a runner may read (and the tools it may use)."""

    table: ProcessTable
    errors: ErrorLog
    worker: DiscoveryWorker | None = None
    stopping: bool = False
    maintenance: bool = False
    loop_time: float = field(default_factory=now)
    """When the loop last woke up (read by the discovery thread: see ServiceRunner.heartbeat)."""


def next_run(due: float, every: float, t: float) -> float:
    """The due time after a run that was due at `due` and taken at `t`: one period later,
    or one period from `t` when the loop is a whole period or more behind."""
    following = due + every
    return following if following > t else t + every


class Periodic:
    """A runner that acts every period while `active()`; `next_due` is its next turn."""

    next_due: float

    def active(self) -> bool:
        raise NotImplementedError

    def due(self) -> float | None:
        return self.next_due if self.active() else None

    def take_turn(self, t: float, every: float) -> bool:
        """True when a run is due at `t` (the next one is then scheduled); False otherwise."""
        if not self.active() or t < self.next_due:
            return False
        self.next_due = next_run(self.next_due, every, t)
        return True
