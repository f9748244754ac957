"""An in-process cluster for HA tests: the real hooks against fake servers and memory discovery.

`World` wires the real `Agent`, health pass, election (onChange) and preStop
to a `MemoryDiscovery` and `FakeNet` servers, with one fake clock for
everything (`time` in the HA modules is patched), so that whole failover
sequences run in milliseconds and their discovery writes and SQL can be
checked step by step.  What the supervisor would do around the hooks is done
by the world: a passing health check heartbeats the service its member
record's role names.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from triton_mysql import node_state
from triton_mysql.mysql.accounts import ACCOUNTS_VERSION
from triton_mysql.config import Config
from triton_mysql.ha import act as act_module
from triton_mysql.ha import peers as peers_module
from triton_mysql.ha import promote as promote_module
from triton_mysql import records as records_module
from triton_mysql import view as view_module
from triton_mysql.ha.act import Agent
from triton_mysql.hooks import health as health_module
from triton_mysql.hooks import on_change as on_change_module
from triton_mysql.hooks import pre_stop as pre_stop_module
from triton_mysql.keys import ClusterKeys, decode
from triton_mysql.mysql import replication as replication_module
from triton_mysql.discovery.base import ServiceSpec

from .fake_mariadb import FakeNet, FakeServer
from .memory_discovery import Clock, MemoryDiscovery, Unreachable

TTL = 10.0


class FakeTime:
    """`time` for the HA modules: wall and monotonic clocks are the world's clock; sleeping lets the
    world run (the other hooks' passes happen while one hook waits)."""

    def __init__(self, clock: Clock, idle) -> None:
        self.clock, self.idle = clock, idle

    def time(self) -> float:
        return self.clock()

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.idle(seconds)


class World:
    def __init__(self, tmp: Path, monkeypatch, **env: str) -> None:
        self.tmp = tmp
        self.clock = Clock()
        self.discovery = MemoryDiscovery(clock=self.clock)
        self.net = FakeNet()
        self.discovery.journal = self.net.journal  # discovery writes and SQL in one order
        self.env = {"ETCD": "127.0.0.1:2379", "MYSQL_REPL_USER": "repl", "MYSQL_REPL_PASSWORD": "pw",
                    "SYNC_REPLICATION": "off",  # the fake server has no semi-sync; tests/test_semisync* cover it
                    "SESSION_TTL": str(int(TTL)), "HEALTH_POLL": "1", "DISCOVERY_TIMEOUT": "0.5", "STOP_GRACE": "5",
                    **env}
        self.configs: dict[str, Config] = {}
        self.limit = self.clock() + 3600
        self.background = True
        self.stopping: set[str] = set()
        """Nodes whose supervisor is stopping (preStop runs): their health passes no longer run."""
        self._busy = False
        self.discovery.idle = self.idle
        self.net.pass_time = self.idle
        fake_time = FakeTime(self.clock, self.idle)
        for module in (act_module, view_module, records_module, promote_module, on_change_module, pre_stop_module,
                       health_module):
            monkeypatch.setattr(module, "time", fake_time)
        monkeypatch.setattr(act_module, "connect_local", self.net.connect_local)
        monkeypatch.setattr(peers_module, "connect_tcp", self.net.connect_tcp)
        monkeypatch.setattr(replication_module, "connect_tcp", self.net.connect_tcp)
        monkeypatch.setattr(act_module, "stop_mysqld", self._stop_mysqld)
        monkeypatch.delenv("CONTAINERBUDDY", raising=False)
        monkeypatch.delenv("CONTAINERBUDDY_MAINTENANCE", raising=False)
        self.in_maintenance: set[str] = set()
        monkeypatch.setattr(Agent, "maintenance", property(lambda agent: agent.config.node_name in self.in_maintenance))
        self.monkeypatch = monkeypatch
        self.keys = ClusterKeys("/triton-mysql/mysql")

    # -- nodes -------------------------------------------------------------------
    def add(self, name: str, server_id: int, **env: str) -> FakeServer:
        home = self.tmp / name
        (home / "data").mkdir(parents=True)
        (home / "run").mkdir()
        address = f"10.0.0.{server_id}"
        config = Config.from_env({**self.env, "NODE_NAME": name, "ADVERTISE_ADDRESS": address,
                                  "MYSQL_DATADIR": str(home / "data"), "MYSQL_SOCKET": str(home / "run" / "sock"),
                                  "MYSQL_CNF": str(home / "my.cnf"), **env})
        self.configs[name] = config
        # The accounts exist (as after a real first boot): the fake server answers no account statements.
        node_state.save(config.mysql_datadir, node_state.NodeState(node=name, server_id=server_id,
                                                                   accounts_version=ACCOUNTS_VERSION))
        return self.net.add(name, server_id, address, config.mysql_socket)

    def server(self, name: str) -> FakeServer:
        return self.net.servers[name]

    def state(self, name: str) -> node_state.NodeState:
        state = node_state.load(self.configs[name].mysql_datadir)
        assert state is not None
        return state

    def agent(self, name: str, discovery_down: bool = False) -> Agent:
        """`discovery_down`: this agent's discovery requests all fail (the other nodes' do not)."""
        return Agent(self.configs[name], discovery=Unreachable(self.discovery) if discovery_down else self.discovery)

    def set_maintenance(self, name: str, on: bool) -> None:
        """SIGUSR1 on one node's supervisor: its hooks run with CONTAINERBUDDY_MAINTENANCE=1."""
        (self.in_maintenance.add if on else self.in_maintenance.discard)(name)

    def _stop_mysqld(self, pid_file: str, timeout: float) -> str:
        for server in self.net.servers.values():
            if str(Path(server.socket).parent) == str(Path(pid_file).parent):
                server.up = False
                return "stopped"
        return "not running"

    # -- time ----------------------------------------------------------------------
    def idle(self, seconds: float) -> None:
        """Time passes in steps of a second; meanwhile every live node runs its health pass (as its
        supervisor would) and replication moves."""
        end = self.clock() + seconds
        while self.clock() < end:
            step = min(1.0, end - self.clock())
            self.clock.advance(step)
            if self.clock() > self.limit:
                raise RuntimeError("the world ran for an hour of fake time: a hook never settled")
            if self.background and not self._busy:
                self._busy = True
                try:
                    self.net.replicate()
                    for name, server in self.net.servers.items():
                        if server.up and name not in self.stopping:
                            self.health(name)
                    self.net.replicate()
                finally:
                    self._busy = False

    # -- hooks, as the supervisor runs them ---------------------------------------
    def health(self, name: str, discovery_down: bool = False) -> int:
        """One health pass, then what the supervisor does with its exit code (`discovery_down`: this
        pass cannot reach discovery, nor can the supervisor's heartbeat after it)."""
        agent = self.agent(name, discovery_down=discovery_down)
        with agent.exclusive(timeout=0) as alone:
            code = health_module._pass(agent, check_only=False, act=alone)
        if discovery_down:
            return code
        record = self.member(name) or {}
        config = self.configs[name]
        if name in self.in_maintenance:  # deregistered, no heartbeat
            for service in (config.service_name, config.primary_service):
                self.discovery.deregister_service(ServiceSpec(id=f"{service}-{name}", name=service, address="",
                                                              port=0, ttl=TTL))
            return code
        service = config.primary_service if record.get("role") == "primary" else config.service_name
        other = config.service_name if service == config.primary_service else config.primary_service
        spec = ServiceSpec(id=f"{service}-{name}", name=service, address=config.advertise_address or "",
                           port=config.mysql_port, ttl=TTL)
        self.discovery.deregister_service(ServiceSpec(id=f"{other}-{name}", name=other, address="", port=0, ttl=TTL))
        if code == 0 and self.server(name).up:
            self.discovery.heartbeat(spec)
        return code

    def on_change(self, name: str) -> int:
        return on_change_module.Election(self.agent(name)).run()

    def elect(self, names: list[str], together: bool = False) -> None:
        """onChange on several nodes at once (the primary service changed for all of them): each
        takes a turn per simulated second until every one has settled.

        `together`: in each round every node reads its view before any of them acts, as onChange
        processes on different hosts do at the same moment (by default each turn reads the view the
        previous turns left)."""
        running = {name: on_change_module.Election(self.agent(name)) for name in names}
        while running:
            if together:
                for election in running.values():
                    _read_ahead(election.agent)
            for name, election in list(running.items()):
                if not self.server(name).up:
                    del running[name]
                elif election.turn() is True:
                    del running[name]
            if running:
                self.idle(1.0)

    def pre_stop(self, name: str, discovery_down: bool = False) -> int:
        """The supervisor stops the node's health passes, then runs preStop (mysqld keeps running)."""
        self.stopping.add(name)
        try:
            return pre_stop_module.hand_over(self.agent(name, discovery_down=discovery_down))
        finally:
            self.stopping.discard(name)

    def crash(self, name: str) -> None:
        """kill -9 of the whole node: mysqld gone, its session left to expire."""
        self.server(name).up = False
        self.discovery.deregister_service(ServiceSpec(id=f"mysql-primary-{name}", name="mysql-primary", address="",
                                                      port=0, ttl=TTL))
        self.discovery.deregister_service(ServiceSpec(id=f"mysql-{name}", name="mysql", address="", port=0, ttl=TTL))

    def restart(self, name: str) -> None:
        """mysqld back with its data, read-only, replication threads stopped (as it boots)."""
        server = self.server(name)
        server.up, server.read_only, server.io_running, server.sql_running = True, True, False, False

    def passes(self, rounds: int = 3) -> None:
        """`rounds` seconds of every live node's health passes."""
        self.idle(float(rounds))

    # -- discovery ---------------------------------------------------------------
    def record(self, suffix: str) -> dict[str, Any] | None:
        kv = self.discovery.get(f"{self.keys.root}/{suffix}")
        return decode(kv.value) if kv else None

    def lock(self) -> dict[str, Any] | None:
        return self.record("primary")

    def member(self, name: str) -> dict[str, Any] | None:
        return self.record(f"members/{name}")

    def writable(self) -> list[str]:
        return sorted(n for n, s in self.net.servers.items() if s.up and not s.read_only)


def _read_ahead(agent: Agent) -> None:
    """Read the agent's view now; its next `view()` call returns this one, later calls read afresh."""
    view = agent.view(with_services=True)

    def once(with_services: bool = False):
        del agent.view
        return view

    agent.view = once  # type: ignore[method-assign]


def quiet_logs() -> None:
    logging.getLogger("triton_mysql").setLevel(logging.INFO)
