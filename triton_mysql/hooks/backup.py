"""`triton-mysql backup [--url URL]`: a snapshot now, whatever its age, on any node.

A progress bar (bytes, rate, ETA from the datadir's size) on a terminal, a
log line every few seconds otherwise.  With `--url` other than BACKUP_URL
the snapshot is an export: it is not recorded in `snapshots/last`, and
retention and binlog purge do not follow.  Exit 0 with the snapshot's id on
stdout; non-zero with a one-line reason.
"""
from __future__ import annotations

import logging

import click

log = logging.getLogger(__name__)


def run(config, url: str | None = None) -> int:
    from ..backup.progress import human_bytes
    from ..backup.snapshot import LockBusy, SnapshotError, Terminated, take_snapshot, terminate_on_sigterm
    from ..errors import UserError
    from ..config import ConfigError, _backup_url

    if url:
        try:
            url = _backup_url(url)
        except ValueError as exc:
            raise ConfigError("--url", str(exc)) from None
    discovery = None
    if config.consul is not None or config.etcd is not None:
        from ..discovery import connect
        discovery = connect(config)
    try:
        with terminate_on_sigterm():
            manifest = take_snapshot(config, url=url, discovery=discovery, progress=True, reason="manual backup")
    except (SnapshotError, LockBusy) as exc:
        raise UserError(f"backup failed: {exc}") from None
    except Terminated:
        raise UserError("backup interrupted by SIGTERM; nothing was recorded") from None
    finally:
        if discovery is not None:
            discovery.close()
    where = url or config.backup_url
    click.echo(f"snapshot {manifest['id']} stored at {where.rstrip('/')}/{manifest['id']}/ "
               f"({human_bytes(manifest['size'])}, GTID {manifest['gtid'] or '-'})")
    return 0
