"""bin/docker-engine and the engine fixture, without touching a real engine.

The paths that need one (start, stop of our own dockerd) run in tests/test_image.py
and in CI (.ci/run); here: the cases that must never start or stop anything.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.harness import docker

SCRIPT = str(docker.ENGINE_SCRIPT)


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


def test_an_engine_named_by_docker_host_that_does_not_answer_is_not_replaced(tmp_path):
    """exit 3 (the image test is skipped, or fails under CI) and no local dockerd is started."""
    result = run("start", DOCKER_HOST=f"unix://{tmp_path}/nothing.sock")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "does not answer" in result.stderr and "started" not in result.stdout


def test_the_fixture_turns_exit_3_into_docker_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(docker.DockerUnavailable) as exc:
        with docker.engine():
            pass
    assert "does not answer" in str(exc.value)


def test_usage_errors():
    assert run().returncode == 1
    result = run("launch")
    assert result.returncode == 1 and "unknown command" in result.stderr
    result = run("--help")
    assert result.returncode == 0 and "usage: bin/docker-engine start" in result.stdout


def test_debian_mirror_is_read_from_deb822_and_one_line_sources(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
                      "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian\n"
                      "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert docker.debian_mirror([deb822]) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://other.example/debian bookworm main contrib\n")
    assert docker.debian_mirror([one_line]) == "http://other.example/debian"


def test_dockerfile_from_skips_flags(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# x\nFROM --platform=linux/amd64 debian:bookworm-slim AS base\nRUN true\n")
    assert docker.dockerfile_from(dockerfile) == "debian:bookworm-slim"
    assert docker.dockerfile_from(docker.REPO / "Dockerfile") == "debian:bookworm-slim"
