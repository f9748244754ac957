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
  the next `onStart` moves the data aside and clones again.

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
    complete: bool = True
    """The mark of a finished initialisation or restore (mysql.datadir.install writes it last)."""
    accounts_version: int = 0
    """The accounts.ACCOUNTS_VERSION whose grants this node's primary pass last ensured."""
    extra: dict[str, Any] = field(default_factory=dict)

    def update(self, **changes: Any) -> "NodeState":
        return replace(self, **changes)


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
    try:
        return NodeState(**values, extra=extra)
    except TypeError:
        return None


def save(datadir: str | Path, state: NodeState) -> None:
    target = path(datadir)
    data = asdict(state)
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

