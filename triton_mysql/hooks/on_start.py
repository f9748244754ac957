"""`triton-mysql onStart`: get the datadir ready before mysqld starts (SPEC §2).

1. Wait for discovery (≤ DISCOVERY_WAIT).
2. A datadir marked for re-cloning (errant transactions + AUTO_RECLONE) is
   moved aside — never deleted.
3. Write MYSQL_CNF with this datadir's server_id (handed out once by a
   counter in discovery, so it cannot collide).
4. A datadir with data is kept.  An empty one is restored from the newest
   complete snapshot (discovery's `snapshots/last`, else the newest in
   storage); only when there is none anywhere does the node enter the
   create-only `bootstrap` race.  The winner initialises a new datadir; the
   others wait (≤ BOOTSTRAP_WAIT) for the winner's first snapshot.
Exit non-zero means "do not start mysqld" (the supervisor exits with it).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..discovery import Discovery, DiscoveryError, connect
from ..keys import ClusterKeys, decode, encode
from ..mysql import flavor as flavors
from ..mysql import gtid as gtids
from ..mysql.datadir import DatadirError, chown_mysql, initialize, is_empty
from ..mysql.server_config import write_cnf
from .. import node_state

log = logging.getLogger("triton_mysql.onStart")

class StartError(Exception):
    """onStart cannot prepare the datadir; mysqld must not start."""


def run(config) -> int:
    try:
        flavor = flavors.detect_from_binary(config.mysqld)
    except flavors.FlavorError as exc:
        log.error("cannot tell which server this is: %s", exc)
        return 1
    discovery = _wait_for_discovery(config)
    if discovery is None:
        return 1
    keys = ClusterKeys.for_config(config)
    datadir = Path(config.mysql_datadir)
    try:
        datadir.mkdir(parents=True, exist_ok=True)
        state = node_state.load(datadir)
        if state is not None and state.reclone:
            _move_aside(datadir, state.reclone)
            state = None
        if state is not None and state.node != config.node_name:
            state = None  # data copied from another node: it gets its own server_id
        server_id = state.server_id if state is not None else _allocate_server_id(discovery, keys)
        write_cnf(config, flavor, server_id)
        if is_empty(datadir, ignore={node_state.FILENAME}):
            state = _prepare_empty(config, discovery, keys, flavor, datadir, server_id)
            writers = _gtid_server_ids(state.snapshot_gtid or "")
            if state.server_id in writers:
                state = state.update(server_id=_allocate_server_id(discovery, keys, avoid=writers))
                node_state.save(datadir, state)
                write_cnf(config, flavor, state.server_id)
                log.info("server_id %d wrote part of the restored data; using %d instead", server_id, state.server_id)
        elif state is None:
            state = node_state.NodeState(node=config.node_name, server_id=server_id, origin="existing")
            node_state.save(datadir, state)
            log.info("keeping the existing datadir %s; new server_id %d", datadir, server_id)
        else:
            log.info("keeping the existing datadir %s (server_id %d, from %s)", datadir, state.server_id,
                     state.snapshot_id or state.origin)
        chown_mysql(datadir)
        log.info("wrote %s (server_id %d); mysqld starts read-only", config.mysql_cnf, state.server_id)
        return 0
    except (StartError, DatadirError) as exc:
        log.error("%s", exc)
        return 1
    except DiscoveryError as exc:
        log.error("discovery failed during onStart: %s", exc)
        return 1
    finally:
        discovery.close()


def _wait_for_discovery(config) -> Discovery | None:
    deadline = time.monotonic() + config.discovery_wait
    keys = ClusterKeys.for_config(config)
    discovery = connect(config)
    last: Exception | None = None
    while True:
        try:
            discovery.list(keys.root + "/")
            return discovery
        except DiscoveryError as exc:
            last = exc
        if time.monotonic() >= deadline:
            log.error("discovery not reachable after DISCOVERY_WAIT=%g s: %s", config.discovery_wait, last)
            discovery.close()
            return None
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _prepare_empty(config, discovery: Discovery, keys: ClusterKeys, flavor, datadir: Path,
                   server_id: int) -> node_state.NodeState:
    node_state.path(datadir).unlink(missing_ok=True)  # a leftover of an earlier, failed start
    manifest = _restore(config, discovery, datadir)
    if manifest is not None:
        return _restored(config, datadir, manifest, server_id)
    record = {"node": config.node_name, "at": time.time()}
    won = discovery.create(keys.bootstrap, encode(record))
    bootstrap = discovery.get(keys.bootstrap)
    owner = (decode(bootstrap.value) or {}).get("node") if bootstrap else None
    if won or owner == config.node_name:
        log.info("no snapshot in discovery or storage and this node won the bootstrap race: "
                 "initialising a new cluster")
        initialize(config, flavor)
        state = node_state.NodeState(node=config.node_name, server_id=server_id, origin="bootstrap",
                                     bootstrap_pending=True)
        node_state.save(datadir, state)
        return state
    log.info("%s is bootstrapping the cluster; waiting up to BOOTSTRAP_WAIT=%g s for its first snapshot",
             owner, config.bootstrap_wait)
    deadline = time.monotonic() + config.bootstrap_wait
    while time.monotonic() < deadline:
        if discovery.get(keys.snapshots_last) is not None:
            manifest = _restore(config, discovery, datadir)
            if manifest is not None:
                return _restored(config, datadir, manifest, server_id)
        time.sleep(1.0)
    raise StartError(f"no snapshot from the bootstrap node {owner} after BOOTSTRAP_WAIT={config.bootstrap_wait:g} s; "
                     f"is it running? (this node will try again at its next start)")


def _restore(config, discovery: Discovery, datadir: Path) -> dict[str, Any] | None:
    from ..backup.restore import RestoreError, restore_newest
    try:
        return restore_newest(config, discovery, str(datadir))
    except RestoreError as exc:
        raise StartError(f"restore failed, datadir left empty: {exc}") from None


def _restored(config, datadir: Path, manifest: dict[str, Any], server_id: int) -> node_state.NodeState:
    snapshot_id = manifest["id"]
    gtid = manifest.get("gtid") or ""
    state = node_state.NodeState(node=config.node_name, server_id=server_id, origin="restore",
                                 snapshot_id=snapshot_id, snapshot_gtid=gtid, seeded=False)
    node_state.save(datadir, state)
    log.info("restored snapshot %s (gtid %s) into %s", snapshot_id, gtid or "(empty)", datadir)
    return state


def _allocate_server_id(discovery: Discovery, keys: ClusterKeys, avoid: frozenset[int] = frozenset()) -> int:
    """The next free value of the cluster's server_id counter (compare-and-set, so no two nodes share one).

    Ids in `avoid` and ids of known nodes (member and node records) are skipped: after the
    discovery service was wiped the counter starts again at 1, and a node with the id of a
    server whose events it replicates would silently skip them.
    """
    taken = set(avoid)
    for kv in discovery.list(keys.members) + discovery.list(keys.nodes):
        record = decode(kv.value) or {}
        if isinstance(record.get("server_id"), int):
            taken.add(record["server_id"])
    for _ in range(1000):
        kv = discovery.get(keys.server_id_counter)
        current = int(kv.value.decode()) if kv is not None and kv.value.strip().isdigit() else 0
        if discovery.cas(keys.server_id_counter, str(current + 1).encode(), kv.index if kv else 0):
            if current + 1 not in taken:
                return current + 1
            continue  # taken: the counter has moved on, try the next value
        time.sleep(0.01)
    raise StartError("could not allocate a server_id: too much contention on the counter")


def _gtid_server_ids(gtid: str) -> frozenset[int]:
    """Server ids that wrote the transactions of a MariaDB GTID position (none for MySQL sets)."""
    if ":" in gtid:
        return frozenset()
    return frozenset(server for _, server, _ in gtids.parse_mariadb(gtid))


def _move_aside(datadir: Path, reclone: dict) -> None:
    """Keep the old data next to the datadir (never delete it) so the node can clone afresh."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = datadir.parent / f"{datadir.name}.errant-{stamp}"
    try:
        os.rename(datadir, aside)
        datadir.mkdir()
    except OSError:  # the datadir is a mount point: move its entries instead
        aside.mkdir(parents=True, exist_ok=True)
        for entry in os.listdir(datadir):
            shutil.move(str(datadir / entry), str(aside / entry))
    log.warning("re-cloning: moved the old data (errant transactions %s) aside to %s", reclone.get("errant"), aside)

