"""Fixtures live in tests/harness/ (importable by `make demo` too); this file
only registers them and checks that the suite leaves no process behind."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    "tests.harness.etcd",
    "tests.harness.s3",
    "tests.harness.consul_double",
    "tests.harness.discovery",
    "tests.harness.mariadb",
    "tests.harness.manta_double",
    "tests.harness.cluster",
]

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report as item.rep_<phase> (fixtures print logs on failure)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any process started by the suite is still alive."""
    from tests.harness.procs import descendants

    left = descendants()
    if not left:
        return
    sys.stderr.write("\nprocesses started by the suite are still alive:\n")
    for pid, cmd in left:
        sys.stderr.write(f"  {pid} {cmd}\n")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    session.exitstatus = 1
