"""What a node records about its own datadir, kept *in* the datadir.

Hooks are fresh processes, so facts about the data must live with the data:
a file `triton-mysql.json` at the top of the datadir (MariaDB ignores files it
does not know; a restore writes a new one).  It holds:

* `server_id` — handed out once by the cluster counter, kept for the life of
  the data (a container recreated on the same volume keeps its id);
* where the data came from (`origin`: bootstrap / restore / existing) and,
  after a restore, the snapshot id and GTID position still to be seeded into
  the binary log state (`seeded` turns true once `health` has done it);
* `complete` — the file itself is the mark of a finished initialisation or
  restore: it is written last (mysql.datadir.install), so a datadir without it
  (or with `complete: false`) is never started as data;
* `bootstrap_pending` — this node initialised the cluster and has not yet
  turned writable (it does once the cluster's first snapshot exists);
* `reclone` — set when errant transactions were found and AUTO_RECLONE is on:
  the next `onStart` moves the data aside and clones again;
* `terms` — every term in which this datadir's server held the primary lock:
  the executed GTIDs when it turned writable and its binlog state when it
  stopped being the primary (None while open).  Transactions carrying this
  server's own id outside these terms are errant (SPEC §5);
* `verdict` — the last divergence found against a primary (`kind` errant /
  tail / ahead / stranded, `gtids`, `against`, `at`), so that every later
  hook process knows it before following or standing in an election.

Writes are atomic (temp file + rename), so a killed hook never leaves half a file.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

FILENAME = "triton-mysql.json"
TEMP_PREFIX = ".triton-mysql."  # a save() in progress (or killed half-way)


@dataclass(frozen=True)
class NodeState:
    node: str
    server_id: int
    origin: str = "existing"
    snapshot_id: str | None = None
    snapshot_gtid: str | None = None
    seeded: bool = True
    bootstrap_pending: bool = False
    reclone: dict[str, Any] | None = None
    terms: tuple[dict[str, Any], ...] = ()
    verdict: dict[str, Any] | None = None
    complete: bool = True
    """The mark of a finished initialisation or restore (mysql.datadir.install writes it last)."""
    accounts_version: int = 0
    """The accounts.ACCOUNTS_VERSION whose grants this node's primary pass last ensured."""
    extra: dict[str, Any] = field(default_factory=dict)

    def update(self, **changes: Any) -> "NodeState":
        return replace(self, **changes)

    # -- primary terms -------------------------------------------------------
    @property
    def term_open(self) -> bool:
        return bool(self.terms) and self.terms[-1].get("to") is None

    def open_term(self, executed: str, now: float) -> "NodeState":
        """A new term begins (before the server turns writable); a no-op while one is open."""
        if self.term_open:
            return self
        return self.update(terms=self.terms + ({"from": executed, "to": None, "started": now, "ended": None},))

    def close_term(self, binlog_state: str, now: float) -> "NodeState":
        """The open term ends with what this server wrote up to now (it is read-only from here on)."""
        if not self.term_open:
            return self
        last = dict(self.terms[-1], to=binlog_state, ended=now)
        return self.update(terms=self.terms[:-1] + (last,))

    def term_spans(self) -> list[tuple[str, str | None]]:
        """(from, to) pairs for `gtid.classify`."""
        return [(str(t.get("from") or ""), t.get("to")) for t in self.terms]


def path(datadir: str | Path) -> Path:
    return Path(datadir) / FILENAME


def load(datadir: str | Path) -> NodeState | None:
    """The datadir's state, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads(path(datadir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or "server_id" not in raw:
        return None
    known = {f for f in NodeState.__dataclass_fields__}
    extra = {k: v for k, v in raw.items() if k not in known}
    values = {k: v for k, v in raw.items() if k in known and k != "extra"}
    if isinstance(values.get("terms"), list):
        values["terms"] = tuple(t for t in values["terms"] if isinstance(t, dict))
    try:
        return NodeState(**values, extra=extra)
    except TypeError:
        return None


def save(datadir: str | Path, state: NodeState) -> None:
    target = path(datadir)
    data = asdict(state)
    data["terms"] = list(data["terms"])
    extra = data.pop("extra") or {}
    data.update(extra)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=str(target.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

