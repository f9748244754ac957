"""The endpoint rules (telemetry/rules.py), the `telemetry` config section and the metric helpers:
pure functions, table-tested in milliseconds.  The same rules against real processes:
tests/test_telemetry_process.py and tests/test_routing.py."""
from __future__ import annotations

import json

import pytest

from triton_mysql.view import Lock
from triton_mysql.supervisor import config as cb
from triton_mysql.supervisor.config import ConfigError
from triton_mysql.supervisor.telemetry import rules
from triton_mysql.supervisor.telemetry.facts import Facts, HealthPass, ViewRead
from triton_mysql.mysql.gtid import GtidError, highest_per_source
from triton_mysql.supervisor.telemetry.rules import Local
from triton_mysql.supervisor.telemetry.runtime import hook_label

T = 1000.0  # "now" on the supervisor's clock
ME, OTHER = "n1", "n2"


class V:  # the two fields of a ClusterView the rules read
    def __init__(self, lock: Lock | None) -> None:
        self.lock = lock


def lock(node: str = ME, state: str = "ready") -> Lock:
    return Lock(node=node, address="10.0.0.1" if node == ME else "10.0.0.2", port=3306, server_id=1, since=1.0,
                session="s", index=1, state=state)


def facts(**kw) -> Facts:
    """A node whose supervisor is live, whose health pass ran after the start, with a fresh view."""
    base = dict(started=900.0, woke_at=900.0, loop_deadline=T + 0.5,
                last_health=HealthPass(started=998.0, ended=998.5, code=0),
                view=ViewRead(started=T - 0.5, view=V(lock())))
    base.update(kw)
    return Facts(**base)


WRITABLE = Local(read_only=False)
READ_ONLY = Local(read_only=True)


@pytest.mark.parametrize("case, f, local, code", [
    ("ready holder, writable", facts(), WRITABLE, 200),
    ("ready holder whose failed health pass still counts as run", facts(
        last_health=HealthPass(998.0, 998.5, 1)), WRITABLE, 200),
    ("read-only (fenced)", facts(), READ_ONLY, 503),
    ("mysqld does not answer", facts(), None, 503),
    ("another node holds the lock", facts(view=ViewRead(T - 0.5, V(lock(OTHER)))), WRITABLE, 503),
    ("lock free", facts(view=ViewRead(T - 0.5, V(None))), WRITABLE, 503),
    ("holder still promoting", facts(view=ViewRead(T - 0.5, V(lock(state="promoting")))), WRITABLE, 503),
    ("stopping (SIGTERM)", facts(stopping=True), WRITABLE, 503),
    ("maintenance (SIGUSR1)", facts(maintenance=True), WRITABLE, 503),
    ("loop late: frozen, not noticed yet", facts(loop_deadline=T - 1.5), WRITABLE, 503),
    ("loop sleeping without deadline (onStart)", facts(loop_deadline=None), WRITABLE, 503),
    ("woke up late, no health pass since", facts(woke_at=999.0), WRITABLE, 503),
    ("woke up late, view read before", facts(woke_at=999.0, last_health=HealthPass(999.1, 999.4, 0),
                                            view=ViewRead(998.9, V(lock()))), WRITABLE, 503),
    ("woke up late, pass and view since", facts(woke_at=999.0, last_health=HealthPass(999.1, 999.4, 1),
                                               view=ViewRead(999.6, V(lock()))), WRITABLE, 200),
    ("view too old (discovery unreachable)", facts(view=ViewRead(T - rules.VIEW_MAX_AGE - 0.1, V(lock()))),
     WRITABLE, 503),
    ("never read the view", facts(view=None), WRITABLE, 503),
    ("no health pass yet", facts(last_health=None), WRITABLE, 503),
])
def test_primary(case, f, local, code):
    answer = rules.primary(f, T, ME, local)
    assert answer.code == code, f"{case}: {answer.reason}"
    if code == 503:
        assert answer.reason


def test_primary_before_query_leaves_only_read_only_open():
    assert rules.primary_before_query(facts(), T, ME) is None
    assert rules.primary_before_query(facts(stopping=True), T, ME).code == 503


def replica_local(**kw) -> Local:
    base = dict(read_only=True, source=("10.0.0.2", 3306), io_running=True, sql_running=True, seconds_behind=0.0)
    base.update(kw)
    return Local(**base)


HOLDER_ELSEWHERE = dict(view=ViewRead(T - 0.5, V(lock(OTHER))))


@pytest.mark.parametrize("case, f, local, max_lag, code", [
    ("replicating from the holder", facts(**HOLDER_ELSEWHERE), replica_local(), 30, 200),
    ("lag within ?lag=", facts(**HOLDER_ELSEWHERE), replica_local(seconds_behind=5), 5, 200),
    ("lag over ?lag=", facts(**HOLDER_ELSEWHERE), replica_local(seconds_behind=6), 5, 503),
    ("lag unknown", facts(**HOLDER_ELSEWHERE), replica_local(seconds_behind=None), 30, 503),
    ("IO thread down", facts(**HOLDER_ELSEWHERE), replica_local(io_running=False), 30, 503),
    ("SQL thread down", facts(**HOLDER_ELSEWHERE), replica_local(sql_running=False), 30, 503),
    ("replicates from an old primary", facts(**HOLDER_ELSEWHERE), replica_local(source=("10.0.0.9", 3306)), 30,
     503),
    ("not replicating (fenced old primary)", facts(**HOLDER_ELSEWHERE), Local(read_only=True), 30, 503),
    ("writable", facts(**HOLDER_ELSEWHERE), replica_local(read_only=False), 30, 503),
    ("this node holds the lock", facts(), replica_local(), 30, 503),
    ("holder promoting", facts(view=ViewRead(T - 0.5, V(lock(OTHER, "promoting")))), replica_local(), 30, 503),
    ("no lock", facts(view=ViewRead(T - 0.5, V(None))), replica_local(), 30, 503),
    ("maintenance", facts(maintenance=True, **HOLDER_ELSEWHERE), replica_local(), 30, 503),
    ("woke up late", facts(woke_at=999.0, **HOLDER_ELSEWHERE), replica_local(), 30, 503),
    ("mysqld down", facts(**HOLDER_ELSEWHERE), None, 30, 503),
])
def test_replica(case, f, local, max_lag, code):
    answer = rules.replica(f, T, ME, local, max_lag)
    assert answer.code == code, f"{case}: {answer.reason}"


@pytest.mark.parametrize("case, f, code", [
    ("last pass passed", facts(), 200),
    ("last pass failed", facts(last_health=HealthPass(998.0, 998.5, 1)), 503),
    ("last pass too old", facts(last_health=HealthPass(900.0, 901.0, 0), health_max_age=10.0), 503),
    ("no pass since waking", facts(woke_at=999.0), 503),
    ("maintenance", facts(maintenance=True), 503),
    ("stopping", facts(stopping=True), 503),
])
def test_health(case, f, code):
    assert rules.health(f, T).code == code, case


# -- the `telemetry` section -------------------------------------------------------------

def load(telemetry, env=None) -> cb.SupervisorConfig:
    return cb.load(json.dumps({"telemetry": telemetry}), {"NODE_NAME": "n1", **(env or {})})


def test_telemetry_section():
    c = load({"port": "9090", "interfaces": ["127.0.0.7"]})
    assert (c.telemetry.port, c.telemetry.address) == (9090, "127.0.0.7")
    assert load({"port": 9100}).telemetry.address == "0.0.0.0"
    assert load({"port": 9100, "interfaces": "static:127.0.0.8"}).telemetry.address == "127.0.0.8"
    assert load({"port": 9100, "interfaces": ["lo"]}).telemetry.address == "127.0.0.1"
    assert load({"port": 9100, "interfaces": "::"}).telemetry.address == "::"
    assert load({"port": "0"}).telemetry is None
    assert cb.load('{"onStart": "true"}', {"NODE_NAME": "n1"}).telemetry is None


@pytest.mark.parametrize("telemetry, problem", [
    ({"port": 70000}, "telemetry.port"),
    ({"port": "x"}, "telemetry.port"),
    ({}, "telemetry.port"),
    ({"port": 9090, "interface": "eth0"}, "telemetry.interface"),
    ({"port": 9090, "interfaces": ["no-such-if0"]}, "telemetry.interfaces"),
    ({"port": 9090, "interfaces": "10.0.0.0/33"}, "telemetry.interfaces"),
    ([9090], "telemetry"),
])
def test_telemetry_section_mistakes(telemetry, problem):
    with pytest.raises(ConfigError) as info:
        load(telemetry)
    assert info.value.key == problem, str(info.value)


def test_shipped_config_renders_http_port_and_bind_address():
    from tests.harness.cluster import ROOT
    source = f"file://{ROOT / 'etc' / 'containerbuddy.json'}"
    env = {"NODE_NAME": "n1", "ADVERTISE_ADDRESS": "10.1.2.3", "ETCD": "127.0.0.1:2379"}
    c = cb.load(source, env)
    assert (c.telemetry.port, c.telemetry.address) == (9090, "0.0.0.0")
    c = cb.load(source, {**env, "HTTP_PORT": "9191", "HTTP_BIND_ADDRESS": "127.0.0.3"})
    assert (c.telemetry.port, c.telemetry.address) == (9191, "127.0.0.3")
    assert cb.load(source, {**env, "HTTP_PORT": "0"}).telemetry is None


# -- helpers ------------------------------------------------------------------------------

def test_gtid_sequences_per_domain_in_the_flavor_the_record_names():
    assert highest_per_source("mariadb", "0-1-100,1-2-5") == {"0": 100, "1": 5}
    assert highest_per_source("mariadb", "0-1-7,0-3-9") == {"0": 9}
    assert highest_per_source("mariadb", "") == {} and highest_per_source("mysql", None) == {}
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert highest_per_source("mysql", f"{uuid}:1-5:7-10") == {uuid: 10}
    assert highest_per_source("mysql", f"{uuid}:1-3,{uuid}:tag:1-4") == {uuid: 3, f"{uuid}:tag": 4}
    with pytest.raises(GtidError):  # no guessing from the text: the other family's text is an error
        highest_per_source("mariadb", f"{uuid}:1-5")


@pytest.mark.parametrize("kind, label", [
    ("health mysql", "health"), ("health mysql-primary (before rename)", "health"),
    ("onChange mysql-primary", "onChange"), ("task snapshot", "snapshot"), ("preStop", "preStop"),
    ("onStart", "onStart"), ("postStop", "postStop"), ("app", None), ("coprocess x", None),
])
def test_hook_label(kind, label):
    assert hook_label(kind) == label
