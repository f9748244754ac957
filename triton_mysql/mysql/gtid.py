"""GTID arithmetic for both families, as pure functions on the text the servers print.

MariaDB: a *position* (``@@gtid_current_pos``, ``@@gtid_binlog_pos``,
``Gtid_IO_Pos``) holds the last GTID per replication domain,
``domain-server-seq[,…]``; a *binlog state* (``@@gtid_binlog_state``) holds the
last GTID per (domain, server_id).  MySQL: a GTID *set*
``uuid:1-5:7-9,uuid2:1-3`` (MySQL 8.3+ tags ``uuid:tag:1-3`` are kept apart).
Whitespace and newlines (servers wrap long sets) are ignored everywhere.

Every dispatching function takes the flavor name first (``"mariadb"`` or
``"mysql"``; a `Flavor` works too) and returns canonical text, so results can go
straight into member records and log lines.

Why the MariaDB errant check compares binlog *states*, not positions: a
replica replicating from ``slave_pos`` ignores transactions it wrote itself, so
only the per-server record shows a transaction the primary never had.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

MARIADB = "mariadb"
MYSQL = "mysql"


class GtidError(ValueError):
    """Text that is not a GTID position/state/set of the expected family."""


def _family(flavor: Any) -> str:
    name = getattr(flavor, "name", flavor)
    if name not in (MARIADB, MYSQL):
        raise GtidError(f"unknown flavor {name!r}")
    return name


def _squash(text: str | None) -> str:
    return re.sub(r"\s+", "", text or "")


# ----------------------------------------------------------------------
# MariaDB: lists of (domain, server_id, seq_no)

MariaGtid = tuple[int, int, int]
_MARIA_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def parse_mariadb(text: str | None) -> list[MariaGtid]:
    """'0-1-100,1-2-5' -> [(0, 1, 100), (1, 2, 5)]; '' -> []."""
    out: list[MariaGtid] = []
    for part in _squash(text).split(","):
        if not part:
            continue
        match = _MARIA_RE.match(part)
        if not match:
            raise GtidError(f"not a MariaDB GTID: {part!r}")
        out.append((int(match[1]), int(match[2]), int(match[3])))
    return out


def format_mariadb(gtids: Iterable[MariaGtid]) -> str:
    """Canonical text: by domain, and within a domain by seq_no.

    Within a domain the highest seq_no comes last: MariaDB reads the last GTID
    of each domain in a binlog state as the current position, and under
    gtid_strict_mode the highest seq_no is the most recent one.
    """
    return ",".join(f"{d}-{s}-{n}" for d, s, n in sorted(set(gtids), key=lambda g: (g[0], g[2], g[1])))


def _per_server(gtids: Iterable[MariaGtid]) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for d, s, n in gtids:
        out[(d, s)] = max(n, out.get((d, s), n))
    return out


def _per_domain(gtids: Iterable[MariaGtid]) -> dict[int, MariaGtid]:
    """The highest-seq GTID of each domain (a state reduced to a position)."""
    out: dict[int, MariaGtid] = {}
    for g in gtids:
        if g[0] not in out or g[2] > out[g[0]][2]:
            out[g[0]] = g
    return out


def _mariadb_extra(mine: str, primary: str) -> str:
    """GTIDs of `mine` (a binlog state) that the primary's binlog state does not cover.

    (d, s, n) is covered when the primary has server s in domain d up to n or
    beyond, or when it has a *later* transaction of this server's own domain
    history (some (d, s2, m) of mine with m >= n that the primary has up to m).
    The second rule keeps a primary whose state was seeded from a snapshot
    position (older server ids dropped) from making every replica look errant;
    it is safe under gtid_strict_mode, where a domain's history is one sequence
    and an errant transaction can only be followed by a replication error.
    """
    mine_gtids = parse_mariadb(mine)
    theirs = _per_server(parse_mariadb(primary))

    def primary_has(d: int, s: int, n: int) -> bool:
        return theirs.get((d, s), -1) >= n

    errant = []
    for d, s, n in mine_gtids:
        if primary_has(d, s, n):
            continue
        if any(d2 == d and m >= n and primary_has(d2, s2, m) for d2, s2, m in mine_gtids):
            continue
        errant.append((d, s, n))
    return format_mariadb(errant)


def _mariadb_contains(have: str, want: str) -> bool:
    mine = _per_domain(parse_mariadb(have))
    return all(d in mine and mine[d][2] >= n for d, (_, _, n) in _per_domain(parse_mariadb(want)).items())


def _mariadb_merge(a: str, b: str) -> str:
    return format_mariadb(_per_domain(parse_mariadb(a) + parse_mariadb(b)).values())


def _mariadb_progress(gtid: str) -> int:
    return sum(n for _, _, n in _per_domain(parse_mariadb(gtid)).values())


# ----------------------------------------------------------------------
# MySQL: {source key: [(start, end), ...]} with inclusive, merged, sorted intervals.
# The key is the lower-case uuid, or "uuid:tag" for tagged GTIDs (MySQL 8.3+).

GtidSet = dict[str, list[tuple[int, int]]]
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_TAG_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,31}$")
_INTERVAL_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _normalise(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def parse_mysql(text: str | None) -> GtidSet:
    """'uuid:1-5:7,uuid2:1-3' -> {'uuid': [(1, 5), (7, 7)], 'uuid2': [(1, 3)]}; '' -> {}."""
    raw: dict[str, list[tuple[int, int]]] = {}
    for part in _squash(text).split(","):
        if not part:
            continue
        fields = part.split(":")
        uuid = fields[0]
        if not _UUID_RE.match(uuid) or len(fields) < 2:
            raise GtidError(f"not a MySQL GTID set element: {part!r}")
        uuid = uuid.lower()
        if "-" not in uuid:
            uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
        key = uuid
        for field in fields[1:]:
            match = _INTERVAL_RE.match(field)
            if match:
                start = int(match[1])
                end = int(match[2]) if match[2] else start
                if start < 1 or end < start:
                    raise GtidError(f"bad GTID interval {field!r} in {part!r}")
                raw.setdefault(key, []).append((start, end))
            elif _TAG_RE.match(field):
                key = f"{uuid}:{field.lower()}"
            else:
                raise GtidError(f"bad GTID interval {field!r} in {part!r}")
    return {k: _normalise(v) for k, v in raw.items() if v}


def format_mysql(gtid_set: GtidSet) -> str:
    """Canonical text, sorted by uuid (tags after the untagged intervals of their uuid)."""
    groups: dict[str, list[str]] = {}
    for key in sorted(gtid_set):
        intervals = gtid_set[key]
        if not intervals:
            continue
        uuid, _, tag = key.partition(":")
        text = ":".join(f"{a}" if a == b else f"{a}-{b}" for a, b in intervals)
        groups.setdefault(uuid, []).append(f"{tag}:{text}" if tag else text)
    return ",".join(f"{uuid}:{':'.join(parts)}" for uuid, parts in groups.items())


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, end in a:
        for bs, be in b:
            if be < start or bs > end:
                continue
            if bs > start:
                out.append((start, bs - 1))
            start = be + 1
            if start > end:
                break
        if start <= end:
            out.append((start, end))
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, end in a:
        for bs, be in b:
            lo, hi = max(start, bs), min(end, be)
            if lo <= hi:
                out.append((lo, hi))
    return _normalise(out)


def _mysql_subtract(a: str, b: str) -> str:
    mine, theirs = parse_mysql(a), parse_mysql(b)
    return format_mysql({k: _subtract(v, theirs.get(k, [])) for k, v in mine.items()})


def _mysql_merge(a: str, b: str) -> str:
    merged: GtidSet = {}
    for part in (parse_mysql(a), parse_mysql(b)):
        for key, intervals in part.items():
            merged.setdefault(key, []).extend(intervals)
    return format_mysql({k: _normalise(v) for k, v in merged.items()})


def _mysql_progress(gtid: str) -> int:
    return sum(end - start + 1 for intervals in parse_mysql(gtid).values() for start, end in intervals)


# ----------------------------------------------------------------------
# Dispatch on the flavor

def normalize(flavor: Any, text: str | None) -> str:
    """Canonical text for `text` (validates it; raises GtidError when malformed)."""
    if _family(flavor) == MARIADB:
        return format_mariadb(parse_mariadb(text))
    return format_mysql(parse_mysql(text))


def extra(flavor: Any, mine: str | None, primary: str | None) -> str:
    """What `mine` has that the primary lacks ('' if nothing).

    MariaDB: pass both servers' ``@@gtid_binlog_state``; MySQL: both ``@@gtid_executed``.
    Whether that is harmless, errant or lost is `classify`'s question.
    """
    if _family(flavor) == MARIADB:
        return _mariadb_extra(mine or "", primary or "")
    return _mysql_subtract(mine or "", primary or "")


def contains(flavor: Any, have: str | None, want: str | None) -> bool:
    """True when `have` includes everything of `want` (MariaDB: per-domain seq_no of positions)."""
    if _family(flavor) == MARIADB:
        return _mariadb_contains(have or "", want or "")
    return _mysql_subtract(want or "", have or "") == ""


def merge(flavor: Any, a: str | None, b: str | None) -> str:
    """Union (MySQL) or per-domain maximum (MariaDB): e.g. executed ∪ received."""
    if _family(flavor) == MARIADB:
        return _mariadb_merge(a or "", b or "")
    return _mysql_merge(a or "", b or "")


def progress(flavor: Any, gtid: str | None) -> int:
    """A comparable magnitude to rank servers by how far they got (bigger = more advanced).

    MariaDB: sum over domains of the highest seq_no; MySQL: number of transactions.
    """
    if _family(flavor) == MARIADB:
        return _mariadb_progress(gtid or "")
    return _mysql_progress(gtid or "")


def highest_per_source(flavor: Any, text: str | None) -> dict[str, int]:
    """Highest sequence number per MariaDB replication domain, or per MySQL source (`uuid`, `uuid:tag`):
    what the metrics show of a position.  Raises GtidError on text of another family."""
    if _family(flavor) == MARIADB:
        out: dict[str, int] = {}
        for domain, _, seq in parse_mariadb(text):
            out[str(domain)] = max(seq, out.get(str(domain), 0))
        return out
    return {source: intervals[-1][1] for source, intervals in parse_mysql(text).items()}


def is_empty(flavor: Any, gtid: str | None) -> bool:
    return normalize(flavor, gtid) == ""


# ----------------------------------------------------------------------
# Origins and terms (SPEC §5): who wrote a transaction, and was that node the
# primary then?

Term = tuple[str, "str | None"]
"""One primary term of a node: (executed GTIDs when it began, its binlog state when it ended or None
while it is open).  A node's own transactions between the two were written as the primary."""


@dataclass(frozen=True)
class Divergence:
    """What a node has that a primary lacks, sorted by origin.

    * `errant`: written by this node itself outside every term in which it held the lock — never
      replicated, never a candidate; re-cloned with AUTO_RECLONE.
    * `tail`: written by this node as the primary, never received by the primary compared with
      (unreplicated when it lost the lock): lost writes, removed before the node rejoins.
    * `ahead`: written by another node (a former primary) that the primary compared with lacks: the
      node is *ahead* of that primary's line, not errant; never re-cloned for it.
    """

    errant: str = ""
    tail: str = ""
    ahead: str = ""

    def __bool__(self) -> bool:
        return bool(self.errant or self.tail or self.ahead)

    @property
    def kind(self) -> str:
        return "errant" if self.errant else "tail" if self.tail else "ahead" if self.ahead else ""

    @property
    def gtids(self) -> str:
        return self.errant or self.tail or self.ahead


def classify(flavor: Any, mine: str | None, primary: str | None, *, own: str, terms: Iterable[Term] = (),
             tolerate: str | None = None) -> Divergence:
    """Sort what `mine` has and `primary` lacks by origin (see `Divergence`).

    `own`: this node's origin (MariaDB: its server_id as text; MySQL: its server_uuid).  `terms`:
    its primary terms.  `tolerate`: an origin whose extra transactions are expected — the last
    primary, when `primary` is that primary's last *published* record, which a replica may have
    outrun before the primary died.
    """
    missing = extra(flavor, mine, primary)
    if not missing:
        return Divergence()
    terms = list(terms)
    if _family(flavor) == MARIADB:
        return _mariadb_classify(parse_mariadb(missing), own, terms, tolerate)
    return _mysql_classify(parse_mysql(missing), own.lower(), terms, (tolerate or "").lower())


def _mariadb_classify(missing: list[MariaGtid], own: str, terms: list[Term], tolerate: str | None) -> Divergence:
    def in_term(d: int, n: int, term: Term) -> bool:
        start = _per_domain(parse_mariadb(term[0])).get(d, (d, 0, 0))[2]
        if term[1] is None:
            return n > start
        end = _per_server(parse_mariadb(term[1])).get((d, int(own)), -1)
        return start < n <= end

    errant, tail, ahead = [], [], []
    for d, s, n in missing:
        if str(s) == own:
            (tail if any(in_term(d, n, t) for t in terms) else errant).append((d, s, n))
        elif tolerate is None or str(s) != tolerate:
            ahead.append((d, s, n))
    return Divergence(format_mariadb(errant), format_mariadb(tail), format_mariadb(ahead))


def _mysql_classify(missing: GtidSet, own: str, terms: list[Term], tolerate: str) -> Divergence:
    errant: GtidSet = {}
    tail: GtidSet = {}
    ahead: GtidSet = {}
    for key, intervals in missing.items():
        origin = key.split(":")[0]
        if origin == own:
            inside: list[tuple[int, int]] = []
            for start, end in terms:
                began = parse_mysql(start).get(key, [])
                span = [(1, 2 ** 63)] if end is None else parse_mysql(end).get(key, [])
                inside += _subtract(_intersect(intervals, span), began)
            inside = _normalise(inside)
            tail[key] = inside
            errant[key] = _subtract(intervals, inside)
        elif origin != tolerate:
            ahead[key] = intervals
    return Divergence(format_mysql(errant), format_mysql(tail), format_mysql(ahead))


def missing_report(flavor: Any, have: str | None, wanted: Iterable[str | None]) -> tuple[str, int]:
    """What `have` lacks of the `wanted` positions/sets: (GTID text, number of transactions).

    MariaDB positions name only the newest GTID per domain: the text lists the newest missing GTID
    of each domain `have` is behind in, the count is the gap in sequence numbers.  MySQL: the exact
    missing set and its size.
    """
    if _family(flavor) == MARIADB:
        mine = _per_domain(parse_mariadb(have))
        newest: dict[int, MariaGtid] = {}
        for text in wanted:
            for d, g in _per_domain(parse_mariadb(text)).items():
                if g[2] > mine.get(d, (d, 0, 0))[2] and (d not in newest or g[2] > newest[d][2]):
                    newest[d] = g
        count = sum(g[2] - mine.get(d, (d, 0, 0))[2] for d, g in newest.items())
        return format_mariadb(newest.values()), count
    union = ""
    for text in wanted:
        union = _mysql_merge(union, text or "")
    missing = _mysql_subtract(union, have or "")
    return missing, _mysql_progress(missing)
