"""What the supervisor knows about this node, shared with the HTTP threads.

The supervisor's main thread writes these fields (plain attribute writes,
atomic under the GIL); the HTTP threads only read them, through
`snapshot()`, so that one request decides on one consistent copy.  Times
are on the supervisor's clock (`process.now()`, CLOCK_BOOTTIME: it keeps
running while the container is frozen) unless a name says `_wall`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class HealthPass:
    """One finished health check whose result counts (not a stale one from before a freeze)."""

    started: float
    ended: float
    code: int

    @property
    def passed(self) -> bool:
        return self.code == 0

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass(frozen=True)
class ViewRead:
    """The cluster records as the supervisor last read them, and when the read started."""

    started: float
    view: Any
    """A `triton_mysql.view.ClusterView`."""


@dataclass(frozen=True)
class Facts:
    started: float
    """When the supervisor started (its clock)."""
    stopping: bool = False
    maintenance: bool = False
    loop_deadline: float | None = None
    """The latest moment the main loop is due to run again (None: it sleeps until a signal)."""
    woke_at: float = 0.0
    """The last late wake-up of the loop (or the start): older results are not trusted."""
    last_health: HealthPass | None = None
    health_max_age: float = 30.0
    """A health result older than this is not current (poll + timeout + slack of the services)."""
    view: ViewRead | None = None


class FactsBox:
    """The current `Facts`; replaced whole on every change, so readers never see half an update."""

    def __init__(self, started: float) -> None:
        self._facts = Facts(started=started, woke_at=started)
        self._lock = threading.Lock()

    def get(self) -> Facts:
        return self._facts

    def offer_view(self, read: ViewRead) -> None:
        """Keep `read` unless a read that started later is already there (two threads read views)."""
        with self._lock:
            current = self._facts.view
            if current is None or read.started > current.started:
                self._facts = replace(self._facts, view=read)

    def update(self, **changes: Any) -> Facts:
        with self._lock:
            self._facts = replace(self._facts, **changes)
            return self._facts


@dataclass
class Counters:
    """Supervisor-side events the metrics count (main thread writes; scrapes read)."""

    failovers: dict[str, int] = field(default_factory=dict)
    last_failover_at: float | None = None
    """`at` of the last `failover/last` record seen (counted once)."""
