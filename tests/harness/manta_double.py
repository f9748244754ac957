"""A small HTTP double of Manta's object API, for the manta:// storage tests.

No Manta service is reachable here, so this double answers the subset of the
API triton-mysql uses, the way Manta does, and checks authentication the way
Manta does: every request needs a `Date` header (within 5 minutes) and an
`Authorization: Signature keyId="/<account>/keys/<md5>",algorithm=…,
signature=…` header whose signature over `date: <Date>` verifies against the
account's registered *public* key (the private key is only handed to the
client).  Anything else is 401/403, like Manta.

API subset:
- PUT /<account>/stor/… with `Content-Type: application/json; type=directory`
  creates a directory (204, idempotent; the parent must exist).
- PUT of an object (Content-Length or chunked transfer encoding; the parent
  directory must exist; `If-None-Match: *` → 412 when it exists) → 204.  The
  object is stored only when the whole body arrived.
- GET of an object (streamed, Content-Length, Content-MD5); GET of a
  directory → JSON lines (`name`, `type`, `mtime`, `size`), `limit`/`marker`.
- HEAD → 200/404.  DELETE of an object → 204; of a directory → 204 when
  empty, 400 `DirectoryNotEmpty` otherwise.

`requests` records (method, path, headers) of every authenticated request,
so tests can check e.g. that uploads were streamed (chunked).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

SIGNATURE_RE = re.compile(r'^Signature keyId="([^"]+)",algorithm="([^"]+)",signature="([^"]+)"$')
DIRECTORY_TYPE = "application/json; type=directory"
CLOCK_SKEW = 300


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Node:
    directory: bool
    data: bytes = b""
    mtime: str = field(default_factory=_now_iso)
    content_type: str = "application/octet-stream"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    chunked: bool = False
    body_size: int = 0


def generate_key() -> tuple[bytes, Any, str]:
    """(private PEM bytes, public key object, MD5 fingerprint) of a fresh RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = key.public_key()
    ssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.md5(base64.b64decode(ssh.split()[1])).hexdigest()
    return pem, public, ":".join(digest[i:i + 2] for i in range(0, 32, 2))


class MantaDouble:
    """The double's state and server; start() runs it on a thread on a free loopback port."""

    def __init__(self, account: str = "tester") -> None:
        self.account = account
        self.private_key_pem, public_key, self.fingerprint = generate_key()
        self.keys: dict[str, Any] = {f"/{account}/keys/{self.fingerprint}": public_key}
        self.tree: dict[str, _Node] = {
            f"/{account}": _Node(True), f"/{account}/stor": _Node(True), f"/{account}/public": _Node(True),
        }
        self.requests: list[Recorded] = []
        self.rejected: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> "MantaDouble":
        double = self

        class Handler(_Handler):
            manta = double

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="manta-double", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self, path: str = "stor/backups") -> dict[str, str]:
        """What triton-mysql needs to use this double (`BACKUP_URL` included)."""
        return {
            "BACKUP_URL": f"manta:///{self.account}/{path}",
            "MANTA_URL": self.url,
            "MANTA_USER": self.account,
            "MANTA_KEY_ID": self.fingerprint,
            "MANTA_PRIVATE_KEY": self.private_key_pem.decode(),
        }

    # -- inspection -------------------------------------------------------------
    def objects(self) -> dict[str, bytes]:
        with self.lock:
            return {path: node.data for path, node in self.tree.items() if not node.directory}

    def corrupt(self, path: str, offset: int) -> None:
        """Flip one byte of a stored object (for verification tests)."""
        with self.lock:
            node = self.tree[path]
            data = bytearray(node.data)
            data[offset] ^= 0xFF
            node.data = bytes(data)

    # -- authentication ---------------------------------------------------------
    def check_auth(self, headers: Any) -> tuple[int, str] | None:
        """None when the request is properly signed, else (status, Manta error code)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding

        date = headers.get("Date") or headers.get("x-date")
        auth = headers.get("Authorization")
        if not date or not auth:
            return 401, "InvalidCredentials"
        try:
            when = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return 400, "InvalidHeader"
        if abs(when - time.time()) > CLOCK_SKEW:
            return 403, "RequestExpired"
        match = SIGNATURE_RE.match(auth)
        if not match:
            return 401, "InvalidSignature"
        key_id, algorithm, signature = match.groups()
        public = self.keys.get(key_id)
        if public is None:
            return 403, "KeyDoesNotExist"
        try:
            key_type, hash_name = algorithm.lower().split("-", 1)
            hash_class = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
                          "sha512": hashes.SHA512}[hash_name]
            raw = base64.b64decode(signature)
            message = f"date: {date}".encode()
            if key_type == "rsa":
                public.verify(raw, message, padding.PKCS1v15(), hash_class())
            elif key_type == "ecdsa":
                public.verify(raw, message, ec.ECDSA(hash_class()))
            else:
                return 401, "InvalidAlgorithm"
        except (ValueError, KeyError, InvalidSignature, TypeError):
            return 403, "InvalidSignature"
        return None


class _Handler(BaseHTTPRequestHandler):
    manta: MantaDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # -- helpers ------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str = "") -> None:
        body = json.dumps({"code": code, "message": message or code}).encode()
        self._send(status, body, {"Content-Type": "application/json"})

    def _path(self) -> tuple[str, dict[str, list[str]]]:
        parsed = urlparse(self.path)
        path = unquote(parsed.path).rstrip("/") or "/"
        return path, parse_qs(parsed.query)

    def _authorized(self) -> bool:
        problem = self.manta.check_auth(self.headers)
        if problem is not None:
            self.manta.rejected.append((problem[0], self.path))
            self._drain_body()
            self.close_connection = True
            self._error(problem[0], problem[1])
            return False
        return True

    def _drain_body(self) -> None:
        try:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._read_chunked()
            elif self.headers.get("Content-Length"):
                self.rfile.read(int(self.headers["Content-Length"]))
        except Exception:  # noqa: BLE001
            pass

    def _read_chunked(self) -> bytes | None:
        """The whole chunked body, or None when the client stopped before the last chunk."""
        parts = []
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while True:  # trailers up to the empty line
                    trailer = self.rfile.readline()
                    if not trailer:
                        return None
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(parts)
            data = self.rfile.read(size)
            if len(data) < size:
                return None
            parts.append(data)
            if self.rfile.read(2) != b"\r\n":
                return None

    def _record(self, chunked: bool = False, size: int = 0) -> None:
        path, _ = self._path()
        self.manta.requests.append(Recorded(self.command, path, dict(self.headers.items()), chunked, size))

    def _parent_exists(self, path: str) -> bool:
        parent = path.rsplit("/", 1)[0] or "/"
        node = self.manta.tree.get(parent)
        return node is not None and node.directory

    # -- verbs ----------------------------------------------------------------------
    def do_PUT(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        path, _ = self._path()
        content_type = self.headers.get("Content-Type", "")
        if content_type.replace(" ", "") == DIRECTORY_TYPE.replace(" ", ""):
            self._drain_body()
            self._record()
            with self.manta.lock:
                if not self._parent_exists(path):
                    return self._error(404, "DirectoryDoesNotExist", f"{path}: parent does not exist")
                node = self.manta.tree.get(path)
                if node is not None and not node.directory:
                    return self._error(400, "ParentNotDirectory", path)
                if node is None:
                    self.manta.tree[path] = _Node(True)
            return self._send(204)
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked:
            body = self._read_chunked()
            if body is None:  # the client gave up: nothing is stored
                self.close_connection = True
                return
        else:
            length = self.headers.get("Content-Length")
            if length is None:
                return self._error(411, "ContentLengthRequired")
            body = self.rfile.read(int(length))
            if len(body) < int(length):
                self.close_connection = True
                return
        self._record(chunked, len(body))
        md5 = self.headers.get("Content-MD5")
        if md5 and base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
            return self._error(400, "BadRequest", "Content-MD5 mismatch")
        with self.manta.lock:
            if not self._parent_exists(path):
                return self._error(404, "DirectoryDoesNotExist", f"{path}: parent does not exist")
            existing = self.manta.tree.get(path)
            if existing is not None and existing.directory:
                return self._error(400, "OperationNotAllowedOnDirectory", path)
            if self.headers.get("If-None-Match") == "*" and existing is not None:
                return self._error(412, "PreconditionFailed", f"{path} exists")
            self.manta.tree[path] = _Node(False, body, content_type=content_type or "application/octet-stream")
        self._send(204, headers={"Computed-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        self._record()
        path, query = self._path()
        with self.manta.lock:
            node = self.manta.tree.get(path)
            if node is None:
                return self._error(404, "ResourceNotFound", f"{path} was not found")
            if node.directory:
                body = self._listing(path, query)
                return self._send(200, body, {"Content-Type": DIRECTORY_TYPE})
            data = node.data
        self.send_response(200)
        self.send_header("Content-Type", node.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-MD5", base64.b64encode(hashlib.md5(data).digest()).decode())
        self.end_headers()
        view = memoryview(data)
        for offset in range(0, len(view), 1 << 16):  # streamed in pieces, like a real server
            try:
                self.wfile.write(view[offset:offset + (1 << 16)])
            except OSError:
                return

    def _listing(self, path: str, query: dict[str, list[str]]) -> bytes:
        limit = int(query.get("limit", ["256"])[0])
        marker = query.get("marker", [None])[0]
        prefix = path + "/"
        names = sorted({p[len(prefix):] for p in self.manta.tree if p.startswith(prefix) and "/" not in p[len(prefix):]})
        if marker:
            names = [n for n in names if n >= marker]
        lines = []
        for name in names[:limit]:
            node = self.manta.tree[prefix + name]
            entry: dict[str, Any] = {"name": name, "type": "directory" if node.directory else "object",
                                     "mtime": node.mtime}
            if not node.directory:
                entry["size"] = len(node.data)
                entry["etag"] = hashlib.md5(node.data).hexdigest()
            lines.append(json.dumps(entry))
        return ("\n".join(lines) + ("\n" if lines else "")).encode()

    def do_HEAD(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        self._record()
        path, _ = self._path()
        with self.manta.lock:
            node = self.manta.tree.get(path)
        if node is None:
            return self._send(404)
        self.send_response(200)
        self.send_header("Content-Length", str(0 if node.directory else len(node.data)))
        self.end_headers()

    def do_DELETE(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        self._record()
        path, _ = self._path()
        with self.manta.lock:
            node = self.manta.tree.get(path)
            if node is None:
                return self._error(404, "ResourceNotFound", f"{path} was not found")
            if node.directory:
                if path.count("/") <= 2:
                    return self._error(403, "OperationNotAllowedOnRootDirectory", path)
                if any(p.startswith(path + "/") for p in self.manta.tree):
                    return self._error(400, "DirectoryNotEmpty", f"{path} is not empty")
            del self.manta.tree[path]
        self._send(204)


@pytest.fixture
def manta_double():
    """A Manta object API double with one account (`tester`) and its key; see MantaDouble.env()."""
    double = MantaDouble().start()
    try:
        yield double
    finally:
        double.stop()
