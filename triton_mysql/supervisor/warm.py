"""Warm start for the tool's own hooks: a pre-imported helper forks one child per hook.

Why: a `triton-mysql health` pass does ~30 ms of I/O, but a new interpreter
spends ~150 ms importing PyMySQL, the discovery client and click first.  At
HEALTH_POLL=2 that start-up was ~21 % of a core per node (BENCHMARKS.md).
The multiprocessing "forkserver" idea removes it while keeping each hook a
separate, killable process:

* The supervisor starts (fork + *exec*: the supervisor has threads, and a
  forked copy of a threaded process may hold locks nobody will release) one
  helper, `python -m triton_mysql.supervisor.warm`.  The helper imports the
  hook code once and then only waits: it is single-threaded, opens no
  connection, socket, file or lock besides its control socket, and checks
  that it still has one thread before every fork.
* For every command that resolves to this installation's `triton-mysql`
  console script (`eligible()`), `ProcessTable.spawn` asks the helper instead
  of calling Popen.  The helper forks; the child starts a new session (like
  Popen's start_new_session), takes the supervisor's stdin/stdout/stderr
  (passed as file descriptors over the socket, SCM_RIGHTS), closes every
  other descriptor, restores default signal handling, installs the full
  environment the supervisor would have given a new process (per-spawn
  additions such as CONTAINERBUDDY_MAINTENANCE=1 included), and runs the
  console script's entry point, exactly as the script would.  Its exit code
  (or the signal that killed it) is what the supervisor sees.
* The helper answers with the child's pid; the supervisor registers it in its
  process table (timeouts kill its process group, as for any hook) and only
  then lets the child run, through a one-byte "go" pipe it alone holds: a
  child whose spawn the supervisor gave up on (helper too slow) sees EOF and
  exits without running anything, so a hook never runs twice or unobserved.
* The helper reaps its children and reports each exit status; it then sends
  SIGCHLD to the supervisor (what the kernel does for a direct child), which
  wakes the supervisor's loop, whose `reap()` collects the reports.
* If the helper dies, its children are re-parented to the supervisor (it is
  PID 1 or a child subreaper: warm start is off otherwise) and reaped there
  with their real status.  A helper that does not answer within
  `REPLY_TIMEOUT` is killed; that one spawn and every spawn until a new
  helper is ready take the ordinary path (Popen), so nothing ever waits for
  the helper.
* Upgrades: before each fork the helper compares a stamp of the code it
  imported (mtime, size and inode of the package's loaded modules, and the
  mtime of every sys.path directory it imported from: pip adds and removes
  entries there).  When anything changed, the child execs the console script
  instead (new code, full start-up, once) and the helper re-execs itself to
  import the new code; its children survive the exec and are still reaped
  and reported by the new image.

Commands that are not `triton-mysql …` are started exactly as before.
`WARM_START=false` in the supervisor's environment turns all of this off
(every hook is a new interpreter, as before; the benchmark compares both).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

log = logging.getLogger("containerbuddy")

ENV_SWITCH = "WARM_START"
ENTRIES: dict[str, str] = {"triton-mysql": "triton_mysql.cli:main"}
"""Console scripts the helper can run warm: script name -> its entry point ("module:function")."""
PRELOAD = ("triton_mysql.cli", "triton_mysql.hooks.health", "triton_mysql.hooks.on_change",
           "triton_mysql.hooks.snapshot", "triton_mysql.hooks.pre_stop", "triton_mysql.hooks.post_stop",
           "triton_mysql.supervisor.rename", "triton_mysql.backup.snapshot", "triton_mysql.mysql.local",
           "pymysql")
"""What the frequent hooks import: the primary's `snapshot` task asks `backup.snapshot` whether one
is due every SNAPSHOT_POLL (the storage clients of a real snapshot are left to the child)."""
REPLY_TIMEOUT = 1.5
"""Seconds the supervisor waits for the helper to answer one spawn before it counts as hung."""
REAP_TIMEOUT = 1.0
"""Seconds a warm child may stay a zombie (exited, not reaped by the helper) before the helper
counts as hung: killing it hands the zombie to us, with its real exit status."""
RESTART_DELAY = 5.0
"""Seconds between two helper starts (a helper that keeps dying must not spin)."""
MAX_MESSAGE = 256 * 1024
_PR_GET_CHILD_SUBREAPER = 37
_INTERPRETER_VARS = ("PYTHON", "LC_", "LANG")
"""Variables read once at interpreter start-up: a spawn that changes them is not run warm."""


def enabled(env: Mapping[str, str]) -> bool:
    """WARM_START (default true), with the values of the other boolean variables (config.py).

    A malformed value leaves it on here; the hooks themselves refuse it (exit 2)."""
    raw = (env.get(ENV_SWITCH) or "").strip().lower()
    if raw in ("0", "false", "no", "off"):
        return False
    if raw not in ("", "1", "true", "yes", "on"):
        log.warning("%s=%r: must be true or false; warm start stays on", ENV_SWITCH, env.get(ENV_SWITCH))
    return True


def reaps_orphans() -> bool:
    """PID 1 or a child subreaper: the children of a dead helper come back to us to be reaped."""
    if os.getpid() == 1:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        flag = ctypes.c_int(0)
        if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
            return False
        return flag.value != 0
    except (OSError, AttributeError):
        return False


# --------------------------------------------------------------------------
# Which commands run warm

@dataclass(frozen=True)
class Script:
    """A console script of this installation that the helper can run."""

    path: str
    entry: str


def _script_entry(path: str, entries: Mapping[str, str]) -> str | None:
    """The entry point of `path` if it is one of `entries`' console scripts for *this* interpreter.

    pip writes `#!<interpreter>` and `from <module> import <function>`: the
    same interpreter means the same site-packages, so the helper (started with
    sys.executable) imports exactly the code the script would.
    """
    name = os.path.basename(path)
    entry = entries.get(name)
    if entry is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
    except OSError:
        return None
    first, _, rest = head.partition(b"\n")
    if not first.startswith(b"#!"):
        return None
    interpreter = first[2:].strip().split(b" ")[0].decode(errors="replace")
    ours = sys.executable
    # Same file in the same bin directory (a venv's python and python3 are one interpreter there).
    same = interpreter == ours or (
        os.path.realpath(os.path.dirname(interpreter)) == os.path.realpath(os.path.dirname(ours))
        and os.path.realpath(interpreter) == os.path.realpath(ours))
    module, _, function = entry.partition(":")
    if not same or f"from {module} import {function}".encode() not in rest:
        return None
    return entry


class Resolver:
    """argv -> Script (or None), cached per (command, PATH) and the script file's identity."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        self.entries = dict(entries)
        self._cache: dict[tuple[str, str], tuple[tuple[int, int, int], Script | None, str]] = {}

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> Script | None:
        if not argv or os.path.basename(argv[0]) not in self.entries:
            return None
        key = (argv[0], env.get("PATH", ""))
        cached = self._cache.get(key)
        if cached is not None:  # the same file as last time: one stat()
            ident, script, path = cached
            if _ident(path) == ident:
                return script
        path = shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if path is None:
            self._cache.pop(key, None)
            return None
        ident = _ident(path)
        entry = _script_entry(path, self.entries)
        script = Script(path, entry) if entry else None
        self._cache[key] = (ident, script, path)
        return script


def _ident(path: str) -> tuple[int, int, int]:
    """(inode, mtime, size): a file replaced or edited is another file."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------
# Supervisor side

@dataclass
class _Helper:
    popen: subprocess.Popen
    sock: socket.socket
    started: float
    ready: bool = False
    restarting: bool = False
    exits: list[tuple[int, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid


class WarmStarter:
    """The supervisor's handle on the helper: start it, ask it to spawn, collect exits.

    Used only from the supervisor's main thread.  The helper is not in the
    process table: the table hands its pid to `reaped()`.
    """

    def __init__(self, env: Mapping[str, str], entries: Mapping[str, str] | None = None,
                 preload: Sequence[str] | None = None, reply_timeout: float = REPLY_TIMEOUT,
                 restart_delay: float = RESTART_DELAY) -> None:
        self.env = dict(env)
        self.entries = dict(ENTRIES if entries is None else entries)
        modules = list(PRELOAD if preload is None else preload)
        if preload is None:  # the discovery client this node uses (connect() imports it lazily)
            modules += [f"triton_mysql.discovery.{b}" for b in ("consul", "etcd") if self.env.get(b.upper())]
        modules += [e.partition(":")[0] for e in self.entries.values()]
        self.preload = tuple(dict.fromkeys(modules))
        self.reply_timeout = reply_timeout
        self.restart_delay = restart_delay
        self.resolve = Resolver(self.entries)
        self.helper: _Helper | None = None
        self._retired: dict[int, subprocess.Popen] = {}
        """Helpers given up on (hung, unreachable) whose exit the process table has not reaped yet."""
        self._exits: list[tuple[int, int]] = []
        self._zombies: dict[int, float] = {}
        self._next_start = 0.0
        self._serial = 0
        self.spawned = 0
        """Hooks started warm (for tests and the logs)."""
        self.fallbacks = 0
        """Eligible hooks that took the ordinary path because no helper was ready."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "WarmStarter | None":
        """A starter when WARM_START is on and orphans come back to us; None otherwise."""
        if not enabled(env):
            log.info("warm start is off (%s=%s): every hook is a new interpreter", ENV_SWITCH, env.get(ENV_SWITCH))
            return None
        if not reaps_orphans():
            log.info("warm start is off: not PID 1 nor a child subreaper (children of a lost helper could "
                     "not be reaped here)")
            return None
        return cls(env)

    @property
    def pid(self) -> int | None:
        return self.helper.pid if self.helper else None

    @property
    def ready(self) -> bool:
        return self.helper is not None and self.helper.ready and not self.helper.restarting

    # -- helper lifecycle ---------------------------------------------------
    def helper_argv(self, fd: int) -> list[str]:
        """`python -c …` rather than `-m`: `-m` would put the working directory first on sys.path
        (a console script has its own bin directory there instead, which holds no modules)."""
        code = "import sys; del sys.path[0]; from triton_mysql.supervisor.warm import main; sys.exit(main())"
        argv = [sys.executable, "-c", code, "--fd", str(fd)]
        for name, entry in self.entries.items():
            argv += ["--entry", f"{name}={entry}"]
        for module in self.preload:
            argv += ["--preload", module]
        return argv

    def start(self) -> bool:
        """Start a helper unless one runs or one was started less than `restart_delay` ago."""
        now = time.monotonic()
        if self.helper is not None or now < self._next_start:
            return False
        self._next_start = now + self.restart_delay
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen(self.helper_argv(theirs.fileno()), env=self.env, stdin=subprocess.DEVNULL,
                                     pass_fds=(theirs.fileno(),), close_fds=True, start_new_session=True)
        except OSError as exc:
            log.warning("warm start: cannot start the helper (%s); hooks start as new interpreters", exc)
            ours.close()
            return False
        finally:
            theirs.close()
        ours.setblocking(False)
        self.helper = _Helper(popen=popen, sock=ours, started=now)
        log.debug("warm start: helper started (pid %d)", popen.pid)
        return True

    def _discard(self, why: str, kill: bool, stopped: bool = False) -> None:
        helper, self.helper = self.helper, None
        if helper is None:
            return
        if stopped:
            log.info("warm start: helper (pid %d) %s; not restarted", helper.pid, why)
        else:
            log.warning("warm start: helper (pid %d) %s; hooks start as new interpreters until a new one is ready",
                        helper.pid, why)
        self._drain(helper)
        self._exits += helper.exits  # reported before it went: still valid
        helper.sock.close()
        if helper.popen.returncode is None:
            self._retired[helper.pid] = helper.popen
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(helper.pid, signal.SIGKILL)

    def reaped(self, pid: int, status: int) -> bool:
        """The process table reaped `pid`: True when it was a helper (then it is no hook of ours)."""
        popen = self._retired.pop(pid, None)
        if popen is None and self.helper is not None and self.helper.pid == pid:
            popen = self.helper.popen
            popen.returncode = status
            # SIGTERM is how the supervisor stops what is left when it shuts down (or an operator
            # stops the helper on purpose): no new helper then.  Any other end is a failure.
            stopped = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
            if stopped:
                self._next_start = float("inf")
            self._discard(f"exited ({_describe(status)})", kill=False, stopped=stopped)
        if popen is None:
            return False
        popen.returncode = status  # Popen must never wait for this pid again (it may be reused)
        return True

    def stop(self) -> None:
        """SIGTERM the helper (its running children are re-parented to us and reaped as usual)."""
        if self.helper is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.helper.pid, signal.SIGTERM)

    # -- messages ------------------------------------------------------------
    def _drain(self, helper: _Helper) -> list[dict]:
        """Read every waiting message: exits are queued, readiness noted, replies returned."""
        replies: list[dict] = []
        while True:
            try:
                data = helper.sock.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data:
                break  # it closed its end (exiting); the process table reaps it
            try:
                message = json.loads(data)
            except ValueError:
                continue
            kind = message.get("op")
            if kind == "exit":
                helper.exits.append((int(message["pid"]), int(message["status"])))
            elif kind == "ready":
                helper.ready, helper.restarting = True, False
                log.info("warm start: helper (pid %d) ready: %d modules preloaded in %.2f s", helper.pid,
                         message.get("modules", 0), message.get("seconds", 0.0))
            else:
                replies.append(message)
        return replies

    def collect(self) -> list[tuple[int, int]]:
        """(pid, waitpid status) of every warm child whose exit was reported since the last call."""
        exits, self._exits = self._exits, []
        helper = self.helper
        if helper is not None:
            self._drain(helper)
            exits += helper.exits
            helper.exits = []
        return exits

    def watch(self, running: Sequence[int]) -> None:
        """Catch a helper that stopped reaping (hung, frozen): a warm child of ours that has been a
        zombie for REAP_TIMEOUT means nobody reports its exit.  Killing the helper re-parents the
        zombie to us; the next reap collects it with its real status."""
        helper = self.helper
        if helper is None or not running:
            self._zombies.clear()
            return
        t = time.monotonic()
        seen = {}
        for pid in running:
            if _state(pid) == "Z":
                seen[pid] = self._zombies.get(pid, t)
        self._zombies = seen
        if seen and t - min(seen.values()) >= REAP_TIMEOUT:
            self._discard(f"stopped reaping its children (pid {min(seen, key=seen.get)} exited "
                          f"{t - min(seen.values()):.1f} s ago, unreported)", kill=True)
            self._zombies.clear()

    # -- spawning ---------------------------------------------------------------
    def spawn(self, argv: Sequence[str], env: Mapping[str, str], *, group: bool = True,
              stdin_devnull: bool = True) -> int | None:
        """Start `argv` through the helper: its pid, or None when the caller must start it itself.

        `env` is the complete environment of the new process.
        """
        script = self.resolve(argv, env)
        if script is None or any(env.get(k) != self.env.get(k) for k in _interpreter_keys(env, self.env)):
            return None
        helper = self.helper
        if helper is None:
            self.start()
            self.fallbacks += 1
            return None
        self._drain(helper)
        if not self.ready:
            self.fallbacks += 1
            return None
        pid = self._ask(helper, script, argv, env, group, stdin_devnull)
        if pid is None:
            self.fallbacks += 1
        else:
            self.spawned += 1
        return pid

    def _ask(self, helper: _Helper, script: Script, argv: Sequence[str], env: Mapping[str, str], group: bool,
             stdin_devnull: bool) -> int | None:
        self._serial += 1
        serial = self._serial
        request = {"op": "spawn", "id": serial, "argv": list(argv), "env": dict(env), "group": group,
                   "script": script.path, "entry": script.entry, "cwd": os.getcwd()}
        go_read, go_write = os.pipe2(os.O_CLOEXEC)
        try:
            devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) if stdin_devnull else None
            try:
                socket.send_fds(helper.sock, [json.dumps(request).encode()],
                                [0 if devnull is None else devnull, 1, 2, go_read])
            except OSError as exc:
                self._discard(f"cannot be reached ({exc})", kill=True)
                return None
            finally:
                os.close(go_read)
                if devnull is not None:
                    os.close(devnull)
            reply = self._await_reply(helper, serial)
            if reply is None:
                self._discard(f"did not answer within {self.reply_timeout:g} s", kill=True)
                return None
            if reply.get("op") != "spawned":
                log.warning("warm start: the helper declined a spawn (%s)", reply.get("why"))
                return None
            if reply.get("restarting"):
                helper.restarting = True
                log.info("warm start: hook code changed on disk: this hook runs as a new interpreter; the helper "
                         "re-imports")
            os.write(go_write, b"g")  # registered by the caller before it can next look at anything
            return int(reply["pid"])
        finally:
            os.close(go_write)

    def _await_reply(self, helper: _Helper, serial: int) -> dict | None:
        deadline = time.monotonic() + self.reply_timeout
        while True:
            for message in self._drain(helper):
                if message.get("id") == serial:
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(InterruptedError):
                select.select([helper.sock], [], [], left)


def exited_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of every child that has exited, without blocking.

    The one reaping loop of the supervisor and of its helper (each reaps its own children).
    """
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return
        yield pid, status


def _state(pid: int) -> str | None:
    """The one-letter state of `pid` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:][:1].decode()


def _interpreter_keys(a: Mapping[str, str], b: Mapping[str, str]) -> set[str]:
    return {k for k in (*a, *b) if k.startswith(_INTERPRETER_VARS)}


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"status {status}"


# --------------------------------------------------------------------------
# Helper side (`python -m triton_mysql.supervisor.warm --fd N`)

class Stamp:
    """What the imported code looked like on disk when the helper loaded it.

    Every loaded module file of the entry points' own packages (`roots`:
    edited in place in a development checkout, replaced by pip), and the
    mtime of every sys.path directory that any loaded module came from (pip
    adds and removes package and dist-info entries there on any install or
    upgrade).  About 50 stat() calls: cheap enough before every fork.
    """

    def __init__(self, roots: Sequence[str]) -> None:
        self.files: dict[str, tuple[int, int, int]] = {}
        self.dirs: dict[str, int] = {}
        roots = sorted(set(map(os.path.abspath, roots)))
        paths = [p for p in map(os.path.abspath, filter(None, sys.path)) if os.path.isdir(p)]
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path or not os.path.isfile(path):
                continue
            path = os.path.abspath(path)
            if any(path == root or path.startswith(root + os.sep) for root in roots):
                self.files[path] = _ident(path)
            home = max((p for p in paths if path.startswith(p + os.sep)), key=len, default=None)
            if home is not None and home not in self.dirs:
                self.dirs[home] = self._mtime(home)

    @staticmethod
    def _mtime(path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return 0

    def changed(self) -> str | None:
        """The first file or directory that is not as it was (None: nothing changed)."""
        for path, ident in self.files.items():
            if _ident(path) != ident:
                return path
        for path, mtime in self.dirs.items():
            if self._mtime(path) != mtime:
                return path
        return None


class Helper:
    """The forking loop.  Single-threaded; never opens anything but its control socket."""

    def __init__(self, fd: int, entries: Mapping[str, str], preload: Sequence[str], argv: Sequence[str]) -> None:
        self.fd = fd
        self.argv = list(argv)
        """How this helper was started (`-c CODE --fd …`), for the re-exec."""
        self.sock = socket.socket(fileno=fd)
        self.sock.set_inheritable(True)  # kept across a re-exec
        self.entries = dict(entries)
        self.preload = list(preload)
        self.parent = os.getppid()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stamp: Stamp | None = None

    def load(self) -> tuple[int, float]:
        started = time.monotonic()
        import importlib
        for module in self.preload:
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - a missing optional module only costs warmth
                print(f"containerbuddy warm-start helper: cannot preload {module}: {exc}", file=sys.stderr)
        # Objects that exist now are never collected: a child's garbage collections then do not
        # write to (and copy) the pages they live on.
        gc.collect()
        gc.freeze()
        roots = []
        for entry in self.entries.values():
            package = sys.modules.get(entry.partition(":")[0].split(".")[0])
            path = getattr(package, "__file__", None)
            if path:
                roots.append(os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path)
        self.stamp = Stamp(roots)
        return len(sys.modules), time.monotonic() - started

    def send(self, message: dict) -> bool:
        try:
            self.sock.send(json.dumps(message).encode())
            return True
        except OSError:
            return False

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        modules, seconds = self.load()
        self.reap()  # children of a previous image of this helper (re-exec) that ended meanwhile
        if not self.send({"op": "ready", "pid": os.getpid(), "modules": modules, "seconds": round(seconds, 3)}):
            return 0
        while True:
            try:
                readable, _, _ = select.select([self.sock, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 4096):
                        pass
                self.reap()
            if self.sock in readable:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 8)
                except InterruptedError:
                    continue
                except OSError:
                    return 0
                if not data:
                    return 0  # the supervisor is gone
                try:
                    self.handle(json.loads(data), fds)
                finally:
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)

    def reap(self) -> None:
        reported = False
        for pid, status in exited_children():
            reported = self.send({"op": "exit", "pid": pid, "status": status}) or reported
        if reported and os.getppid() == self.parent:
            # What the kernel does when a direct child of the supervisor exits: its loop wakes and reaps.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.parent, signal.SIGCHLD)

    def handle(self, request: dict, fds: list[int]) -> None:
        serial = request.get("id")
        if request.get("op") != "spawn" or len(fds) != 4:
            self.send({"op": "refused", "id": serial, "why": "malformed request"})
            return
        if threading.active_count() != 1:
            self.send({"op": "refused", "id": serial, "why": f"{threading.active_count()} threads"})
            return
        assert self.stamp is not None
        changed = self.stamp.changed()
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(ready_r)
            os.close(ready_w)
            self.send({"op": "refused", "id": serial, "why": f"fork failed: {exc}"})
            return
        if pid == 0:
            os.close(ready_r)
            _child(request, fds, ready_w, changed is not None)  # never returns
        os.close(ready_w)
        with contextlib.suppress(OSError):
            os.read(ready_r, 1)  # the child has its own session now (or died trying)
        os.close(ready_r)
        self.send({"op": "spawned", "id": serial, "pid": pid, "restarting": changed is not None})
        if changed is not None:
            print(f"containerbuddy warm-start helper: {changed} changed on disk; re-importing", file=sys.stderr)
            self.reexec()

    def reexec(self) -> None:
        """Load the new code: exec this helper again (same pid; children, socket and parent kept)."""
        signal.set_wakeup_fd(-1)
        os.execv(sys.executable, [sys.executable, *self.argv])


def _child(request: dict, fds: list[int], ready_w: int, stale: bool) -> None:
    """In the forked child: become the hook process, run it, exit with its code.  Never returns."""
    code = 1
    try:
        if request.get("group", True):
            os.setsid()
        os.write(ready_w, b"s")
        os.close(ready_w)
        stdin, stdout, stderr, go = fds
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            if fd != target:
                os.dup2(fd, target)
        keep = {0, 1, 2, go}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGQUIT, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if os.read(go, 1) != b"g":
            os._exit(0)  # the supervisor gave this spawn up: run nothing
        os.close(go)
        env = request["env"]
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
        cwd = request.get("cwd")
        if cwd and cwd != os.getcwd():
            os.chdir(cwd)
        argv = list(request["argv"])
        if stale:
            os.execve(request["script"], argv, env)
        code = _run_entry(request["entry"], [request["script"], *argv[1:]])
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 - the hook's own crash: report it as a process would
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        _flush()
    os._exit(code)


def _run_entry(entry: str, argv: list[str]) -> int:
    """Run a console script's entry point as the script does: `sys.exit(main())`."""
    import atexit
    import importlib

    module, _, function = entry.partition(":")
    sys.argv = argv
    try:
        try:
            result = getattr(importlib.import_module(module), function)()
            code = _exit_code(SystemExit(result))
        except SystemExit as exc:
            code = _exit_code(exc)
        except KeyboardInterrupt:
            # As the interpreter does: the traceback, then die of SIGINT (status 130 to the parent).
            import traceback
            traceback.print_exc()
            _flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            code = 130
    finally:
        # The interpreter's own exit: wait for non-daemon threads, then the atexit functions.
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(Exception):
                shutdown()
        atexit._run_exitfuncs()
    return code


def _exit_code(exc: SystemExit) -> int:
    """The exit status Python gives a SystemExit (None 0, an int itself, anything else printed, 1)."""
    value = exc.code
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    with contextlib.suppress(Exception):
        print(value, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="containerbuddy's warm-start helper (started by the supervisor)")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--entry", action="append", default=[])
    parser.add_argument("--preload", action="append", default=[])
    args = parser.parse_args(argv)
    entries = dict(e.split("=", 1) for e in args.entry)
    try:
        return Helper(args.fd, entries, args.preload, sys.orig_argv[1:]).run()
    except OSError as exc:
        if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.EBADF):
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
