"""The image and its compose cluster: `python -m bench.image`.

Runs the image test (tests/test_image.py: build the image, `up --scale
mysql=3` with the etcd variant on docker-compose 1.29, planned stop, crashes,
scale to 4, backup, `down -v`) and reports what it measured, from the file it
writes (.docker/image-test.json): image size against its base image, build
time, `up` to three healthy containers, failover and rejoin times, the whole
test.  One run per invocation: the cluster steps happen once each.  First a
`docker build --no-cache` is timed (the test's own build reuses the cache).

Needs a Docker engine (bin/docker-engine starts one as root); without one the
benchmark reports the test's skip reason as its failure.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from bench.common import ROOT, emit, stop_on_sigterm

RESULTS = ROOT / ".docker" / "image-test.json"


def cold_build() -> dict:
    """`docker build --no-cache` of the image (the test itself reuses BuildKit's cache): the time a
    fresh machine or a changed install script pays, per step from BuildKit's own output."""
    from tests.harness import docker

    with docker.engine():
        base = docker.dockerfile_from(ROOT / "Dockerfile")
        docker.ensure_base_image(base, docker.STATE_DIR)
        seconds = docker.build_image("triton-mysql", ROOT, no_cache=True)
        log = (docker.STATE_DIR / "build-triton-mysql.log").read_text()
    steps = [float(m) for m in re.findall(r"^#\d+ DONE (\d+\.\d+)s$", log, flags=re.M)]
    return {"cold_build_seconds": round(seconds, 1), "cold_build_steps_seconds": sorted(steps, reverse=True)[:3]}


def main() -> int:
    stop_on_sigterm()
    try:
        cold = cold_build()
    except Exception as exc:  # noqa: BLE001 - reported as the benchmark's failure
        emit("image", {}, ok=False, error=f"cold build failed: {exc}"[-2000:])
        return 1
    started = time.time()
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_image.py"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3000,
                            env=dict(os.environ, CI="true"))
    print(result.stdout[-4000:])
    fresh = RESULTS.exists() and RESULTS.stat().st_mtime >= started
    if result.returncode != 0 or not fresh:
        emit("image", {}, ok=False, error=f"tests/test_image.py exited {result.returncode}:\n"
                                          f"{(result.stdout + result.stderr)[-2000:]}")
        return 1
    figures = {**json.loads(RESULTS.read_text()), **cold}
    settings = {"discovery": "etcd (docker-compose.etcd.yml)", "compose": figures.get("compose"),
                "SESSION_TTL": 10, "HEALTH_POLL": 2, "nodes": 3}
    emit("image", figures, settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
