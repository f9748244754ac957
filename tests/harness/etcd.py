"""A real etcd server on a free loopback port, as a child process.

Plain HTTP by default.  With `ca=` (a `tls.TestCA`) it serves HTTPS with a
certificate from that CA; `client_cert_auth=True` adds `--client-cert-auth`
(every client must present a certificate signed by the CA).  `enable_auth()`
turns on etcd's own authentication (`auth enable`) with a root user and users
whose roles are limited to a key prefix.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .procs import Proc, free_port, wait_for


class EtcdServer:
    """One single-member etcd cluster in its own data directory."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", *, ca=None, client_cert_auth: bool = False) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = free_port(host)
        self.peer_port = free_port(host)
        self.proc: Proc | None = None
        self.ca = ca
        self.client_cert_auth = client_cert_auth
        self.server_cert = ca.issue("etcd-server", [host, "localhost"], directory=self.workdir / "tls") if ca else None
        # etcd 3.4's gateway refuses (400) a client certificate with a CN once auth is on: none here.
        self.client_cert = ca.issue("etcd-client", [], directory=self.workdir / "tls", common_name=False) \
            if ca and client_cert_auth else None
        self.root_password: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ca else "http"

    @property
    def endpoint(self) -> str:
        """The form the `ETCD` variable takes: `host:port`, or `https://host:port` with TLS."""
        return f"{self.host}:{self.port}" if not self.ca else self.url

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables a node needs to reach this server (without etcd auth)."""
        env = {"ETCD": self.endpoint}
        if self.ca:
            env["ETCD_CACERT"] = self.ca.cert
        if self.client_cert:
            env.update({"ETCD_CERT": self.client_cert.cert, "ETCD_KEY": self.client_cert.key})
        return env

    def start(self, timeout: float = 15.0) -> "EtcdServer":
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        peer = f"http://{self.host}:{self.peer_port}"
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            binary, "--name", "n1", "--data-dir", str(data), "--logger=zap", "--log-level=warn",
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"n1={peer}",
        ]
        if self.server_cert:
            argv += ["--cert-file", self.server_cert.cert, "--key-file", self.server_cert.key]
        if self.client_cert_auth:
            argv += ["--client-cert-auth", "--trusted-ca-file", self.ca.cert]
        self.proc = Proc("etcd", argv, self.workdir / "etcd.log")
        wait_for(self.healthy, timeout, what=f"etcd at {self.endpoint}")
        return self

    def healthy(self) -> bool:
        if self.proc is None or not self.proc.alive():
            raise RuntimeError(f"etcd exited:\n{self.proc.log_text() if self.proc else ''}")
        if not self.ca:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
                return b'"true"' in r.read()
        import requests
        cert = (self.client_cert.cert, self.client_cert.key) if self.client_cert else None
        resp = requests.get(self.url + "/health", verify=self.ca.cert, cert=cert, timeout=0.5)
        return b'"true"' in resp.content

    # -- etcd auth ------------------------------------------------------------
    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [shutil.which("etcdctl") or "/usr/bin/etcdctl", f"--endpoints={self.url}"]
        if self.ca:
            argv.append(f"--cacert={self.ca.cert}")
        if self.client_cert:
            argv += [f"--cert={self.client_cert.cert}", f"--key={self.client_cert.key}"]
        if self.root_password:
            argv.append(f"--user=root:{self.root_password}")
        result = subprocess.run(argv + list(args), env=dict(os.environ, ETCDCTL_API="3"), capture_output=True,
                                text=True, timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def add_user(self, user: str, password: str, prefix: str) -> None:
        """A user whose role may read and write keys under `prefix` only (nothing else)."""
        self.etcdctl("user", "add", f"{user}:{password}")
        self.etcdctl("role", "add", user)
        self.etcdctl("role", "grant-permission", user, "--prefix=true", "readwrite", prefix)
        self.etcdctl("user", "grant-role", user, user)

    def enable_auth(self, root_password: str = "root-pw") -> None:
        """`auth enable` with a root user (etcdctl authenticates as root from then on)."""
        self.etcdctl("user", "add", f"root:{root_password}")
        self.etcdctl("user", "grant-role", "root", "root")
        self.etcdctl("auth", "enable")
        self.root_password = root_password

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
