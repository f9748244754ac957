"""`s3://bucket/prefix` storage through boto3.

Uploads are streamed as a multipart upload with bounded memory: the writer
fills one part buffer (8 MiB at first) and hands full parts to three
uploader threads through a queue of at most two parts, so at most ~6 parts
are ever in memory and reading the backup stream overlaps with the network.  Part sizes
grow (8 → 16 → 32 → 64 MiB every 1000 parts) so that S3's 10 000-part limit
allows objects of ~500 GB.  An object smaller than one part is sent with a
single PutObject.  S3 makes an object visible only when its upload
completes, so a failed upload (aborted here, or abandoned by a killed
process) is never visible.

Credentials and region come from boto3's usual chain (`AWS_*` variables,
profiles, instance roles); `S3_ENDPOINT_URL` points at S3-compatible servers.
The bucket is created only when `S3_CREATE_BUCKET=true`; otherwise a missing
bucket is a clear error.
"""
from __future__ import annotations

import queue
import threading
from typing import Any
from urllib.parse import urlparse

from .base import CHUNK, NotFound, ObjectInfo, ObjectReader, ObjectWriter, Storage, StorageError, check_key

MIB = 1 << 20
PART_SIZES = ((1000, 8 * MIB), (2000, 16 * MIB), (3000, 32 * MIB))
MAX_PART = 64 * MIB
QUEUE_PARTS = 2
UPLOAD_THREADS = 3


_M_MMAP_THRESHOLD = -3
_allocator_bounded = False


def _bound_allocator() -> None:
    """Keep part-sized buffers out of glibc's heaps (Linux; once per process).

    glibc raises its mmap threshold after the first large free, so 8 MiB parts
    then come from per-thread heaps that keep freed memory: the process's RSS
    creeps up with several uploader threads.  A fixed 4 MiB threshold keeps
    every part mmapped and returned on free (the 1 MiB reads stay on the heap).
    """
    global _allocator_bounded
    if _allocator_bounded:
        return
    _allocator_bounded = True
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass


def part_size_for(part_number: int) -> int:
    """Size of part `part_number` (1-based): grows so 10 000 parts hold ~500 GB."""
    for last, size in PART_SIZES:
        if part_number <= last:
            return size
    return MAX_PART


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', '?')}: {error.get('Message', '') or 'no message'}".rstrip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class _Uploader:
    """A few threads uploading parts from one bounded queue, in the background.

    Parts go up concurrently (S3 accepts them in any order; the completion
    lists them by number), which keeps the upload from being one round trip
    per part behind the backup stream.
    """

    def __init__(self, writer: "_S3Writer", workers: int = UPLOAD_THREADS) -> None:
        self.writer = writer
        self.parts: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=QUEUE_PARTS)
        self.done: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self.threads = [threading.Thread(target=self._run, name=f"s3-upload-{i}", daemon=True) for i in range(workers)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def finish(self, timeout: float | None = None) -> None:
        """Tell every worker to stop after the queued parts, and wait for them."""
        for _ in self.threads:
            self.parts.put(None)
        for thread in self.threads:
            thread.join(timeout)

    def cancel(self) -> None:
        """Stop as soon as possible, dropping queued parts (a part in flight finishes first)."""
        self.cancelled.set()
        while True:
            try:
                self.parts.get_nowait()
            except queue.Empty:
                break
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        w = self.writer
        while not self.cancelled.is_set():
            try:
                item = self.parts.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            number, body = item
            if self.error is not None:
                continue  # drain so the producer never blocks
            try:
                answer = w.client.upload_part(Bucket=w.bucket, Key=w.full_key, UploadId=w.upload_id,
                                              PartNumber=number, Body=body)
                self.done.append({"PartNumber": number, "ETag": answer["ETag"]})
            except Exception as exc:  # noqa: BLE001 - reported by the producer
                self.error = exc


class _S3Writer(ObjectWriter):
    def __init__(self, storage: "S3Storage", key: str) -> None:
        super().__init__()
        self.storage = storage
        self.client = storage.client
        self.bucket = storage.bucket
        self.key = key
        self.full_key = storage.full_key(key)
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.part_number = 0
        _bound_allocator()
        self.upload_id: str | None = None
        self.uploader: _Uploader | None = None

    def _fail(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(f"{self.storage.url}: {what} {self.key} failed: {_describe(exc)}")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Chunks are collected and joined once per part: one copy of each byte.
        data = data if isinstance(data, bytes) else bytes(data)
        self.size += len(data)
        while data:
            need = part_size_for(self.part_number + 1) - self.pending_size
            if len(data) < need:
                self.pending.append(data)
                self.pending_size += len(data)
                return
            self.pending.append(data[:need] if len(data) > need else data)
            data = data[need:]
            part = b"".join(self.pending)
            self.pending, self.pending_size = [], 0
            self._send_part(part)

    def _send_part(self, part: bytes) -> None:
        if self.upload_id is None:
            self.storage.ensure_bucket()
            try:
                answer = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.full_key)
            except Exception as exc:  # noqa: BLE001
                raise self._fail("starting the upload of", exc) from None
            self.upload_id = answer["UploadId"]
            self.uploader = _Uploader(self)
            self.uploader.start()
        assert self.uploader is not None
        if self.uploader.error is not None:
            raise self._fail("uploading", self.uploader.error)
        self.part_number += 1
        # Blocks while two parts are queued: this is what bounds memory.
        while True:
            try:
                self.uploader.parts.put((self.part_number, part), timeout=1.0)
                return
            except queue.Full:
                if self.uploader.error is not None:
                    raise self._fail("uploading", self.uploader.error) from None
                if not self.uploader.is_alive():
                    raise StorageError(f"{self.storage.url}: uploader of {self.key} stopped")

    def _commit(self) -> None:
        if self.upload_id is None:
            self.storage.ensure_bucket()
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.full_key, Body=b"".join(self.pending))
            except Exception as exc:  # noqa: BLE001
                raise self._fail("storing", exc) from None
            self.pending, self.pending_size = [], 0
            return
        if self.pending:
            self._send_part(b"".join(self.pending))
            self.pending, self.pending_size = [], 0
        assert self.uploader is not None
        self.uploader.finish()
        if self.uploader.error is not None:
            raise self._fail("uploading", self.uploader.error)
        parts = sorted(self.uploader.done, key=lambda p: p["PartNumber"])
        try:
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.full_key, UploadId=self.upload_id,
                                                  MultipartUpload={"Parts": parts})
        except Exception as exc:  # noqa: BLE001
            raise self._fail("completing the upload of", exc) from None

    def _abort(self) -> None:
        self.pending, self.pending_size = [], 0
        if self.uploader is not None:
            self.uploader.cancel()
        if self.upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.full_key, UploadId=self.upload_id)


class _S3Reader(ObjectReader):
    def __init__(self, storage: "S3Storage", key: str) -> None:
        try:
            answer = storage.client.get_object(Bucket=storage.bucket, Key=storage.full_key(key))
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"{storage.url}: {key} does not exist") from None
            if _error_code(exc) == "NoSuchBucket":  # missing storage is an error, not a missing object
                if storage.create_bucket:
                    raise NotFound(f"{storage.url}: bucket {storage.bucket} does not exist yet") from None
                raise StorageError(f"{storage.url}: bucket {storage.bucket} does not exist (create it, or set "
                                   f"S3_CREATE_BUCKET=true)") from None
            raise StorageError(f"{storage.url}: reading {key} failed: {_describe(exc)}") from None
        self.body = answer["Body"]
        self.size = int(answer.get("ContentLength", 0))
        self.storage, self.key = storage, key

    def read(self, n: int = CHUNK) -> bytes:
        try:
            return self.body.read(n)
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"{self.storage.url}: reading {self.key} failed: {_describe(exc)}") from None

    def close(self) -> None:
        try:
            self.body.close()
        except Exception:  # noqa: BLE001
            pass


class S3Storage(Storage):
    """Objects under `s3://bucket/prefix/`."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, create_bucket: bool = False) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"{url}: not an s3://bucket/prefix URL")
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url
        self.create_bucket = create_bucket
        self._client = None
        self._bucket_checked = False
        self._lock = threading.Lock()

    # -- client ----------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config as BotoConfig
            except ImportError:  # pragma: no cover - boto3 is a hard dependency
                raise StorageError("s3:// storage needs boto3 (pip install boto3)") from None
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url,
                # Integrity is end to end (the manifest's sha256, verified by every restore), so
                # the SDK's own per-request checksums are only computed where S3 requires them.
                config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"},
                                  connect_timeout=10, read_timeout=120, max_pool_connections=UPLOAD_THREADS + 2,
                                  request_checksum_calculation="when_required",
                                  response_checksum_validation="when_required"),
            )
        return self._client

    def full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def ensure_bucket(self) -> None:
        """Check the bucket once; create it only when S3_CREATE_BUCKET allows it."""
        with self._lock:
            if self._bucket_checked:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except Exception as exc:  # noqa: BLE001
                if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageError(f"{self.url}: cannot reach bucket {self.bucket}: {_describe(exc)}") from None
                if not self.create_bucket:
                    raise StorageError(f"{self.url}: bucket {self.bucket} does not exist "
                                       f"(create it, or set S3_CREATE_BUCKET=true)") from None
                try:
                    self.client.create_bucket(Bucket=self.bucket, **self._location())
                except Exception as exc2:  # noqa: BLE001
                    if _error_code(exc2) not in ("BucketAlreadyOwnedByYou",):
                        raise StorageError(f"{self.url}: creating bucket {self.bucket} failed: "
                                           f"{_describe(exc2)}") from None
            self._bucket_checked = True

    def _location(self) -> dict[str, Any]:
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            return {"CreateBucketConfiguration": {"LocationConstraint": region}}
        return {}

    # -- the contract ------------------------------------------------------------
    def open_write(self, key: str) -> ObjectWriter:
        check_key(key)
        return _S3Writer(self, key)

    def open_read(self, key: str) -> ObjectReader:
        return _S3Reader(self, key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""
        out: list[ObjectInfo] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(base):]
                    if not key or key.endswith("/"):
                        continue
                    out.append(ObjectInfo(key, int(item["Size"]), item["LastModified"].timestamp()))
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) == "NoSuchBucket":
                if self.create_bucket:
                    return []  # created with the first object (the cluster marker checks the rest)
                raise StorageError(f"{self.url}: bucket {self.bucket} does not exist (create it, or set "
                                   f"S3_CREATE_BUCKET=true)") from None
            raise StorageError(f"{self.url}: listing failed: {_describe(exc)}") from None
        out.sort(key=lambda info: info.key)
        return out

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket"):
                return
            raise StorageError(f"{self.url}: deleting {key} failed: {_describe(exc)}") from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
            return True
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                self._require_bucket()  # a HEAD cannot tell a missing object from a missing bucket
                return False
            raise StorageError(f"{self.url}: checking {key} failed: {_describe(exc)}") from None

    def _require_bucket(self) -> None:
        """StorageError when the bucket is missing, unless S3_CREATE_BUCKET allows creating it later."""
        if self._bucket_checked or self.create_bucket:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"{self.url}: bucket {self.bucket} does not exist (create it, or set "
                                   f"S3_CREATE_BUCKET=true)") from None
            raise StorageError(f"{self.url}: cannot reach bucket {self.bucket}: {_describe(exc)}") from None
        self._bucket_checked = True

    def create_exclusive(self, key: str, data: bytes) -> bool:
        self.ensure_bucket()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.full_key(key), Body=data, IfNoneMatch="*")
            return True
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise StorageError(f"{self.url}: creating {key} failed: {_describe(exc)}") from None

    def abandoned_uploads(self) -> list[tuple[str, str, float]]:
        """(key, upload id, started) of multipart uploads under the prefix that were never finished."""
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        try:
            answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=base)
        except Exception:  # noqa: BLE001 - housekeeping only
            return found
        for upload in answer.get("Uploads", []):
            found.append((upload["Key"], upload["UploadId"], upload["Initiated"].timestamp()))
        return found

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - housekeeping only
            pass
