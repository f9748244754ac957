"""PID 1 duties: reaping, signals, child processes and their deadlines.

Everything here runs on the main thread.  The supervisor never calls
`wait()` on one child: it reaps with `waitpid(-1, WNOHANG)` whenever SIGCHLD
arrives, because as PID 1 (or a child subreaper) it also inherits every
orphan of the app and must collect those too.  A `ProcessTable` maps the
PIDs it started to what should happen when they exit; anything else it reaps
is an orphan.

Signals are turned into events: a handler appends the signal number to a
queue and `signal.set_wakeup_fd` makes the loop's `select()` return at once.
Nothing is done inside a signal handler.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import warm

log = logging.getLogger("containerbuddy")

PR_SET_CHILD_SUBREAPER = 36
KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when a task times out (SPEC §4)."""


def now() -> float:
    """Seconds on a clock that keeps running while the process is stopped or the host suspended.

    CLOCK_BOOTTIME counts suspend time, which CLOCK_MONOTONIC does not: the
    frozen-container check must see a suspended VM's pause as lateness.
    """
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


def become_subreaper() -> bool:
    """Adopt orphaned descendants (so they can be reaped) when not running as PID 1."""
    if os.getpid() == 1:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper (%s): orphans of the app will not be reaped here", exc)
        return False
    return True


def exit_code(status: int) -> int:
    """The shell convention: the exit code, or 128+N when killed by signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


def describe_exit(code: int) -> str:
    if code > 128:
        try:
            return f"killed by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return f"exit code {code}"


# --------------------------------------------------------------------------
# Signals

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)
FORWARDED_SIGNALS = (signal.SIGUSR2, signal.SIGQUIT, signal.SIGWINCH)
"""Signals with no meaning to the supervisor: passed on to the app."""


class SignalInbox:
    """Signals as a queue of events plus a file descriptor that becomes readable."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS + FORWARDED_SIGNALS:
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    @property
    def fd(self) -> int:
        return self._read_fd

    def drain(self) -> None:
        """Empty the wakeup pipe (the signals themselves are in `pending`)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._read_fd, 4096):
                pass

    def pop(self) -> int | None:
        return self.pending.popleft() if self.pending else None


# --------------------------------------------------------------------------
# Children

@dataclass
class Child:
    """A process the supervisor started and waits for."""

    kind: str
    """What it is for the logs: "app", "health mysql", "onChange mysql-primary", …"""
    pid: int
    popen: subprocess.Popen | None
    """None for a hook started warm (warm.py): the helper forked it, we only know its pid."""
    started: float
    on_exit: Callable[["Child", int], None] | None = None
    group: bool = True
    """Whether it leads its own process group (signals reach its whole tree)."""
    term_at: float | None = None
    """When to send SIGTERM (task timeout) – or SIGKILL directly when `grace` is None."""
    grace: float | None = None
    kill_at: float | None = None
    code: int | None = None
    ignore_result: bool = False
    argv: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.code is None

    def signal(self, sig: int) -> None:
        """Signal its process group (or just it), ignoring a process already gone."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)


class ProcessTable:
    """Starts children, reaps every exited process, enforces timeouts."""

    def __init__(self, env: Mapping[str, str], warm_start: "warm.WarmStarter | None | bool" = True) -> None:
        self.env = dict(env)
        self._warm: warm.WarmStarter | None = None if warm_start is True else (warm_start or None)
        self._warm_decided = warm_start is not True
        self.children: dict[int, Child] = {}
        self.orphans_reaped = 0
        self.spawn_error = 0
        """126 or 127 (the shell's codes) for the last command that could not be executed."""
        self.observer: Callable[[Child, float], None] | None = None
        """Told of every child that exited, with the time it was reaped (telemetry counts hook runs)."""

    @property
    def warm(self) -> "warm.WarmStarter | None":
        """Starts `triton-mysql` hooks from a pre-imported helper (warm.py); None: always Popen.

        Decided at the first spawn, when the supervisor has become a subreaper."""
        if not self._warm_decided:
            self._warm_decided = True
            self._warm = warm.WarmStarter.from_env(self.env)
        return self._warm

    def spawn(self, kind: str, argv: Sequence[str], *, on_exit: Callable[[Child, int], None] | None = None,
              timeout: float | None = None, grace: float | None = None, group: bool = True,
              stdin_devnull: bool = True, env: Mapping[str, str] | None = None,
              add_env: Mapping[str, str] | None = None) -> Child | None:
        """Start `argv`; None (with a log line) when it cannot be executed.

        `timeout`: after that many seconds the child's group gets SIGKILL, or
        SIGTERM and SIGKILL `grace` seconds later when `grace` is given.
        `env`: instead of the table's environment (the app gets less than the hooks);
        `add_env`: variables added to it for this child only (a hook run in maintenance).
        A `triton-mysql …` command is started warm when the helper is ready
        (warm.py); anything else, or when it is not, with Popen.
        """
        full_env = self.env if env is None else dict(env)
        if add_env:
            full_env = {**full_env, **add_env}
        started = now()
        popen = None
        pid = self.warm.spawn(argv, full_env, group=group, stdin_devnull=stdin_devnull) if self.warm else None
        if pid is None:
            try:
                popen = subprocess.Popen(
                    list(argv), env=full_env, stdin=subprocess.DEVNULL if stdin_devnull else None,
                    start_new_session=group, close_fds=True,
                )
            except OSError as exc:
                log.error("%s: cannot start %s: %s", kind, argv[0], exc.strerror or exc)
                self.spawn_error = 126 if isinstance(exc, PermissionError) else 127
                return None
            pid = popen.pid
        child = Child(kind=kind, pid=pid, popen=popen, started=started, on_exit=on_exit, group=group,
                      term_at=started + timeout if timeout else None, grace=grace, argv=tuple(argv))
        self.children[pid] = child
        log.debug("%s: started pid %d%s: %s", kind, pid, "" if popen else " (warm)", " ".join(argv))
        return child

    def reap(self) -> list[Child]:
        """Collect every exited process; run the exit callbacks of our own children."""
        finished: list[Child] = []
        statuses: list[tuple[int, int]] = []
        for pid, status in warm.exited_children():
            if self._warm is None or not self._warm.reaped(pid, status):
                statuses.append((pid, status))
        if self._warm is not None:
            statuses += self._warm.collect()  # warm children, reaped by the helper
            self._warm.watch([pid for pid, c in self.children.items() if c.popen is None and c.running])
        t = now()
        for pid, status in statuses:
            child = self.children.pop(pid, None)
            if child is None:
                self.orphans_reaped += 1
                log.debug("reaped orphan pid %d (%s)", pid, describe_exit(exit_code(status)))
                continue
            child.code = exit_code(status)
            if child.popen is not None:
                child.popen.returncode = child.code  # keep Popen from waiting on a reaped PID
            log.debug("%s: pid %d exited (%s) after %.1f ms", child.kind, pid, describe_exit(child.code),
                      (t - child.started) * 1000)
            finished.append(child)
        for child in finished:
            if self.observer is not None:
                self.observer(child, now())
            if child.on_exit is not None:
                child.on_exit(child, child.code)  # type: ignore[arg-type]
        return finished

    def next_deadline(self) -> float | None:
        times = [t for c in self.children.values() for t in (c.term_at, c.kill_at) if t is not None]
        return min(times) if times else None

    def enforce_deadlines(self, at: float) -> None:
        """Stop children past their timeout: SIGKILL, or SIGTERM then SIGKILL after the grace."""
        for child in list(self.children.values()):
            if child.term_at is not None and at >= child.term_at:
                child.term_at = None
                if child.grace is None:
                    log.warning("%s: timed out after %.3g s; killing its process group", child.kind, at - child.started)
                    child.signal(signal.SIGKILL)
                else:
                    log.warning("%s: timed out after %.3g s; SIGTERM to its process group, SIGKILL in %g s",
                                child.kind, at - child.started, child.grace)
                    child.signal(signal.SIGTERM)
                    child.kill_at = at + child.grace
            elif child.kill_at is not None and at >= child.kill_at:
                child.kill_at = None
                log.warning("%s: still running %g s after SIGTERM; SIGKILL", child.kind, child.grace or 0)
                child.signal(signal.SIGKILL)

    def terminate(self, child: Child, grace: float = KILL_GRACE, why: str = "") -> None:
        """SIGTERM a child's group now and SIGKILL it after `grace` seconds if it is still there."""
        if not child.running:
            return
        log.info("%s: sending SIGTERM%s", child.kind, f" ({why})" if why else "")
        child.signal(signal.SIGTERM)
        child.term_at = None
        child.grace = grace
        child.kill_at = now() + grace


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        parents[int(entry)] = int(fields[1])
    return parents


def descendants_of(root: int) -> list[int]:
    """Live descendants of `root` (children first), from /proc."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def stray_processes(exclude: set[int]) -> list[int]:
    """PIDs of our descendants that we did not start ourselves (orphans adopted, and their children).

    After the app has exited, these are what is left of its process tree:
    daemons it forked, background jobs of its scripts.
    """
    me = os.getpid()
    parents = _parents()
    strays = []
    for pid in parents:
        if pid == me:
            continue
        chain, p = [], pid
        while p in parents and p != me and len(chain) < 64:
            chain.append(p)
            p = parents[p]
        if p == me and not (set(chain) & exclude):
            strays.append(pid)
    return sorted(strays)
