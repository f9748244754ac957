"""The bootstrap claim goes with its winner's session (issue 13 item 5), with the real onStart hook
against both discovery backends (etcd, the Consul double).

onStart alone is enough to show it: nothing renews the winner's session once its
onStart has ended (no health pass runs here), exactly as when the winner's node dies
right after initialising.  A node that was waiting for its first snapshot sees the
claim disappear, enters the race again and bootstraps; the first winner, started
again with its never-writable data, gives way.  (tests/test_bootstrap_lifecycle.py
does the same with whole nodes and kill -9.)
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator

import pytest

from tests.harness.mariadb import mysql_tmp_dir
from tests.harness.procs import wait_for
from tests.test_datadir_lifecycle import NodeDirs, service_name
from triton_mysql import node_state
from triton_mysql.keys import ClusterKeys, decode

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown to mysql")


@contextlib.contextmanager
def renewing(discovery, session: str) -> Iterator[threading.Event]:
    """Renew `session` every second until the yielded event is set (or the block ends)."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(1.0):
            discovery.renew_session(session)

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join()


def test_a_waiting_node_takes_over_the_claim_of_a_dead_winner(discovery_server, request):
    service = service_name(request) + "-" + discovery_server.kind
    backups = mysql_tmp_dir("shared-backups")
    first = NodeDirs(discovery_server.env(), service, node="n1", backups=backups)
    second = NodeDirs(discovery_server.env(), service, node="n2", backups=backups)
    second.env["BOOTSTRAP_WAIT"] = "120"
    discovery = discovery_server.client()
    keys = ClusterKeys(discovery_server.kv_root(service))

    won = first.on_start()
    assert won.returncode == 0, won.stderr
    claim = discovery.get(keys.bootstrap)
    n1_session = decode(claim.value)["session"]
    assert decode(claim.value)["node"] == "n1" and claim.session == n1_session

    with renewing(discovery, n1_session) as n1_alive:  # n1 lives (as its health passes would renew it)
        waiting = second.on_start_popen()
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(waiting.stderr), daemon=True)
        reader.start()
        wait_for(lambda: any("n1 is bootstrapping the cluster" in line for line in lines), 60,
                 what="n2 waiting for n1's first snapshot")
        n1_alive.set()  # n1 dies: nobody renews its session from now on
    died = time.monotonic()
    wait_for(lambda: (decode(discovery.get(keys.bootstrap).value) or {}).get("node") == "n2", 60, 0.05,
             what="n2 to take the bootstrap claim over")
    took_over = time.monotonic() - died
    waiting.wait(timeout=180)
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert waiting.returncode == 0, stderr
    assert "entering the bootstrap race again" in stderr and "won the bootstrap race" in stderr
    latest = discovery.expiry_bounds(float(second.env["SESSION_TTL"]))[1]
    print(f"\n{discovery_server.kind}: n2 took the bootstrap claim over {took_over:.1f} s after n1's last "
          f"renewal (its session ends at most {latest:g} s after it)")
    assert took_over <= latest + 5  # + n2's one-second look and a slow machine
    assert node_state.load(second.datadir).bootstrap_pending

    # n1 restarts with its data (never writable: bootstrap_pending) and gives way to n2's cluster,
    # which is alive (its session renewed, as n2's health passes would).
    n2_session = decode(discovery.get(keys.bootstrap).value)["session"]
    with renewing(discovery, n2_session):
        again = first.on_start()
    assert "giving way" in again.stderr, again.stderr
    (aside,) = first.siblings(".gave-way-")
    assert node_state.load(aside).origin == "bootstrap"  # kept, never deleted
    assert again.returncode == 1 and "no snapshot from the bootstrap node n2" in again.stderr  # no snapshot here


def test_a_restarted_winner_whose_claim_is_free_continues_with_its_data(discovery_server, request):
    service = service_name(request) + "-" + discovery_server.kind
    node = NodeDirs(discovery_server.env(), service)
    discovery = discovery_server.client()
    keys = ClusterKeys(discovery_server.kv_root(service))
    assert node.on_start().returncode == 0
    before = node_state.load(node.datadir)
    session = decode(discovery.get(keys.bootstrap).value)["session"]
    discovery.destroy_session(session)  # its claim is gone (expired) while it was down
    again = node.on_start()
    assert again.returncode == 0, again.stderr
    assert "claimed the bootstrap again" in again.stderr
    after = node_state.load(node.datadir)
    assert after.server_id == before.server_id and after.bootstrap_pending and not node.siblings(".gave-way-")
    record = decode(discovery.get(keys.bootstrap).value)
    assert record["node"] == "n1" and record["session"] != session
