"""The storage contract: a flat namespace of objects under one root URL.

Snapshots are large (gigabytes) and must never be staged locally, so the
interface is built on streams: `open_write` returns a writer that accepts
chunks and makes the object visible only on `commit()` (a partial object is
never visible: a reader sees the whole object or nothing), and `open_read`
returns a reader with `read(n)`.  Everything else (`list`, `delete`,
`exists`, `create_exclusive`) is small.

Keys are relative to the root (`<snapshot-id>/manifest.json`), use '/' as
the separator and never start with '/'.  One backend per module
(`local.py`, `s3.py`, `manta.py`) translates this contract; callers never see
a backend's own errors: every failure is a `StorageError` whose message names
the backend's URL and the operation, in one line.
"""
from __future__ import annotations

import abc
import posixpath
from dataclasses import dataclass
from typing import Iterable, Iterator

#: Chunk size for streamed reads and copies.
CHUNK = 1 << 20


class StorageError(Exception):
    """Talking to the object store failed (one line, no secret)."""


class NotFound(StorageError):
    """The object does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as listed."""

    key: str
    size: int
    mtime: float
    """Unix epoch seconds (last modification), 0.0 when the backend does not say."""


class ObjectWriter(abc.ABC):
    """A new object being written.  Invisible until `commit()`.

    Use as a context manager: leaving the block without `commit()` (an
    exception, an early return) aborts, so a failed upload leaves nothing
    behind where the backend allows it.
    """

    def __init__(self) -> None:
        self.size = 0
        self.done = False

    @abc.abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data` (the writer may keep a bounded buffer)."""

    @abc.abstractmethod
    def _commit(self) -> None:
        """Flush and make the object visible atomically."""

    @abc.abstractmethod
    def _abort(self) -> None:
        """Discard what was written; must not raise."""

    def commit(self) -> None:
        if self.done:
            raise StorageError("object already committed or aborted")
        try:
            self._commit()
        except BaseException:
            self.abort()
            raise
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self._abort()
        except Exception:  # noqa: BLE001 - abort is best effort by contract
            pass

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.done:
            self.abort()


class ObjectReader(abc.ABC):
    """An object being read: `read(n)` returns b"" at the end."""

    size: int | None = None
    """The object's size as the backend announced it (None if unknown)."""

    @abc.abstractmethod
    def read(self, n: int = CHUNK) -> bytes:
        """Up to `n` bytes; b"" at the end of the object."""

    def close(self) -> None:
        """Release the connection/file."""

    def __enter__(self) -> "ObjectReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return
            yield chunk


class Storage(abc.ABC):
    """Abstract object store rooted at `url`."""

    url: str

    # -- the contract --------------------------------------------------------
    @abc.abstractmethod
    def open_write(self, key: str) -> ObjectWriter:
        """A writer for a new object `key` (replaces an existing one on commit)."""

    @abc.abstractmethod
    def open_read(self, key: str) -> ObjectReader:
        """A reader for `key`; raises NotFound when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every complete object whose key starts with `prefix` (recursively), sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object; an absent object is fine."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True when the object exists."""

    @abc.abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create `key` with `data` only if it does not exist yet; True if this
        call created it.  Atomic where the backend can do it (file: link(2);
        S3: `If-None-Match: *`; Manta: `If-None-Match: *`), so that two
        writers racing for the same key cannot both win."""

    # -- helpers built on the contract ----------------------------------------
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store every chunk as one object; returns its size."""
        with self.open_write(key) as writer:
            for chunk in chunks:
                writer.write(chunk)
            writer.commit()
            return writer.size

    def get_stream(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks (NotFound when absent)."""
        with self.open_read(key) as reader:
            while True:
                chunk = reader.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, [data])

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get_stream(key))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (e.g. a snapshot's directory); returns the count."""
        objects = self.list(prefix)
        for info in objects:
            self.delete(info.key)
        return len(objects)

    def directories(self) -> list[str]:
        """Names of the top-level "directories" (first key component), sorted."""
        names = {info.key.split("/", 1)[0] for info in self.list("") if "/" in info.key}
        return sorted(names)

    # -- housekeeping ----------------------------------------------------------
    def abandoned_uploads(self) -> list[tuple[str, str, float]]:
        """Uploads a killed writer began and the store keeps (and bills) until told to drop them:
        (key as the store names it, upload id, when it began).  Retention aborts old ones.

        Only S3's multipart uploads are such; a backend whose unfinished writes
        the store does not keep has none (the default)."""
        return []

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop one of `abandoned_uploads()` (best effort: housekeeping never fails a snapshot)."""

    def describe(self) -> str:
        """The root URL (never with credentials: none are ever part of it)."""
        return self.url

    def close(self) -> None:
        """Release client resources."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def check_key(key: str) -> str:
    """Refuse keys that could escape the root (absolute, '..', empty parts)."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise StorageError(f"invalid object key {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"invalid object key {key!r}")
    if posixpath.normpath(key) != key:
        raise StorageError(f"invalid object key {key!r}")
    return key
