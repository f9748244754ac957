"""TLS between the nodes: replication and the hooks' own peer connections (MYSQL_TLS_CA/CERT/KEY).

Every node has a certificate signed by one CA (`MYSQL_TLS_CA`) and uses it both
as a server (clients and replicas connect to it) and as a client (its replica
threads, its hooks' connections to peers).  The replication account requires
X509 (a certificate signed by the CA: `REQUIRE SSL` alone would let in a
replica that merely encrypts, without any certificate).

Files: mysqld (user `mysql`) must read its key, or it aborts at start, and
secrets mounted into a container keep the host's owner and mode.  So `onStart`
copies the three files into a directory of the socket's (`<socket dir>/tls`,
owned by mysql, 0700): the key 0600, the certificates 0644.  The server config
and CHANGE MASTER point at the copies; the hooks (root) read the originals.

Host names: a peer's certificate is checked against the address it advertises
only when `Config.verify_peer_identity` (MYSQL_TLS_VERIFY_IDENTITY, default on
when the advertised address is a name): containers get dynamic IP addresses
that no certificate can list, so by default the chain is verified and the name
is not.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..config import Config
from .datadir import chown_mysql
from .flavor import ReplicationTLS

log = logging.getLogger(__name__)

DIRNAME = "tls"


def directory(config: Config) -> Path:
    return Path(config.mysql_socket).parent / DIRNAME


def installed(config: Config) -> tuple[str, str, str]:
    """(CA, certificate, key) as mysqld reads them: the copies `install()` makes."""
    d = directory(config)
    return str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem")


def install(config: Config, as_root: bool) -> None:
    """Copy the CA, certificate and key where the mysql user can read them (key 0600)."""
    if not config.mysql_tls:
        return
    target = directory(config)
    target.mkdir(mode=0o700, exist_ok=True)
    os.chmod(target, 0o700)
    sources = (config.mysql_tls_ca, config.mysql_tls_cert, config.mysql_tls_key)
    for source, dest, mode in zip(sources, installed(config), (0o644, 0o644, 0o600)):
        tmp = Path(f"{dest}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:  # type: ignore[arg-type]
            shutil.copyfileobj(src, out)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    if as_root:  # the directory is 0700: mysqld reads nothing in it before it is handed over
        chown_mysql(target, must_exist=False)
    log.info("TLS: installed the CA, certificate and key for mysqld in %s", target)


def server_options(config: Config) -> list[str]:
    """Lines for `[mysqld]`: the server's certificate, and the CA its clients' certificates must chain to."""
    if not config.mysql_tls:
        return []
    ca, cert, key = installed(config)
    return [f"ssl_ca={ca}", f"ssl_cert={cert}", f"ssl_key={key}"]


def replication(config: Config) -> ReplicationTLS | None:
    """What CHANGE MASTER needs: the copies (mysqld reads them) and whether to check the host name."""
    if not config.mysql_tls:
        return None
    ca, cert, key = installed(config)
    return ReplicationTLS(ca=ca, cert=cert, key=key, verify_identity=config.verify_peer_identity)


def client_options(config: Config) -> dict[str, Any]:
    """PyMySQL arguments for the hooks' connections to peers (root reads the original files)."""
    if not config.mysql_tls:
        return {}
    return {"ssl_ca": config.mysql_tls_ca, "ssl_cert": config.mysql_tls_cert, "ssl_key": config.mysql_tls_key,
            "ssl_verify_cert": True, "ssl_verify_identity": config.verify_peer_identity}
