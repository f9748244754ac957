"""Load and observation for failover drills: a writer that finds the primary as a
client would, and a sampler of every node's `@@read_only`.

The writer inserts numbered rows through whichever node holds the `primary`
lock (read from discovery, like a client resolving the primary), one row per
autocommit statement, and records each row the server acknowledged, with the
GTID the server gave it (`@@last_gtid`, read on the same session right after
the insert) so that a lost row can be placed in the replication stream.

The sampler reads `@@global.read_only` of every node every `interval` s over
its socket, one thread per node, so that a frozen or hanging node never
delays the samples of the others.  Each sample carries when its read was sent
and when the answer came back: the value held at some instant in between.
`overlaps()` turns the samples into *proven* moments of two writable nodes
(see its docstring); `two_writable_moments()` is the older, looser view.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

from .cluster import APP_DATABASE, APP_PASSWORD, APP_USER, Cluster, Node


@dataclass
class Write:
    row: int
    node: str
    at: float
    """When the acknowledgement arrived (time.time())."""
    gtid: str | None = None
    """The transaction's GTID as the server reported it (None: not known, e.g. the session died first)."""
    sent: float = 0.0
    """When the INSERT was sent."""


@dataclass
class Writer:
    cluster: Cluster
    table: str = "drill"
    interval: float = 0.01
    acked: list[Write] = field(default_factory=list)
    errors: int = 0
    record_gtids: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next: int = 1
    _discovery: Any = None
    _lock_key: str = ""
    _paused: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Writer":
        primary = self.cluster.wait_for_primary(60)
        conn = primary.app_connection()
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id INT PRIMARY KEY, node VARCHAR(64), "
                        f"at DOUBLE)")
        conn.close()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def pause(self) -> None:
        """The application goes quiet (no new INSERT is sent until resume())."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def _target(self) -> tuple[str, str, int] | None:
        """The ready lock holder, read from discovery as a client would (one client, kept)."""
        from triton_mysql.keys import ClusterKeys, decode
        try:
            if self._discovery is None:
                self._discovery, config = self.cluster.discovery()
                self._lock_key = ClusterKeys.for_config(config).primary
            kv = self._discovery.get(self._lock_key)
            lock = decode(kv.value) if kv else None
        except Exception:  # noqa: BLE001 - discovery down: no primary known
            if self._discovery is not None:
                try:
                    self._discovery.close()
                except Exception:  # noqa: BLE001
                    pass
            self._discovery = None
            return None
        if not lock or lock.get("state", "ready") != "ready":
            return None
        return lock["node"], lock["address"], int(lock["port"])

    def _run(self) -> None:
        conn = None
        where: tuple[str, str, int] | None = None
        last_lookup = 0.0
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.01)
                continue
            now = time.monotonic()
            if conn is None or now - last_lookup > 0.2:
                target = self._target()
                last_lookup = now
                if target != where and conn is not None:
                    conn.close()
                    conn = None
                where = target
                if where is None:
                    time.sleep(0.05)
                    continue
            if conn is None:
                try:
                    conn = pymysql.connect(host=where[1], port=where[2], user=APP_USER, password=APP_PASSWORD,
                                           database=APP_DATABASE, connect_timeout=1, read_timeout=2,
                                           write_timeout=2, autocommit=True)
                except pymysql.err.MySQLError:
                    self.errors += 1
                    time.sleep(0.05)
                    continue
            row = self._next
            sent = time.time()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s, %s)", (row, where[0], sent))
                acked_at = time.time()
                self._next += 1
            except pymysql.err.IntegrityError:
                self._next += 1  # committed before a failover but the ack was lost: skip the number
                time.sleep(self.interval)
                continue
            except pymysql.err.MySQLError:
                self.errors += 1
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.02)
                continue
            gtid = None
            if self.record_gtids:
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@last_gtid")
                        gtid = str(cur.fetchone()[0] or "") or None
                except pymysql.err.MySQLError:
                    self.errors += 1
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
            self.acked.append(Write(row, where[0], acked_at, gtid, sent))
            time.sleep(self.interval)
        if conn is not None:
            conn.close()
        if self._discovery is not None:
            self._discovery.close()

    def acked_rows(self) -> set[int]:
        return {w.row for w in list(self.acked)}

    def missing_on(self, node: Node) -> set[int]:
        rows = {int(r["id"]) for r in node.sql(f"SELECT id FROM {APP_DATABASE}.{self.table}")}
        return self.acked_rows() - rows

    def first_ack_after(self, moment: float, exclude_node: str | None = None) -> Write | None:
        for write in list(self.acked):
            if write.at > moment and write.node != exclude_node:
                return write
        return None

    def acks_between(self, start: float, end: float) -> list[Write]:
        return [w for w in list(self.acked) if start <= w.at <= end]


@dataclass
class Sample:
    at: float
    """When the read completed (a read of a frozen server completes only when it wakes, or times out)."""
    node: str
    read_only: bool | None
    started: float = 0.0
    """When the read was sent: the value held at some instant within [started, at]."""


@dataclass(frozen=True)
class Overlap:
    """Two nodes proven writable at the same time, over [start, end]."""

    nodes: tuple[str, str]
    start: float
    end: float
    samples: int
    """Writable samples of either node read within [start, end]: the 'two-writable samples'."""

    @property
    def duration(self) -> float:
        return self.end - self.start


class Sampler:
    """`@@global.read_only` of every node every `interval` s (None: unreachable), one thread per node.

    Reads are aligned on a common clock (every thread reads at t0 + k * interval),
    so one tick is a near-instant picture of the whole cluster.  A read that
    cannot finish within `timeout` counts as None (down, frozen, restarting).
    Nodes added to the cluster later get their own thread within a second.
    """

    def __init__(self, cluster: Cluster, interval: float = 0.1, timeout: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self.timeout = timeout
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._t0 = 0.0
        self._threads: dict[str, threading.Thread] = {}
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> "Sampler":
        self._t0 = time.monotonic()
        self._spawn()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for thread in list(self._threads.values()):
            thread.join(10)

    def _spawn(self) -> None:
        for node in list(self.cluster.nodes):
            if node.name not in self._threads:
                thread = threading.Thread(target=self._sample_node, args=(node,), name=f"sampler-{node.name}",
                                          daemon=True)
                self._threads[node.name] = thread
                thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._spawn()

    def _connect(self, node: Node) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=node.socket, user="root", connect_timeout=self.timeout,
                               read_timeout=self.timeout, write_timeout=self.timeout, autocommit=True)

    def _sample_node(self, node: Node) -> None:
        conn = None
        tick = 0
        while not self._stop.is_set():
            tick = max(tick + 1, int((time.monotonic() - self._t0) / self.interval) + 1)
            delay = self._t0 + tick * self.interval - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            started = time.time()
            value: bool | None
            try:
                if conn is None:
                    conn = self._connect(node)
                with conn.cursor() as cur:
                    cur.execute("SELECT @@global.read_only")
                    value = bool(int(cur.fetchone()[0]))
            except Exception:  # noqa: BLE001 - down, frozen or restarting
                value = None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                conn = None
            self.samples.append(Sample(time.time(), node.name, value, started))
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def writable_at(self, start: float, end: float) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for s in sorted(list(self.samples), key=lambda s: s.at):
            if start <= s.at <= end and s.read_only is False:
                out.setdefault(s.node, []).append(s.at)
        return out

    def two_writable_moments(self, tolerance: float = 0.15) -> list[tuple[float, set[str]]]:
        """Moments when two nodes were both sampled writable within `tolerance` s of each other.

        Each sample carries the time its read *completed* (a read of a frozen
        server completes only when it wakes), and a pair is reported at the
        later of its two times.
        """
        writable = sorted((s for s in list(self.samples) if s.read_only is False), key=lambda s: s.at)
        found: list[tuple[float, set[str]]] = []
        for i, a in enumerate(writable):
            for b in writable[i + 1:]:
                if b.at - a.at > tolerance:
                    break
                if b.node != a.node:
                    found.append((b.at, {a.node, b.node}))
        return found

    def overlaps(self, start: float = 0.0, end: float = float("inf")) -> list[Overlap]:
        """Proven moments of two writable nodes among the samples read within [start, end]."""
        return find_overlaps([s for s in list(self.samples) if start <= s.started and s.at <= end])


def writable_runs(samples: list[Sample]) -> dict[str, list[list[Sample]]]:
    """Per node, the runs of consecutive writable samples (a read-only or failed read ends a run)."""
    by_node: dict[str, list[Sample]] = {}
    for s in samples:
        by_node.setdefault(s.node, []).append(s)
    runs: dict[str, list[list[Sample]]] = {}
    for node, node_samples in by_node.items():
        current: list[Sample] = []
        for s in sorted(node_samples, key=lambda s: s.started):
            if s.read_only is False:
                current.append(s)
            elif current:
                runs.setdefault(node, []).append(current)
                current = []
        if current:
            runs.setdefault(node, []).append(current)
    return runs


def find_overlaps(samples: list[Sample]) -> list[Overlap]:
    """Intervals in which two nodes were certainly writable at the same time.

    A read answers for one instant somewhere between its send and its answer.
    A run of consecutive writable reads of one node proves it writable from
    the answer of the first to the send of the last (its *certain* interval;
    a node is not expected to flip read-only and back between two reads 50 ms
    apart).  Two nodes overlap when their certain intervals intersect, or
    when a writable read of one lies wholly inside the certain interval of
    the other.  So a hand-over whose old primary turned read-only a few
    milliseconds before the new one turned writable is never reported merely
    because both reads landed in the same sampling tick, while two writable
    nodes for longer than about one sampling interval always are.
    """
    runs = writable_runs(samples)
    nodes = sorted(runs)
    found: list[Overlap] = []
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            regions: list[tuple[float, float]] = []
            for ra in runs[a]:
                a0, a1 = ra[0].at, ra[-1].started
                for rb in runs[b]:
                    b0, b1 = rb[0].at, rb[-1].started
                    if rb[-1].at < ra[0].started or ra[-1].at < rb[0].started:
                        continue  # not even close
                    lo, hi = max(a0, b0), min(a1, b1)
                    if lo <= hi:
                        regions.append((lo, hi))
                    regions += [(s.started, s.at) for s in rb if a0 <= s.started and s.at <= a1]
                    regions += [(s.started, s.at) for s in ra if b0 <= s.started and s.at <= b1]
            for lo, hi in _merge(regions):
                count = sum(1 for s in samples if s.node in (a, b) and s.read_only is False
                            and s.started <= hi and s.at >= lo)
                found.append(Overlap((a, b), lo, hi, count))
    return sorted(found, key=lambda o: o.start)


def _merge(regions: list[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(regions):
        if merged and lo <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
