"""Carrying decisions out on this node: its mysqld, its records, its node state.

`Agent` bundles what one hook process needs (config, discovery client, a
connection to the local mysqld, the key layout) and offers the local steps
the hooks combine: gather the local state, follow a primary, turn writable,
fence, publish the member record.  The other jobs are parts it holds:
`session` (this node's discovery session, ha/session.py), `peers` (other
nodes over SQL, ha/peers.py), `advertiser` (the supervisor's service name,
supervisor_client.py) and `store` (the cluster records, records.py); the
winner's promotion sequence is ha/promote.py.  Each step logs one line when
it changes something (what and why), and nothing when there was nothing to
do, so that a steady-state `health` pass is silent.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator

from ..config import FENCE_BUDGET, Config
from ..discovery import Discovery, connect
from ..keys import ClusterKeys
from ..mysql import flavor as flavors
from ..mysql import gtid as gtids
from ..mysql import replication, semisync
from ..mysql import tls as mysql_tls
from ..mysql.connection import DBError, connect_local
from ..mysql.fence import fence as fence_server
from ..mysql.fence import set_read_only, stop_mysqld
from ..mysql.server_config import pid_file_for
from ..mysql.state import ServerState, read_state
from .. import node_state
from ..supervisor_client import Advertiser, in_maintenance
from .decide import STRANDED, Local, Timing, Verdict
from .peers import Peers
from ..records import READY, ClusterStore, FailoverRecord, Lock, MemberRecord
from .session import NodeSession
from ..view import ClusterView, read_view

log = logging.getLogger("triton_mysql.ha")


@dataclass
class Observed:
    """The local server as read at the start of a pass (None fields: mysqld down)."""

    server: ServerState | None
    state: node_state.NodeState | None

    @property
    def verdict(self) -> Verdict | None:
        return Verdict.from_record(self.state.verdict) if self.state is not None else None


class Agent:
    def __init__(self, config: Config, discovery: Discovery | None = None) -> None:
        self.config = config
        self._discovery = discovery
        self.keys = ClusterKeys.for_config(config)
        self._conn = None
        self._flavor: flavors.Flavor | None = None

    # -- resources ------------------------------------------------------------
    @property
    def discovery(self) -> Discovery:
        if self._discovery is None:
            self._discovery = connect(self.config)
        return self._discovery

    @cached_property
    def session(self) -> NodeSession:
        """This node's discovery session (ha/session.py)."""
        return NodeSession(self.config.node_name, self.config.service_name, self.config.session_ttl, self.discovery)

    @cached_property
    def peers(self) -> Peers:
        """Other nodes over SQL (ha/peers.py)."""
        return Peers(self.config, lambda: self.flavor)

    @cached_property
    def advertiser(self) -> Advertiser:
        """The service name the supervisor registers this node under (supervisor_client.py)."""
        return Advertiser.for_config(self.config)

    @cached_property
    def store(self) -> ClusterStore:
        """The cluster's records: every write of one goes through here (records.py)."""
        return ClusterStore(self.discovery, self.keys)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._conn = None
        if self._discovery is not None:
            self._discovery.close()

    def conn(self):
        """The root connection over the local socket (raises DBError when mysqld is down)."""
        if self._conn is None:
            self._conn = connect_local(self.config.mysql_socket, self.config.mysql_root_password)
        return self._conn

    def try_conn(self):
        try:
            return self.conn()
        except DBError as exc:
            log.debug("mysqld not reachable on %s: %s", self.config.mysql_socket, exc)
            return None

    @property
    def flavor(self) -> flavors.Flavor:
        if self._flavor is None:
            self._flavor = flavors.of_connection(self.conn())
        return self._flavor

    @cached_property
    def timing(self) -> Timing:
        bounds = self.discovery.expiry_bounds(self.config.session_ttl, keepalive=True)
        return Timing.from_config(self.config, bounds[1])

    @property
    def maintenance(self) -> bool:
        return in_maintenance()

    @contextlib.contextmanager
    def exclusive(self, timeout: float) -> Iterator[bool]:
        """Serialise the hooks of this node that change mysqld: health and onChange.

        An flock next to the pid file: the kernel drops it when the holder dies,
        so it can never go stale.  Yields False when it could not be had within
        `timeout` (the caller then skips its changes for this round).

        preStop does not take it: before running preStop the supervisor sends SIGTERM to any
        health or onChange hook still running and starts no new one (supervisor/main.py).
        """
        path = os.path.join(os.path.dirname(pid_file_for(self.config)), "triton-mysql.lock")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- reading --------------------------------------------------------------
    def observe(self) -> Observed:
        conn = self.try_conn()
        server = None
        if conn is not None:
            try:
                server = read_state(conn, self.flavor)
            except DBError as exc:
                log.warning("could not read the server state: %s", exc)
                self._conn = None
        return Observed(server, node_state.load(self.config.mysql_datadir))

    def seed_if_restored(self, observed: Observed) -> Observed:
        """Once after a restore, before anything replicates: start the binlog and replica
        positions at the snapshot's GTID (SPEC §5).  Both health and onChange call it first."""
        state = observed.state
        if (observed.server is None or state is None or state.origin != "restore" or state.seeded
                or state.snapshot_gtid is None):
            return observed
        replication.seed_after_restore(self.conn(), self.flavor, state.snapshot_gtid)
        node_state.save(self.config.mysql_datadir, state.update(seeded=True))
        log.info("seeded the GTID state from snapshot %s: %s", state.snapshot_id, state.snapshot_gtid or "(empty)")
        return self.observe()

    def view(self, with_services: bool = False) -> ClusterView:
        service = self.config.primary_service if with_services else None
        return read_view(self.discovery, self.keys, primary_service=service)

    def backup_running(self, view: ClusterView | None) -> bool:
        return view is not None and view.backup_node() == self.config.node_name

    def local(self, observed: Observed, view: ClusterView | None, session: str | None) -> Local:
        server = observed.server
        common = dict(node=self.config.node_name, session=session, nofailover=self.config.nofailover,
                      auto_reclone=self.config.auto_reclone, maintenance=self.maintenance,
                      verdict=observed.verdict)
        if server is None:
            return Local(mysql_up=False, **common)
        replica = server.replica
        state = observed.state
        return Local(
            mysql_up=True,
            read_only=server.read_only,
            flavor=self.flavor.name,
            gtid=server.executed_gtid,
            received_gtid=replica.received_gtid if replica else server.executed_gtid,
            source=(replica.source_host, replica.source_port) if replica else None,
            io_running=bool(replica and replica.io_running),
            sql_running=bool(replica and replica.sql_running),
            sql_error=(replica.last_sql_error if replica else "") or "",
            io_error=(replica.last_io_error if replica else "") or "",
            io_errno=replica.last_io_errno if replica else 0,
            lag_seconds=replica.seconds_behind if replica else None,
            bootstrap_pending=bool(state and state.bootstrap_pending and state.node == self.config.node_name),
            backup_running=self.backup_running(view),
            **common,
        )

    # -- records --------------------------------------------------------------
    def lock_record(self, server: ServerState | None, state: str = READY) -> Lock:
        return Lock(node=self.config.node_name, address=self.config.advertise_address, port=self.config.mysql_port,
                    server_id=server.server_id if server else None, since=time.time(), state=state)

    def member_record(self, observed: Observed, role: str, healthy: bool, candidate: bool) -> MemberRecord:
        server = observed.server
        replica = server.replica if server else None
        state = observed.state
        verdict = observed.verdict
        return MemberRecord(
            node=self.config.node_name,
            address=self.config.advertise_address,
            port=self.config.mysql_port,
            server_id=server.server_id if server else (state.server_id if state else None),
            role=role,
            gtid=server.executed_gtid if server else None,
            received_gtid=(replica.received_gtid if replica else server.executed_gtid) if server else None,
            binlog_state=server.binlog_state if server else None,
            origin=server.origin if server else None,
            candidate=candidate,
            healthy=healthy,
            lag_seconds=replica.seconds_behind if replica else None,
            snapshot_id=state.snapshot_id if state else None,
            updated=time.time(),
            read_only=server.read_only if server else None,
            verdict=state.verdict if state and verdict else None,
            errant=verdict.gtids if verdict and verdict.kind == "errant" else None,
            flavor=self.flavor.name if server else None,
        )

    def publish(self, session: str | None, record: MemberRecord) -> None:
        """Write the member record (bound to the session) and the durable node record."""
        if not self.store.publish_member(record, session):
            log.warning("member record is held by another session; not overwritten")

    # -- node state: terms and verdicts ----------------------------------------
    def _state(self, observed: Observed) -> node_state.NodeState:
        if observed.state is not None:
            return observed.state
        server_id = observed.server.server_id if observed.server else 0
        return node_state.NodeState(node=self.config.node_name, server_id=server_id)

    def _save(self, observed: Observed, state: node_state.NodeState) -> Observed:
        if state != observed.state:
            node_state.save(self.config.mysql_datadir, state)
        return Observed(observed.server, state)

    def open_term(self, observed: Observed) -> Observed:
        """Record that this server is about to write as the primary (before it turns writable)."""
        assert observed.server is not None
        state = self._state(observed)
        if state.term_open:
            return observed
        log.info("primary term begins at %s", observed.server.executed_gtid or "(empty)")
        return self._save(observed, state.open_term(observed.server.executed_gtid, time.time()))

    def close_term(self, observed: Observed) -> Observed:
        """This server is read-only and not the primary: its term (if one is open) ends here."""
        state = observed.state
        if observed.server is None or state is None or not state.term_open or not observed.server.read_only:
            return observed
        log.info("primary term ends at %s", observed.server.binlog_state or "(empty)")
        return self._save(observed, state.close_term(observed.server.binlog_state, time.time()))

    def record_verdict(self, observed: Observed, verdict: Verdict | None) -> Observed:
        """Keep the divergence verdict in the node state (None clears it); log a change once."""
        old = observed.verdict
        if verdict == old:
            return observed
        state = self._state(observed)
        if verdict is None:
            log.info("no longer diverged (was: %s)", old)
            return self._save(observed, state.update(verdict=None))
        log.error("%s", verdict)
        return self._save(observed, state.update(verdict=verdict.to_record(time.time())))

    def divergence(self, observed: Observed, primary_state: str, against: str,
                   tolerate: str | None = None) -> Verdict | None:
        """Compare this server's GTIDs with a primary's by origin (SPEC §5); None when compatible."""
        server = observed.server
        assert server is not None
        state = self._state(observed)
        found = gtids.classify(self.flavor.name, server.binlog_state, primary_state, own=server.origin,
                               terms=state.term_spans(), tolerate=tolerate)
        if not found:
            return None
        return Verdict(found.kind, found.gtids, against)

    def check_before_standing(self, observed: Observed, previous: dict[str, Any] | None) -> Observed:
        """Before standing in an election: compare with the last primary's published record.

        Its own transactions beyond that record are expected (a replica may have outrun the record
        before the primary died); anything else this node has and it lacks forbids standing."""
        if observed.server is None or not previous or previous.get("node") == self.config.node_name:
            return observed
        record_state = previous.get("binlog_state") or previous.get("gtid")
        if record_state is None:
            return observed
        verdict = self.divergence(observed, str(record_state), str(previous["node"]),
                                  tolerate=str(previous.get("origin") or previous.get("server_id") or "") or None)
        current = observed.verdict
        if verdict is None and current is not None and current.against != previous.get("node"):
            return observed  # a verdict against another primary stands until that primary is compared again
        return self.record_verdict(observed, verdict)

    # -- primary side -----------------------------------------------------------
    def become_writable(self, observed: Observed, reason: str) -> Observed:
        observed = self.open_term(observed)
        set_read_only(self.conn(), self.flavor, False)
        log.info("writable: %s", reason)
        return observed

    def stop_replication_if_any(self, server: ServerState, reason: str) -> None:
        if server.replica is not None:
            replication.stop_and_clear(self.conn(), self.flavor)
            log.info("replication stopped and cleared: %s", reason)

    def fence(self, reason: str) -> str:
        """Kill client connections and turn read-only; stop mysqld if that cannot be done in time."""
        socket, password = self.config.mysql_socket, self.config.mysql_root_password
        outcome = fence_server(lambda t: connect_local(socket, password, timeout=t), self.flavor,
                               pid_file_for(self.config), budget=FENCE_BUDGET,
                               hard_stop=self.config.sync_replication != "off")
        self._conn = None  # fencing may have killed or replaced our connection
        log.warning("fenced (%s): %s", outcome, reason)
        self.advertiser.advertise(primary=False)
        return outcome

    def acquire_lock(self, session: str, server: ServerState | None, state: str) -> bool:
        return self.store.take_lock(session, self.lock_record(server, state))

    def mark_lock_ready(self, session: str, server: ServerState | None) -> None:
        self.store.mark_ready(session, self.lock_record(server, READY))

    # -- replica side -----------------------------------------------------------
    def follow(self, observed: Observed, lock: Lock) -> Observed:
        """Replicate from the lock holder after comparing GTIDs with it; records the verdict.

        The comparison runs every time replication is (re)started, and whenever a verdict
        against another primary is on record: MariaDB replicates from `gtid_slave_pos`, which
        ignores what this server wrote itself, so a write made while it was alone would
        otherwise be silently kept.
        """
        server = observed.server
        assert server is not None
        replica = server.replica
        same_source = replica is not None and replica.source_host == lock.address and replica.source_port == lock.port
        if same_source and observed.verdict is None:
            assert replica is not None
            if replica.last_sql_error:
                log.error("replication from %s is stopped by an SQL error: %s", lock.node, replica.last_sql_error)
                return observed
            if replica.sql_running and (replica.io_running or replica.io_state == "Connecting"):
                return observed  # replicating, or retrying a source that is down: nothing to do
        primary_state = self.peers.gtid_state(lock.address, lock.port, timeout=self.timing.peer_read_timeout)
        verdict = self.divergence(observed, primary_state, lock.node)
        observed = self.record_verdict(observed, verdict)
        if verdict is not None:
            if replica is not None and (replica.io_running or replica.sql_running):
                self.conn().execute(self.flavor.stop_replica())
            log.error("refusing to replicate from %s: %s", lock.node, verdict)
            return observed
        # From here on it is a replica: a write of its own is errant, not part of a term.  Closing
        # the term only in the health pass left a window (onChange follows first) in which a write
        # made alone counted as the lost tail of its old term.
        observed = self.close_term(observed)
        if self.config.sync_replication != "off":  # off: the source side is never turned on
            semisync.prepare_replica(self.conn(), self.flavor, self.config.sync_replication,
                                     bool(replica and replica.io_running))
        if same_source:
            replication.start(self.conn(), self.flavor)
            log.info("replication from %s restarted", lock.node)
            return observed
        replication.follow(self.conn(), self.flavor, lock.address, lock.port, self.config.mysql_repl_user,
                           self.config.mysql_repl_password, tls=mysql_tls.replication(self.config))
        log.info("following %s at %s:%s with GTID auto-positioning", lock.node, lock.address, lock.port)
        return observed

    def refuse(self, observed: Observed, reason: str) -> None:
        """Diverged from the holder: make sure replication is stopped (it must not apply anything)."""
        server = observed.server
        if server is not None and server.replica is not None and (server.replica.io_running
                                                                   or server.replica.sql_running):
            self.conn().execute(self.flavor.stop_replica())
            log.error("replication stopped: %s", reason)

    def schedule_reclone(self, observed: Observed, reason: str, primary: str) -> None:
        """AUTO_RECLONE: mark the datadir and stop mysqld; the next onStart clones afresh."""
        state = self._state(observed)
        verdict = observed.verdict
        node_state.save(self.config.mysql_datadir, state.update(reclone={
            "reason": reason, "errant": verdict.gtids if verdict else "", "kind": verdict.kind if verdict else STRANDED,
            "at": time.time(), "primary": primary}))
        log.warning("AUTO_RECLONE: %s; stopping mysqld so that the next start re-clones (old data kept aside)",
                    reason)
        stop_mysqld(pid_file_for(self.config), timeout=60)

    # -- helpers ----------------------------------------------------------------
    def record_failover(self, previous: str | None, kind: str, report: dict[str, Any]) -> None:
        """`failover/last`: this node took over from `previous`; `report` is decide.loss_report's."""
        self.store.record_failover(FailoverRecord(source=previous, to=self.config.node_name, at=time.time(),
                                                  kind=kind, **report))

