"""`triton-mysql onStart`: get the datadir ready before mysqld starts (SPEC §2).

1. Wait for discovery (≤ DISCOVERY_WAIT).
2. Staging directories of an earlier start that never finished are removed.
   A datadir marked for re-cloning (errant transactions + AUTO_RECLONE) is
   moved aside — never deleted.  So is a datadir that holds data without the
   mark of a finished initialisation or restore (the node state file): it is
   never started as data (on a mount point, where it cannot be moved, onStart
   refuses with what to do).
3. Write MYSQL_CNF with this datadir's server_id (handed out once by a
   counter in discovery, so it cannot collide).
4. A marked datadir is kept.  An empty one is restored from the newest
   complete snapshot (discovery's `snapshots/last`, else the newest in
   storage); only when there is none anywhere does the node enter the
   create-only `bootstrap` race.  The winner initialises a new datadir; the
   others wait (≤ BOOTSTRAP_WAIT) for the winner's first snapshot.  Restore
   and initialisation build the datadir in a staging directory and move it in
   only when complete (mysql.datadir.install).
Exit non-zero means "do not start mysqld" (the supervisor exits with it).
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from .. import bootstrap
from ..discovery import Discovery, DiscoveryError, connect
from ..records import ClusterStore, ServerIdContention
from ..keys import ClusterKeys
from ..mysql import flavor as flavors
from ..mysql.datadir import (MOUNT_ADVICE, DatadirError, chown_mysql, initialize, install, is_empty,
                             is_mount_point, move_aside, new_staging, remove_staging_leftovers)
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
    store = ClusterStore(discovery, ClusterKeys.for_config(config))
    datadir = Path(config.mysql_datadir)
    try:
        datadir.mkdir(parents=True, exist_ok=True)
        remove_staging_leftovers(datadir)
        loaded = node_state.load(datadir)
        had_cluster_data = ["this node's datadir held the cluster's data (moved aside to re-clone)"] \
            if loaded is not None and loaded.reclone else []
        state = _usable_data(datadir, loaded)
        if state is not None and state.bootstrap_pending and state.node == config.node_name:
            state = _resume_bootstrap(config, store, datadir, state)
        if state is not None and state.node != config.node_name:
            # Data copied from another node, or restored by `triton-mysql restore`: its own server_id.
            state = state.update(node=config.node_name, server_id=_allocate_server_id(store),
                                 bootstrap_pending=False)
            node_state.save(datadir, state)
            log.info("adopting the datadir %s (%s made elsewhere); new server_id %d", datadir,
                     state.snapshot_id or state.origin, state.server_id)
        server_id = state.server_id if state is not None else _allocate_server_id(store)
        write_cnf(config, flavor, server_id)
        if state is None:
            state = _prepare_empty(config, store, flavor, datadir, server_id, had_cluster_data)
            writers = flavor.gtid_server_ids(state.snapshot_gtid or "")
            if state.server_id in writers:
                state = state.update(server_id=_allocate_server_id(store, avoid=writers))
                node_state.save(datadir, state)
                write_cnf(config, flavor, state.server_id)
                log.info("server_id %d wrote part of the restored data; using %d instead", server_id, state.server_id)
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


def _usable_data(datadir: Path, state: node_state.NodeState | None) -> node_state.NodeState | None:
    """The datadir's state when its data may be started, else None with the datadir left empty.

    Data marked for re-cloning, and data without the mark of a finished
    initialisation or restore (a failed mariadb-install-db, a killed restore,
    files put there by hand), are moved aside — kept, never deleted, never
    started as data.  A mount point cannot be renamed: StartError saying what to do.
    """
    if state is not None and state.reclone:
        kind = str(state.reclone.get("kind") or "errant")
        aside = move_aside(datadir, kind)
        log.warning("re-cloning: moved the old data aside to %s (%s: %s)", aside, kind,
                    state.reclone.get("reason") or state.reclone.get("errant"))
        return None
    if is_empty(datadir, ignore={node_state.FILENAME}):
        node_state.path(datadir).unlink(missing_ok=True)  # a node state without data: nothing to keep
        return None
    if state is not None and state.complete:
        return state
    if is_mount_point(datadir):
        raise StartError(f"{datadir} holds data without the mark of a finished initialisation or restore "
                         f"({node_state.FILENAME}) and is a mount point, so it cannot be moved aside: "
                         f"{MOUNT_ADVICE}, or move the files away by hand; refusing to start it as data")
    aside = move_aside(datadir, "unmarked")
    log.warning("%s held data without the mark of a finished initialisation or restore (%s): moved it aside "
                "to %s (kept, not used); starting as an empty node", datadir, node_state.FILENAME, aside)
    return None


def _prepare_empty(config, store: ClusterStore, flavor, datadir: Path, server_id: int,
                   had_cluster_data: list[str]) -> node_state.NodeState:
    """Restore the newest snapshot; with none anywhere, bootstrap (if this node wins the claim) or wait.

    Waiting nodes look once a second: they restore as soon as `snapshots/last`
    appears, and when the claim is gone (its winner's session ended) with
    still no snapshot anywhere, they enter the race again — unless the
    claimant still publishes its node record (a slow winner whose session
    lapsed is not a dead one: it claims again itself).  BOOTSTRAP_WAIT
    bounds the wait for one winner (it starts again when another node claims).
    """
    waiting_for: str | None = None
    deadline = 0.0
    stalled_logged = False
    while True:
        if waiting_for is None or store.snapshot_pointer() is not None:
            manifest = _restore(config, store.discovery, datadir, server_id)
            if manifest is not None:
                return _restored(config, datadir, manifest)
        name = bootstrap.owner(store)
        if name is None and waiting_for not in (None, config.node_name):
            seen = bootstrap.seen_ago(store, waiting_for)
            if seen is not None and seen < bootstrap.ALIVE_FACTOR * config.session_ttl:
                if not stalled_logged:
                    log.info("the bootstrap claim of %s is gone, but %s published its record %.0f s ago: still "
                             "waiting for it (a slow node, not a dead one)", waiting_for, waiting_for, seen)
                    stalled_logged = True
                time.sleep(1.0)
                continue
        if name is None or name == config.node_name:
            if waiting_for is not None and name is None:
                manifest = _restore(config, store.discovery, datadir, server_id)  # no snapshot anywhere: storage too
                if manifest is not None:
                    return _restored(config, datadir, manifest)
                log.warning("the bootstrap claim of %s is gone (its session ended) and there is still no snapshot: "
                            "entering the bootstrap race again", waiting_for)
            _check_storage_before_bootstrap(config, store, had_cluster_data)
            state = _try_bootstrap(config, store, flavor, datadir, server_id)
            if state is not None:
                return state
            name = bootstrap.owner(store)
        if name is not None and name != waiting_for and name != config.node_name:
            waiting_for = name
            stalled_logged = False
            deadline = time.monotonic() + config.bootstrap_wait
            log.info("%s is bootstrapping the cluster; waiting up to BOOTSTRAP_WAIT=%g s for its first snapshot",
                     name, config.bootstrap_wait)
        if waiting_for is None:
            waiting_for = config.node_name  # our own claim from a session that ended: wait until it is gone
            deadline = time.monotonic() + config.bootstrap_wait
        if time.monotonic() >= deadline:
            raise StartError(f"no snapshot from the bootstrap node {waiting_for} after BOOTSTRAP_WAIT="
                             f"{config.bootstrap_wait:g} s; is it running? (this node will try again at its next "
                             f"start)")
        time.sleep(1.0)


def _try_bootstrap(config, store: ClusterStore, flavor, datadir: Path,
                   server_id: int) -> node_state.NodeState | None:
    """Take the session-bound claim and initialise a new cluster; None when another node has the claim."""
    claim = bootstrap.take(store, config.node_name, config.session_ttl)
    if claim is None:
        return None
    claim.start_renewing()
    try:
        log.info("no snapshot in discovery or storage and this node won the bootstrap race: "
                 "initialising a new cluster (claim bound to session %s)", claim.session)
        _write_marker(config)
        state = node_state.NodeState(node=config.node_name, server_id=server_id, origin="bootstrap",
                                     bootstrap_pending=True)
        _initialize(config, flavor, datadir, state)
    except BaseException:
        claim.give_up()  # let another node take over at once
        raise
    claim.stop_renewing()
    if claim.renew() and claim.holds():
        return state  # health adopts the session (ha/session.py NodeSession.mine) and keeps renewing it
    aside = move_aside(datadir, "gave-way")
    log.warning("lost the bootstrap claim while initialising (its session ended): moved the new datadir aside "
                "to %s; waiting for the node that claimed it instead", aside)
    return None


def _write_marker(config) -> None:
    """The cluster marker at the storage root (created once; an existing one is kept)."""
    from ..storage import StorageError, open_storage
    from ..storage.marker import write_marker
    try:
        storage = open_storage(config.backup_url, config)
        try:
            write_marker(storage, config.service_name, config.node_name)
        finally:
            storage.close()
    except StorageError as exc:
        raise StartError(f"cannot write the cluster marker into the snapshot storage: {exc}") from None


def _check_storage_before_bootstrap(config, store: ClusterStore, had_cluster_data: list[str]) -> None:
    """No snapshot anywhere: bootstrap only into storage that is the cluster's own (it has the marker)
    or when nothing shows an existing cluster.  An unmounted volume (an empty directory) or a wrong
    BACKUP_URL must never start a second cluster beside the real backups (issue 13 item 9)."""
    from ..storage import StorageError, open_storage
    from ..storage.marker import MARKER_KEY, read_marker
    try:
        storage = open_storage(config.backup_url, config)
        try:
            marker = read_marker(storage)
            where = storage.describe()
        finally:
            storage.close()
    except StorageError as exc:
        raise StartError(f"cannot read the snapshot storage: {exc}; refusing to bootstrap a cluster") from None
    if marker is not None:
        return
    evidence = had_cluster_data + bootstrap.cluster_evidence(store)
    if evidence:
        raise StartError(f"{where} holds no snapshot and no cluster marker ({MARKER_KEY}), but {'; '.join(evidence)}: "
                         f"is the backup volume mounted and BACKUP_URL right? Refusing to bootstrap a second cluster")


def _resume_bootstrap(config, store: ClusterStore, datadir: Path,
                      state: node_state.NodeState) -> node_state.NodeState | None:
    """A restarted bootstrap winner that never turned writable (so it holds no client data).

    The claim absent or naming this node: claim again and continue with this
    data.  Another node's claim, or another node's snapshot: give way — the
    data is moved aside (kept) and the node starts empty (it clones).  Its own
    snapshot in `snapshots/last`: the cluster formed from this data; it joins
    it as an ordinary node.
    """
    last = store.snapshot_pointer()
    if last is not None and last.get("source_node") == config.node_name:
        log.info("the cluster's first snapshot %s came from this node's data: continuing as a member", last.get("id"))
        state = state.update(bootstrap_pending=False)
        node_state.save(datadir, state)
        return state
    deadline = time.monotonic() + 2 * config.session_ttl + 30
    while last is None:
        name = bootstrap.owner(store)
        if name is not None and name != config.node_name:
            break
        claim = bootstrap.take(store, config.node_name, config.session_ttl)
        if claim is not None:
            log.info("restarted before the cluster's first snapshot: claimed the bootstrap again (session %s); "
                     "continuing with this node's data", claim.session)
            return state
        if time.monotonic() >= deadline:
            raise StartError("the bootstrap claim still names this node under a session that has not ended; "
                             "try again later")
        time.sleep(1.0)
        last = store.snapshot_pointer()
    other = f"snapshot {last.get('id')} of {last.get('source_node')}" if last else f"the claim of {name}"
    aside = move_aside(datadir, "gave-way")
    log.warning("this node bootstrapped a cluster that never turned writable, and %s now exists: giving way; "
                "moved its data aside to %s (kept) and starting as an empty node", other, aside)
    return None


def _initialize(config, flavor, datadir: Path, state: node_state.NodeState) -> None:
    """Initialise a new server in a staging directory and move it in only when complete, with its mark."""
    staging = new_staging(datadir)
    try:
        initialize(config, flavor, target=staging)
        install(staging, datadir, state)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after a successful install; a failed one's remains


def _restore(config, discovery: Discovery, datadir: Path, server_id: int) -> dict[str, Any] | None:
    from ..backup.restore import RestoreError, restore_newest

    def mark(manifest: dict[str, Any]) -> node_state.NodeState:
        return node_state.NodeState(node=config.node_name, server_id=server_id, origin="restore",
                                    snapshot_id=manifest["id"], snapshot_gtid=manifest.get("gtid") or "",
                                    seeded=False)
    try:
        return restore_newest(config, discovery, str(datadir), mark=mark)
    except RestoreError as exc:
        raise StartError(f"restore failed, datadir left empty: {exc}") from None


def _restored(config, datadir: Path, manifest: dict[str, Any]) -> node_state.NodeState:
    state = node_state.load(datadir)
    if state is None:  # cannot happen: the restore wrote it last
        raise StartError(f"the restored datadir {datadir} has no {node_state.FILENAME}")
    log.info("restored snapshot %s (gtid %s) into %s", state.snapshot_id, state.snapshot_gtid or "(empty)", datadir)
    return state


def _allocate_server_id(store: ClusterStore, avoid: frozenset[int] = frozenset()) -> int:
    """A server_id no other node has (records.py `ClusterStore.allocate_server_id`); StartError
    when the counter is too contended to hand one out."""
    try:
        return store.allocate_server_id(avoid)
    except ServerIdContention as exc:
        raise StartError(str(exc)) from None

