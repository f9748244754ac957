"""Child processes for the test harness and the demo: start, wait ready, stop by PID.

Every server the suite needs is started as a child of the test process (so it
can be `wait()`ed: the sandbox's PID 1 reaps orphans late, see ENVIRONMENT.md)
and stopped by its own PID.  `descendants()` lets the suite prove that nothing
it started outlives it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

_used_ports: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` now and not handed out before in this process."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port found")


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition") -> object:
    """Poll `predicate` until it returns a truthy value; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the predicate may fail until ready
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Proc:
    """A child process with its output in a log file; stopped by its own PID."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: str | None = None, new_session: bool = True) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=new_session,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Signal the process group the child leads (it and everything it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """SIGTERM (or `sig`), wait up to `timeout`, then SIGKILL.  Returns the exit code."""
        if self.alive():
            self.send(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode

    def kill_tree(self) -> None:
        """SIGKILL the child's whole process group, then reap the child."""
        self.signal_group(signal.SIGKILL)
        self.send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._log.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} alive={self.alive()}>"


def descendants(pid: int | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of every live, non-zombie process descending from `pid` (default: us)."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("State", "").startswith("Z"):
            continue
        parents[int(entry)] = int(fields.get("PPid", "0").strip())
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            cmdlines[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmdlines[int(entry)] = fields.get("Name", "?").strip()
    out = []
    for p in parents:
        q = parents.get(p, 0)
        seen = 0
        while q and q != root and seen < 64:
            q = parents.get(q, 0)
            seen += 1
        if q == root and p != root:
            out.append((p, cmdlines.get(p, "?")))
    return sorted(out)


def process_state(pid: int) -> str | None:
    """The one-letter state of `pid` from /proc (None when gone); 'Z' is a zombie."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return None
    return None


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    """Stop the given processes on exit from the block, whatever happens inside it."""
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()
