"""`triton-mysql snapshots`: the complete snapshots in storage, newest first.

Columns: id, created, size, GTID.  Incomplete snapshots (no manifest, or a
data object that does not match it) are never listed: they are never used.
"""
from __future__ import annotations

import click


def run(config) -> int:
    from ..backup.manifest import list_complete
    from ..backup.progress import human_bytes
    from ..errors import UserError
    from ..storage import StorageError, open_storage

    try:
        storage = open_storage(config.backup_url, config)
        complete = list_complete(storage)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    if not complete:
        click.echo(f"no complete snapshot in {config.backup_url}")
        return 0
    rows = [("ID", "CREATED", "SIZE", "GTID")]
    rows += [(m["id"], m["created"], human_bytes(m["size"]), m["gtid"] or "-") for m in complete]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return 0
