"""containerbuddy against real discovery: real etcd and the Consul double (`discovery_server`).

Each test runs twice ([etcd], [consul]).  One config file serves both: the
`consul` and `etcd` values are templates and the one whose variable is unset
renders empty, which counts as absent.  TTLs are short (etcd's minimum lease
is 2 s).
"""
from __future__ import annotations

import signal
import sys
import time

from triton_mysql.discovery import ServiceSpec
from triton_mysql.supervisor.rename import notify, set_service_name
from tests.harness.procs import descendants, process_state, wait_for
from tests.test_supervisor_process import buddies, lines  # noqa: F401  (fixture)

ADDRESS = "127.0.0.1"


def config(services=(), backends=(), **extra) -> dict:
    return {
        "consul": "{{ .CONSUL }}",
        "etcd": {"endpoints": "{{ .ETCD }}", "prefix": "{{ .ETCD_PREFIX | default `/triton-mysql` }}"},
        "services": list(services), "backends": list(backends), "stopTimeout": 2, **extra,
    }


def service(name: str, health, poll: float = 0.5, ttl: float = 3, port: int = 8080, **extra) -> dict:
    return {"name": name, "port": port, "health": health, "poll": poll, "ttl": ttl, **extra}


def env_for(ds) -> dict[str, str]:
    return {**ds.env(), "ADVERTISE_ADDRESS": ADDRESS}


def names(client, name: str) -> list[str]:
    return [i.id for i in client.healthy(name)]


def test_passing_service_is_listed_and_deregistered_on_stop(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    post = tmp_path / "post-stop"
    buddy = buddies(config([service("web", "true", tags=["a", "b"])], postStop=["touch", str(post)]),
                    ["sleep", "60"], env=env_for(discovery_server))
    listed = wait_for(lambda: d.healthy("web"), 10, what="web listed")
    assert [(i.id, i.address, i.port, i.tags) for i in listed] == [("web-node1", ADDRESS, 8080, ("a", "b"))]
    buddy.send(signal.SIGTERM)
    assert buddy.wait() == 143
    # right after the exit: gone by deregistration, long before its 3 s ttl could run out
    assert d.healthy("web") == []
    assert post.exists()


def test_never_passing_is_never_listed(discovery_server, buddies):
    d = discovery_server.client()
    buddies(config([service("bad", "false", poll=0.2), service("good", "true", poll=0.2)]), ["sleep", "60"],
            env=env_for(discovery_server))
    wait_for(lambda: d.healthy("good"), 10, what="good listed")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert d.healthy("bad") == []
        time.sleep(0.1)


def test_turning_failing_leaves_within_ttl(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    flag = tmp_path / "healthy"
    flag.touch()
    ttl, poll = 2.0, 0.3
    buddies(config([service("flaky", ["test", "-e", str(flag)], poll=poll, ttl=ttl)]), ["sleep", "60"],
            env=env_for(discovery_server))
    wait_for(lambda: d.healthy("flaky"), 10, what="flaky listed")
    flag.unlink()
    failed_at = time.monotonic()
    wait_for(lambda: not d.healthy("flaky"), ttl + 2.5, interval=0.05, what="flaky gone")
    took = time.monotonic() - failed_at
    assert ttl - poll - 0.3 <= took <= ttl + 2.0, took
    # and it comes back with the next passing check
    flag.touch()
    wait_for(lambda: d.healthy("flaky"), 3, what="flaky back")


def test_app_exiting_by_itself_runs_post_stop_and_the_service_is_gone(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    stop, post = tmp_path / "stop", tmp_path / "post-stop"
    app = ["sh", "-c", f"while [ ! -e {stop} ]; do sleep 0.05; done; exit 5"]
    buddy = buddies(config([service("web", "true", ttl=10)], postStop=["touch", str(post)]), app,
                    env=env_for(discovery_server))
    wait_for(lambda: d.healthy("web"), 10, what="web listed")
    stop.touch()
    assert buddy.wait() == 5
    assert post.exists()
    assert d.healthy("web") == []


def test_health_check_timeout_kills_its_process_group(discovery_server, buddies):
    d = discovery_server.client()
    buddy = buddies(config([service("slow", ["sh", "-c", "sleep 61 & sleep 61; true"], poll=1, timeout="400ms")]),
                    ["sleep", "60"], env=env_for(discovery_server))
    first = wait_for(lambda: [pid for pid, cmd in descendants(buddy.pid) if cmd == "sleep 61"], 5,
                     what="health check running")
    assert len(first) == 2  # the background sleep and the foreground one
    wait_for(lambda: all(process_state(pid) in (None, "Z") for pid in first), 2, what="health check killed")
    assert d.healthy("slow") == []


def test_on_change_runs_on_first_poll_and_on_each_change_only(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    runs = tmp_path / "runs"
    poll = 0.2
    buddies(config(backends=[{"name": "db", "poll": poll, "onChange": ["sh", "-c", f"echo run >> {runs}"]}]),
            ["sleep", "60"], env=env_for(discovery_server))

    def count() -> int:
        return len(lines(runs))

    def steady(expected: int) -> None:
        wait_for(lambda: count() >= expected, 10, what=f"onChange run {expected}")
        time.sleep(6 * poll)  # at least five more polls, no change
        assert count() == expected

    steady(1)  # the first read counts as a change, even with nobody there
    a = ServiceSpec(id="db-a", name="db", address="127.0.0.5", port=3306, ttl=30)
    b = ServiceSpec(id="db-b", name="db", address="127.0.0.6", port=3306, ttl=30)
    for spec in (a, b):
        d.register_service(spec)
        d.heartbeat(spec)
        steady(count() + 1 if count() < 3 else 3)
    d.deregister_service(a)
    steady(4)


def test_change_during_on_change_runs_it_once_more_after(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    log = tmp_path / "runs"
    hook = ["sh", "-c", f"echo start >> {log}; sleep 1.5; echo end >> {log}"]
    buddies(config(backends=[{"name": "db", "poll": 0.1, "onChange": hook}]), ["sleep", "60"],
            env=env_for(discovery_server))
    wait_for(lambda: lines(log) == ["start"], 10, what="first onChange running")
    for i, address in enumerate(("127.0.0.5", "127.0.0.6")):
        spec = ServiceSpec(id=f"db-{i}", name="db", address=address, port=3306, ttl=30)
        d.register_service(spec)
        d.heartbeat(spec)
        time.sleep(0.3)
    wait_for(lambda: lines(log).count("end") == 2, 6, what="second onChange finished")
    time.sleep(0.6)
    assert lines(log) == ["start", "end", "start", "end"]


def test_sighup_after_rename_moves_the_service(discovery_server, buddies):
    d = discovery_server.client()
    cfg = config([service("{{ .ROLE_NAME | default `blue` }}", "true", poll=3, ttl=6)])
    buddy = buddies(cfg, ["sleep", "60"], env=env_for(discovery_server))
    wait_for(lambda: names(d, "blue") == ["blue-node1"], 10, what="blue listed")
    assert set_service_name(f"file://{buddy.config_path}", {"blue", "blue-primary"}, "blue-primary")
    text = buddy.config_path.read_text()
    assert '"name": "blue-primary"' in text and "{{ .CONSUL }}" in text and "{{ .ETCD_PREFIX" in text
    renamed = time.monotonic()
    notify(buddy.pid)
    # the new name is checked at once, not a 3 s poll later; the old one is deregistered, not left to expire
    wait_for(lambda: names(d, "blue-primary") == ["blue-primary-node1"], 2.0, interval=0.05,
             what="blue-primary listed")
    wait_for(lambda: names(d, "blue") == [], 2.0 - (time.monotonic() - renamed), interval=0.05, what="blue gone")
    assert not set_service_name(str(buddy.config_path), {"blue", "blue-primary"}, "blue-primary")


def test_sigusr1_toggles_maintenance(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    seen = tmp_path / "maintenance-flags"
    # the check records the maintenance flag it was given, and passes
    health = ["sh", "-c", f'echo "${{CONTAINERBUDDY_MAINTENANCE:-0}}" >> {seen}']
    buddy = buddies(config([service("web", health, poll=1, ttl=8)]), ["sleep", "60"],
                    env=env_for(discovery_server))
    wait_for(lambda: d.healthy("web"), 10, what="web listed")
    buddy.send(signal.SIGUSR1)
    wait_for(lambda: not d.healthy("web"), 2, what="web deregistered (well before its 8 s ttl)")
    # the health check keeps running, told that it runs in maintenance, and passing brings nothing back
    wait_for(lambda: lines(seen).count("1") >= 2, 4, what="health checks run in maintenance mode")
    assert d.healthy("web") == []
    buddy.send(signal.SIGUSR1)
    wait_for(lambda: d.healthy("web"), 2, what="web back at once (before the next poll)")
    wait_for(lambda: lines(seen)[-1] == "0", 2, what="checks without the maintenance flag again")


def test_maintenance_stops_a_running_onchange_and_reruns_it_afterwards(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    runs = tmp_path / "onchange-runs"
    on_change = ["sh", "-c", f"echo start >> {runs}; sleep 30; echo end >> {runs}"]
    buddy = buddies(config([service("web", "true", poll=0.3, ttl=3)],
                           backends=[{"name": "web", "poll": 0.3, "onChange": on_change}]),
                    ["sleep", "60"], env=env_for(discovery_server))
    wait_for(lambda: lines(runs) == ["start"], 10, what="onChange running")
    buddy.send(signal.SIGUSR1)
    time.sleep(1.0)
    assert not d.healthy("web")
    assert "end" not in lines(runs)
    assert "stopping onChange" in buddy.output()
    buddy.send(signal.SIGUSR1)
    wait_for(lambda: lines(runs).count("start") == 2, 3, what="onChange run again after maintenance")


def test_frozen_supervisor_checks_health_at_once_before_any_heartbeat(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    starts, ends = tmp_path / "check-starts", tmp_path / "check-ends"
    poll, ttl = 1.0, 2.0
    # each check takes 0.3 s; its end stamp is when it passed
    health = ["sh", "-c", f"date +%s.%N >> {starts}; sleep 0.3; date +%s.%N >> {ends}"]
    buddy = buddies(config([service("web", health, poll=poll, ttl=ttl)]), ["sleep", "60"],
                    env=env_for(discovery_server))
    wait_for(lambda: d.healthy("web"), 10, what="web listed")
    # freeze the supervisor while a check is in flight: that check passes during
    # the freeze, and its result is stale by the time the supervisor wakes
    wait_for(lambda: len(lines(starts)) > len(lines(ends)), 5, interval=0.005, what="a check in flight")
    buddy.send(signal.SIGSTOP)
    time.sleep(2 * poll + 0.2)
    wait_for(lambda: not d.healthy("web"), 4, what="web expired while frozen")
    wait_for(lambda: len(lines(starts)) == len(lines(ends)), 2, what="the in-flight check ended")
    woke = time.time()
    buddy.send(signal.SIGCONT)
    back = wait_for(lambda: d.healthy("web") and time.time(), 3, interval=0.01, what="web back")
    fresh_starts = [float(x) for x in lines(starts) if float(x) >= woke]
    fresh_ends = [float(x) for x in lines(ends) if float(x) >= woke]
    assert fresh_starts and fresh_starts[0] - woke < 0.5, "the health check did not run at once on waking"
    assert fresh_ends and fresh_ends[0] <= back, "a heartbeat went out before a fresh health check passed"


def test_discovery_outage_never_stops_the_supervisor(discovery_server, buddies):
    d = discovery_server.client()
    ttl = 3.0
    buddy = buddies(config([service("web", "true", poll=0.3, ttl=ttl)],
                           backends=[{"name": "web", "poll": 0.3, "onChange": "true"}]),
                    ["sleep", "60"], env=env_for(discovery_server))
    wait_for(lambda: d.healthy("web"), 10, what="web listed")
    discovery_server.stop()
    time.sleep(1.5)
    assert buddy.proc.alive()
    discovery_server.start()
    wait_for(lambda: d.healthy("web"), 10, what="web listed after the outage")
    time.sleep(ttl + 1)  # longer than a ttl: only fresh heartbeats can keep it listed
    assert d.healthy("web")
    assert buddy.proc.alive()
    out = buddy.output()
    assert "failed" in out and "works again" in out
    assert "Traceback" not in out


def test_health_checks_never_overlap(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    log = tmp_path / "checks"
    # each check takes 0.5 s, the poll is 0.2 s: a check still running is not started again
    health = ["sh", "-c", f"echo start >> {log}; sleep 0.5; echo end >> {log}"]
    buddy = buddies(config([service("web", health, poll=0.2, ttl=3, timeout=2)]), ["sleep", "60"],
                    env=env_for(discovery_server))
    wait_for(lambda: lines(log).count("end") >= 3, 10, what="three checks")
    wait_for(lambda: d.healthy("web"), 5, what="web listed")
    buddy.send(signal.SIGTERM)
    buddy.wait()
    events = lines(log)
    assert events[:6] == ["start", "end"] * 3, events


def test_bad_config_on_sighup_keeps_the_running_one(discovery_server, buddies):
    d = discovery_server.client()
    buddy = buddies(config([service("web", "true", poll=0.3, ttl=2)]), ["sleep", "60"],
                    env=env_for(discovery_server))
    wait_for(lambda: d.healthy("web"), 10, what="web listed")
    buddy.config_path.write_text('{"services": [{"name": "web", "helth": "true"}]}')
    notify(buddy.pid)
    wait_for(lambda: "config not reloaded" in buddy.output(), 5, what="reload refused")
    assert "services[0].helth: unknown key" in buddy.output()
    time.sleep(2.5)  # longer than the ttl: heartbeats go on with the old config
    assert names(d, "web") == ["web-node1"]
    assert buddy.proc.alive()


def test_health_hook_renaming_its_own_service(discovery_server, buddies, tmp_path):
    """The cluster's way: a hook rewrites the name in CONTAINERBUDDY and signals CONTAINERBUDDY_PID."""
    d = discovery_server.client()
    script = tmp_path / "promote.py"
    script.write_text(
        "import os, time\n"
        "from triton_mysql.supervisor.rename import notify, set_service_name\n"
        "if set_service_name(os.environ['CONTAINERBUDDY'], {'db', 'db-primary'}, 'db-primary'):\n"
        "    notify(int(os.environ['CONTAINERBUDDY_PID']))\n"
        "    time.sleep(0.5)  # still running when the supervisor reloads\n"
    )
    buddy = buddies(config([service("db", [sys.executable, str(script)], poll=5, ttl=10)]), ["sleep", "60"],
                    env=env_for(discovery_server))
    wait_for(lambda: names(d, "db-primary") == ["db-primary-node1"], 4, interval=0.05,
             what="db-primary listed well before the next 5 s poll")
    assert names(d, "db") == []  # the first check ran as "db" but its result belonged to the old name
    assert "service db-primary added (health check as soon as the running one ends)" in buddy.output()


def test_stop_with_discovery_down_still_runs_the_stop_sequence(discovery_server, buddies, tmp_path):
    d = discovery_server.client()
    log = tmp_path / "order"
    buddy = buddies(config([service("web", "true", poll=0.3, ttl=3)],
                           preStop=["sh", "-c", f"echo preStop >> {log}"], postStop=["sh", "-c", f"echo postStop >> {log}"]),
                    ["sleep", "60"], env={**env_for(discovery_server), "DISCOVERY_TIMEOUT": "0.5"})
    wait_for(lambda: d.healthy("web"), 10, what="web listed")
    discovery_server.stop()
    time.sleep(0.5)
    sent = time.monotonic()
    buddy.send(signal.SIGTERM)
    assert buddy.wait(15) == 143
    assert time.monotonic() - sent < 5
    assert lines(log) == ["preStop", "postStop"]
    assert "Traceback" not in buddy.output()
