"""The data directory: is it empty, create a new one, give it to the mysql user.

"Empty" means nothing but `lost+found`: a fresh volume (an ext4 mount) has that
directory, and it must not make onStart believe there is data to keep.
"""
from __future__ import annotations

import logging
import os
import pwd
import subprocess
from pathlib import Path
from typing import Iterable

from .. import node_state
from ..config import Config
from .flavor import Flavor

logger = logging.getLogger(__name__)

IGNORED_ENTRIES = frozenset({"lost+found"})
INIT_TIMEOUT = 300.0


class DatadirError(Exception):
    """The datadir could not be initialised."""


def entries(datadir: str | os.PathLike, ignore: Iterable[str] = ()) -> list[str]:
    """What in `datadir` counts as data ([] when it does not exist), sorted.

    Not counted: lost+found, half-written node-state files of the hooks
    (node_state.TEMP_PREFIX), and the names in `ignore`.
    """
    allowed = IGNORED_ENTRIES | set(ignore)
    try:
        return sorted(name for name in os.listdir(datadir)
                      if name not in allowed and not name.startswith(node_state.TEMP_PREFIX))
    except FileNotFoundError:
        return []


def is_empty(datadir: str | os.PathLike, ignore: Iterable[str] = ()) -> bool:
    """True when `datadir` does not exist or holds nothing that counts as data (see `entries`)."""
    return not entries(datadir, ignore)


def _mysql_ids() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam("mysql")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def chown_mysql(path: str | os.PathLike) -> None:
    """chown -R mysql:mysql `path` when running as root (mysqld runs as mysql then); else nothing.

    Needed after anything root writes into the datadir: initialisation,
    mariabackup --move-back, moving old data aside.
    """
    if os.geteuid() != 0:
        return
    ids = _mysql_ids()
    if ids is None:
        raise DatadirError("running as root but there is no 'mysql' user to own the datadir")
    uid, gid = ids
    root = Path(path)
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def initialize(config: Config, flavor: Flavor, timeout: float = INIT_TIMEOUT) -> None:
    """Create a new, empty server in MYSQL_DATADIR (MYSQL_CNF must already be written).

    MariaDB: root@localhost authenticates by unix_socket only until the health
    hook's account setup gives it MYSQL_ROOT_PASSWORD.  MySQL: root@localhost
    with an empty password, reachable only over the local socket until then.
    """
    datadir = Path(config.mysql_datadir)
    if not is_empty(datadir):
        raise DatadirError(f"refusing to initialise {datadir}: it is not empty")
    datadir.mkdir(parents=True, exist_ok=True)
    chown_mysql(datadir)
    argv = flavor.initialize_argv(config.mysql_cnf, config.mysqld)
    logger.info("initialising a new datadir in %s (%s)", datadir, " ".join(argv[:1]))
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatadirError(f"{argv[0]} failed: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-15:])
        raise DatadirError(f"{argv[0]} exited {result.returncode}:\n{tail}")
    chown_mysql(datadir)
