"""The image and its compose cluster: `python -m bench.image`.

Runs the image test (tests/test_image.py: build the image, `up --scale
mysql=3` with the etcd variant on docker-compose 1.29, planned stop, crashes,
scale to 4, backup, `down -v`) and reports what it measured, from the file it
writes (.docker/image-test.json): image size against its base image, build
time, `up` to three healthy containers, failover and rejoin times, the whole
test.  One run per invocation: the cluster steps happen once each.

Needs a Docker engine (bin/docker-engine starts one as root); without one the
benchmark reports the test's skip reason as its failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import ROOT, emit, stop_on_sigterm

RESULTS = ROOT / ".docker" / "image-test.json"


def main() -> int:
    stop_on_sigterm()
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
    figures = json.loads(RESULTS.read_text())
    settings = {"discovery": "etcd (docker-compose.etcd.yml)", "compose": figures.get("compose"),
                "SESSION_TTL": 10, "HEALTH_POLL": 2, "nodes": 3}
    emit("image", figures, settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
