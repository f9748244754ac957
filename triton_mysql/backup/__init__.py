"""Snapshots (SPEC §6): streamed backups to object storage and verified restores.

Modules, by job:
  manifest.py   layout (`<id>/backup.xbstream.zst`, `<id>/manifest.json`), ids, manifests, completeness
  pipeline.py   mariabackup/xtrabackup | zstd -> storage, hashed on the fly (no local copy)
  snapshot.py   one snapshot end to end: lock, id, pipeline, manifest, snapshots/last, retention, purge
  restore.py    storage -> verify -> zstd -d | mbstream -x -> prepare -> datadir; restore_newest for onStart
  due.py        the pure due rule;  binlogs.py  the GTID-based purge rule;  retention.py  SNAPSHOT_KEEP
  lock.py       the snapshot lock with its renewing thread;  progress.py  bar / log lines
"""
