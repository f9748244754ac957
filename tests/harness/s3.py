"""A real S3 HTTP server (moto's) on a free loopback port, reached through boto3."""
from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from .procs import Proc, free_port, wait_for

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


class S3Server:
    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = free_port(host)
        self.proc: Proc | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment a client (boto3, triton-mysql) needs to reach this server."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def start(self, timeout: float = 20.0) -> "S3Server":
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if binary is None:
            raise RuntimeError("moto_server not found: install the [test] extra")
        self.proc = Proc("moto_server", [binary, "-H", self.host, "-p", str(self.port)], self.workdir / "moto.log")
        wait_for(self._ready, timeout, what=f"S3 server at {self.endpoint_url}")
        return self

    def _ready(self) -> bool:
        if self.proc is None or not self.proc.alive():
            raise RuntimeError(f"moto_server exited:\n{self.proc.log_text() if self.proc else ''}")
        with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=0.5) as r:
            return r.status == 200

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One S3 server for the whole session (buckets are per test: use unique names)."""
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        yield server
    finally:
        server.stop()
