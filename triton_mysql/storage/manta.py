"""`manta:///account/stor/path` storage: Joyent/MNX Manta's object API.

Authentication uses the manta SDK's `PrivateKeySigner` (HTTP signature over
the `date` header, `keyId="/<user>/keys/<md5 fingerprint>"`), but the
requests are our own: the SDK's `put_object` reads the whole object into
memory, which a multi-gigabyte snapshot cannot afford.  Objects are sent as
one streaming PUT with chunked transfer encoding; Manta stores an object
only when the request completes, so an aborted upload (connection closed
before the last chunk) leaves nothing visible.  Directories must exist
before objects are put in them: they are created on demand (PUT with
`Content-Type: application/json; type=directory`, idempotent).

The SDK is an optional extra (`pip install 'triton-mysql[manta]'`) and is
imported only when a manta:// URL is used.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
from datetime import datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlparse

from .base import CHUNK, NotFound, ObjectInfo, ObjectReader, ObjectWriter, Storage, StorageError, check_key

MD5_FINGERPRINT = re.compile(r"^(?:MD5:)?((?:[0-9a-f]{2}:){15}[0-9a-f]{2})$", re.IGNORECASE)
LIST_LIMIT = 1000
DIRECTORY_TYPE = "application/json; type=directory"


def load_private_key(pem: bytes, source: str) -> Any:
    """Parse a PEM private key up front: the SDK would prompt for a passphrase
    on a terminal (and hang a hook) when given an encrypted key."""
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise StorageError(f"{source}: the private key is encrypted; use an unencrypted PEM key") from None
    except ValueError:
        raise StorageError(f"{source}: not a PEM private key (RSA, PKCS8 or EC; not the OpenSSH format)") from None


def md5_fingerprint(private_key: Any) -> str:
    """The MD5 fingerprint Manta uses as key id, from the private key's public half."""
    from cryptography.hazmat.primitives import serialization

    ssh = private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(ssh.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def _error_message(status: int, body: bytes) -> str:
    try:
        record = json.loads(body.decode())
        return f"{status} {record.get('code', '')}: {record.get('message', '')}".strip()
    except (ValueError, UnicodeDecodeError, AttributeError):
        text = body.decode(errors="replace").strip().splitlines()
        return f"{status} {text[0][:200] if text else ''}".strip()


class _MantaWriter(ObjectWriter):
    """One streaming PUT with chunked transfer encoding."""

    def __init__(self, storage: "MantaStorage", key: str) -> None:
        super().__init__()
        self.storage, self.key = storage, key
        self.path = storage.object_path(key)
        storage.ensure_directory(self.path.rsplit("/", 1)[0])
        self.conn = storage.connection()
        try:
            self.conn.putrequest("PUT", quote(self.path), skip_accept_encoding=True)
            for name, value in storage.signed_headers({
                "Content-Type": "application/octet-stream",
                "Transfer-Encoding": "chunked",
                "Durability-Level": str(storage.durability),
            }).items():
                self.conn.putheader(name, value)
            self.conn.endheaders()
        except OSError as exc:
            self.conn.close()
            raise StorageError(f"{storage.url}: storing {key} failed: {exc}") from None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        try:
            self.conn.send(b"%x\r\n" % len(data))
            self.conn.send(data)
            self.conn.send(b"\r\n")
        except OSError as exc:
            raise StorageError(f"{self.storage.url}: storing {self.key} failed: {self._early_answer() or exc}") from None
        self.size += len(data)

    def _early_answer(self) -> str:
        """Manta may answer (e.g. 403) before the body is sent: read why."""
        try:
            response = self.conn.getresponse()
            return _error_message(response.status, response.read(4096))
        except Exception:  # noqa: BLE001
            return ""

    def _commit(self) -> None:
        try:
            self.conn.send(b"0\r\n\r\n")
            response = self.conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise StorageError(f"{self.storage.url}: storing {self.key} failed: {exc}") from None
        finally:
            self.conn.close()
        if response.status != 204:
            raise StorageError(f"{self.storage.url}: storing {self.key} failed: {_error_message(response.status, body)}")

    def _abort(self) -> None:
        # Closing before the terminating chunk: Manta never stores a partial object.
        self.conn.close()


class _MantaReader(ObjectReader):
    def __init__(self, storage: "MantaStorage", key: str) -> None:
        self.storage, self.key = storage, key
        self.conn, self.response = storage.request("GET", storage.object_path(key), stream=True)
        if self.response.status == 404:
            self.close()
            raise NotFound(f"{storage.url}: {key} does not exist")
        if self.response.status != 200:
            body = self.response.read(4096)
            self.close()
            raise StorageError(f"{storage.url}: reading {key} failed: {_error_message(self.response.status, body)}")
        length = self.response.getheader("Content-Length")
        self.size = int(length) if length and length.isdigit() else None

    def read(self, n: int = CHUNK) -> bytes:
        try:
            return self.response.read(n)
        except (OSError, http.client.HTTPException) as exc:
            raise StorageError(f"{self.storage.url}: reading {self.key} failed: {exc}") from None

    def close(self) -> None:
        self.conn.close()


class MantaStorage(Storage):
    """Objects under a Manta directory, e.g. manta:///account/stor/backups."""

    def __init__(self, url: str, *, manta_url: str, user: str, key_id: str | None, private_key: bytes,
                 key_source: str = "MANTA_PRIVATE_KEY", timeout: float = 60.0, durability: int = 2,
                 verify_tls: bool = True) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "manta" or parsed.netloc or not re.match(r"^/[^/]+/(stor|public)(/|$)", parsed.path):
            raise StorageError(f"{url}: not a manta:///account/stor/path URL")
        self.url = url.rstrip("/")
        self.root = unquote(parsed.path).rstrip("/")
        endpoint = urlparse(manta_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise StorageError(f"MANTA_URL: must be an http:// or https:// URL (got {manta_url!r})")
        self.endpoint = endpoint
        self.user = user
        self.timeout = timeout
        self.durability = durability
        self.verify_tls = verify_tls
        key = load_private_key(private_key, key_source)
        match = MD5_FINGERPRINT.match(key_id or "")
        self.fingerprint = match.group(1).lower() if match else md5_fingerprint(key)
        try:
            from manta.auth import PrivateKeySigner
        except ImportError:
            raise StorageError("manta:// storage needs the manta package: pip install 'triton-mysql[manta]'") from None
        self.signer = PrivateKeySigner(self.fingerprint, private_key)
        self._directories: set[str] = set()

    # -- HTTP ------------------------------------------------------------------
    def connection(self) -> http.client.HTTPConnection:
        host, port = self.endpoint.hostname, self.endpoint.port
        if self.endpoint.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def signed_headers(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """`headers` plus Date and the Authorization signature (as the SDK builds them)."""
        out = dict(headers or {})
        out["Date"] = formatdate(usegmt=True)
        algorithm, fingerprint, signature = self.signer.sign(f"date: {out['Date']}".encode())
        out["Authorization"] = (f'Signature keyId="/{self.user}/keys/{fingerprint}",'
                                f'algorithm="{algorithm}",signature="{signature.decode()}"')
        out["User-Agent"] = "triton-mysql"
        return out

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, body: bytes | None = None,
                stream: bool = False) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One signed request.  With `stream`, the caller reads and closes; otherwise the
        body is read and the connection closed (the body is then in `response.data`)."""
        target = quote(path) + ("?" + urlencode(query) if query else "")
        conn = self.connection()
        try:
            conn.request(method, target, body=body, headers=self.signed_headers(headers))
            response = conn.getresponse()
            if not stream:
                response.data = response.read()  # type: ignore[attr-defined]
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise StorageError(f"{self.url}: {method} {path} failed: {exc or type(exc).__name__}") from None
        return conn, response

    def _simple(self, method: str, path: str, **kwargs: Any) -> http.client.HTTPResponse:
        return self.request(method, path, **kwargs)[1]

    # -- paths -------------------------------------------------------------------
    def object_path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def ensure_directory(self, directory: str) -> None:
        """PUT every missing directory from below /<account>/stor down to `directory`."""
        if directory in self._directories:
            return
        parts = directory.strip("/").split("/")
        for depth in range(3, len(parts) + 1):  # /account/stor always exists
            path = "/" + "/".join(parts[:depth])
            if path in self._directories:
                continue
            response = self._simple("PUT", path, headers={"Content-Type": DIRECTORY_TYPE})
            if response.status not in (200, 204):
                raise StorageError(f"{self.url}: creating directory {path} failed: "
                                   f"{_error_message(response.status, response.data)}")  # type: ignore[attr-defined]
            self._directories.add(path)

    # -- the contract ------------------------------------------------------------
    def open_write(self, key: str) -> ObjectWriter:
        return _MantaWriter(self, key)

    def open_read(self, key: str) -> ObjectReader:
        return _MantaReader(self, key)

    def _list_directory(self, path: str) -> list[dict[str, Any]] | None:
        """Every entry of one directory (None when it does not exist), following the marker."""
        entries: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            query: dict[str, Any] = {"limit": LIST_LIMIT}
            if marker:
                query["marker"] = marker
            response = self._simple("GET", path, query=query)
            if response.status == 404:
                return None
            if response.status != 200:
                raise StorageError(f"{self.url}: listing {path} failed: "
                                   f"{_error_message(response.status, response.data)}")  # type: ignore[attr-defined]
            page = []
            for line in response.data.splitlines():  # type: ignore[attr-defined]
                if line.strip():
                    try:
                        page.append(json.loads(line))
                    except ValueError:
                        raise StorageError(f"{self.url}: listing {path} returned a malformed entry") from None
            full = len(page) >= LIST_LIMIT
            if marker and page and page[0].get("name") == marker:
                page = page[1:]  # the marker entry itself is repeated
            entries.extend(page)
            if not full or not page:
                return entries
            marker = page[-1].get("name")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        self._walk(self.root, "", prefix, out)
        out.sort(key=lambda info: info.key)
        return out

    def _walk(self, path: str, rel: str, prefix: str, out: list[ObjectInfo]) -> None:
        entries = self._list_directory(path)
        if entries is None:
            return
        for entry in entries:
            name = entry.get("name", "")
            key = f"{rel}{name}"
            if entry.get("type") == "directory":
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    self._walk(f"{path}/{name}", sub, prefix, out)
            elif key.startswith(prefix):
                out.append(ObjectInfo(key, int(entry.get("size", 0)), _mtime(entry.get("mtime"))))

    def delete(self, key: str) -> None:
        response = self._simple("DELETE", self.object_path(key))
        if response.status not in (204, 404):
            raise StorageError(f"{self.url}: deleting {key} failed: "
                               f"{_error_message(response.status, response.data)}")  # type: ignore[attr-defined]

    def delete_prefix(self, prefix: str) -> int:
        count = super().delete_prefix(prefix)
        if prefix.endswith("/") and prefix.strip("/"):
            path = f"{self.root}/{prefix.strip('/')}"
            response = self._simple("DELETE", path)  # an empty directory; 404/400 are fine
            if response.status in (204, 404):
                self._directories.discard(path)
        return count

    def exists(self, key: str) -> bool:
        response = self._simple("HEAD", self.object_path(key))
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        raise StorageError(f"{self.url}: checking {key} failed: HTTP {response.status}")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self.object_path(key)
        self.ensure_directory(path.rsplit("/", 1)[0])
        response = self._simple("PUT", path, body=data, headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
            "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "If-None-Match": "*",
            "Durability-Level": str(self.durability),
        })
        if response.status == 204:
            return True
        if response.status == 412:
            return False
        raise StorageError(f"{self.url}: creating {key} failed: "
                           f"{_error_message(response.status, response.data)}")  # type: ignore[attr-defined]


def _mtime(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def from_config(url: str, config: Any) -> MantaStorage:
    """A MantaStorage from the MANTA_* settings (the key from MANTA_PRIVATE_KEY or MANTA_KEY_PATH)."""
    if config.manta_private_key:
        pem, source = config.manta_private_key.encode(), "MANTA_PRIVATE_KEY"
    elif config.manta_key_path:
        try:
            with open(config.manta_key_path, "rb") as f:
                pem = f.read()
        except OSError as exc:
            raise StorageError(f"MANTA_KEY_PATH: cannot read {config.manta_key_path}: {exc.strerror or exc}") from None
        source = "MANTA_KEY_PATH"
    else:
        raise StorageError("MANTA_PRIVATE_KEY: set MANTA_PRIVATE_KEY or MANTA_KEY_PATH for a manta:// URL")
    if not config.manta_url or not config.manta_user:
        raise StorageError("MANTA_URL and MANTA_USER are required for a manta:// URL")
    return MantaStorage(url, manta_url=config.manta_url, user=config.manta_user, key_id=config.manta_key_id,
                        private_key=pem, key_source=source)


__all__ = ["MantaStorage", "from_config", "md5_fingerprint", "load_private_key"]
