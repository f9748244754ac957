"""File-system durability shared by the datadir code and file:// storage (stdlib only)."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new entry in directory `path` survive a crash (best effort).

    A rename is durable only once its directory is synced; a file system that
    cannot open or sync a directory has nothing better to offer, so errors
    are ignored.
    """
    try:
        fd = os.open(Path(path), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
