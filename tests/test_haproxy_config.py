"""etc/haproxy.cfg and the compose `haproxy` service: valid for the real HAProxy (Debian's
2.6), checks as fast as the routing goal needs, the test rendering keeps them identical,
and the compose block is the standard one (official image + mounted config)."""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.harness.cluster import ROOT
from tests.harness.haproxy import SHIPPED, haproxy_binary, render

needs_haproxy = pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (make deps)")


class FakeNode:
    def __init__(self, i: int) -> None:
        self.name, self.address, self.port = f"node{i}", f"127.0.0.{i + 1}", 3300 + i


def check(text: str, tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return subprocess.run([haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


@needs_haproxy
def test_shipped_config_is_valid(tmp_path):
    result = check(SHIPPED.read_text(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_haproxy
def test_rendered_config_is_valid_and_keeps_the_checks(tmp_path):
    text = render([FakeNode(i) for i in range(1, 4)])
    result = check(text, tmp_path, {"HTTP_PORT": "19090", "HAPROXY_BIND_ADDRESS": "127.0.0.1"})
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = SHIPPED.read_text()
    for needle in ("default-server", "option httpchk", "http-check expect", "timeout check", "bind "):
        assert [l for l in shipped.splitlines() if needle in l] == [l for l in text.splitlines() if needle in l]
    config = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    assert config.count("server node") == 6 and "server-template" not in config and "resolvers" not in config


def test_checks_are_fast_enough_for_the_routing_goal():
    text = SHIPPED.read_text()
    default = next(l for l in text.splitlines() if l.strip().startswith("default-server"))
    for setting in ("inter 500ms", "fastinter 500ms", "downinter 500ms", "rise 1", "fall 1", "check",
                    "on-marked-down shutdown-sessions"):
        assert setting in default, setting
    assert re.search(r"option httpchk GET /primary\b", text) and re.search(r"option httpchk GET /replica\b", text)
    assert text.count("server-template mysql") == 2 and "127.0.0.11" in text  # Docker's DNS


def test_compose_service_is_the_official_image_with_the_mounted_config():
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["haproxy"]
    assert service["image"].startswith("haproxy:")
    assert "./etc/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in service["volumes"]
    assert service["environment"]["HTTP_PORT"] == "${HTTP_PORT:-9090}"
    assert {p.rsplit(":", 1)[-1] for p in service["ports"]} == {"3306", "3307"}
