"""Test certificates: a CA and certificates it signs, made with `cryptography` in the test.

    ca = TestCA(tmp_path)
    server = ca.issue("etcd", hosts=["127.0.0.1", "localhost"])      # server + client usage
    client = ca.issue("node1", hosts=["127.0.0.2"])
    server.cert, server.key, ca.cert                                   # PEM file paths

Keys are EC P-256 (fast to make).  Every certificate can serve as a server and
as a client certificate (MariaDB uses one certificate for both roles), and
lists `hosts` as subject alternative names (IP addresses and DNS names).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    name: str
    cert: str
    """PEM certificate file."""
    key: str
    """PEM private key file (PKCS#8, unencrypted, mode 0600)."""


def _write(path: Path, data: bytes, mode: int = 0o644) -> str:
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class TestCA:
    """A self-signed CA in `directory`; `issue()` signs certificates with it."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path | str, name: str = "triton-mysql test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = _write(self.dir / "ca.pem", self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, hosts: Iterable[str] = (), *, directory: Path | str | None = None,
              common_name: bool = True) -> Issued:
        """A certificate for `name` (its CN) valid for `hosts` (IPs and DNS names), signed by this CA.

        `common_name=False`: no CN at all (etcd 3.4's gateway answers 400 to a client
        certificate with a CN once auth is enabled, as it cannot map the CN to a user)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)] if common_name else []))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        where = Path(directory) if directory is not None else self.dir
        where.mkdir(parents=True, exist_ok=True)
        return Issued(
            name=name,
            cert=_write(where / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
            key=_write(where / f"{name}-key.pem", _key_pem(key), 0o600),
        )
