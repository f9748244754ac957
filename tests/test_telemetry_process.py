"""containerbuddy's HTTP endpoints as a process (no mysqld needed): where it listens, port 0, a
port in use (exit 2), maintenance and stop, a frozen supervisor (a request queued while it was
SIGSTOPped gets 503, never a stale 200), /metrics through the Prometheus parser, no secrets."""
from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.mariadb import next_loopback_address
from tests.harness.procs import Proc, free_port, port_open, wait_for

CONTAINERBUDDY = str(Path(sys.executable).parent / "containerbuddy")
SECRET = "s3cret#Root pw"


def get(address: str, port: int, path: str, timeout: float = 2.0) -> tuple[int | None, str]:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc)
    finally:
        conn.close()


class Supervisor:
    """containerbuddy running `sleep`, health `true` every `poll` s, telemetry on address:port."""

    def __init__(self, tmp_path: Path, telemetry: dict | None, poll: float = 0.5, pre_stop: str | None = None,
                 app: str = "sleep 60") -> None:
        self.address = next_loopback_address()
        self.port = free_port(self.address)
        config = {"etcd": {"endpoints": "127.0.0.1:1"},  # unreachable: heartbeats fail, checks still run
                  "services": [{"name": "svc", "port": 3306, "health": "true", "poll": poll, "ttl": 5}]}
        if telemetry is not None:
            def fill(value):
                if isinstance(value, list):
                    return [fill(item) for item in value]
                return value.format(address=self.address, port=self.port) if isinstance(value, str) else value
            config["telemetry"] = {k: fill(v) for k, v in telemetry.items()}
        if pre_stop:
            config["preStop"] = pre_stop
        self.dir = tmp_path
        (tmp_path / "cb.json").write_text(json.dumps(config))
        env = {"PATH": "/usr/bin:/bin", "NODE_NAME": "n1", "ADVERTISE_ADDRESS": self.address,
               "MYSQL_ROOT_PASSWORD": SECRET, "MYSQL_REPL_PASSWORD": SECRET + "2", "CONSUL_HTTP_TOKEN": "tok-" + SECRET,
               "MYSQL_SOCKET": str(tmp_path / "none.sock"), "DISCOVERY_TIMEOUT": "0.2"}
        self.proc = Proc("containerbuddy", [CONTAINERBUDDY, "-config", str(tmp_path / "cb.json"), *app.split()],
                         tmp_path / "cb.log", env=env)

    def get(self, path: str, timeout: float = 2.0) -> tuple[int | None, str]:
        return get(self.address, self.port, path, timeout)

    def log(self) -> str:
        return self.proc.log_text()

    def stop(self) -> None:
        self.proc.stop(timeout=15)


@pytest.fixture
def supervisors(tmp_path_factory):
    made: list[Supervisor] = []

    def make(**kw) -> Supervisor:
        sup = Supervisor(tmp_path_factory.mktemp("cb"), **kw)
        made.append(sup)
        return sup
    yield make
    for sup in made:
        sup.stop()


def test_listens_where_the_settings_say_and_only_there(supervisors):
    sup = supervisors(telemetry={"port": "{port}", "interfaces": ["{address}"]})
    wait_for(lambda: sup.get("/health")[0] == 200, 15, what="/health 200")
    assert not port_open("127.0.0.1", sup.port), "bound to more than the configured address"
    assert sup.get("/nope")[0] == 404
    code, body = sup.get("/primary")
    assert code == 503 and "cluster records" in body  # discovery unreachable: no view, never 200


def test_port_zero_serves_nothing(supervisors):
    sup = supervisors(telemetry={"port": 0})
    time.sleep(1.5)
    assert sup.proc.alive()
    assert "telemetry" not in sup.log()


def test_port_in_use_is_exit_2_naming_the_address(supervisors):
    address = next_loopback_address()
    with socket.socket() as busy:
        busy.bind((address, 0))
        busy.listen()
        port = busy.getsockname()[1]
        sup = supervisors(telemetry={"port": port, "interfaces": address})
        assert sup.proc.popen.wait(15) == 2
    assert f"cannot listen on {address}:{port}" in sup.log()
    assert "app started" not in sup.log()


def test_maintenance_and_stop_answer_503(supervisors):
    sup = supervisors(telemetry={"port": "{port}", "interfaces": "{address}"}, pre_stop="sleep 2")
    wait_for(lambda: sup.get("/health")[0] == 200, 15, what="/health 200")
    sup.proc.send(signal.SIGUSR1)
    wait_for(lambda: sup.get("/health")[0] == 503, 5, what="/health 503 in maintenance")
    assert "maintenance" in sup.get("/health")[1]
    sup.proc.send(signal.SIGUSR1)
    wait_for(lambda: sup.get("/health")[0] == 200, 5, what="/health 200 after maintenance")
    sup.proc.send(signal.SIGTERM)
    wait_for(lambda: "stopping" in sup.get("/health")[1], 5, what="/health: stopping")  # during preStop
    assert sup.proc.popen.wait(15) == 143


def test_a_request_queued_during_a_freeze_never_gets_a_stale_answer(supervisors):
    """SIGSTOP the supervisor (all its threads) for longer than its poll; a request sent meanwhile
    is answered when it resumes: 503 (the loop is late / no pass since waking), then 200 again."""
    sup = supervisors(telemetry={"port": "{port}", "interfaces": "{address}"}, poll=0.5)
    wait_for(lambda: sup.get("/health")[0] == 200, 15, what="/health 200")
    answers: list[tuple[int | None, str]] = []
    sup.proc.send(signal.SIGSTOP)
    try:
        time.sleep(0.3)
        asker = threading.Thread(target=lambda: answers.append(sup.get("/health", timeout=10)))
        asker.start()
        time.sleep(2.5)
    finally:
        sup.proc.send(signal.SIGCONT)
    asker.join(10)
    assert answers and answers[0][0] == 503, answers
    assert "late" in answers[0][1] or "woke up late" in answers[0][1], answers
    wait_for(lambda: sup.get("/health")[0] == 200, 10, what="/health 200 after the first pass since waking")
    assert "woke up late" in sup.log() or "woke" in sup.log()


def test_metrics_parse_and_count_hook_runs_without_secrets(supervisors):
    sup = supervisors(telemetry={"port": "{port}", "interfaces": "{address}"})
    wait_for(lambda: sup.get("/health")[0] == 200, 15, what="/health 200")
    time.sleep(1.2)
    code, text = sup.get("/metrics")
    assert code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    runs = [v for (name, labels), v in samples.items() if name == "triton_mysql_hook_runs_total"
            and dict(labels).get("hook") == "health" and dict(labels).get("exit_code") == "0"]
    assert runs and runs[0] >= 2
    assert all(dict(labels).get("service") == "mysql" and dict(labels).get("node") == "n1"
               for (name, labels), _ in samples.items() if name.startswith("triton_mysql_"))
    assert samples[("triton_mysql_mysqld_up", (("node", "n1"), ("service", "mysql")))] == 0.0
    errors = [v for (name, _labels), v in samples.items() if name == "triton_mysql_discovery_errors_total"]
    assert errors and sum(errors) > 0  # etcd is unreachable here
    for path in ("/primary", "/replica", "/replica?lag=3", "/health", "/status", "/metrics", "/x"):
        body = sup.get(path)[1]
        assert SECRET not in body and "tok-" not in body, path
    assert sup.get("/replica?lag=abc")[0] == 400
    status = json.loads(sup.get("/status")[1])
    assert status["node"] == "n1" and status["supervisor"]["last_health_pass"]["exit_code"] == 0
