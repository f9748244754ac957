"""containerbuddy as PID 1 (a child subreaper here): exit codes, reaping, signals, hooks, tasks.

Every test runs the real `containerbuddy` console script as a subprocess.
`Buddy` (also used by test_supervisor_discovery.py) starts it with a config
file and stops it, and everything it started, at teardown.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.procs import Proc, descendants, process_state, wait_for

CONTAINERBUDDY = str(Path(sys.executable).parent / "containerbuddy")


class Buddy:
    """One containerbuddy process with its config file and its output in a log file."""

    def __init__(self, workdir: Path, config: dict | str | None, command: list[str],
                 env: dict[str, str] | None = None, name: str = "cb") -> None:
        self.workdir = workdir
        self.config_path = workdir / f"{name}.json"
        args = [CONTAINERBUDDY]
        if config is not None:
            self.config_path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
            args += ["-config", f"file://{self.config_path}"]
        full_env = {**os.environ, "NODE_NAME": "node1", "LOG_LEVEL": "DEBUG", **(env or {})}
        full_env.pop("CONTAINERBUDDY", None)
        self.proc = Proc(name, args + command, workdir / f"{name}.log", env=full_env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 20) -> int:
        return self.proc.popen.wait(timeout)

    def send(self, sig: int) -> None:
        self.proc.send(sig)

    def output(self) -> str:
        return self.proc.log_text()

    def children(self) -> list[tuple[int, str]]:
        """(pid, state) of the supervisor's direct children, zombies included."""
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                if int(fields.get("PPid", "0")) == self.pid:
                    out.append((int(entry), fields["State"].split()[0]))
        return out

    def close(self) -> None:
        """Stop it gracefully; if that fails, kill it and everything below it."""
        if self.proc.alive():
            self.proc.send(signal.SIGTERM)
            try:
                self.proc.popen.wait(15)
            except subprocess.TimeoutExpired:
                for pid, _ in descendants(self.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.kill_tree()
        self.proc.stop()


@pytest.fixture
def buddies(tmp_path):
    """Factory: `buddies(config, command, env=…)`; every supervisor is stopped at teardown."""
    started: list[Buddy] = []

    def make(config, command, env=None, name=None):
        buddy = Buddy(tmp_path, config, command, env, name or f"cb{len(started)}")
        started.append(buddy)
        return buddy
    yield make
    for buddy in started:
        buddy.close()


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


# -- exit codes --------------------------------------------------------------------

def test_exit_code_of_the_app(buddies):
    assert buddies(None, ["sh", "-c", "exit 7"]).wait() == 7
    assert buddies({"stopTimeout": 1}, ["true"]).wait() == 0


def test_on_start_failure_is_the_exit_code_and_the_app_never_runs(buddies, tmp_path):
    marker = tmp_path / "app-ran"
    buddy = buddies({"onStart": "sh -c 'exit 3'"}, ["touch", str(marker)])
    assert buddy.wait() == 3
    assert not marker.exists()
    ok = buddies({"onStart": ["sh", "-c", "exit 0"]}, ["touch", str(marker)])
    assert ok.wait() == 0 and marker.exists()


def test_app_killed_by_a_signal_gives_128_plus_n(buddies):
    assert buddies(None, ["sh", "-c", "kill -9 $$"]).wait() == 137
    assert buddies(None, ["sh", "-c", "kill -TERM $$"]).wait() == 143


def test_missing_app_is_127(buddies):
    assert buddies(None, ["/nonexistent/app"]).wait() == 127


def test_output_of_app_and_hooks_passes_through(buddies):
    buddy = buddies({"onStart": "echo from-on-start", "postStop": ["sh", "-c", "echo from-post-stop >&2"]},
                    ["sh", "-c", "echo from-app; echo app-err >&2"])
    assert buddy.wait() == 0
    out = buddy.output()
    for text in ("from-on-start", "from-app", "app-err", "from-post-stop"):
        assert text in out


def test_hooks_get_supervisor_pid_and_config_source(buddies, tmp_path):
    envfile = tmp_path / "env"
    buddy = buddies({"onStart": ["sh", "-c", f'echo "$CONTAINERBUDDY_PID $CONTAINERBUDDY" > {envfile}']}, ["true"])
    assert buddy.wait() == 0
    pid, source = envfile.read_text().split()
    assert int(pid) == buddy.pid
    assert source == f"file://{buddy.config_path}"


# -- reaping -----------------------------------------------------------------------------

def test_orphans_are_reaped_while_the_app_runs(buddies):
    # The app's child leaves two orphans behind; they are re-parented to the
    # supervisor (a subreaper), which must reap them when they exit.
    # The orphans live 2 s: long enough to be seen both adopted even when a scan of
    # /proc races their re-parenting (CI once saw one of the two on the first scan).
    app = ["sh", "-c", "sh -c 'sleep 2 & sleep 2 & exit 0'; sleep 30"]
    buddy = buddies({"stopTimeout": 1}, app)

    def both_orphans() -> list[int] | None:
        found = [p for p, _ in buddy.children() if p != _app_pid(buddy)]
        return found if len(found) >= 2 else None

    adopted = wait_for(both_orphans, 5,
                       what="both orphans adopted by the supervisor")
    assert len(adopted) == 2
    wait_for(lambda: all(process_state(p) is None for p in adopted), 8, what="orphans gone")
    time.sleep(0.2)
    assert [st for _, st in buddy.children() if st == "Z"] == []
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 143


def _app_pid(buddy: Buddy) -> int | None:
    for pid, _ in buddy.children():
        try:
            if b"sleep 30" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


def test_app_leaving_orphans_exits_with_nothing_left(buddies):
    buddy = buddies(None, ["sh", "-c", "sleep 1 & sleep 1 & exit 0"])
    assert buddy.wait(10) == 0
    assert buddy.children() == []
    assert [cmd for _, cmd in descendants() if "sleep 1" in cmd] == []


# -- SIGTERM ---------------------------------------------------------------------------------

def test_sigterm_runs_pre_stop_then_stops_the_app_then_post_stop(buddies, tmp_path):
    log = tmp_path / "order"
    app = ["sh", "-c", f'trap "echo app-got-SIGTERM >> {log}; exit 0" TERM; echo app-started >> {log}; '
                       f'while :; do sleep 0.05; done']
    buddy = buddies({"preStop": f"sh -c 'echo preStop >> {log}'", "postStop": f"sh -c 'echo postStop >> {log}'",
                     "stopTimeout": 5}, app)
    wait_for(lambda: "app-started" in lines(log), 5, what="app started")
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 0
    assert lines(log) == ["app-started", "preStop", "app-got-SIGTERM", "postStop"]


def test_sigint_stops_like_sigterm(buddies, tmp_path):
    log = tmp_path / "order"
    buddy = buddies({"preStop": f"sh -c 'echo preStop >> {log}'", "postStop": f"sh -c 'echo postStop >> {log}'"},
                    ["sh", "-c", f"echo app-started >> {log}; exec sleep 30"])
    wait_for(lambda: "app-started" in lines(log), 5, what="app started")
    buddy.send(signal.SIGINT)
    assert buddy.wait() == 128 + signal.SIGTERM
    assert lines(log) == ["app-started", "preStop", "postStop"]


def test_app_ignoring_sigterm_is_killed_after_stop_timeout(buddies, tmp_path):
    ready = tmp_path / "ready"
    app = ["sh", "-c", f'trap "" TERM; touch {ready}; while :; do sleep 0.05; done']
    buddy = buddies({"stopTimeout": 2}, app)
    wait_for(ready.exists, 5, what="app ready")
    sent = time.monotonic()
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 137
    took = time.monotonic() - sent
    assert 2.0 <= took < 5.0, took


def test_app_exiting_by_itself_runs_post_stop_and_no_pre_stop(buddies, tmp_path):
    log = tmp_path / "order"
    buddy = buddies({"preStop": f"sh -c 'echo preStop >> {log}'", "postStop": f"sh -c 'echo postStop >> {log}'"},
                    ["sh", "-c", f"echo app >> {log}; exit 4"])
    assert buddy.wait() == 4
    assert lines(log) == ["app", "postStop"]


def test_sigterm_during_on_start_stops_it_and_never_starts_the_app(buddies, tmp_path):
    started, marker = tmp_path / "on-start", tmp_path / "app-ran"
    buddy = buddies({"onStart": ["sh", "-c", f"touch {started}; exec sleep 30"], "stopTimeout": 2},
                    ["touch", str(marker)])
    wait_for(started.exists, 5, what="onStart running")
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 143
    assert not marker.exists()
    assert [cmd for _, cmd in descendants() if "sleep 30" in cmd] == []


def test_other_signals_are_forwarded_to_the_app(buddies, tmp_path):
    log = tmp_path / "got"
    app = ["sh", "-c", f'trap "echo USR2 >> {log}" USR2; touch {log}; while :; do sleep 0.05; done']
    buddy = buddies({"stopTimeout": 1}, app)
    wait_for(log.exists, 5, what="app ready")
    buddy.send(signal.SIGUSR2)
    wait_for(lambda: lines(log) == ["USR2"], 5, what="app got SIGUSR2")


# -- tasks and coprocesses -----------------------------------------------------------------

def test_tasks_run_every_frequency_one_at_a_time(buddies, tmp_path):
    log = tmp_path / "task"
    # Each run takes 0.5 s, the frequency is 0.2 s: runs must never overlap.
    task = ["sh", "-c", f"echo start >> {log}; sleep 0.5; echo end >> {log}"]
    buddy = buddies({"tasks": [{"name": "t", "command": task, "frequency": "200ms", "timeout": "5s"}]},
                    ["sleep", "30"])
    wait_for(lambda: lines(log).count("end") >= 3, 10, what="three task runs")
    buddy.send(signal.SIGTERM)
    buddy.wait()
    events = lines(log)
    for i in range(0, len(events) - 1, 2):
        assert events[i:i + 2] in (["start", "end"], ["start"]), events


def test_task_timeout_sigterm_then_sigkill(buddies, tmp_path):
    log = tmp_path / "task"
    polite = ["sh", "-c", f'trap "echo polite-term >> {log}; exit 1" TERM; echo polite >> {log}; '
                          f'while :; do sleep 0.05; done']
    stubborn = ["sh", "-c", f'trap "echo stubborn-term >> {log}" TERM; echo stubborn >> {log}; '
                            f'while :; do sleep 0.05; done']
    buddy = buddies({"tasks": [{"name": "polite", "command": polite, "frequency": "0.2", "timeout": "300ms"},
                               {"name": "stubborn", "command": stubborn, "frequency": "0.2", "timeout": "300ms"}]},
                    ["sleep", "60"])
    first = wait_for(lambda: [pid for pid, cmd in descendants(buddy.pid) if "stubborn" in cmd], 5,
                     what="stubborn task running")[0]
    wait_for(lambda: "polite-term" in lines(log) and "stubborn-term" in lines(log), 5, what="tasks got SIGTERM")
    seen = time.monotonic()
    # the stubborn one survives SIGTERM and is SIGKILLed 5 s later
    wait_for(lambda: process_state(first) in (None, "Z"), 8, what="stubborn task killed")
    assert 4.0 <= time.monotonic() - seen < 7.0
    assert lines(log).count("stubborn") == 1  # never started again while the first run was alive
    assert lines(log).count("polite") >= 2  # the polite one ended at once and ran again meanwhile


def test_coprocess_restarts(buddies, tmp_path):
    counts = {name: tmp_path / name for name in ("twice", "never", "always")}
    buddy = buddies({"coprocesses": [
        {"name": "twice", "command": ["sh", "-c", f"echo x >> {counts['twice']}"], "restarts": 2},
        {"name": "never", "command": ["sh", "-c", f"echo x >> {counts['never']}"], "restarts": "never"},
        {"name": "always", "command": ["sh", "-c", f"echo x >> {counts['always']}"], "restarts": "unlimited"},
    ]}, ["sleep", "30"])
    wait_for(lambda: len(lines(counts["always"])) >= 4, 10, what="unlimited restarts")
    assert len(lines(counts["twice"])) == 3
    assert len(lines(counts["never"])) == 1
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 143


def test_long_running_coprocess_is_stopped_with_the_supervisor(buddies, tmp_path):
    ready = tmp_path / "ready"
    buddy = buddies({"coprocesses": [{"command": ["sh", "-c", f"touch {ready}; exec sleep 45"]}]}, ["sleep", "30"])
    wait_for(ready.exists, 5, what="coprocess running")
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 143
    assert [cmd for _, cmd in descendants() if "sleep 45" in cmd] == []
