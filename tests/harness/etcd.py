"""A real etcd server on a free loopback port, as a child process."""
from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest

from .procs import Proc, free_port, wait_for


class EtcdServer:
    """One single-member etcd cluster in its own data directory."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = free_port(host)
        self.peer_port = free_port(host)
        self.proc: Proc | None = None

    @property
    def endpoint(self) -> str:
        """`host:port`, the form the `ETCD` variable takes."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "EtcdServer":
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        peer = f"http://{self.host}:{self.peer_port}"
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.proc = Proc("etcd", [
            binary, "--name", "n1", "--data-dir", str(data), "--logger=zap", "--log-level=warn",
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"n1={peer}",
        ], self.workdir / "etcd.log")
        wait_for(self.healthy, timeout, what=f"etcd at {self.endpoint}")
        return self

    def healthy(self) -> bool:
        if self.proc is None or not self.proc.alive():
            raise RuntimeError(f"etcd exited:\n{self.proc.log_text() if self.proc else ''}")
        with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
            return b'"true"' in r.read()

    def wipe(self) -> None:
        """Delete every key (leases and their keys go too): a discovery service that lost its data."""
        import subprocess
        etcdctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
        env = {**__import__("os").environ, "ETCDCTL_API": "3"}
        subprocess.run([etcdctl, f"--endpoints={self.url}", "del", "", "--from-key"], env=env, check=True,
                       capture_output=True, timeout=10)
        leases = subprocess.run([etcdctl, f"--endpoints={self.url}", "lease", "list"], env=env, check=True,
                                capture_output=True, text=True, timeout=10).stdout.split()
        for lease in leases[1:]:
            if lease not in ("found", "leases"):
                subprocess.run([etcdctl, f"--endpoints={self.url}", "lease", "revoke", lease], env=env,
                               capture_output=True, timeout=10)

    def stop(self) -> None:
        """Stop the server (its data directory is kept, so `start()` resumes it)."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture
def etcd_server(tmp_path_factory):
    """A fresh etcd for one test, stopped afterwards whatever happens."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    try:
        yield server
    finally:
        server.stop()
