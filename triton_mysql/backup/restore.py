"""Verified restore: storage → (sha256, size) → zstd -d → mbstream -x → prepare → datadir.

The object is streamed once: Python reads it from storage, hashes and counts
it, and feeds zstd, which feeds the extractor through an OS pipe; the files
land in a staging directory on the datadir's own file system (a sibling, or a
hidden directory inside a mount-point datadir: mysql.datadir.new_staging),
never in the datadir itself.  Only when the whole object was read and its size
and sha256 equal the manifest's, both tools succeeded, the backup was prepared
and its recorded GTID position equals the manifest's, does the prepared
directory become the datadir (mysql.datadir.install: one rename, the node
state file — the mark of a finished restore — inside it).  Any mismatch or
failure stops before the datadir is touched, with a one-line RestoreError; the
staging directory is always removed.

What becomes the datadir mirrors the tool's own `--move-back`: every file of
the prepared backup except the tool's metadata (backup-my.cnf,
xtrabackup_binlog_info, xtrabackup_checkpoints, …); run as root, the result is
chowned to `mysql` (mysqld runs as that user).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

from .. import node_state
from ..mysql import gtid as gtids
from ..mysql.datadir import DatadirError, chown_mysql, entries, install, new_staging
from ..mysql.flavor import BINLOG_INFO_FILE, Flavor, FlavorError, by_name, parse_binlog_info
from ..storage import NotFound, Storage, StorageError, open_storage
from .manifest import data_key, is_complete, newest_complete, read_manifest, validate
from .pipeline import CHUNK, _grow_pipe, failure
from .progress import Progress

log = logging.getLogger(__name__)

#: Files of a prepared backup that --move-back leaves behind (tool metadata).
NOT_MOVED = frozenset({"backup-my.cnf", "xtrabackup_binlog_info", "xtrabackup_checkpoints", "xtrabackup_logfile",
                       "xtrabackup_binary", "xtrabackup_galera_info", "xtrabackup_slave_info",
                       "xtrabackup_debug_sync", "xtrabackup_tablespaces", "donor_galera_info"})

__all__ = ["RestoreError", "restore", "restore_newest"]


class RestoreError(Exception):
    """The restore was refused or failed; the datadir was not touched (one line for the operator)."""


# -- the public entry points ---------------------------------------------------------

def restore(storage: Storage, snapshot: str | dict[str, Any], datadir: str, *,
            progress: bool | Progress | None = None,
            mark: node_state.NodeState | None = None) -> dict[str, Any]:
    """Restore `snapshot` (an id or a manifest) into the empty `datadir`; returns the manifest used.

    `progress`: True for the default reporter (bar on a terminal, log lines
    otherwise), or a Progress.  Run as root, the restored files go to the mysql user.
    `mark`: the node state the restored datadir gets (onStart passes its own);
    default: a restore for no node yet (`node` empty), which onStart adopts
    with a server_id of its own and seeds from the snapshot's GTID position.
    """
    manifest = _manifest(storage, snapshot)
    snapshot_id = manifest["id"]
    if progress is True:
        progress = Progress(f"restore {snapshot_id}", manifest["size"])
    try:
        flavor = by_name(manifest["flavor"])
    except FlavorError as exc:
        raise RestoreError(f"snapshot {snapshot_id}: {exc}") from None
    datadir = os.path.abspath(datadir)
    left = entries(datadir)
    if left:
        shown = ", ".join(left[:3]) + (", …" if len(left) > 3 else "")
        raise RestoreError(f"{datadir} is not empty ({shown}): restore needs an empty datadir")
    try:
        os.makedirs(datadir, exist_ok=True)
        staging = new_staging(datadir)
    except OSError as exc:
        raise RestoreError(f"cannot create a staging directory for {datadir}: {exc.strerror or exc}") from None
    log.info("restoring snapshot %s (%s, GTID %s) into %s", snapshot_id, _size(manifest["size"]),
             manifest["gtid"] or "''", datadir)
    try:
        backup_dir, logs = staging / "backup", staging / "logs"
        backup_dir.mkdir()
        logs.mkdir()
        _stream_extract(storage, manifest, flavor, backup_dir, logs, progress)
        _prepare(flavor, backup_dir, logs)
        _check_position(manifest, backup_dir)
        _drop_tool_files(backup_dir, logs)
        if mark is None:
            mark = node_state.NodeState(node="", server_id=0, origin="restore", snapshot_id=snapshot_id,
                                        snapshot_gtid=manifest["gtid"] or "", seeded=False)
        install(backup_dir, datadir, mark)
    except DatadirError as exc:
        if isinstance(progress, Progress):
            progress.finish(ok=False)
        raise RestoreError(str(exc)) from None
    except BaseException:
        if isinstance(progress, Progress):
            progress.finish(ok=False)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    chown_mysql(datadir, must_exist=False)
    log.info("restored snapshot %s into %s", snapshot_id, datadir)
    return manifest


def restore_newest(config: Any, discovery: Any | None, datadir: str, *,
                   progress: bool | Progress | None = True,
                   mark: Callable[[dict[str, Any]], node_state.NodeState] | None = None) -> dict[str, Any] | None:
    """Restore the newest complete snapshot at BACKUP_URL into `datadir` (the onStart clone).

    Prefers the snapshot `snapshots/last` names in discovery (when it is
    complete in storage); falls back to the newest complete snapshot in
    storage (a new or wiped discovery service).  Returns the manifest used,
    or None when no complete snapshot exists.  Progress: a log line every few
    seconds (a bar on a terminal), so a long clone is visible in the logs.
    """
    try:
        storage = open_storage(config.backup_url, config)
        chosen: dict[str, Any] | None = None
        if discovery is not None:
            chosen = _from_discovery(config, discovery, storage)
        if chosen is None:
            chosen = newest_complete(storage)
            if chosen is not None:
                log.info("newest complete snapshot in %s: %s", storage.describe(), chosen["id"])
    except StorageError as exc:
        raise RestoreError(f"cannot look for snapshots: {exc}") from None
    if chosen is None:
        log.info("no complete snapshot in %s", storage.describe())
        return None
    return restore(storage, chosen, datadir, progress=progress, mark=mark(chosen) if mark else None)


def _from_discovery(config: Any, discovery: Any, storage: Storage) -> dict[str, Any] | None:
    from ..keys import ClusterKeys
    from ..records import ClusterStore

    record = ClusterStore(discovery, ClusterKeys.for_config(config)).snapshot_pointer()
    if record is None:
        log.info("discovery names no snapshot (snapshots/last is empty)")
        return None
    try:
        validate(record)
    except ValueError as exc:
        log.warning("snapshots/last is not a valid manifest (%s); looking in storage", exc)
        return None
    if not is_complete(storage, record):
        log.warning("snapshots/last names %s, which is not complete in %s; looking in storage", record["id"],
                    storage.describe())
        return None
    log.info("snapshots/last names snapshot %s", record["id"])
    return record


# -- steps ---------------------------------------------------------------------------

def _size(n: int) -> str:
    from .progress import human_bytes
    return human_bytes(n)


def _manifest(storage: Storage, snapshot: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(snapshot, dict):
        try:
            return validate(snapshot)
        except ValueError as exc:
            raise RestoreError(f"invalid manifest: {exc}") from None
    try:
        manifest = read_manifest(storage, snapshot)
    except StorageError as exc:
        raise RestoreError(str(exc)) from None
    if manifest is None:
        raise RestoreError(f"snapshot {snapshot} not found in {storage.describe()} "
                           f"(or incomplete: it has no valid manifest)")
    return manifest


def _stream_extract(storage: Storage, manifest: dict[str, Any], flavor: Flavor, target: Path, logs: Path,
                    progress: Any) -> None:
    """Stream the object through zstd -d | extractor into `target`, verifying size and sha256."""
    snapshot_id, expected, want_sha = manifest["id"], manifest["size"], manifest["sha256"]
    zstd_log, extract_log = logs / "zstd.log", logs / "extract.log"
    zstd = extract = None
    size = 0
    sha = hashlib.sha256()
    fed_ok = True
    try:
        reader = storage.open_read(data_key(snapshot_id))
    except NotFound:
        raise RestoreError(f"snapshot {snapshot_id}: its data object is missing") from None
    except StorageError as exc:
        raise RestoreError(f"snapshot {snapshot_id}: {exc}") from None
    try:
        if reader.size is not None and reader.size != expected:
            raise RestoreError(f"snapshot {snapshot_id} is damaged: the stored object has {reader.size} bytes, "
                               f"its manifest says {expected}; refusing it")
        with open(zstd_log, "wb") as zlog, open(extract_log, "wb") as xlog:
            try:
                zstd = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=zlog)
                assert zstd.stdout is not None and zstd.stdin is not None
                _grow_pipe(zstd.stdin.fileno())
                _grow_pipe(zstd.stdout.fileno())
                extract = subprocess.Popen(flavor.extract_argv(str(target)), stdin=zstd.stdout,
                                           stdout=subprocess.DEVNULL, stderr=xlog)
            except OSError as exc:
                raise RestoreError(f"cannot run the restore tools: {exc.strerror or exc}") from None
            finally:
                if zstd is not None and zstd.stdout is not None:
                    zstd.stdout.close()
            assert zstd.stdin is not None
            while True:
                try:
                    chunk = reader.read(CHUNK)
                except StorageError as exc:
                    raise RestoreError(f"snapshot {snapshot_id}: {exc}") from None
                if not chunk:
                    break
                size += len(chunk)
                if size > expected:
                    raise RestoreError(f"snapshot {snapshot_id} is damaged: the stored object is larger than the "
                                       f"{expected} bytes its manifest says; refusing it")
                sha.update(chunk)
                if fed_ok:
                    try:
                        zstd.stdin.write(chunk)
                    except BrokenPipeError:
                        # Keep reading: the checksum tells whether the object or the tool is at fault.
                        fed_ok = False
                if progress is not None:
                    progress.update(size, size)
            try:
                zstd.stdin.close()
            except BrokenPipeError:
                fed_ok = False
            zstd_code, extract_code = zstd.wait(), extract.wait()
    finally:
        reader.close()
        for proc in (zstd, extract):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    if size != expected:
        raise RestoreError(f"snapshot {snapshot_id} is truncated: {size} bytes read, its manifest says {expected}; "
                           f"refusing it")
    if sha.hexdigest() != want_sha:
        raise RestoreError(f"snapshot {snapshot_id} is corrupt: sha256 {sha.hexdigest()[:16]}… does not match its "
                           f"manifest's {want_sha[:16]}…; refusing it")
    if zstd_code != 0 or not fed_ok:
        raise RestoreError(failure("zstd -d", zstd_code, zstd_log))
    if extract_code != 0:
        raise RestoreError(failure(f"{flavor.stream_tool} -x", extract_code, extract_log))
    if progress is not None:
        progress.finish()
    log.info("snapshot %s: %d bytes read, size and sha256 match the manifest", snapshot_id, size)


def _prepare(flavor: Flavor, target: Path, logs: Path) -> None:
    prepare_log = logs / "prepare.log"
    with open(prepare_log, "wb") as out:
        try:
            code = subprocess.run(flavor.prepare_argv(str(target)), stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT).returncode
        except OSError as exc:
            raise RestoreError(f"cannot run {flavor.backup_tool}: {exc.strerror or exc}") from None
    if code != 0:
        raise RestoreError(failure(f"{flavor.backup_tool} --prepare", code, prepare_log))


def _check_position(manifest: dict[str, Any], target: Path) -> None:
    """The backup's own record of its position must be the manifest's."""
    info = target / BINLOG_INFO_FILE
    if not info.exists():
        if manifest["binlog_file"]:
            raise RestoreError(f"snapshot {manifest['id']}: the backup has no {BINLOG_INFO_FILE}")
        return
    try:
        binlog_file, binlog_pos, gtid = parse_binlog_info(info.read_text(errors="replace"))
    except ValueError as exc:
        raise RestoreError(f"snapshot {manifest['id']}: unreadable {BINLOG_INFO_FILE}: {exc}") from None
    flavor = manifest["flavor"]
    same_gtid = gtids.normalize(flavor, gtid) == gtids.normalize(flavor, manifest["gtid"])
    if not same_gtid or binlog_file != manifest["binlog_file"] or binlog_pos != manifest["binlog_pos"]:
        raise RestoreError(f"snapshot {manifest['id']}: the backup's position {binlog_file}:{binlog_pos} "
                           f"GTID {gtid!r} differs from its manifest's; refusing it")


def _drop_tool_files(backup_dir: Path, logs: Path) -> None:
    """Take the tool's metadata out of the prepared backup (what --move-back leaves behind)."""
    for name in NOT_MOVED:
        if (backup_dir / name).exists():
            os.rename(backup_dir / name, logs / name)


