"""The data directory: is it empty, build a new one, move old data aside, give it to the mysql user.

"Empty" means nothing but `lost+found`: a fresh volume (an ext4 mount) has that
directory, and it must not make onStart believe there is data to keep.

A datadir is only ever *complete* or *absent* (issue 13 item 6): a new one is
initialised or restored into a staging directory, the node state file (the
mark of a finished initialisation/restore, node_state.FILENAME) is written
into it, and only then does it become the datadir, by one rename.  A
staging directory is a sibling of the datadir (`<datadir>.new-<stamp>-…`, on
the same file system, so the rename is atomic and nothing is copied), except
when the datadir is a mount point: nothing can be renamed onto or away from a
mount point and a sibling lies outside the volume, so the staging directory is
a hidden one inside it (its name starts with node_state.TEMP_PREFIX, which
`entries` ignores) and the files are renamed in one by one, the mark last.
The image mounts its volume one level above the datadir (SPEC §7), so it
always takes the atomic path.

Moving old data aside (AUTO_RECLONE, unmarked data, a bootstrap that gave
way) is one rename to a sibling `<datadir>.<why>-<stamp>`: all or nothing,
on the datadir's own file system, never a copy; refused on a mount point.
"""
from __future__ import annotations

import errno
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

from .. import node_state
from ..files import fsync_dir
from ..config import Config
from .flavor import Flavor

logger = logging.getLogger(__name__)

IGNORED_ENTRIES = frozenset({"lost+found"})
INIT_TIMEOUT = 300.0
#: Infix of the sibling staging directories (`<datadir>.new-<stamp>-<random>`).
STAGING_INFIX = ".new-"
#: Prefix of the staging directory inside a mount-point datadir (ignored by `entries`).
INNER_STAGING_PREFIX = node_state.TEMP_PREFIX + "new-"
#: What to tell an operator whose datadir is a mount point (SPEC §7).
MOUNT_ADVICE = ("mount the volume one level above the datadir (e.g. volume /var/lib/mysql, "
                "MYSQL_DATADIR=/var/lib/mysql/data)")


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


def mysql_ids() -> tuple[int, int] | None:
    """(uid, gid) of the `mysql` user, or None when this system has none."""
    try:
        entry = pwd.getpwnam("mysql")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def chown_mysql(path: str | os.PathLike, *, recursive: bool = True, must_exist: bool = True) -> None:
    """chown mysql:mysql `path` (and everything below it) when running as root; else nothing.

    The one ownership helper of the package: mysqld runs as mysql when we are
    root, so whatever root writes for it (initialisation, a restored datadir,
    --move-back, moving old data aside, the socket directory, the TLS copies)
    is handed over.  Without a `mysql` user: DatadirError when `must_exist`,
    else a warning and the owner stays.
    """
    if os.geteuid() != 0:
        return
    ids = mysql_ids()
    if ids is None:
        if must_exist:
            raise DatadirError("running as root but there is no 'mysql' user to own the datadir")
        logger.warning("no 'mysql' user: %s keeps its current owner", path)
        return
    uid, gid = ids
    root = Path(path)
    os.lchown(root, uid, gid)
    if not recursive:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def is_mount_point(path: str | os.PathLike) -> bool:
    return os.path.ismount(path)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def new_staging(datadir: str | os.PathLike) -> Path:
    """A fresh, empty directory to build a datadir in, on the datadir's own file system."""
    datadir = Path(datadir)
    if is_mount_point(datadir):
        return Path(tempfile.mkdtemp(prefix=f"{INNER_STAGING_PREFIX}{_stamp()}-", dir=datadir))
    return Path(tempfile.mkdtemp(prefix=f"{datadir.name}{STAGING_INFIX}{_stamp()}-", dir=datadir.parent))


def remove_staging_leftovers(datadir: str | os.PathLike) -> list[Path]:
    """Delete staging directories a killed onStart left behind (never data: a finished one was
    renamed to the datadir, so whatever still carries a staging name is incomplete)."""
    datadir = Path(datadir)
    found: list[Path] = []
    with_names = [(datadir.parent, f"{datadir.name}{STAGING_INFIX}"), (datadir, INNER_STAGING_PREFIX)]
    for directory, prefix in with_names:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found += [directory / name for name in names if name.startswith(prefix) and (directory / name).is_dir()]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
        logger.warning("removed %s: an initialisation or restore that never finished", path)
    return found


def install(built: str | os.PathLike, datadir: str | os.PathLike, mark: "node_state.NodeState") -> None:
    """Make the complete datadir `built` the datadir, with `mark` (the node state) written last.

    One rename when the datadir is an empty directory (or absent); otherwise
    (a mount point, or a datadir holding only lost+found or an old node state
    file) its entries are renamed in one by one and the mark comes last, so an
    interrupted install never looks finished.  DatadirError when it cannot be done.
    """
    built, datadir = Path(built), Path(datadir)
    node_state.save(built, mark.update(complete=True))
    try:
        os.rename(built, datadir)
        fsync_dir(datadir.parent)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY, errno.EXDEV, errno.EINVAL):
            raise DatadirError(f"cannot move the new datadir into {datadir}: {exc.strerror or exc}") from None
    moved: list[Path] = []
    try:
        for name in sorted(os.listdir(built)):
            if name == node_state.FILENAME:
                continue
            os.rename(built / name, datadir / name)
            moved.append(datadir / name)
        fsync_dir(datadir)
        os.replace(built / node_state.FILENAME, node_state.path(datadir))
        fsync_dir(datadir)
    except OSError as exc:
        for path in moved:  # leave the datadir as it was (empty)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise DatadirError(f"moving the new files into {datadir} failed: {exc.strerror or exc}") from None
    shutil.rmtree(built, ignore_errors=True)


def move_aside(datadir: str | os.PathLike, why: str) -> Path:
    """Rename the whole datadir to the sibling `<datadir>.<why>-<stamp>` (kept, never deleted) and
    leave an empty datadir.  All or nothing, on the datadir's own file system: never a copy.

    A mount point cannot be renamed (and a sibling would lie outside the
    volume): DatadirError with what to do instead of a half move.
    """
    datadir = Path(datadir)
    if is_mount_point(datadir):
        raise DatadirError(f"cannot move the data in {datadir} aside ({why}): the datadir is a mount point, so it "
                           f"cannot be renamed and a copy could fill the disk; {MOUNT_ADVICE}, or move the data "
                           f"away by hand")
    aside = datadir.parent / f"{datadir.name}.{why}-{_stamp()}"
    n = 1
    while aside.exists():
        n += 1
        aside = datadir.parent / f"{datadir.name}.{why}-{_stamp()}-{n}"
    mode = datadir.stat().st_mode & 0o7777
    try:
        os.rename(datadir, aside)
    except OSError as exc:
        raise DatadirError(f"cannot move {datadir} aside to {aside}: {exc.strerror or exc}") from None
    datadir.mkdir(mode=mode)
    fsync_dir(datadir.parent)
    return aside


def initialize(config: Config, flavor: Flavor, target: str | os.PathLike | None = None,
               timeout: float = INIT_TIMEOUT) -> None:
    """Create a new, empty server in `target` (default MYSQL_DATADIR; MYSQL_CNF must already be written).

    onStart passes a staging directory (see `new_staging`) and installs it only
    when this succeeded: a failed run never leaves a half datadir behind.
    MariaDB: root@localhost authenticates by unix_socket only until the health
    hook's account setup gives it MYSQL_ROOT_PASSWORD.  MySQL: root@localhost
    with an empty password, reachable only over the local socket until then.
    """
    datadir = Path(target if target is not None else config.mysql_datadir)
    if not is_empty(datadir):
        raise DatadirError(f"refusing to initialise {datadir}: it is not empty")
    datadir.mkdir(parents=True, exist_ok=True)
    chown_mysql(datadir)
    # A private tmpdir: bootstraps running side by side on one host (several nodes, no container)
    # otherwise collide on the temporary tables they create in a shared /tmp (seen: error 1051).
    scratch = Path(tempfile.mkdtemp(prefix="triton-mysql-init-"))
    chown_mysql(scratch)
    argv = flavor.initialize_argv(config.mysql_cnf, config.mysqld) + [f"--datadir={datadir}", f"--tmpdir={scratch}"]
    logger.info("initialising a new datadir in %s (%s)", datadir, " ".join(argv[:1]))
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatadirError(f"{argv[0]} failed: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode != 0:
        lines = result.stdout.strip().splitlines()
        errors = [line for line in lines if "ERROR" in line or "Could not" in line][:5]  # the cause, before the advice
        tail = "\n".join(errors + lines[-15:])
        raise DatadirError(f"{argv[0]} exited {result.returncode}:\n{tail}")
    chown_mysql(datadir)
