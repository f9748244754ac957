"""`file://` storage: a directory tree on a local (or mounted) file system.

A root directory that does not exist is an error for every read (`list`,
`exists`, `open_read`), never "no snapshots": an unmounted or mistyped volume
must not look like an empty one (issue 13 item 9).  Writes create the
directories they need (an export to a new directory); the cluster's own root
is checked through its marker first (storage/marker.py).

Atomicity comes from the file system: an object is written to a hidden
temporary name in its final directory and renamed into place on commit, so a
reader (or `list`) never sees a partial object, and a killed writer leaves at
most a hidden temporary file that `list` ignores.  `create_exclusive` uses
link(2), which fails when the name exists: exactly one of several racing
writers wins, and the winner's content is complete the moment it appears.

Permissions: a snapshot is a full copy of the database, password hashes
included.  Directories this module creates are 0700 and objects 0600 (owner:
the user the hooks run as), whatever the umask: no other local user can read
them.  A root directory that already exists (a mounted volume) keeps its mode.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..files import fsync_dir
from .base import CHUNK, NotFound, ObjectInfo, ObjectReader, ObjectWriter, Storage, StorageError, check_key

TMP_MARK = ".tmp-"
WRITEBACK_EVERY = 16 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range():
    """libc's sync_file_range (Linux), or None.  Starting the writeback of what was
    written as the stream goes makes the final fsync short instead of flushing a
    whole snapshot at once."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
        function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        return function
    except (OSError, AttributeError):
        return None


_writeback = _sync_file_range()


DIR_MODE = 0o700
FILE_MODE = 0o600


def _mkdirs(path: Path) -> None:
    """mkdir -p with mode 0700 for every directory created (Path.mkdir applies `mode` to the last only)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)  # the umask may have taken bits away; never adds any back


def _create(path: Path) -> int:
    """A new file opened for writing, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def _is_temp(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


class _FileWriter(ObjectWriter):
    def __init__(self, storage: "LocalStorage", key: str) -> None:
        super().__init__()
        self.storage = storage
        self.final = storage.path(key)
        try:
            _mkdirs(self.final.parent)
            self.temp = self.final.parent / f".{self.final.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
            self.file = open(_create(self.temp), "wb", buffering=0)
        except OSError as exc:
            raise StorageError(f"{storage.url}: cannot create {key}: {exc.strerror or exc}") from None
        self.key = key
        self.flushed = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            view = memoryview(data)
            while view:
                n = self.file.write(view)
                view = view[n:]
        except OSError as exc:
            raise StorageError(f"{self.storage.url}: writing {self.key} failed: {exc.strerror or exc}") from None
        self.size += len(data)
        if _writeback is not None and self.size - self.flushed >= WRITEBACK_EVERY:
            _writeback(self.file.fileno(), self.flushed, self.size - self.flushed, _SYNC_FILE_RANGE_WRITE)
            self.flushed = self.size

    def _commit(self) -> None:
        try:
            os.fsync(self.file.fileno())
            self.file.close()
            os.rename(self.temp, self.final)
            fsync_dir(self.final.parent)
        except OSError as exc:
            raise StorageError(f"{self.storage.url}: storing {self.key} failed: {exc.strerror or exc}") from None

    def _abort(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


class _FileReader(ObjectReader):
    def __init__(self, path: Path, key: str, url: str) -> None:
        try:
            self.file = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise NotFound(f"{url}: {key} does not exist") from None
        except OSError as exc:
            raise StorageError(f"{url}: cannot open {key}: {exc.strerror or exc}") from None
        self.size = os.fstat(self.file.fileno()).st_size
        self.key, self.url = key, url

    def read(self, n: int = CHUNK) -> bytes:
        try:
            return self.file.read(n)
        except OSError as exc:
            raise StorageError(f"{self.url}: reading {self.key} failed: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.file.close()


class LocalStorage(Storage):
    """Objects are files below `root`; keys map to relative paths."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise StorageError(f"{url}: not a file:///absolute/path URL")
        self.url = url.rstrip("/") if parsed.path != "/" else url
        self.root = Path(unquote(parsed.path))

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def require_root(self) -> None:
        """StorageError unless the root directory exists (and is a directory we can read)."""
        try:
            if os.path.isdir(self.root):
                os.listdir(self.root)
                return
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot read the storage root {self.root}: "
                               f"{exc.strerror or exc}") from None
        raise StorageError(f"{self.url}: the storage root {self.root} does not exist (is its volume mounted? "
                           f"create the directory for a new cluster)")

    def open_write(self, key: str) -> ObjectWriter:
        return _FileWriter(self, key)

    def open_read(self, key: str) -> ObjectReader:
        path = self.path(key)
        self.require_root()
        return _FileReader(path, key, self.url)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        self.require_root()
        # Walk only the part of the tree the prefix can match.
        start = self.root
        if "/" in prefix:
            start = self.root / prefix.rsplit("/", 1)[0]
            if not start.is_dir():
                return out
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if _is_temp(name):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                out.append(ObjectInfo(key, st.st_size, st.st_mtime))
        out.sort(key=lambda info: info.key)
        return out

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"{self.url}: deleting {key} failed: {exc.strerror or exc}") from None
        self._remove_empty_parents(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        count = super().delete_prefix(prefix)
        # Also sweep temporary leftovers of killed writers under a directory prefix.
        if prefix.endswith("/"):
            directory = self.root / prefix.rstrip("/")
            if directory.is_dir() and directory != self.root:
                shutil.rmtree(directory, ignore_errors=True)
        return count

    def _remove_empty_parents(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def exists(self, key: str) -> bool:
        path = self.path(key)
        self.require_root()
        return path.is_file()

    def create_exclusive(self, key: str, data: bytes) -> bool:
        final = self.path(key)
        try:
            _mkdirs(final.parent)
            temp = final.parent / f".{final.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
            with open(_create(temp), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot create {key}: {exc.strerror or exc}") from None
        try:
            os.link(temp, final)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise StorageError(f"{self.url}: cannot create {key}: {exc.strerror or exc}") from None
        finally:
            temp.unlink(missing_ok=True)
