"""`discovery_server`: one fixture, two backends (real etcd, the Consul double).

A test that takes `discovery_server` runs twice, as `[etcd]` and `[consul]`::

    def test_something(discovery_server):
        d = discovery_server.client()                  # a triton_mysql Discovery
        env = discovery_server.env()                   # {"ETCD": "127.0.0.1:P"} or {"CONSUL": ...}
        root = discovery_server.kv_root("mysql")       # where SPEC §5 keys live
        ttl = discovery_server.min_session_ttl         # 2 (etcd) / 10 (Consul)
        discovery_server.stop(); ...; discovery_server.start()   # outage, same port

Each test gets a fresh server, stopped at teardown whatever happens; every
client handed out is closed then too.

Outage and restart: `stop()` ends the server process (connections are
refused from then on); `start()` starts it again on the same host and port.
Both backends keep their state across `stop()`/`start()`: etcd keeps its
data directory; the Consul double saves its state on a graceful stop
(see `ConsulDouble`).  Leases/sessions survive a restart with their TTL
timers reset to full, as both real services do after a leader change.

Options for the Consul double (ignored by etcd) go through a marker, e.g.
``@pytest.mark.consul_double(ttl_multiplier=1.0)``; see `tests/harness/consul_double.py`.

Usable outside pytest too: `DiscoveryServer.launch("etcd", workdir)` returns a
started server; call `close()` when done.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from triton_mysql.discovery import Discovery, connect_endpoints

from .etcd import EtcdServer

KINDS = ("etcd", "consul")


class DiscoveryServer:
    """A running discovery service of one `kind` ("etcd" or "consul")."""

    def __init__(self, kind: str, workdir: Path, consul_options: dict[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown discovery kind {kind!r}")
        self.kind = kind
        self.workdir = Path(workdir)
        self._clients: list[Discovery] = []
        if kind == "etcd":
            self._server: Any = EtcdServer(self.workdir)
        else:
            from .consul_double import ConsulDouble
            self._server = ConsulDouble(workdir=self.workdir, **(consul_options or {}))

    @classmethod
    def launch(cls, kind: str, workdir: Path, **consul_options: Any) -> "DiscoveryServer":
        return cls(kind, workdir, consul_options).start()

    # -- where it is ----------------------------------------------------
    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def endpoint(self) -> str:
        """`host:port`."""
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment a triton-mysql command needs to reach this server."""
        return {"ETCD": self.endpoint} if self.kind == "etcd" else {"CONSUL": self.endpoint}

    @property
    def min_session_ttl(self) -> int:
        """The smallest session TTL (s) the backend accepts: etcd 2, Consul 10."""
        return 2 if self.kind == "etcd" else 10

    def kv_root(self, service_name: str = "mysql", prefix: str = "/triton-mysql") -> str:
        """The cluster's key root (SPEC §5), as `Config.kv_prefix` computes it."""
        if self.kind == "consul":
            return f"triton-mysql/{service_name}"
        return f"{prefix.rstrip('/')}/{service_name}"

    # -- clients --------------------------------------------------------
    def client(self, timeout: float = 2.0, prefix: str = "/triton-mysql") -> Discovery:
        """A `Discovery` for this server (closed at teardown)."""
        if self.kind == "etcd":
            d = connect_endpoints(etcd=[(self.host, self.port)], etcd_prefix=prefix, timeout=timeout)
        else:
            d = connect_endpoints(consul=(self.host, self.port), timeout=timeout)
        self._clients.append(d)
        return d

    # -- lifecycle ------------------------------------------------------
    def start(self) -> "DiscoveryServer":
        """Start (or restart after `stop()`) on the same host and port; returns when it answers."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop the server process: from now on connections are refused."""
        self._server.stop()

    def alive(self) -> bool:
        proc = getattr(self._server, "proc", None)
        return proc is not None and proc.alive()

    def close(self) -> None:
        """Close every client and stop the server."""
        for d in self._clients:
            try:
                d.close()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        self._clients.clear()
        self._server.stop()

    def __repr__(self) -> str:
        return f"<DiscoveryServer {self.kind} {self.endpoint}>"


@pytest.fixture(params=KINDS)
def discovery_server(request, tmp_path_factory):
    """A fresh discovery server per test, once with etcd and once with the Consul double."""
    marker = request.node.get_closest_marker("consul_double")
    options = dict(marker.kwargs) if marker and request.param == "consul" else {}
    server = DiscoveryServer(request.param, tmp_path_factory.mktemp(f"discovery-{request.param}"), options)
    try:
        server.start()
        yield server
    finally:
        server.close()
