"""The randomized fault drill (issue 13): a seeded schedule of faults on a real
3-node cluster under load, with safety checks after every fault.

What runs
---------
Three real nodes (containerbuddy + hooks + MariaDB) on etcd or the Consul
double, a `Writer` that finds the primary through discovery and records every
acknowledged row with its GTID, a `Sampler` of every node's `read_only` every
50 ms, a `Topology` monitor (every node's replication source, server_id and
GTID state, the lock holder and the member records, twice a second), a
`LogWatch` over the node logs (errant verdicts, ERROR lines, mysqld starts)
and a `Keeper` that plays the container restart policy (`unless-stopped`): a
node whose supervisor exits on its own is started again after a second.

The schedule
------------
`make_schedule(seed, rounds, kinds)` draws the faults from the seed alone (a
shuffled deck of the kinds, so every kind comes up once per deck; the role,
which replica, and a number `u` in [0, 1) that sets the fault's duration), so
the same seed replays the same schedule.  Targets are resolved when the round
starts (`primary` = the lock holder then; `replica` = the `pick`-th healthy
replica by name).  Every round first waits (bounded) for the cluster to
converge; a stopped, killed or frozen node is always brought back within the
round, and no fault takes a second node away, so the cluster can always
recover.

The checks (after every round, and over the whole run at the end)
------------------------------------------------------------------
* two writable nodes: `chaos.find_overlaps` over the samples (proven
  simultaneity, not merely the same tick), outside the frozen-process window
  of SPEC §5, which is measured: from SIGCONT to the last writable sample of
  the frozen node, reported per round;
* lost acknowledged rows (missing on the primary the cluster converged to):
  none after a planned operation or a fault that takes no running primary
  away; after a crash (kill -9 or freeze of the primary, a lagging replica
  and a crash, a wipe of discovery) only the crashed primary's unreplicated
  tail: every lost row was acknowledged by that node before the fault, they
  are the last ones it acknowledged, and no surviving node had received their
  GTIDs (each survivor's `Gtid_IO_Pos` and `gtid_current_pos` are read right
  after the fault);
* errant transactions: each verdict (log line or member record) must name
  GTIDs of the node's own server_id (a node holding another server's
  transactions is ahead, not errant); while a verdict stands (same server_id,
  GTIDs still in its binlog state) nobody replicates from that node and it is
  never writable nor the lock holder; no node acquires another node's errant
  GTIDs after the verdict, and the final primary holds none;
* convergence: one writable lock holder in state `ready`, every other node
  replicating from it with both threads running and the same rows (checksum
  up to the primary's last id, once they have applied its position) — or explicitly
  unhealthy, with its reason in an ERROR line of its log;
* no crash loop: at most `crash_loop_limit` restarts (by the Keeper) and
  mysqld starts per node and round.

Per round it records the fault, seed, failover time (the fault's signal to
the first acknowledged write on the new primary), the longest gap between
acknowledged writes, rows lost, two-writable samples and episodes, the frozen
window, restarts, errant verdicts and violations; `Report.write()` puts it
all in a JSON file and `Report.text()` prints it.
"""
from __future__ import annotations

import calendar
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pymysql

from .chaos import Overlap, Sample, Sampler, Write, Writer, find_overlaps
from .cluster import APP_DATABASE, REPL_USER, Cluster, Node

# ---------------------------------------------------------------------------
# Fault kinds and the schedule

PRIMARY, REPLICA, CLUSTER = "primary", "replica", "cluster"

KINDS: dict[str, tuple[str, ...]] = {
    "sigterm": (PRIMARY, REPLICA),        # planned stop (preStop hands over), restarted with its data
    "kill9": (PRIMARY, REPLICA),          # crash of every process of the node, restarted with its data
    "freeze": (PRIMARY, REPLICA),         # SIGSTOP of every process of the node, SIGCONT later
    "discovery_stop": (CLUSTER,),         # etcd / the Consul double down for 2 x SESSION_TTL
    "discovery_wipe": (CLUSTER,),         # every key under the prefix deleted
    "hold_sql": (REPLICA,),               # LOCK TABLES on a replica: its SQL thread waits, its IO thread receives
    "switchover": (CLUSTER,),             # `triton-mysql switchover [--to replica]`
    "maintenance": (PRIMARY, REPLICA),    # SIGUSR1 on, SIGUSR1 off
    "restart": (PRIMARY, REPLICA),        # SIGTERM and start again at once, with its data
    "reclone": (PRIMARY, REPLICA),        # stopped, datadir moved away, started: clones the newest snapshot
    "lagging_crash": (PRIMARY,),          # hold_sql on a replica, then kill -9 of the primary while it lags
    "errant_rejoin": (PRIMARY,),          # the primary writes alone, dies, comes back errant; the next one dies
}

#: The kinds whose loss rule is "only the crashed primary's unreplicated tail" (when aimed at the primary).
CRASH_KINDS = {"kill9", "freeze", "lagging_crash", "discovery_wipe", "errant_rejoin"}


@dataclass(frozen=True)
class Step:
    """One scheduled fault.  `u` in [0, 1) sets its duration (see `Drill.hold`)."""

    round: int
    kind: str
    role: str
    pick: int
    u: float

    def describe(self) -> str:
        who = {PRIMARY: "the primary", REPLICA: f"replica #{self.pick}", CLUSTER: "the cluster"}[self.role]
        if self.kind == "switchover":
            who = f"to replica #{self.pick}" if self.pick >= 0 else "to the best candidate"
        return f"{self.kind} ({who}, u={self.u:.3f})"


def parse_kinds(kinds: list[str] | str | None) -> list[tuple[str, str | None]]:
    """`"kill9,maintenance:primary"` -> [("kill9", None), ("maintenance", "primary")]; None: every kind."""
    if kinds is None or kinds == "" or kinds == []:
        return [(k, None) for k in KINDS]
    items = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    out: list[tuple[str, str | None]] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        kind, _, role = item.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if role and role not in KINDS[kind]:
            raise ValueError(f"fault {kind} cannot target {role!r} (only {', '.join(KINDS[kind])})")
        out.append((kind, role or None))
    return out


def make_schedule(seed: int, rounds: int, kinds: list[str] | str | None = None) -> list[Step]:
    """The faults of a run, from the seed alone (same seed and kinds: same schedule).

    Kinds are dealt from shuffled decks holding each requested kind once, so
    every kind comes up once per deck; a kind given without a role gets one
    at random among those it allows.
    """
    rng = random.Random(seed)
    pool = parse_kinds(kinds)
    deck: list[tuple[str, str | None]] = []
    steps = []
    for number in range(1, rounds + 1):
        if not deck:
            deck = list(pool)
            rng.shuffle(deck)
        kind, role = deck.pop()
        role = role or rng.choice(KINDS[kind])
        pick = rng.randrange(2)
        if kind == "switchover" and rng.random() < 0.3:
            pick = -1  # no --to: the command picks the best candidate
        steps.append(Step(number, kind, role, pick, round(rng.random(), 3)))
    return steps


# ---------------------------------------------------------------------------
# GTID helpers (MariaDB text: d-s-n lists)

_GTID = re.compile(r"(\d+)-(\d+)-(\d+)")


def gtids(text: str | None) -> list[tuple[int, int, int]]:
    return [(int(d), int(s), int(n)) for d, s, n in _GTID.findall(text or "")]


def position_covers(position: str | None, gtid: str) -> bool:
    """Does a position (last GTID per domain, as Gtid_IO_Pos / gtid_current_pos) include `gtid`?

    Under gtid_strict_mode a domain's history is one sequence, so the position
    covers every GTID of its domain up to its seq_no.
    """
    want = gtids(gtid)
    have = gtids(position)
    return bool(want) and all(any(d == hd and hn >= n for hd, _, hn in have) for d, _, n in want)


def state_covers(binlog_state: str | None, gtid: tuple[int, int, int]) -> bool:
    """Does a binlog state (last GTID per domain and server) hold this server's transaction `gtid`?"""
    d, s, n = gtid
    return any(hd == d and hs == s and hn >= n for hd, hs, hn in gtids(binlog_state))


# ---------------------------------------------------------------------------
# Lost acknowledged rows

def describe_writes(writes: list[Write], zero: float, limit: int = 8) -> str:
    parts = [f"{w.row} ({w.node}, GTID {w.gtid or '?'}, acked {w.at - zero:+.2f} s)" for w in writes[:limit]]
    return ", ".join(parts) + (f" … and {len(writes) - limit} more" if len(writes) > limit else "")


@dataclass
class Crash:
    """A primary that crashed, froze or was cut off during a round."""

    node: str
    cutoff: float
    """Writes sent after this moment cannot be its acknowledged tail (its processes were dead/stopped)."""
    positions: dict[str, str] = field(default_factory=dict)
    """Each other node's received/applied GTID position right after the crash."""


def loss_violations(lost: list[Write], acks: list[Write], crashes: list[Crash], zero: float) -> list[str]:
    """Why the rows lost in a round break the rules ([] when they do not).

    No crash (planned operations, faults that take no running primary away):
    nothing may be lost.  Otherwise only the crashed primaries' unreplicated
    tails: every lost row was acknowledged by a crashed primary (sent no later
    than its crash), the lost rows of each are the last ones it acknowledged
    before its crash, and no surviving node had received their GTIDs.
    """
    if not lost:
        return []
    if not crashes:
        return [f"{len(lost)} acknowledged row(s) lost on a planned or non-primary fault: "
                f"{describe_writes(lost, zero)}"]
    out = []
    by_node = {c.node: c for c in crashes}
    names = ", ".join(sorted(by_node))
    foreign = [w for w in lost if w.node not in by_node]
    if foreign:
        out.append(f"{len(foreign)} lost row(s) were acknowledged by other nodes than the crashed primary ({names}): "
                   f"{describe_writes(foreign, zero)}")
    for crash in crashes:
        mine = [w for w in lost if w.node == crash.node]
        if not mine:
            continue
        # A write sent after the crash (or the fence) cannot have been acknowledged by that node before it.
        late = [w for w in mine if w.sent > crash.cutoff]
        if late:
            out.append(f"{len(late)} lost row(s) were acknowledged by {crash.node} after it crashed/was fenced: "
                       f"{describe_writes(late, zero)}")
        own = sorted((w for w in acks if w.node == crash.node and w.sent <= crash.cutoff), key=lambda w: w.row)
        lost_rows = {w.row for w in mine}
        first = min(lost_rows)
        kept = [w for w in own if w.row > first and w.row not in lost_rows]
        if kept:
            out.append(f"the lost rows are not the tail of {crash.node}'s writes: row {first} was lost but "
                       f"{len(kept)} later row(s) it acknowledged survived (e.g. {kept[0].row})")
        received = []
        for w in sorted(mine, key=lambda w: w.row):
            for node, position in sorted(crash.positions.items()):
                if w.gtid and position and position_covers(position, w.gtid):
                    received.append(f"row {w.row} (GTID {w.gtid}) had reached {node} (its position {position} right "
                                    f"after {crash.node} crashed)")
                    break
        if received:
            out.append(f"{len(received)} lost row(s) were not in {crash.node}'s unreplicated tail: "
                       + "; ".join(received[:5]) + (" …" if len(received) > 5 else ""))
    return out


# ---------------------------------------------------------------------------
# The frozen-process window (SPEC §5)

@dataclass
class FrozenWindow:
    """From SIGCONT of a primary that lost its lock while frozen to its first read-only sample."""

    node: str
    thawed: float
    until: float
    """When its first read-only answer after SIGCONT came (the end of the round when none came)."""
    seconds: float
    """From SIGCONT to the last writable answer of the frozen node before `until`."""
    writable: int
    """The frozen node's writable samples in the window."""
    samples: list[Sample]
    """The round's samples, the frozen node's clipped so that none starts before SIGCONT."""

    def covers(self, overlap: Overlap) -> bool:
        return self.node in overlap.nodes and self.thawed <= overlap.start and overlap.end <= self.until


def frozen_window(samples: list[Sample], node: str, thawed: float, end: float) -> FrozenWindow:
    """Measure the window, after clipping the frozen node's reads to SIGCONT.

    A frozen server answers nothing, so a read sent during the freeze and
    answered after SIGCONT tells the state after SIGCONT: its interval starts
    there (otherwise an overlap with the new primary would seem to begin while
    the node was still frozen).
    """
    clipped = [Sample(s.at, s.node, s.read_only, thawed) if s.node == node and s.started < thawed < s.at else s
               for s in samples]
    after = sorted((s for s in clipped if s.node == node and s.started >= thawed), key=lambda s: s.started)
    first_ro = next((s for s in after if s.read_only is True), None)
    until = first_ro.at if first_ro is not None else end
    writable = [s for s in after if s.read_only is False and s.at <= until]
    seconds = max((s.at for s in writable), default=thawed) - thawed
    return FrozenWindow(node, thawed, until, seconds, len(writable), clipped)


# ---------------------------------------------------------------------------
# Observers

@dataclass
class NodeView:
    at: float
    node: str
    server_id: int | None = None
    read_only: bool | None = None
    source: tuple[str, int] | None = None
    io: bool = False
    sql: bool = False
    io_pos: str = ""
    binlog_state: str = ""
    current_pos: str = ""
    sql_error: str = ""
    io_error: str = ""
    reachable: bool = True


@dataclass
class LockView:
    at: float
    holder: str | None
    state: str | None


@dataclass
class Verdict:
    """A node judged to have errant transactions, from its log or its member record."""

    at: float
    node: str
    gtids: str
    server_id: int | None
    origin: str
    line: str = ""


def read_node(node: Node, timeout: float = 1.0) -> NodeView:
    """Replication source, server_id, read_only and GTID state of one node (reachable=False when down)."""
    view = NodeView(time.time(), node.name)
    try:
        conn = pymysql.connect(unix_socket=node.socket, user="root", connect_timeout=timeout, read_timeout=timeout,
                               write_timeout=timeout, autocommit=True, cursorclass=pymysql.cursors.DictCursor)
    except Exception:  # noqa: BLE001 - down, frozen, starting
        view.reachable = False
        return view
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id AS sid, @@global.read_only AS ro, @@gtid_binlog_state AS st, "
                        "@@gtid_current_pos AS cur")
            row = cur.fetchone()
            view.server_id, view.read_only = int(row["sid"]), bool(int(row["ro"]))
            view.binlog_state, view.current_pos = str(row["st"] or ""), str(row["cur"] or "")
            cur.execute("SHOW SLAVE STATUS")
            status = cur.fetchone()
        if status:
            view.source = (str(status["Master_Host"]), int(status["Master_Port"]))
            view.io = status["Slave_IO_Running"] == "Yes"
            view.sql = status["Slave_SQL_Running"] == "Yes"
            view.io_pos = str(status.get("Gtid_IO_Pos") or "")
            view.sql_error = str(status.get("Last_SQL_Error") or "")
            view.io_error = str(status.get("Last_IO_Error") or "")
    except Exception:  # noqa: BLE001 - went away half-way
        view.reachable = False
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    view.at = time.time()
    return view


_LINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z (\w+)\s+([\w-]+)\[")
_ERRANT = re.compile(r"errant(?: transactions?| GTIDs?)?\s*[:=(]?\s*(\d+-\d+-\d+(?:\s*,\s*\d+-\d+-\d+)*)", re.I)


def parse_line_time(line: str) -> tuple[float, str, str] | None:
    """(epoch, level, component) of a triton-mysql/containerbuddy log line; None for other lines."""
    match = _LINE_TIME.match(line)
    if not match:
        return None
    whole, _, frac = match[1].partition(".")
    epoch = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return epoch + (float("0." + frac) if frac else 0.0), match[2], match[3]


def errant_in_line(line: str) -> str | None:
    """The errant GTIDs a hook log line names ('' when it names none)."""
    if "errant" not in line.lower():
        return None
    match = _ERRANT.search(line)
    return ",".join(g.strip() for g in match[1].split(",")) if match else None


class LogWatch:
    """Reads what each node's log gained since the last scan: verdicts, ERROR lines, mysqld starts."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.offsets: dict[str, int] = {}
        self.verdicts: list[Verdict] = []
        self.errors: list[tuple[float, str, str]] = []       # (at, node, line)
        self.mysqld_starts: list[tuple[float, str]] = []     # (at seen, node)
        self.lines: list[tuple[float, str, str]] = []        # every hook/supervisor line (at, node, line)
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def scan(self, server_id_of: Callable[[str, float], int | None]) -> None:
        with self._lock:
            for node in list(self.cluster.nodes):
                self._scan_node(node, server_id_of)

    def _scan_node(self, node: Node, server_id_of: Callable[[str, float], int | None]) -> None:
        try:
            with open(node.log_path, "rb") as f:
                f.seek(self.offsets.get(node.name, 0))
                chunk = f.read()
                self.offsets[node.name] = f.tell()
        except OSError:
            return
        text = self._partial.pop(node.name, "") + chunk.decode(errors="replace")
        lines = text.split("\n")
        if not text.endswith("\n"):
            self._partial[node.name] = lines.pop()
        now = time.time()
        for line in lines:
            if "ready for connections" in line:
                self.mysqld_starts.append((now, node.name))
                continue
            parsed = parse_line_time(line)
            if parsed is None:
                continue
            at, level, component = parsed
            self.lines.append((at, node.name, line))
            if level == "ERROR" and component != "containerbuddy":
                self.errors.append((at, node.name, line))
            errant = errant_in_line(line) if level in ("ERROR", "WARNING") else None
            if errant:
                self.verdicts.append(Verdict(at, node.name, errant, server_id_of(node.name, at), "log", line))

    def last_error(self, node: str, since: float = 0.0) -> str | None:
        found = [line for at, n, line in self.errors if n == node and at >= since]
        return found[-1] if found else None


class Topology:
    """Every node's NodeView and the lock holder and member records, every `interval` s."""

    def __init__(self, cluster: Cluster, logs: LogWatch, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.logs = logs
        self.interval = interval
        self.views: list[NodeView] = []
        self.locks: list[LockView] = []
        self.members: dict[str, dict[str, Any]] = {}
        self.member_verdicts: list[Verdict] = []
        self._member_seen: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Topology":
        for node in self.cluster.nodes:
            self._threads.append(threading.Thread(target=self._watch_node, args=(node,), daemon=True,
                                                  name=f"topology-{node.name}"))
        self._threads.append(threading.Thread(target=self._watch_discovery, daemon=True, name="topology-kv"))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.logs.scan(self.server_id_at)

    def _watch_node(self, node: Node) -> None:
        while not self._stop.wait(self.interval):
            self.views.append(read_node(node))

    def _watch_discovery(self) -> None:
        from triton_mysql.keys import ClusterKeys, decode
        client = None
        while not self._stop.wait(self.interval):
            self.logs.scan(self.server_id_at)
            try:
                if client is None:
                    client, config = self.cluster.discovery()
                    keys = ClusterKeys.for_config(config)
                kv = client.get(keys.primary)
                lock = decode(kv.value) if kv else None
                self.locks.append(LockView(time.time(), (lock or {}).get("node"), (lock or {}).get("state", "ready")
                                           if lock else None))
                members = {}
                for item in client.list(keys.members):
                    record = decode(item.value) or {}
                    members[keys.name_of(item.key)] = record
                self.members = members
                for name, record in members.items():
                    errant = record.get("errant")
                    if errant and (name, str(errant)) not in self._member_seen:
                        self._member_seen.add((name, str(errant)))
                        self.member_verdicts.append(Verdict(time.time(), name, str(errant),
                                                            record.get("server_id"), "member record"))
            except Exception:  # noqa: BLE001 - discovery down (a fault) or restarting
                if client is not None:
                    try:
                        client.close()
                    except Exception:  # noqa: BLE001
                        pass
                client = None
        if client is not None:
            client.close()

    # -- queries ------------------------------------------------------------
    def server_id_at(self, node: str, at: float) -> int | None:
        best = None
        for view in list(self.views):
            if view.node == node and view.server_id is not None:
                if view.at <= at + 0.5:
                    best = view.server_id
                elif best is None:
                    return view.server_id
                else:
                    break
        return best

    def latest(self, node: str) -> NodeView | None:
        for view in reversed(list(self.views)):
            if view.node == node and view.reachable:
                return view
        return None

    def holder_at(self, at: float) -> str | None:
        holder = None
        for lock in list(self.locks):
            if lock.at > at:
                break
            holder = f"{lock.holder} ({lock.state})" if lock.holder else "none"
        return holder

    def verdicts(self) -> list[Verdict]:
        """Every distinct verdict (node, GTIDs, server_id), at its first appearance."""
        first: dict[tuple[str, str, int | None], Verdict] = {}
        for verdict in sorted(list(self.logs.verdicts) + list(self.member_verdicts), key=lambda v: v.at):
            first.setdefault((verdict.node, verdict.gtids, verdict.server_id), verdict)
        return list(first.values())


class Keeper:
    """The container restart policy (`unless-stopped`): a node that exits on its own starts again."""

    def __init__(self, cluster: Cluster, delay: float = 1.0) -> None:
        self.cluster = cluster
        self.delay = delay
        self.restarts: list[tuple[float, str, int | None]] = []   # (at, node, exit code)
        self.ops = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keeper", daemon=True)

    def start(self) -> "Keeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        seen_dead: dict[str, float] = {}
        while not self._stop.wait(0.25):
            for node in list(self.cluster.nodes):
                with self.ops:
                    if node.wanted_down or node.proc is None or node.alive():
                        seen_dead.pop(node.name, None)
                        continue
                    first = seen_dead.setdefault(node.name, time.monotonic())
                    if time.monotonic() - first < self.delay:
                        continue
                    code = node.exit_code()
                    node.kill()  # whatever is left of its process tree
                    node.start()
                    seen_dead.pop(node.name, None)
                    self.restarts.append((time.time(), node.name, code))


# ---------------------------------------------------------------------------
# Results

@dataclass
class RoundResult:
    round: int
    seed: int
    fault: str
    kind: str
    role: str
    target: str | None = None
    primary_before: str | None = None
    primary_after: str | None = None
    started_at: float = 0.0
    fault_at: float = 0.0
    ended_at: float = 0.0
    hold_s: float | None = None
    failover_s: float | None = None
    """Fault's signal -> first acknowledged write on the new primary (None: the primary did not change)."""
    write_gap_s: float | None = None
    """Longest time without an acknowledged write, from the fault to the end of the round."""
    converge_s: float | None = None
    rows_acked: int = 0
    rows_lost: int = 0
    lost_rows: list[int] = field(default_factory=list)
    loss_rule: str = "none"
    two_writable_samples: int = 0
    two_writable: list[dict[str, Any]] = field(default_factory=list)
    frozen_window_s: float | None = None
    frozen_window_samples: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    mysqld_starts: dict[str, int] = field(default_factory=dict)
    errant_verdicts: list[dict[str, Any]] = field(default_factory=list)
    unhealthy: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    aborted: bool = False
    load_avg: float | None = None
    """The machine's 1-minute load average at the end of the round (timing is judged against it)."""
    drill_cpu_s: float | None = None
    """CPU seconds the drill process itself (writer, sampler, monitors) used during the round."""
    hook_timeouts: dict[str, int] = field(default_factory=dict)
    """Hooks the supervisors killed for running past their timeout, per node (a sign of overload)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def line(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"
        status = "OK" if self.ok else f"{len(self.violations)} VIOLATION(S)"
        target = f" {self.target}" if self.target else ""
        head = (f"round {self.round:>2} {self.fault}{target}: primary {self.primary_before} -> {self.primary_after}, "
                f"failover {fmt(self.failover_s)}, write gap {fmt(self.write_gap_s)}, lost {self.rows_lost}"
                f" ({self.loss_rule}), two-writable samples {self.two_writable_samples}"
                + (f", frozen window {self.frozen_window_s:.2f} s" if self.frozen_window_s is not None else "")
                + f", converged in {fmt(self.converge_s)}"
                + (f", load {self.load_avg:.1f}" if self.load_avg is not None else "") + f": {status}")
        extra = [f"    note: {n}" for n in self.notes] + [f"    VIOLATION: {v}" for v in self.violations]
        return "\n".join([head] + extra)


@dataclass
class Report:
    seed: int
    rounds_planned: int
    backend: str
    options: dict[str, Any]
    schedule: list[str]
    rounds: list[RoundResult] = field(default_factory=list)
    final: list[str] = field(default_factory=list)
    """Violations of the end-of-run checks."""
    started_at: float = 0.0
    ended_at: float = 0.0
    rows_acked: int = 0
    path: str | None = None

    @property
    def violations(self) -> list[str]:
        out = [f"round {r.round} ({r.fault}): {v}" for r in self.rounds for v in r.violations]
        return out + [f"end of run: {v}" for v in self.final]

    def totals(self) -> dict[str, Any]:
        by_kind: dict[str, list[float]] = {}
        for r in self.rounds:
            if r.failover_s is not None:
                by_kind.setdefault(f"{r.kind}:{r.role}", []).append(r.failover_s)
        crash_loss = [r.rows_lost for r in self.rounds if r.loss_rule.startswith("tail")]
        return {
            "rounds_run": len(self.rounds),
            "rounds_ok": sum(1 for r in self.rounds if r.ok),
            "violations": len(self.violations),
            "rows_acked": self.rows_acked,
            "rows_lost": sum(r.rows_lost for r in self.rounds),
            "crash_rounds": len(crash_loss),
            "crash_rows_lost": {"total": sum(crash_loss), "max": max(crash_loss, default=0),
                                "per_round": crash_loss},
            "two_writable_samples": sum(r.two_writable_samples for r in self.rounds),
            "frozen_windows_s": [round(r.frozen_window_s, 3) for r in self.rounds if r.frozen_window_s is not None],
            "failover_s": {k: {"n": len(v), "min": round(min(v), 2), "median": round(statistics.median(v), 2),
                               "max": round(max(v), 2)} for k, v in sorted(by_kind.items())},
            "restarts": sum(sum(r.restarts.values()) for r in self.rounds),
            "duration_s": round(self.ended_at - self.started_at, 1),
        }

    def text(self) -> str:
        out = [f"chaos drill: seed {self.seed}, {len(self.rounds)}/{self.rounds_planned} rounds, backend "
               f"{self.backend}, options {self.options}"]
        out += [r.line() for r in self.rounds]
        out += [f"end of run VIOLATION: {v}" for v in self.final]
        totals = self.totals()
        out.append("totals: " + json.dumps(totals, sort_keys=True))
        out.append(f"replay: make chaos SEED={self.seed} ROUNDS={self.rounds_planned}"
                   + (f" KINDS={self.options['kinds']}" if self.options.get("kinds") else "")
                   + (f" BACKEND={self.backend}" if self.backend != "etcd" else ""))
        if self.path:
            out.append(f"report: {self.path}")
        return "\n".join(out)

    def write(self, path: Path) -> Path:
        data = {k: v for k, v in asdict(self).items() if k != "rounds"}
        data["rounds"] = [asdict(r) | {"ok": r.ok} for r in self.rounds]
        data["totals"] = self.totals()
        data["violations"] = self.violations
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        self.path = str(path)
        return path


class DrillFailed(AssertionError):
    """The drill found violations (the report says which)."""


# ---------------------------------------------------------------------------
# The drill

@dataclass
class DrillOptions:
    seed: int
    rounds: int
    kinds: str | None = None
    auto_reclone: bool = False
    converge_timeout: float = 120.0
    settle_unhealthy: float = 15.0
    """A node failing the same way this long (alive, an ERROR line giving the reason) counts as explicitly unhealthy."""
    crash_loop_limit: int = 3
    frozen_window_limit: float | None = None
    """Longest acceptable frozen-process window; default SESSION_TTL + 1 s: the window ends with the first
    health pass after waking, which the supervisor runs at once and kills at its timeout (SESSION_TTL)."""
    sample_interval: float = 0.05
    writer_interval: float = 0.01
    snapshot_poll: float = 10.0
    max_load: float | None = None
    """Before each fault, wait (at most `max_load_wait` s) until the 1-minute load average is below this."""
    max_load_wait: float = 600.0
    """SNAPSHOT_POLL of the nodes: the snapshot task is a process start per node every poll."""


@dataclass
class FaultContext:
    """What a fault did, for the checks."""

    fault_at: float = 0.0
    target: Node | None = None
    was_primary: bool = False
    crashes: list[Crash] = field(default_factory=list)
    """Primaries that crashed, froze or were cut off: their unreplicated tails may be lost, nothing else."""
    frozen: tuple[str, float] | None = None
    hold_s: float | None = None
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


class DiscoveryService:
    """The discovery service the drill can stop and start (an EtcdServer or a ConsulDouble)."""

    def __init__(self, name: str, server: Any, env: dict[str, str], ttl: float, expiry: float) -> None:
        self.name, self.server, self.env, self.ttl, self.expiry = name, server, env, ttl, expiry

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


class Drill:
    def __init__(self, cluster: Cluster, discovery: DiscoveryService, options: DrillOptions, workdir: Path,
                 say: Callable[[str], None] | None = None) -> None:
        self.cluster = cluster
        self.discovery = discovery
        self.options = options
        self.workdir = Path(workdir)
        self.say = say or (lambda text: (sys.stderr.write(text + "\n"), sys.stderr.flush()))
        self.schedule = make_schedule(options.seed, options.rounds, options.kinds)
        self.logs = LogWatch(cluster)
        self.topology = Topology(cluster, self.logs)
        self.keeper = Keeper(cluster)
        self.sampler = Sampler(cluster, interval=options.sample_interval)
        self.writer = Writer(cluster, interval=options.writer_interval)
        self.lost: set[int] = set()
        self.unhealthy_since: dict[str, int] = {}
        self.asides = 0
        self.reported_reuse: set[int] = set()
        self.reported_errant: set[tuple] = set()
        self.repl_locked: set[str] = set()
        """Nodes whose replication account the drill locked (errant_rejoin) and has not unlocked yet."""
        self.t0 = 0.0
        self.report = Report(options.seed, options.rounds, discovery.name,
                             {"kinds": options.kinds, "auto_reclone": options.auto_reclone,
                              "session_ttl": discovery.ttl, "lock_expiry_max": discovery.expiry,
                              "sample_interval": options.sample_interval,
                              "crash_loop_limit": options.crash_loop_limit},
                             [s.describe() for s in self.schedule])

    # -- running --------------------------------------------------------------
    def run(self) -> Report:
        self.say(f"chaos drill: seed {self.options.seed}, {self.options.rounds} round(s) on {self.discovery.name}; "
                 f"schedule: " + "; ".join(f"{s.round}. {s.describe()}" for s in self.schedule))
        self.report.started_at = self.t0 = time.time()
        try:
            self.setup()
            for step in self.schedule:
                result = self.run_round(step)
                self.report.rounds.append(result)
                self.say(result.line())
                if result.aborted:
                    self.say("drill aborted: the cluster did not converge (see the round's violations)")
                    break
            self.final_checks()
        finally:
            self.teardown()
            self.report.ended_at = time.time()
            self.report.rows_acked = len(self.writer.acked)
            self.report.write(self.workdir / "chaos-report.json")
            self.keep_logs()
        return self.report

    def setup(self) -> None:
        self.cluster.env["AUTO_RECLONE"] = "true" if self.options.auto_reclone else "false"
        self.cluster.env["SNAPSHOT_POLL"] = f"{self.options.snapshot_poll:g}"
        self.keeper.start()
        nodes = self.cluster.start(3)
        from .procs import wait_for
        deadline = time.time() + 300
        while True:
            ok, why, primary, _ = self.convergence()
            if ok:
                break
            if time.time() > deadline:
                raise RuntimeError(f"the new cluster did not converge within 300 s: {why}")
            time.sleep(1.0)
        wait_for(lambda: self.cluster.record("snapshots/last"), 180, what="the first snapshot")
        self.topology.start()
        self.sampler.start()
        self.writer.start()
        time.sleep(2.0)
        self.say(f"cluster up in {time.time() - self.t0:.1f} s: primary {primary.name}; "
                 + ", ".join(f"{n.name} {n.address}:{n.port}" for n in nodes))

    def keep_logs(self) -> None:
        """Copy every node's log next to the report (the nodes' own directories are removed at exit)."""
        target = self.workdir / "logs"
        target.mkdir(parents=True, exist_ok=True)
        for node in self.cluster.nodes:
            try:
                shutil.copy(node.log_path, target / f"{node.name}.log")
            except OSError:
                pass

    def teardown(self) -> None:
        for stop in (self.writer.stop, self.sampler.stop, self.keeper.stop, self.topology.stop, self.thaw_all):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                self.say(f"teardown: {exc!r}")

    # -- one round --------------------------------------------------------------
    def run_round(self, step: Step) -> RoundResult:
        result = RoundResult(step.round, self.options.seed, step.describe(), step.kind, step.role)
        result.started_at = time.time()
        cpu_before = self.cpu()
        restarts_before = len(self.keeper.restarts)
        ok, why, primary = self.wait_converged(result)
        if not ok:
            result.violations.append(f"the cluster did not converge within {self.options.converge_timeout:g} s "
                                     f"after the previous round: {why}")
            self.repair(result, everything=True)
            ok, why, primary = self.wait_converged(result)
            if not ok or primary is None:
                result.aborted = True
                result.ended_at = time.time()
                return result
        for name in sorted(self.repl_locked):
            if self.restore_replication(self.cluster.node(name), timeout=10):
                self.repl_locked.discard(name)
                result.notes.append(f"the replication account of {name}, locked by an earlier errant_rejoin, "
                                    f"is unlocked again")
        self.wait_for_quiet(result)
        needs_candidate = step.role == PRIMARY or step.kind in ("switchover", "discovery_wipe", "discovery_stop")
        primary = self.repair(result, everything=needs_candidate and not self.healthy_replicas(primary)) or primary
        result.primary_before = primary.name
        target = self.resolve_target(step, primary)
        result.target = target.name if target is not None else None
        ctx = FaultContext(target=target, was_primary=target is primary)
        if step.role == REPLICA and target is None:
            result.notes.append("no healthy replica to aim at: fault skipped")
            result.ended_at = time.time()
            return result
        try:
            getattr(self, f"fault_{step.kind}")(step, ctx, primary)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be carried out is a finding too
            ctx.violations.append(f"the fault could not be carried out: {exc!r}")
            self.bring_back(ctx)
        if not ctx.fault_at:
            ctx.fault_at = result.started_at
        result.fault_at, result.hold_s = ctx.fault_at, ctx.hold_s
        result.loss_rule = "tail of " + ",".join(c.node for c in ctx.crashes) if ctx.crashes else "none"
        result.notes += ctx.notes
        result.violations += ctx.violations
        converge_start = time.time()
        ok, why, final = self.wait_converged(result)
        result.converge_s = time.time() - converge_start
        if not ok:
            result.violations.append(f"did not converge within {self.options.converge_timeout:g} s after the "
                                     f"fault: {why}")
        result.primary_after = final.name if final is not None else self.holder()
        result.ended_at = time.time()
        self.check_round(result, ctx, final, restarts_before)
        result.load_avg = round(os.getloadavg()[0], 2)
        result.drill_cpu_s = round(self.cpu() - cpu_before, 2)
        return result

    def wait_for_quiet(self, result: RoundResult) -> None:
        """Opt-in (max_load): on a shared machine, inject the fault only once the load has dropped."""
        limit = self.options.max_load
        if not limit or os.getloadavg()[0] <= limit:
            return
        start = time.time()
        while os.getloadavg()[0] > limit and time.time() - start < self.options.max_load_wait:
            time.sleep(5.0)
        result.notes.append(f"waited {time.time() - start:.0f} s for the load average to drop below {limit:g} "
                            f"(now {os.getloadavg()[0]:.1f})")

    @staticmethod
    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def holder(self) -> str | None:
        try:
            lock = self.cluster.lock()
        except Exception:  # noqa: BLE001
            return None
        return lock.get("node") if lock and lock.get("state", "ready") == "ready" else None

    def healthy_replicas(self, primary: Node) -> list[Node]:
        return sorted((n for n in self.cluster.nodes if n is not primary and n.name not in self.unhealthy_since),
                      key=lambda n: n.name)

    def resolve_target(self, step: Step, primary: Node) -> Node | None:
        if step.role == PRIMARY:
            return primary
        replicas = self.healthy_replicas(primary)
        if step.role == REPLICA or (step.kind == "switchover" and step.pick >= 0):
            return replicas[step.pick % len(replicas)] if replicas else None
        return None

    def hold(self, step: Step, ctx: FaultContext) -> float:
        """Seconds the fault lasts, from `u`, the backend's TTL and its lock expiry bound."""
        ttl, expiry, u = self.discovery.ttl, self.discovery.expiry, step.u
        kind = step.kind
        if kind == "freeze":
            if ctx.was_primary:
                # Mostly long enough for the lock to expire (a failover, then the frozen-process
                # window); sometimes short enough that the node keeps its lock.
                seconds = 0.5 + 0.25 * ttl * (u / 0.25) if u < 0.25 else 2 * expiry + 4 * (u - 0.25)
            else:
                seconds = 1 + 8 * u
        elif kind == "maintenance":
            seconds = 2 * expiry + 3 * u if ctx.was_primary else 2 + 6 * u
        elif kind == "discovery_stop":
            seconds = 2 * ttl + 2 * u
        elif kind == "hold_sql":
            seconds = 2 + 6 * u
        elif kind == "lagging_crash":
            seconds = expiry + 10 + 4 * u
        elif kind == "errant_rejoin":
            seconds = 1 + 2 * u  # how long the primary writes while no replica receives
        elif kind in ("sigterm", "kill9"):
            seconds = 1 + 4 * u
        else:
            seconds = 0.0
        ctx.hold_s = round(seconds, 2)
        return seconds

    # -- faults -----------------------------------------------------------------
    def _down(self, node: Node, how: Callable[[], Any]) -> Any:
        with self.keeper.ops:
            node.wanted_down = True
        return how()

    def _up(self, node: Node) -> None:
        with self.keeper.ops:
            if not node.alive():
                node.kill()  # leftovers of a crashed tree
                node.start()
            node.wanted_down = False

    def crashed(self, ctx: FaultContext, node: Node, cutoff: float | None = None) -> Crash:
        """Record that `node`, the primary, is gone: from now (or `cutoff`), and what the others had then."""
        crash = Crash(node.name, time.time() if cutoff is None else cutoff)
        crash.positions = self.read_positions(exclude=node)
        ctx.crashes.append(crash)
        return crash

    def bring_back(self, ctx: FaultContext) -> None:
        for node in self.cluster.nodes:
            if node.wanted_down or (node.proc is not None and not node.alive()):
                self._up(node)
        if ctx.frozen is not None:
            self.thaw_all()

    def thaw_all(self) -> None:
        from .procs import descendants
        for node in self.cluster.nodes:
            if node.proc is not None and node.alive():
                node.thaw([node.proc.pid] + [pid for pid, _ in descendants(node.proc.pid)])

    def wait_new_primary(self, old: Node, ctx: FaultContext, bound: float | None = None) -> str | None:
        bound = bound or 2 * self.discovery.expiry + 30
        deadline = time.time() + bound
        while time.time() < deadline:
            holder = self.holder()
            if holder and holder != old.name:
                return holder
            time.sleep(0.1)
        ctx.notes.append(f"no other node held the lock within {bound:g} s of the fault")
        return None

    def read_positions(self, exclude: Node | None) -> dict[str, str]:
        """Each other node's received and applied position (merged text), read in parallel right now."""
        def one(node: Node) -> tuple[str, str]:
            view = read_node(node, timeout=1.5)
            if not view.reachable:
                return node.name, ""
            return node.name, ",".join(p for p in (view.io_pos, view.current_pos) if p)
        nodes = [n for n in self.cluster.nodes if n is not exclude]
        with ThreadPoolExecutor(max_workers=len(nodes) or 1) as pool:
            return dict(pool.map(one, nodes))

    def fault_sigterm(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        hold = self.hold(step, ctx)
        ctx.fault_at = time.time()
        code = self._down(node, lambda: node.stop(timeout=90))
        ctx.notes.append(f"{node.name} stopped by SIGTERM in {time.time() - ctx.fault_at:.1f} s (exit code {code})")
        if ctx.was_primary:
            self.wait_new_primary(node, ctx)
        time.sleep(hold)
        self._up(node)

    def fault_restart(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        self.hold(step, ctx)
        ctx.fault_at = time.time()
        code = self._down(node, lambda: node.stop(timeout=90))
        ctx.notes.append(f"{node.name} stopped in {time.time() - ctx.fault_at:.1f} s (exit code {code}) and "
                         f"started again with its data")
        self._up(node)

    def fault_reclone(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        self.hold(step, ctx)
        ctx.fault_at = time.time()
        code = self._down(node, lambda: node.stop(timeout=90))
        self.asides += 1
        aside = node.move_datadir_aside(f"drill-{step.round}-{self.asides}")
        ctx.notes.append(f"{node.name} stopped (exit code {code}); datadir moved to {aside.name}; started empty "
                         f"(clones the newest snapshot {self.snapshot_id()})")
        self._up(node)

    def snapshot_id(self) -> str | None:
        try:
            return (self.cluster.record("snapshots/last") or {}).get("id")
        except Exception:  # noqa: BLE001
            return None

    def fault_kill9(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        hold = self.hold(step, ctx)
        ctx.fault_at = time.time()
        self._down(node, node.kill)
        if ctx.was_primary:
            # The tail is judged from when every process was dead: killing a whole tree takes a while
            # under load, and the old primary acknowledges writes until its mysqld is gone.
            self.crashed(ctx, node)
            self.wait_new_primary(node, ctx)
        time.sleep(hold)
        self._up(node)

    def fault_freeze(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        hold = self.hold(step, ctx)
        ctx.fault_at = time.time()
        pids = node.freeze()
        if ctx.was_primary:
            self.crashed(ctx, node)
        time.sleep(max(0.0, ctx.fault_at + hold - time.time()))
        holder = self.holder()
        thawed = time.time()
        node.thaw(pids)
        if ctx.was_primary and holder != node.name:
            ctx.frozen = (node.name, thawed)  # it lost its lock while frozen: the window of SPEC §5 applies
        ctx.notes.append(f"{node.name} frozen for {thawed - ctx.fault_at:.1f} s; ready lock holder at SIGCONT: "
                         f"{holder}")

    def fault_discovery_stop(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        hold = self.hold(step, ctx)
        ctx.fault_at = time.time()
        self.discovery.stop()
        try:
            time.sleep(hold)
        finally:
            self.discovery.start()
        ctx.notes.append(f"{self.discovery.name} down for {time.time() - ctx.fault_at:.1f} s")

    def fault_discovery_wipe(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        self.hold(step, ctx)
        ctx.fault_at = time.time()
        self.cluster.wipe_discovery()
        # The old primary stays writable until it notices; what the others had received when it
        # turned read-only is what a correct election can keep.
        deadline = time.time() + 3 * self.discovery.expiry + 10
        while time.time() < deadline and primary.read_only() is False:
            lock = self.cluster.lock() or {}
            if lock.get("node") == primary.name and lock.get("state") == "ready":
                break  # it won the election on the wiped service itself (see below)
            time.sleep(0.05)
        fenced = time.time()
        self.crashed(ctx, primary, cutoff=fenced)
        if primary.read_only() is False:
            # Its onChange ran before its health pass and won the election on the wiped service:
            # the old primary is the new one and never had a reason to turn read-only.
            lock = self.cluster.lock() or {}
            ctx.notes.append(f"every key under the prefix deleted; {primary.name} still writable after "
                             f"{fenced - ctx.fault_at:.0f} s, lock holder {lock.get('node')} "
                             f"({lock.get('state')})")
            return
        ctx.notes.append(f"every key under the prefix deleted; {primary.name} read-only after "
                         f"{fenced - ctx.fault_at:.2f} s")

    def fault_hold_sql(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        hold = self.hold(step, ctx)
        with self.table_lock(node, ctx):
            time.sleep(hold)

    def fault_lagging_crash(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        # The replica the current code prefers on a tie of received positions (lowest name) lags.
        replicas = self.healthy_replicas(primary)
        if not replicas:
            raise RuntimeError("no healthy replica to hold back")
        lagging = replicas[0]
        hold = self.hold(step, ctx)
        with self.table_lock(lagging, ctx) as locked_at:
            time.sleep(min(3.0, hold / 3))
            ctx.fault_at = time.time()
            self._down(primary, primary.kill)
            self.crashed(ctx, primary)
            view = read_node(lagging)
            ctx.notes.append(f"{lagging.name} held back from {locked_at - ctx.fault_at:+.1f} s: applied "
                             f"{view.current_pos or '?'}, received {view.io_pos or '?'} when {primary.name} was killed")
            time.sleep(max(0.0, locked_at + hold - time.time()))
        self.wait_new_primary(primary, ctx, bound=30)
        self._up(primary)

    def fault_errant_rejoin(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        """Issue 13 #1's sequence: A acknowledges writes no replica receives (replication from A is cut),
        then A crashes; B is promoted while the application is quiet; A comes back holding transactions
        nobody else has; B writes a few rows (fewer than A's tail) and crashes too.  A must not win:
        B's rows would be lost."""
        a = primary
        hold = self.hold(step, ctx)
        self.repl_locked.add(a.name)
        self.cut_replication(a)
        time.sleep(hold)
        ctx.fault_at = time.time()
        self._down(a, a.kill)
        cutoff = time.time()
        self.writer.pause()
        try:
            self.crashed(ctx, a, cutoff=cutoff)
            b_name = self.wait_new_primary(a, ctx)
            if b_name is None:
                raise RuntimeError(f"no new primary after {a.name} crashed")
            b = self.cluster.node(b_name)
            self._up(a)
            state = self.rejoin_state(a, ctx.fault_at)
            # B writes a few rows, fewer than A's tail (so A's position is the higher one).
            tail = len([w for w in list(self.writer.acked) if w.node == a.name and w.sent <= cutoff
                        and not position_covers(ctx.crashes[0].positions.get(b.name, ""), w.gtid or "0-0-0")])
            wanted = max(1, min(3, tail - 1))
            self.writer.resume()
            deadline = time.time() + 10
            while time.time() < deadline and \
                    len([w for w in list(self.writer.acked) if w.node == b.name and w.at > ctx.fault_at]) < wanted:
                time.sleep(0.02)
            self.writer.pause()
            time.sleep(0.5)  # B's few rows reach the third node
            wrote = len([w for w in list(self.writer.acked) if w.node == b.name and w.at > ctx.fault_at])
            ctx.notes.append(f"{a.name} wrote {hold:.1f} s without replicas ({tail} row(s) nobody received) and crashed; "
                             f"{b.name} promoted; "
                             f"{a.name} came back and was {state}; {b.name} wrote {wrote} row(s), then crashed too")
            self._down(b, b.kill)
            self.crashed(ctx, b)
        finally:
            self.writer.resume()
        self.wait_new_primary(b, ctx)
        self._up(b)

    def cut_replication(self, node: Node) -> None:
        """Keep `node`'s binlog from reaching anyone (as when replication traffic is cut): lock the
        replication account there, unlogged, and end its binlog dump threads; the replicas' reconnects
        are refused.  (Stopping the replicas is not enough: their sockets still buffer the events.)"""
        conn = pymysql.connect(unix_socket=node.socket, user="root", connect_timeout=5, read_timeout=10,
                               autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_bin = 0")
                cur.execute(f"ALTER USER '{REPL_USER}'@'%' ACCOUNT LOCK")
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
                for (thread,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(thread)}")
                    except pymysql.err.MySQLError:
                        pass
        finally:
            conn.close()

    def restore_replication(self, node: Node, timeout: float = 90.0) -> bool:
        """Undo cut_replication on `node` as soon as its mysqld answers again (unlogged)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                conn = pymysql.connect(unix_socket=node.socket, user="root", connect_timeout=1, read_timeout=10,
                                       autocommit=True)
            except pymysql.err.MySQLError:
                time.sleep(0.1)
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION sql_log_bin = 0")
                    cur.execute(f"ALTER USER '{REPL_USER}'@'%' ACCOUNT UNLOCK")
                return True
            except pymysql.err.MySQLError:
                time.sleep(0.1)
            finally:
                conn.close()
        return False

    def rejoin_state(self, node: Node, since: float, timeout: float = 90.0) -> str:
        """After `node` restarted: judged errant, replicating again, or exited (re-clone)?"""
        if not self.restore_replication(node, timeout):
            return "unreachable (the replication account could not be unlocked)"
        self.repl_locked.discard(node.name)
        deadline = time.time() + timeout
        while time.time() < deadline:
            verdicts = [v for v in self.topology.verdicts() if v.node == node.name and v.at >= since]
            if verdicts:
                return f"judged errant ({verdicts[0].gtids})"
            view = read_node(node, timeout=2.0)
            if view.reachable and view.io and view.sql:
                return "replicating again (nothing errant)"
            if not node.alive():
                return "exited (re-clone)"
            time.sleep(0.5)
        return f"neither judged errant nor replicating within {timeout:g} s"

    class _TableLock:
        def __init__(self, drill: "Drill", node: Node, ctx: FaultContext) -> None:
            self.drill, self.node, self.ctx, self.conn = drill, node, ctx, None

        def __enter__(self) -> float:
            self.conn = pymysql.connect(unix_socket=self.node.socket, user="root", connect_timeout=5,
                                        read_timeout=30, autocommit=True)
            with self.conn.cursor() as cur:
                cur.execute(f"LOCK TABLES {APP_DATABASE}.drill WRITE")
            at = time.time()
            if not self.ctx.fault_at:
                self.ctx.fault_at = at
            return at

        def __exit__(self, *exc: Any) -> None:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("UNLOCK TABLES")
                self.ctx.notes.append(f"{self.node.name}: LOCK TABLES held {time.time() - self.ctx.fault_at:.1f} s "
                                      f"from the fault, then released")
            except Exception as exc:  # noqa: BLE001 - the node may have been fenced/restarted meanwhile
                self.ctx.notes.append(f"{self.node.name}: the table lock was lost before its release: {exc!r}")
            finally:
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001
                    pass

    def table_lock(self, node: Node, ctx: FaultContext) -> "Drill._TableLock":
        """LOCK TABLES appdb.drill WRITE on `node` as root over its socket (its SQL thread waits)."""
        return Drill._TableLock(self, node, ctx)

    def fault_switchover(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        self.hold(step, ctx)
        argv = [str(Path(sys.executable).parent / "triton-mysql"), "switchover"]
        if ctx.target is not None:
            argv += ["--to", ctx.target.name]
        ctx.fault_at = time.time()
        result = subprocess.run(argv, env=primary.env(), capture_output=True, text=True, timeout=180)
        out = (result.stdout + result.stderr).strip().splitlines()
        ctx.notes.append(f"switchover{' --to ' + ctx.target.name if ctx.target else ''}: exit {result.returncode} "
                         f"after {time.time() - ctx.fault_at:.1f} s: {out[-1] if out else ''}")

    def fault_maintenance(self, step: Step, ctx: FaultContext, primary: Node) -> None:
        node = ctx.target
        hold = self.hold(step, ctx)
        ctx.fault_at = time.time()
        node.signal(signal.SIGUSR1)
        try:
            time.sleep(hold)
        finally:
            node.signal(signal.SIGUSR1)
        ctx.notes.append(f"{node.name} in maintenance for {time.time() - ctx.fault_at:.1f} s; lock holder when it "
                         f"left: {self.holder()}")

    # -- convergence --------------------------------------------------------------
    def convergence(self) -> tuple[bool, str, Node | None, dict[str, str]]:
        """(converged, why not, primary, {node: problem}) from one look at the cluster."""
        try:
            lock = self.cluster.lock()
        except Exception as exc:  # noqa: BLE001
            return False, f"discovery unreachable: {exc}", None, {}
        if not lock:
            return False, "no node holds the lock", None, {}
        if lock.get("state", "ready") != "ready":
            return False, f"lock held by {lock.get('node')} in state {lock.get('state')}", None, {}
        try:
            primary = self.cluster.node(lock["node"])
        except StopIteration:
            return False, f"lock names an unknown node {lock.get('node')}", None, {}
        ro = primary.read_only()
        if ro is not False:
            return False, f"lock holder {primary.name} is {'read-only' if ro else 'unreachable'}", primary, {}
        problems: dict[str, str] = {}
        replicas = []
        for node in self.cluster.nodes:
            if node is primary:
                continue
            if not node.alive():
                problems[node.name] = "down"
                continue
            view = read_node(node, timeout=2.0)
            if not view.reachable:
                problems[node.name] = "mysqld unreachable"
            elif view.read_only is False:
                problems[node.name] = "writable (not the lock holder)"
            elif view.source != (primary.address, primary.port):
                problems[node.name] = f"replicates from {view.source} instead of {primary.name}" if view.source \
                    else "not replicating"
            elif not (view.io and view.sql):
                problems[node.name] = (f"replication threads io={view.io} sql={view.sql}"
                                       + (f": {view.sql_error or view.io_error}" if view.sql_error or view.io_error
                                          else ""))
            else:
                replicas.append(node)
        if problems:
            return False, "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())), primary, problems
        data = self.data_problem(primary, replicas)
        if data:
            return False, data, primary, {}
        return True, "", primary, {}

    def data_problem(self, primary: Node, replicas: list[Node]) -> str | None:
        try:
            last = int(primary.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {APP_DATABASE}.drill", timeout=5))
            position = primary.scalar("SELECT @@gtid_binlog_pos", timeout=5)
            sums = {}
            for node in [primary] + replicas:
                if node is not primary and not self.applied(node, position, 10.0):
                    return f"{node.name} did not apply {position} within 10 s"
                row = node.sql(f"SELECT COUNT(*) AS c, COALESCE(BIT_XOR(CRC32(CONCAT_WS(',', id, node, at))), 0) "
                               f"AS x FROM {APP_DATABASE}.drill WHERE id <= %s", (last,), timeout=10)[0]
                sums[node.name] = (int(row["c"]), int(row["x"]))
        except pymysql.err.ProgrammingError as exc:
            if exc.args and exc.args[0] == 1146:  # no drill table yet (before the writer starts)
                return None
            return f"data check failed: {exc!r}"
        except Exception as exc:  # noqa: BLE001 - a node went away meanwhile: look again
            return f"data check failed: {exc!r}"
        if len(set(sums.values())) > 1:
            return f"rows up to id {last} differ (count, checksum): {sums}"
        return None

    @staticmethod
    def applied(node: Node, position: str, timeout: float) -> bool:
        """Poll the replica's applied position (not MASTER_GTID_WAIT: a pending wait stalls the
        hooks' SHOW SLAVE STATUS on MariaDB, issue 13 #14, and the drill must not cause that)."""
        deadline = time.time() + timeout
        while True:
            if position_covers(str(node.scalar("SELECT @@gtid_current_pos", timeout=5) or ""), position) \
                    or not gtids(position):
                return True
            if time.time() > deadline:
                return False
            time.sleep(0.2)

    def wait_converged(self, result: RoundResult) -> tuple[bool, str, Node | None]:
        """Wait (bounded) until converged, or converged apart from explicitly unhealthy nodes."""
        deadline = time.time() + self.options.converge_timeout
        failing_since: dict[str, tuple[float, str]] = {}
        why = ""
        primary = None
        while time.time() < deadline:
            ok, why, primary, problems = self.convergence()
            if ok:
                for name in list(self.unhealthy_since):
                    self.unhealthy_since.pop(name, None)
                return True, "", primary
            now = time.time()
            for name in list(failing_since):
                if name not in problems:
                    failing_since.pop(name)
            explicit = {}
            for name, problem in problems.items():
                since, _ = failing_since.setdefault(name, (now, problem))
                line = self.logs.last_error(name, since=now - 30)
                node = self.cluster.node(name)
                if line and node.alive() and now - since >= self.options.settle_unhealthy \
                        and not self.restarted_since(name, since):
                    explicit[name] = line
            if problems and set(problems) == set(explicit) and primary is not None:
                # The rest must be converged, with the explicitly unhealthy nodes set apart.
                others = [n for n in self.cluster.nodes if n is not primary and n.name not in explicit]
                data = self.data_problem(primary, others)
                if not data:
                    for name, line in explicit.items():
                        if name not in self.unhealthy_since:
                            self.unhealthy_since[name] = result.round
                        result.unhealthy[name] = f"{problems[name]}; its log: {line}"
                        result.notes.append(f"{name} is explicitly unhealthy ({problems[name]}): {line}")
                    return True, "", primary
            time.sleep(0.5)
        detail = []
        for name in sorted(failing_since):
            line = self.logs.last_error(name, since=failing_since[name][0] - 30)
            detail.append(f"{name}: last ERROR line: {line or 'none (not explicitly unhealthy)'}")
        return False, why + ("; " + "; ".join(detail) if detail else ""), primary

    def restarted_since(self, node: str, since: float) -> bool:
        return any(at >= since and n == node for at, n, _ in list(self.keeper.restarts))

    def repair(self, result: RoundResult, everything: bool = False) -> Node | None:
        """Operator repair of a node left explicitly unhealthy for a whole round: re-clone it.

        A node is left alone for the round after it turned unhealthy (so that a
        fault can meet a cluster with a broken node: the compound case), then
        re-cloned from the newest snapshot, as an operator would.
        """
        repaired = False
        for name, since in sorted(self.unhealthy_since.items()):
            if not everything and result.round - since < 2:
                continue
            repaired = True
            node = self.cluster.node(name)
            code = self._down(node, lambda: node.stop(timeout=90))
            self.asides += 1
            aside = node.move_datadir_aside(f"repair-{result.round}-{self.asides}")
            self._up(node)
            result.notes.append(f"repair: {name} (explicitly unhealthy since round {since}) re-cloned; exit code "
                                f"{code}; old datadir kept as {aside.name}")
            self.unhealthy_since.pop(name, None)
        if repaired:
            ok, why, primary = self.wait_converged(result)
            if not ok:
                result.notes.append(f"after repair: not converged: {why}")
            return primary
        return None

    # -- checks ---------------------------------------------------------------------
    def check_round(self, result: RoundResult, ctx: FaultContext, final: Node | None, restarts_before: int) -> None:
        start, end = result.started_at, result.ended_at
        self.logs.scan(self.topology.server_id_at)
        for sid, holders in self.reused_server_ids().items():
            if sid not in self.reported_reuse:
                self.reported_reuse.add(sid)
                result.notes.append(f"server_id {sid} was handed out again: {', '.join(holders)} (a replica skips "
                                    f"events carrying its own server_id; the row checksums show whether data diverged)")
        acks = self.writer.acks_between(start, end)
        result.rows_acked = len(acks)
        self.check_failover(result, ctx)
        self.check_two_writable(result, ctx, start, end)
        if final is not None:
            self.check_loss(result, ctx, final)
        self.check_errant(result, start, end)
        self.check_crash_loop(result, start, end, restarts_before)

    def check_failover(self, result: RoundResult, ctx: FaultContext) -> None:
        acks = [w for w in self.writer.acks_between(ctx.fault_at, result.ended_at)]
        if result.primary_after and result.primary_after != result.primary_before:
            first = next((w for w in acks if w.node == result.primary_after), None)
            if first is not None:
                result.failover_s = round(first.at - ctx.fault_at, 3)
        times = [ctx.fault_at] + [w.at for w in acks] + [result.ended_at]
        result.write_gap_s = round(max(b - a for a, b in zip(times, times[1:])), 3) if len(times) > 1 else None

    def check_two_writable(self, result: RoundResult, ctx: FaultContext, start: float, end: float) -> None:
        samples = [s for s in list(self.sampler.samples) if start <= s.started and s.at <= end]
        window: FrozenWindow | None = None
        if ctx.frozen is not None:
            window = frozen_window(samples, ctx.frozen[0], ctx.frozen[1], end)
            samples = window.samples
            result.frozen_window_s = round(window.seconds, 3)
            result.frozen_window_samples = window.writable
            limit = self.options.frozen_window_limit or self.discovery.ttl + 1.0
            if window.seconds > limit:
                result.violations.append(f"frozen-process window: {window.node} stayed writable {window.seconds:.2f} s "
                                         f"after SIGCONT (limit {limit:g} s: its first health pass after waking must "
                                         f"end it within the pass's timeout)")
        for overlap in find_overlaps(samples):
            if window is not None and window.covers(overlap):
                result.notes.append(f"frozen-process window: {overlap.nodes[0]} and {overlap.nodes[1]} both writable "
                                    f"{overlap.duration:.2f} s right after SIGCONT ({overlap.samples} samples)")
                continue
            result.two_writable_samples += overlap.samples
            result.two_writable.append({"nodes": list(overlap.nodes), "from_fault_s": round(overlap.start - ctx.fault_at, 3),
                                        "duration_s": round(overlap.duration, 3), "samples": overlap.samples,
                                        "evidence": self.evidence(overlap, ctx.fault_at)})
            result.violations.append(
                f"two writable nodes: {overlap.nodes[0]} and {overlap.nodes[1]} for {overlap.duration:.2f} s from "
                f"{overlap.start - ctx.fault_at:+.2f} s after the fault ({overlap.samples} samples); lock holder "
                f"then: {self.topology.holder_at(overlap.start)}")

    def evidence(self, overlap: Overlap, zero: float) -> list[str]:
        """The samples of both nodes from 0.3 s before to 0.3 s after the start of an overlap."""
        rows = sorted((s for s in list(self.sampler.samples) if s.node in overlap.nodes
                       and overlap.start - 0.3 <= s.started <= overlap.start + 0.3), key=lambda s: s.started)
        value = {True: "read-only", False: "WRITABLE", None: "no answer"}
        return [f"{s.node} sent {s.started - zero:+.3f} answered {s.at - zero:+.3f}: {value[s.read_only]}" for s in rows]

    def check_loss(self, result: RoundResult, ctx: FaultContext, final: Node) -> None:
        cut = time.time()
        try:
            present = {int(r["id"]) for r in final.sql(f"SELECT id FROM {APP_DATABASE}.drill", timeout=30)}
        except Exception as exc:  # noqa: BLE001
            result.violations.append(f"could not read the rows on the final primary {final.name}: {exc!r}")
            return
        acked = {w.row: w for w in list(self.writer.acked) if w.at <= cut}
        missing = set(acked) - present
        new = sorted(missing - self.lost)
        self.lost |= missing
        result.rows_lost = len(new)
        result.lost_rows = new[:50]
        if not new:
            return
        lost = [acked[r] for r in new]
        where = self.rows_elsewhere(new, final)
        context = f"final primary {final.name}" + (f"; present on {where}" if where else "")
        problems = loss_violations(lost, list(self.writer.acked), ctx.crashes, ctx.fault_at)
        result.violations += [f"{p}; {context}" for p in problems]
        if not problems:
            result.notes.append(f"crash loss: {len(new)} row(s) from the unreplicated tail: "
                                f"{describe_writes(lost, ctx.fault_at)}")

    def rows_elsewhere(self, rows: list[int], final: Node) -> str:
        found = []
        sample = rows[:200]
        for node in self.cluster.nodes:
            if node is final:
                continue
            try:
                marks = ",".join(str(r) for r in sample)
                have = node.scalar(f"SELECT COUNT(*) FROM {APP_DATABASE}.drill WHERE id IN ({marks})", timeout=5)
            except Exception:  # noqa: BLE001
                continue
            if have:
                found.append(f"{node.name} ({have} of {len(sample)})")
        return ", ".join(found)

    def check_errant(self, result: RoundResult, start: float, end: float) -> None:
        verdicts = self.topology.verdicts()
        views = [v for v in list(self.topology.views) if v.reachable]
        nodes = {n.name: n for n in self.cluster.nodes}
        def once(message: str, key: tuple | None = None) -> None:
            """Report a breach once per run: a standing verdict must not fill every later round."""
            key = key or (message,)
            if key not in self.reported_errant:
                self.reported_errant.add(key)
                result.violations.append(message)

        for verdict in verdicts:
            own_id = verdict.server_id
            listed = gtids(verdict.gtids)
            if start <= verdict.at <= end:
                result.errant_verdicts.append({"node": verdict.node, "gtids": verdict.gtids, "server_id": own_id,
                                               "from": verdict.origin, "at_s": round(verdict.at - start, 2)})
                foreign = [g for g in listed if own_id is not None and g[1] != own_id]
                if foreign:
                    once(f"{verdict.node} (server_id {own_id}) was judged errant for "
                         f"{','.join('%d-%d-%d' % g for g in foreign)}, transactions of server_id(s) "
                         f"{sorted({g[1] for g in foreign})}: holding another server's transactions makes a node ahead, "
                         f"not errant ({verdict.origin}: {verdict.line or verdict.gtids})")
            own = [g for g in listed if own_id is None or g[1] == own_id]
            if not own:
                continue
            standing_until = self.verdict_end(verdict, own, views)
            target = nodes.get(verdict.node)
            seen: dict[str, list[float]] = {}
            for view in views:
                if not (max(verdict.at, start) <= view.at <= min(standing_until, end)):
                    continue
                if view.node == verdict.node and view.read_only is False:
                    seen.setdefault(f"{verdict.node} was writable", []).append(view.at)
                if view.node != verdict.node and target is not None and view.io \
                        and view.source == (target.address, target.port):
                    seen.setdefault(f"{view.node} replicated from {verdict.node}", []).append(view.at)
            for what, times in sorted(seen.items()):
                once(f"{what} while {verdict.node} held errant transactions {verdict.gtids} (judged at "
                     f"{verdict.at - start:+.1f} s into the round): {len(times)} observation(s) from "
                     f"{min(times) - start:+.1f} s to {max(times) - start:+.1f} s",
                     key=(verdict.node, verdict.gtids, what))
            for lock in list(self.topology.locks):
                if max(verdict.at, start) <= lock.at <= min(standing_until, end) and lock.holder == verdict.node:
                    once(f"{verdict.node} held the primary lock ({lock.state}) at {lock.at - start:+.1f} s into the round "
                         f"while it held errant transactions {verdict.gtids}", key=(verdict.node, verdict.gtids, "lock"))
                    break
            # Nobody may acquire the errant GTIDs after the verdict.
            reused = self.server_id_reused(own, verdict, standing_until, views)
            for name in nodes:
                if name == verdict.node or reused:
                    continue
                before = self.view_near(name, verdict.at, views)
                had = {g for g in own if before is not None and state_covers(before.binlog_state, g)}
                for view in views:
                    if view.node != name or not (start <= view.at <= end) or view.at < verdict.at:
                        continue
                    gained = [g for g in own if g not in had and state_covers(view.binlog_state, g)]
                    if gained:
                        once(f"{name} acquired {verdict.node}'s errant transaction(s) "
                             f"{','.join('%d-%d-%d' % g for g in gained)} after the verdict at "
                             f"{verdict.at - start:+.1f} s (its binlog state at {view.at - start:+.1f} s: "
                             f"{view.binlog_state})", key=(verdict.node, verdict.gtids, "acquired", name))
                        break

    def verdict_end(self, verdict: Verdict, own: list[tuple[int, int, int]], views: list[NodeView]) -> float:
        """A verdict stands until the node's server_id changes or its binlog state no longer holds the GTIDs."""
        for view in views:
            if view.node != verdict.node or view.at <= verdict.at:
                continue
            if (verdict.server_id is not None and view.server_id != verdict.server_id) or \
                    not any(state_covers(view.binlog_state, g) for g in own):
                return view.at
        return float("inf")

    @staticmethod
    def server_id_reused(own: list[tuple[int, int, int]], verdict: Verdict, standing_until: float,
                         views: list[NodeView]) -> bool:
        """Did another incarnation write with these server_ids (another node, or the same node after
        its data was replaced)?  A binlog state keeps one seq_no per server_id, so its later
        transactions would seem to contain the errant ones."""
        ids = {g[1] for g in own}
        return any(v.server_id in ids and (v.node != verdict.node or v.at >= standing_until) for v in views)

    def reused_server_ids(self) -> dict[int, list[str]]:
        """server_id -> the incarnations (node, first seen) that had it, for ids held by more than one."""
        runs: dict[int, list[tuple[str, float]]] = {}
        last: dict[str, int | None] = {}
        for view in sorted((v for v in list(self.topology.views) if v.reachable), key=lambda v: v.at):
            if view.server_id is None or last.get(view.node) == view.server_id:
                continue
            last[view.node] = view.server_id
            runs.setdefault(view.server_id, []).append((view.node, view.at))
        return {sid: [f"{node} from +{at - self.t0:.0f} s" for node, at in found]
                for sid, found in runs.items() if len(found) > 1}

    @staticmethod
    def view_near(node: str, at: float, views: list[NodeView]) -> NodeView | None:
        best = None
        for view in views:
            if view.node == node and view.at <= at:
                best = view
        return best

    def check_crash_loop(self, result: RoundResult, start: float, end: float, restarts_before: int) -> None:
        limit = self.options.crash_loop_limit
        for at, node, code in list(self.keeper.restarts)[restarts_before:]:
            result.restarts[node] = result.restarts.get(node, 0) + 1
            why = [line.split(": ", 1)[-1] for t, n, line in list(self.logs.lines)
                   if n == node and at - 20 <= t <= at and (" ERROR " in line or " WARNING " in line)][-3:]
            result.notes.append(f"{node} exited by itself (exit code {code}) and was restarted by the restart policy"
                                + (f"; its last warnings: {' | '.join(why)}" if why else ""))
        for at, node in list(self.logs.mysqld_starts):
            if start <= at <= end:
                result.mysqld_starts[node] = result.mysqld_starts.get(node, 0) + 1
        for at, node, line in list(self.logs.lines):
            if start <= at <= end and "timed out after" in line and "containerbuddy[" in line:
                result.hook_timeouts[node] = result.hook_timeouts.get(node, 0) + 1
        if result.hook_timeouts:
            result.notes.append("hooks killed at their timeout: " + ", ".join(
                f"{n} {c}x" for n, c in sorted(result.hook_timeouts.items())))
        for node, count in result.restarts.items():
            if count > limit:
                result.violations.append(f"crash loop: {node} exited by itself and was restarted {count} times in the "
                                         f"round (limit {limit})")
        for node, count in result.mysqld_starts.items():
            if count > limit + 1:
                result.violations.append(f"crash loop: mysqld of {node} started {count} times in the round")

    def final_checks(self) -> None:
        """End of run: the final primary holds no node's errant GTIDs; no two writable nodes over the whole run."""
        holder = self.holder()
        if holder is None:
            self.report.final.append("no ready primary at the end of the run")
            return
        final = self.cluster.node(holder)
        view = read_node(final, timeout=3)
        for verdict in self.topology.verdicts():
            if verdict.node == final.name:
                continue
            own = [g for g in gtids(verdict.gtids) if verdict.server_id is None or g[1] == verdict.server_id]
            views = [v for v in list(self.topology.views) if v.reachable]
            if not own or self.server_id_reused(own, verdict, self.verdict_end(verdict, own, views), views):
                continue
            before = self.view_near(final.name, verdict.at, views)
            held = [g for g in own if state_covers(view.binlog_state, g)
                    and not (before is not None and state_covers(before.binlog_state, g))]
            if held:
                self.report.final.append(
                    f"the final primary {final.name} holds {verdict.node}'s errant transaction(s) "
                    f"{','.join('%d-%d-%d' % g for g in held)} (judged errant at +{verdict.at - self.t0:.1f} s; "
                    f"binlog state {view.binlog_state})")
        between = [o for o in self.sampler.overlaps(self.t0, time.time())
                   if not any(r.started_at <= o.start <= r.ended_at for r in self.report.rounds)]
        for overlap in between:
            self.report.final.append(f"two writable nodes between rounds: {overlap.nodes} for {overlap.duration:.2f} s "
                                     f"at +{overlap.start - self.t0:.1f} s ({overlap.samples} samples)")


# ---------------------------------------------------------------------------
# BENCHMARKS.md figures from a report file

def markdown(data: dict[str, Any]) -> str:
    """A report file (chaos-report.json) as Markdown: one table row per round, then the totals."""
    def fmt(value: Any, unit: str = " s") -> str:
        return "–" if value is None else f"{value:.1f}{unit}" if isinstance(value, float) else str(value)
    totals = data.get("totals", {})
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data.get("started_at") or 0))
    out = [f"Chaos drill, seed {data['seed']}, {totals.get('rounds_run')} rounds on {data['backend']} "
           f"({when}, {totals.get('duration_s')} s; options {data.get('options')}); "
           f"replay: `make chaos SEED={data['seed']} ROUNDS={data['rounds_planned']}`",
           "",
           "| round | fault | target | primary | failover | write gap | rows lost | two-writable samples | "
           "frozen window | converged | load | result |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data.get("rounds", []):
        lost = f"{r['rows_lost']} ({r['loss_rule']})" if r["rows_lost"] else "0"
        result = "ok" if r.get("ok") else f"{len(r['violations'])} violation(s)"
        out.append(f"| {r['round']} | {r['kind']}:{r['role']} | {r.get('target') or '–'} | "
                   f"{r.get('primary_before')} → {r.get('primary_after')} | {fmt(r.get('failover_s'))} | "
                   f"{fmt(r.get('write_gap_s'))} | {lost} | {r['two_writable_samples']} | "
                   f"{fmt(r.get('frozen_window_s'))} | {fmt(r.get('converge_s'))} | {fmt(r.get('load_avg'), '')} | "
                   f"{result} |")
    out += ["", f"Totals: {totals.get('rounds_ok')}/{totals.get('rounds_run')} rounds without violation; "
            f"{totals.get('rows_acked')} rows acknowledged, {totals.get('rows_lost')} lost "
            f"(crash rounds: {totals.get('crash_rows_lost')}); two-writable samples "
            f"{totals.get('two_writable_samples')}; frozen windows {totals.get('frozen_windows_s')} s; "
            f"failover times {totals.get('failover_s')}."]
    for violation in data.get("violations", []):
        out.append(f"- {violation}")
    return "\n".join(out)


if __name__ == "__main__":
    for report_file in sys.argv[1:] or ["-"]:
        text = sys.stdin.read() if report_file == "-" else Path(report_file).read_text()
        print(markdown(json.loads(text)))
