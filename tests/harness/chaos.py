"""Load and observation for failover drills: a writer that finds the primary as a
client would, and a sampler of every node's `@@read_only`.

The writer inserts numbered rows through whichever node holds the `primary`
lock (read from discovery, like a client resolving the primary), one row per
autocommit statement, and records each row the server acknowledged.  The
sampler reads `@@global.read_only` of every node every 100 ms over its socket.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pymysql

from .cluster import APP_DATABASE, APP_PASSWORD, APP_USER, Cluster, Node


@dataclass
class Write:
    row: int
    node: str
    at: float


@dataclass
class Writer:
    cluster: Cluster
    table: str = "drill"
    interval: float = 0.01
    acked: list[Write] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next: int = 1

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

    def _target(self) -> tuple[str, str, int] | None:
        try:
            lock = self.cluster.lock()
        except Exception:  # noqa: BLE001 - discovery down: no primary known
            return None
        if not lock or lock.get("state", "ready") != "ready":
            return None
        return lock["node"], lock["address"], int(lock["port"])

    def _run(self) -> None:
        conn = None
        where: tuple[str, str, int] | None = None
        last_lookup = 0.0
        while not self._stop.is_set():
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
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s, %s)", (row, where[0], time.time()))
                self.acked.append(Write(row, where[0], time.time()))
                self._next += 1
            except pymysql.err.IntegrityError:
                self._next += 1  # committed before a failover but the ack was lost: skip the number
            except pymysql.err.MySQLError:
                self.errors += 1
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.02)
            time.sleep(self.interval)
        if conn is not None:
            conn.close()

    def acked_rows(self) -> set[int]:
        return {w.row for w in self.acked}

    def missing_on(self, node: Node) -> set[int]:
        rows = {int(r["id"]) for r in node.sql(f"SELECT id FROM {APP_DATABASE}.{self.table}")}
        return self.acked_rows() - rows

    def first_ack_after(self, moment: float, exclude_node: str | None = None) -> Write | None:
        for write in self.acked:
            if write.at > moment and write.node != exclude_node:
                return write
        return None


@dataclass
class Sample:
    at: float
    node: str
    read_only: bool | None


class Sampler:
    """`@@global.read_only` of every node every `interval` s (None: unreachable)."""

    def __init__(self, cluster: Cluster, interval: float = 0.1) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._conns: dict[str, pymysql.connections.Connection] = {}

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _read(self, node: Node) -> bool | None:
        conn = self._conns.get(node.name)
        try:
            if conn is None:
                conn = pymysql.connect(unix_socket=node.socket, user="root", connect_timeout=0.5, read_timeout=0.5,
                                       autocommit=True)
                self._conns[node.name] = conn
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.read_only")
                return bool(int(cur.fetchone()[0]))
        except Exception:  # noqa: BLE001 - down, frozen or restarting
            self._conns.pop(node.name, None)
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            for node in list(self.cluster.nodes):
                value = self._read(node)  # first: a sample is stamped when its read completed
                self.samples.append(Sample(time.time(), node.name, value))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def writable_at(self, start: float, end: float) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for s in self.samples:
            if start <= s.at <= end and s.read_only is False:
                out.setdefault(s.node, []).append(s.at)
        return out

    def two_writable_moments(self, tolerance: float = 0.15) -> list[tuple[float, set[str]]]:
        """Moments when two nodes were both sampled writable within `tolerance` s of each other.

        Each sample carries the time its read *completed* (a read of a frozen
        server completes only when it wakes), and a pair is reported at the
        later of its two times.
        """
        writable = sorted((s for s in self.samples if s.read_only is False), key=lambda s: s.at)
        found: list[tuple[float, set[str]]] = []
        for i, a in enumerate(writable):
            for b in writable[i + 1:]:
                if b.at - a.at > tolerance:
                    break
                if b.node != a.node:
                    found.append((b.at, {a.node, b.node}))
        return found
