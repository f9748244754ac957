"""The health pass's semi-sync step (ha/sync.py) in-process: a fake server that keeps the semi-sync
variables and counters the way MariaDB does, the real decision, the real node state in a directory,
and the previous `sync` record read back from the view, pass after pass."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from triton_mysql import node_state
from triton_mysql.config import Config
from triton_mysql.ha import decide as d
from triton_mysql.ha.sync import sync_pass
from triton_mysql.view import READY, Lock
from triton_mysql.mysql.flavor import MARIADB, Sql
from triton_mysql.mysql.semisync import TIMEOUT_MAX_MS


@dataclass
class FakeServer:
    """rpl_semi_sync_* as MariaDB keeps them; SET GLOBAL changes them."""

    enabled: bool = False
    timeout: int = 10000
    replica_enabled: bool = True
    status: bool = False
    clients: int = 0
    caught_up: int = 0
    waiting: int = 0
    yes_tx: int = 0
    off_times: int = 0
    replica_status: bool = False
    sent: list[str] = field(default_factory=list)

    def query(self, sql, args=None, timeout=None):
        text, params = (sql.text, sql.args) if isinstance(sql, Sql) else (sql, args or ())
        if text.startswith("SET GLOBAL"):
            self.sent.append(f"{text.split()[2]}={params[0]}")
            name, value = text.split()[2], params[0]
            if name == "rpl_semi_sync_master_enabled":
                self.enabled = value == "ON"
                self.status = self.enabled  # MariaDB: status ON as soon as it is enabled
            elif name == "rpl_semi_sync_master_timeout":
                self.timeout = int(value)
            return []
        on = lambda b: "ON" if b else "OFF"  # noqa: E731
        values = {"rpl_semi_sync_master_enabled": on(self.enabled), "rpl_semi_sync_master_timeout": self.timeout,
                  "rpl_semi_sync_master_wait_point": "AFTER_SYNC", "rpl_semi_sync_master_wait_no_slave": "ON",
                  "rpl_semi_sync_slave_enabled": on(self.replica_enabled),
                  "rpl_semi_sync_master_status": on(self.status), "rpl_semi_sync_master_clients": self.clients,
                  "rpl_semi_sync_master_wait_sessions": self.waiting, "rpl_semi_sync_master_yes_tx": self.yes_tx,
                  "rpl_semi_sync_master_no_times": self.off_times, "rpl_semi_sync_slave_status": on(self.replica_status),
                  "dump_threads": self.clients, "dump_caught_up": self.caught_up}
        return [{"name": k, "value": str(v)} for k, v in values.items()]

    def execute(self, sql, args=None, timeout=None):
        self.query(sql, args, timeout)

    def execute_all(self, statements):
        for s in statements:
            self.execute(s)


class Harness:
    """One node's passes: its agent, its datadir's node state, and the member record it published last."""

    def __init__(self, tmp_path, mode="semi", node="a"):
        self.config = Config(node_name=node, mysql_datadir=str(tmp_path), sync_replication=mode, sync_timeout=10)
        node_state.save(tmp_path, node_state.NodeState(node=node, server_id=1))
        self.server = FakeServer()
        self.agent = SimpleNamespace(config=self.config, conn=lambda: self.server, flavor=MARIADB)
        self.published: dict | None = None

    def run(self, action=d.PRIMARY, read_only=False, io_running=False) -> dict:
        lock = Lock(node="a", address="10.0.0.1", port=3306, server_id=1, since=500.0, session="s", index=1,
                    state=READY)
        decision = d.Decision(action, "test", lock if action == d.PRIMARY else None)
        observed = SimpleNamespace(server=object(), state=node_state.load(self.config.mysql_datadir))
        local = d.Local(node="a", read_only=read_only, io_running=io_running)
        view = SimpleNamespace(nodes={"a": {"sync": self.published}} if self.published else {})
        self.published = sync_pass(self.agent, decision, observed, local, view)
        return self.published


def sync_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "triton_mysql.sync"]


def test_a_lone_primary_waits_then_turns_on_once_a_replica_caught_up(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    h = Harness(tmp_path)
    first = h.run()
    assert (first["status"], first["phase"]) == ("off", d.SYNC_WAITING) and not h.server.enabled
    assert h.run()["since"] == first["since"]  # unchanged: same since, not logged again
    h.server.clients = 1  # connected, still being sent its backlog
    assert h.run()["phase"] == d.SYNC_WAITING
    h.server.caught_up = 1
    on = h.run()
    assert (on["status"], on["phase"], on["timeout_s"]) == ("on", d.SYNC_ON, 10.0)
    assert h.server.sent == ["rpl_semi_sync_master_enabled=ON"]
    assert on["since"] > first["since"]
    lines = sync_lines(caplog)
    assert len(lines) == 2 and "waiting for a replica" in lines[0] and "semi-sync on: commits wait" in lines[1]


def test_fallback_and_return_are_published_and_logged_once(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    h = Harness(tmp_path)
    h.server.clients = h.server.caught_up = 1
    h.run()
    h.server.status, h.server.off_times = False, 1  # no ACK within the timeout: the server fell back
    fallback = h.run()
    assert (fallback["status"], fallback["phase"], fallback["fallbacks"]) == ("off", d.SYNC_ON, 1)
    h.run()
    h.server.status = True  # a replica caught up: the server turned it back on
    back = h.run()
    assert back["status"] == "on"
    lines = sync_lines(caplog)
    assert sum("fell back to asynchronous: no replica acknowledged within SYNC_TIMEOUT=10 s" in m for m in lines) == 1
    assert "semi-sync on: commits wait" in lines[-1]
    h.server.off_times = 2  # off and on again between two passes
    assert h.run()["status"] == "on"
    assert "came back between two passes (1 time(s))" in sync_lines(caplog)[-1]
    assert h.server.enabled  # never turned off by the tool while primary


def test_strict_waits_for_a_first_acknowledgement_then_never_falls_back_and_remembers_it(tmp_path):
    h = Harness(tmp_path, mode="strict")
    h.server.clients = h.server.caught_up = 1
    assert h.run()["timeout_s"] == 10.0  # on, counting acknowledgements from now
    assert node_state.load(tmp_path).extra["sync"]["acknowledged"] is False
    h.run()
    assert h.server.timeout == 10000
    h.server.yes_tx = 3  # a replica acknowledged
    strict = h.run()
    assert (strict["phase"], h.server.timeout) == (d.SYNC_STRICT, TIMEOUT_MAX_MS)
    assert node_state.load(tmp_path).extra["sync"]["acknowledged"] is True
    h.server.clients, h.server.waiting = 0, 2  # replicas gone: commits block, the tool changes nothing
    blocked = h.run()
    assert (blocked["status"], blocked["phase"], blocked["waiting"], h.server.timeout) == (
        "on", d.SYNC_STRICT, 2, TIMEOUT_MAX_MS)
    assert h.server.enabled


def test_demoted_primary_turns_the_source_side_off_but_never_under_waiting_commits(tmp_path):
    h = Harness(tmp_path, mode="strict")
    h.server.enabled = h.server.status = True
    h.server.waiting = 1
    held = h.run(action=d.FENCE, read_only=True)
    assert held["phase"] == d.SYNC_HOLD and h.server.enabled
    h.server.waiting = 0
    h.server.replica_status = True
    replica = h.run(action=d.FOLLOW, read_only=True, io_running=True)
    assert not h.server.enabled and (replica["phase"], replica["status"]) == (d.SYNC_REPLICA, "on")
    # A new term starts unacknowledged: the enable resets the count.
    h.server.clients = h.server.caught_up = 1
    h.run()
    assert node_state.load(tmp_path).extra["sync"]["acknowledged"] is False and h.server.timeout == 10000


def test_off_publishes_without_touching_the_server(tmp_path):
    h = Harness(tmp_path, mode="off")
    record = h.run()
    assert (record["mode"], record["status"]) == ("off", "off") and h.server.sent == []


@pytest.mark.parametrize("action", [d.STARTING])
def test_mysqld_down_publishes_nothing(tmp_path, action):
    h = Harness(tmp_path)
    observed = SimpleNamespace(server=None, state=None)
    assert sync_pass(h.agent, d.Decision(action, "down"), observed, d.Local(node="a", mysql_up=False), None) is None
