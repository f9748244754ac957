"""`triton-mysql restore --snapshot ID --datadir DIR`: disaster recovery.

Restores one snapshot from BACKUP_URL into an empty directory (verified:
size and sha256 while streaming, nothing written to DIR unless they match),
then prints how to start a server on it at the snapshot's GTID position.
"""
from __future__ import annotations

import click


def run(config, snapshot_id: str, datadir: str) -> int:
    from ..backup.restore import RestoreError, restore
    from ..backup.snapshot import Terminated, terminate_on_sigterm
    from ..errors import UserError
    from ..mysql.flavor import by_name
    from ..storage import StorageError, open_storage

    try:
        storage = open_storage(config.backup_url, config)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    try:
        with terminate_on_sigterm():
            manifest = restore(storage, snapshot_id, datadir, progress=True)
    except RestoreError as exc:
        raise UserError(f"restore refused: {exc}") from None
    except Terminated:
        raise UserError(f"restore interrupted by SIGTERM; {datadir} was left empty") from None
    click.echo(f"restored snapshot {manifest['id']} into {datadir} (GTID {manifest['gtid'] or '-'})")
    statements = by_name(manifest["flavor"]).seed_after_restore(manifest["gtid"])
    if manifest["gtid"]:
        click.echo("once mysqld runs on it, seed its GTID state before replicating:")
        for stmt in statements:
            text = stmt.text.replace("%s", "'{}'").format(*stmt.args) if stmt.args else stmt.text
            click.echo(f"  {text};")
    return 0
