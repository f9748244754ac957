"""Warm start (supervisor/warm.py): hooks forked from a pre-imported helper stay isolated processes.

Two kinds of test:

* The real supervisor with one extra warm entry, `fake-hook`: a console script
  written into the test's directory whose module (also there) does what the
  test asks (print, exit, crash, hang, report its own state).  Everything else
  is the real thing: `containerbuddy`'s main loop, the helper, fork, signals.
* The real supervisor and the real `triton-mysql` command (its only entry in
  production): exit codes, output and timeouts of real hooks.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.harness.procs import Proc, descendants, process_state, wait_for
from triton_mysql.supervisor import warm

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

FAKE_MODULE = '''\
"""A hook for the warm-start tests: each argument is one step."""
import json, os, signal, subprocess, sys, threading, time

VERSION = "{version}"
IMPORTED_BY = os.getpid()


def state():
    fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
    return {{
        "warm": IMPORTED_BY != os.getpid(),
        "threads": threading.active_count(),
        "fds": fds,
        "own_group": os.getpgrp() == os.getpid(),
        "own_session": os.getsid(0) == os.getpid(),
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "default_handlers": all(signal.getsignal(s) == signal.SIG_DFL
                                for s in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1)),
        "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "stdin": os.readlink("/proc/self/fd/0"),
        "argv0": sys.argv[0],
    }}


def main():
    args = sys.argv[1:]
    while args:
        step = args.pop(0)
        if step == "print":
            print(args.pop(0), flush=True)
        elif step == "err":
            print(args.pop(0), file=sys.stderr, flush=True)
        elif step == "env":
            name = args.pop(0)
            print(f"ENV {{name}}={{os.environ.get(name, '<unset>')}}", flush=True)
        elif step == "version":
            print(f"VERSION {{VERSION}} {{'warm' if IMPORTED_BY != os.getpid() else 'cold'}}", flush=True)
        elif step == "state":
            print("STATE " + json.dumps(state(), sort_keys=True), flush=True)
        elif step == "sleep":
            time.sleep(float(args.pop(0)))
        elif step == "grandchild":
            child = subprocess.Popen(["sleep", "300"])
            print(f"GRANDCHILD {{child.pid}}", flush=True)
        elif step == "hang":
            print(f"HANGING {{os.getpid()}}", flush=True)
            while True:
                time.sleep(1)
        elif step == "exit":
            sys.exit(int(args.pop(0)))
        elif step == "_exit":
            sys.stdout.flush()
            os._exit(int(args.pop(0)))
        elif step == "raise":
            raise RuntimeError("a bug in the hook")
        elif step == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
    return 0
'''

SUPERVISOR = ("import sys; from triton_mysql.supervisor import warm; "
              "warm.ENTRIES['fake-hook'] = 'fakepkg.fakehook:main'; "
              "from triton_mysql.supervisor.main import main; main()")


class World:
    """A directory with the fake hook installed as a console script of this interpreter."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.pkg = tmp / "lib" / "fakepkg"
        self.bin.mkdir()
        self.pkg.mkdir(parents=True)
        (self.pkg / "__init__.py").write_text("")
        self.write_module("1")
        script = self.bin / "fake-hook"
        script.write_text(f"#!{sys.executable}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
                          "from fakepkg.fakehook import main\nif __name__ == '__main__':\n"
                          "    sys.exit(main())\n")
        script.chmod(0o755)
        self.procs: list[Proc] = []

    def write_module(self, version: str) -> None:
        path = self.pkg / "fakehook.py"
        text = FAKE_MODULE.format(version=version)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # as pip and editors do: a new file (new inode)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL", "ETCD", "MYSQL", "CONTAINERBUDDY"))}
        env.update({
            "PATH": f"{self.bin}:{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": f"{self.tmp / 'lib'}:{ROOT}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "NODE_NAME": "node1",
            "LOG_LEVEL": "DEBUG",
        })
        env.update(extra)
        return env

    def supervisor(self, config: dict, *, env: dict[str, str] | None = None, name: str = "cb",
                   app: list[str] | None = None) -> Proc:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(config))
        proc = Proc(name, [sys.executable, "-c", SUPERVISOR, "-config", f"file://{path}", *(app or ["sleep", "600"])],
                    self.tmp / f"{name}.log", env=env or self.env(), cwd=str(self.tmp))
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.send(signal.SIGTERM)
                try:
                    proc.popen.wait(20)
                except Exception:  # noqa: BLE001 - kill what is left below
                    pass
            for pid, _ in descendants(proc.pid) if proc.alive() else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill_tree()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def task(command: str, frequency: str = "1s", timeout: str = "30s", name: str = "t") -> dict:
    return {"tasks": [{"name": name, "command": command, "frequency": frequency, "timeout": timeout}]}


def wait_log(proc: Proc, pattern: str, timeout: float = 60.0, count: int = 1) -> list[re.Match]:
    regex = re.compile(pattern)

    def found():
        matches = list(regex.finditer(proc.log_text()))
        return matches if len(matches) >= count else None
    try:
        return wait_for(found, timeout, interval=0.1, what=f"{pattern!r} in {proc.name}'s log")  # type: ignore[return-value]
    except TimeoutError:
        raise AssertionError(f"{pattern!r} not in the log:\n{proc.log_text()[-6000:]}") from None


def helper_pid(proc: Proc) -> int:
    match = wait_log(proc, r"warm start: helper \(pid (\d+)\) ready")[-1]
    return int(match.group(1))


# -- through the real supervisor with a fake hook ---------------------------------------------

def test_warm_hook_output_exit_codes_and_crashes(world):
    """Output passes through; exit codes, os._exit, an exception and SIGSEGV give what a new
    process would give; the supervisor and the helper survive every one of them."""
    sup = world.supervisor({"tasks": [
        {"name": "out", "command": "fake-hook version print hello err oops exit 3", "frequency": "1s"},
        {"name": "hard", "command": "fake-hook _exit 4", "frequency": "1s"},
        {"name": "bug", "command": "fake-hook raise", "frequency": "1s"},
        {"name": "segv", "command": "fake-hook segv", "frequency": "1s"},
    ]})
    first_helper = helper_pid(sup)
    wait_log(sup, r"task out: started pid \d+ \(warm\)")
    for what in (r"task out: finished \(exit code 3\)", r"task hard: finished \(exit code 4\)",
                 r"task bug: finished \(exit code 1\)", r"task segv: finished \(killed by SIGSEGV\)"):
        wait_log(sup, what, count=2)  # twice: the first runs may have been cold (helper not ready yet)
    text = sup.log_text()
    assert "VERSION 1 warm" in text and "hello" in text and "oops" in text
    assert "RuntimeError: a bug in the hook" in text, "the hook's traceback reaches the supervisor's output"
    assert sup.alive()
    assert helper_pid(sup) == first_helper and process_state(first_helper) not in (None, "Z"), \
        "no crash of a hook takes the helper down"


def test_stdout_and_stderr_stay_apart(world, tmp_path):
    config = world.tmp / "sep.json"
    config.write_text(json.dumps(task("fake-hook print TO-STDOUT err TO-STDERR", frequency="500ms")))
    out, err = open(tmp_path / "out", "wb"), open(tmp_path / "err", "wb")
    import subprocess
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, "-config", f"file://{config}", "sleep", "600"],
                            stdout=out, stderr=err, env=world.env(), cwd=str(world.tmp), start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "err").read_text().count("(warm)") >= 1
                 and (tmp_path / "out").read_text().count("TO-STDOUT") >= 2, 60, what="warm runs")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        out.close()
        err.close()
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    line = lambda text: re.compile(rf"^{text}$", re.M)  # noqa: E731 - the hook's own line, not the command
    assert line("TO-STDOUT").search(stdout) and not line("TO-STDERR").search(stdout)
    assert line("TO-STDERR").search(stderr) and not line("TO-STDOUT").search(stderr)


def test_forked_hook_starts_clean(world):
    """No inherited descriptor, thread, blocked signal or handler; its own session; stdin /dev/null."""
    sup = world.supervisor(task("fake-hook state", frequency="500ms"))
    helper_pid(sup)
    match = wait_log(sup, r'STATE (\{.*"warm": true.*\})')[-1]
    state = json.loads(match.group(1))
    assert state["threads"] == 1
    assert set(state["fds"]) - {0, 1, 2} <= {max(state["fds"])}, f"descriptors inherited: {state['fds']}"
    assert state["own_group"] and state["own_session"]
    assert state["blocked"] == []
    assert state["default_handlers"] and state["sigint"], "signal handling as in a new interpreter"
    assert state["stdin"] == "/dev/null"
    assert state["argv0"].endswith("/fake-hook")


def test_environment_per_spawn(world, consul_double):
    """The hook gets the supervisor's environment plus the per-spawn additions (maintenance)."""
    sup = world.supervisor({"consul": consul_double.endpoint, "services": [{"name": "svc", "port": 1, "poll": "500ms", "ttl": 5,
                                          "health": "fake-hook env CONTAINERBUDDY_MAINTENANCE env CONTAINERBUDDY_PID "
                                                    "env EXTRA_SETTING"}]},
                           env=world.env(EXTRA_SETTING="from-the-supervisor"))
    helper_pid(sup)
    wait_log(sup, r"health svc: started pid \d+ \(warm\)")
    wait_log(sup, r"ENV CONTAINERBUDDY_MAINTENANCE=<unset>")
    wait_log(sup, rf"ENV CONTAINERBUDDY_PID={sup.pid}\b")
    wait_log(sup, r"ENV EXTRA_SETTING=from-the-supervisor")
    sup.send(signal.SIGUSR1)
    wait_log(sup, r"ENV CONTAINERBUDDY_MAINTENANCE=1\nENV CONTAINERBUDDY_PID=\d+\nENV EXTRA_SETTING=from-the-supervisor")
    text = sup.log_text()
    before = text[:text.index("ENV CONTAINERBUDDY_MAINTENANCE=1")]
    last_start = re.findall(r"health svc: started pid \d+( \(warm\))?", before)[-1]
    assert last_start == " (warm)", "the maintenance pass was forked by the helper too"


def test_hung_hook_is_killed_with_its_process_group(world, consul_double):
    sup = world.supervisor({"consul": consul_double.endpoint, "services": [{"name": "svc", "port": 1, "poll": "1s", "ttl": 5, "timeout": "1s",
                                          "health": "fake-hook grandchild hang"}]})
    helper_pid(sup)
    started = wait_log(sup, r"health svc: started pid (\d+) \(warm\)")[-1]
    hook = int(started.group(1))
    grandchild = int(wait_log(sup, r"GRANDCHILD (\d+)")[-1].group(1))
    wait_log(sup, rf"health svc: pid {hook} exited \(killed by SIGKILL\)")
    assert "timed out after" in sup.log_text()
    wait_for(lambda: process_state(grandchild) in (None, "Z"), 10, what="the hook's own child killed too")


def test_code_change_on_disk_is_picked_up(world):
    sup = world.supervisor(task("fake-hook version", frequency="500ms"))
    helper_pid(sup)
    wait_log(sup, r"VERSION 1 warm")
    world.write_module("2")
    wait_log(sup, r"hook code changed on disk")
    wait_log(sup, r"VERSION 2 cold")  # the spawn that saw the change: the new code, full start-up
    wait_log(sup, r"VERSION 2 warm")  # then the helper has re-imported
    text = sup.log_text()
    assert "VERSION 1" not in text[text.index("VERSION 2"):], "no old code after the change was seen"


def test_helper_death_is_survived(world):
    """Kill -9 the helper while a hook runs: the hook's real exit code still arrives (the
    supervisor reaps it as the subreaper), later hooks run, and a new helper takes over."""
    sup = world.supervisor(task("fake-hook sleep 2 exit 5", frequency="500ms"))
    old = helper_pid(sup)
    started = wait_log(sup, r"task t: started pid (\d+) \(warm\)")[-1]
    os.kill(old, signal.SIGKILL)
    hook = int(started.group(1))
    wait_log(sup, rf"task t: pid {hook} exited \(exit code 5\)")
    wait_log(sup, rf"helper \(pid {old}\) exited \(killed by SIGKILL\)")
    new = int(wait_log(sup, r"warm start: helper \(pid (\d+)\) ready", count=2)[-1].group(1))
    assert new != old
    wait_log(sup, r"task t: started pid \d+ \(warm\)", count=2)
    assert sup.alive()


def test_hung_helper_is_replaced(world):
    """A frozen helper is given up on, whether a spawn waits for its answer or a child's exit waits
    for its report: the hook's exit code still arrives, and a new helper takes over."""
    sup = world.supervisor(task("fake-hook sleep 0.3 exit 6", frequency="500ms"))
    old = helper_pid(sup)
    wait_log(sup, r"task t: started pid \d+ \(warm\)")
    runs = len(re.findall(r"task t: finished \(exit code 6\)", sup.log_text()))
    os.kill(old, signal.SIGSTOP)
    try:
        match = wait_log(sup, rf"helper \(pid {old}\) (did not answer within|stopped reaping its children)")[-1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGCONT)
    wait_log(sup, r"task t: finished \(exit code 6\)", count=runs + 2)
    if match.group(1).startswith("did not"):
        after = sup.log_text()[match.end():]
        assert re.search(r"task t: started pid \d+( \(warm\))?", after).group(1) is None, \
            "the spawn the helper did not answer is started the ordinary way at once"
    new = int(wait_log(sup, r"warm start: helper \(pid (\d+)\) ready", count=2)[-1].group(1))
    assert new != old
    wait_for(lambda: process_state(old) in (None, "Z"), 10, what="the hung helper gone")
    text = sup.log_text()
    assert not re.search(r"timed out after", text), "no hook waited for its timeout"


def test_warm_start_can_be_switched_off(world):
    sup = world.supervisor(task("fake-hook version", frequency="500ms"), env=world.env(WARM_START="false"))
    wait_log(sup, r"VERSION 1 cold", count=3)
    text = sup.log_text()
    assert "warm start is off (WARM_START=false)" in text
    assert "(warm)" not in text and "VERSION 1 warm" not in text


def test_other_commands_are_not_run_warm(world, tmp_path):
    """Only this installation's scripts: another interpreter's script of the same name runs as before."""
    other = tmp_path / "other-bin"
    other.mkdir()
    script = other / "fake-hook"
    script.write_text("#!/bin/sh\necho OTHER-SCRIPT\n")
    script.chmod(0o755)
    env = world.env()
    env["PATH"] = f"{other}:{env['PATH']}"
    sup = world.supervisor({"tasks": [{"name": "other", "command": "fake-hook", "frequency": "500ms"},
                                      {"name": "sh", "command": "sh -c 'echo SHELL-TASK'", "frequency": "500ms"}]},
                           env=env)
    wait_log(sup, r"OTHER-SCRIPT", count=3)
    wait_log(sup, r"SHELL-TASK", count=3)
    assert "(warm)" not in sup.log_text()


# -- eligibility (no process needed) ----------------------------------------------------------

def test_only_scripts_of_this_interpreter_are_eligible(tmp_path):
    good = tmp_path / "triton-mysql"
    good.write_text(f"#!{sys.executable}\nimport sys\nfrom triton_mysql.cli import main\nsys.exit(main())\n")
    good.chmod(0o755)
    resolve = warm.Resolver(warm.ENTRIES)
    env = {"PATH": str(tmp_path)}
    assert resolve(["triton-mysql", "health"], env) == warm.Script(str(good), "triton_mysql.cli:main")
    assert resolve([str(good), "health"], {}) is not None
    good.write_text("#!/usr/bin/python2\nfrom triton_mysql.cli import main\n")
    assert resolve(["triton-mysql"], env) is None, "another interpreter: other site-packages"
    good.write_text(f"#!{sys.executable}\nfrom something_else import main\n")
    assert resolve(["triton-mysql"], env) is None, "not our entry point"
    assert resolve(["sh", "-c", "triton-mysql"], env) is None
    assert resolve(["triton-mysql"], {"PATH": str(tmp_path / "nowhere")}) is None


def test_switch_values():
    assert warm.enabled({}) and warm.enabled({"WARM_START": "true"}) and warm.enabled({"WARM_START": ""})
    assert not warm.enabled({"WARM_START": "false"}) and not warm.enabled({"WARM_START": "0"})


# -- the real triton-mysql hooks ----------------------------------------------------------------

@pytest.fixture
def blackhole():
    """A TCP port that accepts connections and never answers (a hung discovery service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()
    server.close()


def test_real_hook_exit_code_output_timeout_and_crash(world, blackhole, consul_double):
    host, port = blackhole
    env = world.env(CONSUL=f"{host}:{port}", DISCOVERY_TIMEOUT="60", SESSION_TTL="200")
    env.pop("PYTHONDONTWRITEBYTECODE")
    sup = world.supervisor({
        "consul": consul_double.endpoint,  # the supervisor's own registrations; the hooks use CONSUL
        "services": [{"name": "svc", "port": 1, "poll": "1s", "ttl": 5, "timeout": "1500ms",
                      "health": "triton-mysql status"}],
        "tasks": [{"name": "bad", "command": "triton-mysql health", "frequency": "1s", "timeout": "30s"},
                  {"name": "crash", "command": "triton-mysql status --json", "frequency": "1s", "timeout": "20s"}],
    }, env=env)
    helper_pid(sup)
    for pid, command in descendants(sup.pid):  # runs started before the helper was ready: not the subject here
        if command.endswith("triton-mysql status --json"):
            os.kill(pid, signal.SIGKILL)
    # A configuration error: exit 2 and its one line, from a warm hook.
    wait_log(sup, r"task bad: started pid \d+ \(warm\)")
    wait_log(sup, r"task bad: finished \(exit code 2\)")
    assert "triton-mysql: configuration error: MYSQL_REPL_USER" in sup.log_text()
    # A hook stuck on a discovery service that never answers: killed at its timeout.
    hung = int(wait_log(sup, r"health svc: started pid (\d+) \(warm\)")[-1].group(1))
    wait_log(sup, rf"health svc: pid {hung} exited \(killed by SIGKILL\)")
    # A hook that crashes (here: SIGSEGV from outside, as the kernel would send it).
    crash = int(wait_log(sup, r"task crash: started pid (\d+) \(warm\)")[-1].group(1))
    os.kill(crash, signal.SIGSEGV)
    wait_log(sup, rf"task crash: pid {crash} exited \(killed by SIGSEGV\)")
    assert sup.alive()
    time.sleep(1.5)
    wait_log(sup, r"health svc: started pid \d+ \(warm\)", count=2)
