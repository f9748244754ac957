"""Who may answer 200: the rule of every endpoint, as pure functions (table-tested).

A load balancer sends writes to the node whose `/primary` answers 200, so
that answer must never be 200 on a node that is not the one writable lock
holder.  `/primary` is 200 only when all of these hold at the moment of the
answer:

1. the supervisor is not stopping (SIGTERM: `preStop` is about to fence)
   and not in maintenance (SIGUSR1: it hands over and stops renewing);
2. the supervisor's loop is not late (`t <= loop_deadline + LOOP_SLACK`).
   The HTTP thread checks this itself on every request: after a freeze
   (SIGSTOP, a suspended VM) every thread resumes at once, and a request
   thread may run before the loop has noticed the pause;
3. a health pass has *run* since the supervisor started or last woke up
   late (`woke_at`).  A frozen primary whose lock expired meanwhile is
   still writable when it resumes (SPEC §5's one window) until that pass
   fences it; its lock record in our view is just as stale, so neither can
   vouch for it.  The pass need not have *passed*: a replica whose IO
   thread broke because the primary died fails its pass, then wins the
   election; requiring a passing pass would delay routing to it by a poll;
4. the cluster records, read after `woke_at` and at most `VIEW_MAX_AGE` s
   ago, name this node as the lock holder in state `ready` (a promoting
   winner is not writable yet; a stale view, e.g. discovery unreachable, is
   not trusted: such a primary fences itself anyway).  The supervisor reads
   them every 2 s and on SIGHUP; a request that finds mysqld writable while
   the view names another holder (a node promoted since the last read)
   reads them itself once (runtime.py), so routing does not wait a period;
5. `read_only` (and `super_read_only`) is OFF, read from mysqld over its
   socket at request time with a short timeout.  Fencing turns it on before
   the lock can expire or be released (SPEC §5), so a fenced node, and a
   fencing one from the moment it is fenced, answers 503.

The server checks 1, 2 and 4 before the query and all of them again after
it, with fresh facts and a fresh clock, so a thread frozen in the middle of
a request cannot answer 200 from what it saw before the pause.  What is
left: an answer computed just before a freeze and sent just after.  It
reaches no one: a load balancer's check gives up after its own timeout
(HAProxy `timeout check`, 1 s in etc/haproxy.cfg), far shorter than any
freeze that can cost a lock (≥ SESSION_TTL - HEALTH_POLL).

What the tests showed: tests/test_routing.py samples /primary on every node
every 50 ms while the primary's whole node is frozen for 2 x SESSION_TTL:
never two 200s in one sample, and the old primary never answers 200 again.
That test also passed once with conditions 2, 3 and the `woke_at` checks
removed: with its SESSION_TTL=8 s and HEALTH_POLL=1 s, a freeze must last
about 7 s to cost the lock, and condition 4's age bound (5 s) alone then
rejects the view from before the freeze.  With a shorter TTL (the default
is 10 s, but 2 s is allowed on etcd) the age bound no longer covers it, and
conditions 2 and 3 are what keep /primary at 503: a request queued while the
supervisor was stopped is answered 503 when it resumes
(tests/test_telemetry_process.py), whatever the TTL.

`/replica`, `/health` share conditions 1-3.  `/replica` then wants a
read-only server replicating from the `ready` lock holder's address with
both threads running and a lag within the limit (`MAX_LAG`, or `?lag=`).
`/health` wants the last current health pass to have passed.
"""
from __future__ import annotations

from dataclasses import dataclass

from .facts import Facts

LOOP_SLACK = 1.0
"""Seconds the loop may run late before the node counts as woken from a freeze."""
VIEW_MAX_AGE = 5.0
"""Seconds a read of the cluster records is trusted for /primary and /replica."""


@dataclass(frozen=True)
class Answer:
    code: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.code == 200


@dataclass(frozen=True)
class Local:
    """The local mysqld as one request read it (None fields: not replicating)."""

    read_only: bool
    source: tuple[str, int] | None = None
    io_running: bool = False
    sql_running: bool = False
    seconds_behind: float | None = None


def _no(reason: str) -> Answer:
    return Answer(503, reason)


def gate(f: Facts, t: float) -> str | None:
    """Conditions 1-3: None when this supervisor's knowledge is current; else why not."""
    if f.stopping:
        return "the supervisor is stopping"
    if f.maintenance:
        return "maintenance mode (SIGUSR1)"
    if f.loop_deadline is None:
        return "the supervisor is not polling yet"
    if t > f.loop_deadline + LOOP_SLACK:
        return f"the supervisor's loop is {t - f.loop_deadline:.1f} s late (frozen or suspended?)"
    if f.last_health is None or f.last_health.started < f.woke_at:
        return "no health pass has run since the supervisor started or woke up late"
    return None


def lock_view(f: Facts, t: float):
    """(the current view, None) or (None, why it cannot be used)."""
    read = f.view
    if read is None:
        return None, "the cluster records have not been read yet"
    if read.started < f.woke_at:
        return None, "the cluster records were read before a late wake-up"
    if t - read.started > VIEW_MAX_AGE:
        return None, f"the cluster records are {t - read.started:.1f} s old (discovery unreachable?)"
    return read.view, None


def current_view(f: Facts, t: float):
    """(the view, None) when both this supervisor's knowledge and its read of the cluster records
    are current (conditions 1-3 and the view's age), else (None, why not): what every role check
    starts from."""
    why = gate(f, t)
    if why:
        return None, why
    return lock_view(f, t)


def primary_before_query(f: Facts, t: float, node: str) -> Answer | None:
    """Conditions 1-4: a 503, or None when only the server's read_only is left to check."""
    view, why = current_view(f, t)
    if why:
        return _no(why)
    lock = view.lock
    if lock is None:
        return _no("the primary lock is free")
    if lock.node != node:
        return _no(f"{lock.node} holds the primary lock")
    if lock.state != "ready":
        return _no(f"this node holds the lock in state {lock.state}, not ready")
    return None


def primary(f: Facts, t: float, node: str, local: Local | None) -> Answer:
    """All five conditions; `local` None: mysqld did not answer in time."""
    early = primary_before_query(f, t, node)
    if early is not None:
        return early
    if local is None:
        return _no("mysqld does not answer on its socket")
    if local.read_only:
        return _no("holds the lock but is read-only (fenced, or not writable yet)")
    return Answer(200, "primary: holds the lock (ready) and is writable")


def replica(f: Facts, t: float, node: str, local: Local | None, max_lag: float) -> Answer:
    """A read-only server replicating from the ready lock holder, lag ≤ `max_lag`."""
    view, why = current_view(f, t)
    if why:
        return _no(why)
    lock = view.lock
    if lock is None or lock.state != "ready":
        return _no("no ready primary holds the lock")
    if lock.node == node:
        return _no("this node holds the primary lock")
    if local is None:
        return _no("mysqld does not answer on its socket")
    if not local.read_only:
        return _no("writable: not a safe replica")
    if local.source is None:
        return _no("not replicating")
    if local.source != (lock.address, int(lock.port)):
        return _no(f"replicates from {local.source[0]}:{local.source[1]}, not from the lock holder "
                   f"{lock.node} ({lock.address}:{lock.port})")
    if not (local.io_running and local.sql_running):
        return _no(f"replication not running (io={local.io_running}, sql={local.sql_running})")
    if local.seconds_behind is None:
        return _no("lag unknown")
    if local.seconds_behind > max_lag:
        return _no(f"lag {local.seconds_behind:g} s exceeds {max_lag:g} s")
    return Answer(200, f"replica of {lock.node}, lag {local.seconds_behind:g} s")


def health(f: Facts, t: float) -> Answer:
    """The last health pass since the last wake-up passed, and is current."""
    why = gate(f, t)
    if why:
        return _no(why)
    last = f.last_health
    assert last is not None  # gate() checked
    if t - last.ended > f.health_max_age:
        return _no(f"the last health pass ended {t - last.ended:.0f} s ago")
    if not last.passed:
        return _no(f"the last health pass failed (exit code {last.code})")
    return Answer(200, f"the last health pass passed ({last.duration:.2f} s)")
