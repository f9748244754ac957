"""etcd over TLS (server certificate, client certificates) and with etcd auth, on a real etcd.

Certificates come from a CA made in the test (`tests/harness/tls.py`).  Every
test runs with REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE pointing at the system
bundle (which does not hold the test CA): requests would let them override a
CA set on a session, so these tests fail if the CA is not passed per request.
"""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from tests.harness.etcd import EtcdServer
from tests.harness.tls import TestCA
from triton_mysql.config import Config
from triton_mysql.discovery import DiscoveryError, TOKEN_CACHE_NAME, connect
from triton_mysql.discovery.etcd import EtcdDiscovery

PREFIX = "/c1"
USER, PASSWORD = "triton", "etcd#Pass 4"


@pytest.fixture(autouse=True)
def system_ca_bundle(monkeypatch):
    """The variables that make requests trust another CA than the one passed to the client."""
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def tls_etcd(tmp_path, ca):
    """etcd serving HTTPS and requiring a client certificate signed by `ca`."""
    server = EtcdServer(tmp_path / "etcd", ca=ca, client_cert_auth=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def auth_etcd(tmp_path, ca):
    """etcd serving HTTPS with `auth enable`: user USER may only touch keys under PREFIX/."""
    server = EtcdServer(tmp_path / "etcd", ca=ca).start()
    try:
        server.add_user(USER, PASSWORD, PREFIX + "/")
        server.enable_auth()
        yield server
    finally:
        server.stop()


def _config(env: dict[str, str], **more: str) -> Config:
    return Config.from_env({"NODE_NAME": "n1", "ETCD_PREFIX": PREFIX, "DISCOVERY_TIMEOUT": "2", **env, **more})


def _exercise(d) -> None:
    """What the hooks do: a lease, a bound create, a CAS, a list, a service heartbeat, a revoke."""
    from triton_mysql.discovery import ServiceSpec
    root = f"{PREFIX}/mysql"
    session = d.create_session("n1", 2)
    assert d.create(f"{root}/primary", b'{"node": "n1"}', session=session)
    assert d.renew_session(session)
    kv = d.get(f"{root}/primary")
    assert kv is not None and kv.session == session
    assert d.cas(f"{root}/failover/last", b"{}", 0)
    assert [k.key for k in d.list(root + "/")] == [f"{root}/failover/last", f"{root}/primary"]
    spec = ServiceSpec(id="mysql-n1", name="mysql", address="127.0.0.9", port=3306, ttl=2)
    d.heartbeat(spec)
    assert [i.id for i in d.healthy("mysql")] == ["mysql-n1"]
    d.deregister_service(spec)
    d.destroy_session(session)
    assert d.get(f"{root}/primary") is None


def test_tls_with_client_certificates(tls_etcd, ca):
    config = _config(tls_etcd.env())
    assert config.etcd_scheme == "https" and os.environ["REQUESTS_CA_BUNDLE"] != ca.cert
    d = connect(config)
    try:
        _exercise(d)
    finally:
        d.close()


def test_tls_refuses_a_client_without_certificate(tls_etcd):
    env = {k: v for k, v in tls_etcd.env().items() if k not in ("ETCD_CERT", "ETCD_KEY")}
    d = connect(_config(env))
    try:
        with pytest.raises(DiscoveryError) as err:
            d.get(PREFIX + "/x")
        assert "TLS" in str(err.value) or "EOF" in str(err.value)
    finally:
        d.close()


def test_tls_refuses_a_server_signed_by_another_ca(tls_etcd, tmp_path):
    other = TestCA(tmp_path / "other")
    d = connect(_config({**tls_etcd.env(), "ETCD_CACERT": other.cert}))
    try:
        with pytest.raises(DiscoveryError) as err:
            d.get(PREFIX + "/x")
        assert "TLS: certificate verify failed" in str(err.value)
    finally:
        d.close()


def test_auth_with_a_role_limited_to_the_prefix(auth_etcd, tmp_path):
    cnf_dir = tmp_path / "node"
    cnf_dir.mkdir()
    config = _config(auth_etcd.env(), ETCD_USER=USER, ETCD_PASSWORD=PASSWORD, MYSQL_CNF=str(cnf_dir / "my.cnf"))
    d = connect(config)
    try:
        _exercise(d)
        # Outside the prefix: etcd refuses, and the error says what to check.
        with pytest.raises(DiscoveryError) as err:
            d.get("/elsewhere/key")
        assert "permission denied" in str(err.value)
    finally:
        d.close()
    # The token is cached for the next (short-lived) process, readable by root only.
    cache = cnf_dir / TOKEN_CACHE_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    cached = json.loads(cache.read_text())
    assert cached["user"] == USER and cached["token"] and PASSWORD not in cache.read_text()


def test_without_credentials_etcd_auth_refuses(auth_etcd):
    d = connect(_config(auth_etcd.env()))
    try:
        with pytest.raises(DiscoveryError) as err:
            d.get(PREFIX + "/x")
        assert "user name is empty" in str(err.value)
    finally:
        d.close()


def test_a_wrong_password_is_an_error_that_does_not_show_it(auth_etcd):
    d = connect(_config(auth_etcd.env(), ETCD_USER=USER, ETCD_PASSWORD="wrong#pw"))
    try:
        with pytest.raises(DiscoveryError) as err:
            d.get(PREFIX + "/x")
        assert "invalid user ID or password" in str(err.value) and "ETCD_USER/ETCD_PASSWORD" in str(err.value)
        assert "wrong#pw" not in str(err.value)
    finally:
        d.close()


def test_cached_token_is_reused_and_replaced_when_etcd_rejects_it(auth_etcd, tmp_path):
    cnf_dir = tmp_path / "node"
    cnf_dir.mkdir()
    config = _config(auth_etcd.env(), ETCD_USER=USER, ETCD_PASSWORD=PASSWORD, MYSQL_CNF=str(cnf_dir / "my.cnf"))
    cache = cnf_dir / TOKEN_CACHE_NAME
    calls: list[str] = []

    class Counting(EtcdDiscovery):
        def _authenticate(self, op: str, timeout: float | None = None) -> str:
            calls.append(op)
            return super()._authenticate(op, timeout)

    def client() -> Counting:
        d = connect(config)
        assert isinstance(d, EtcdDiscovery)
        d.__class__ = Counting
        return d  # type: ignore[return-value]

    first = client()
    first.put(f"{PREFIX}/k", b"1")
    first.close()
    assert len(calls) == 1
    second = client()  # a new hook process: the cached token, no new authentication
    assert second.get(f"{PREFIX}/k").value == b"1"
    second.close()
    assert len(calls) == 1
    # A token etcd no longer knows (expired, or the member restarted): authenticate again, once.
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({**data, "token": "expired.token.1"}))
    third = client()
    assert third.get(f"{PREFIX}/k").value == b"1"
    third.close()
    assert len(calls) == 2
    assert json.loads(cache.read_text())["token"] not in ("expired.token.1", data["token"])


def test_token_survives_an_etcd_restart_by_authenticating_again(auth_etcd, tmp_path):
    config = _config(auth_etcd.env(), ETCD_USER=USER, ETCD_PASSWORD=PASSWORD)
    d = connect(config, token_cache=False)
    try:
        d.put(f"{PREFIX}/k", b"1")
        auth_etcd.stop()
        auth_etcd.start()  # simple tokens live in the member's memory: this one is gone
        deadline = time.monotonic() + 10
        while True:
            try:
                assert d.get(f"{PREFIX}/k").value == b"1"
                break
            except DiscoveryError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        d.close()
