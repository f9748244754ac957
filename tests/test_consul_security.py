"""Consul with an ACL token and over HTTPS, through the Consul double and the same py-consul code.

The double enforces a token as a Consul agent with ACLs on (default deny)
answers: 403 "Permission denied…" without one, 403 "ACL not found" for an
unknown one; it serves HTTPS with a certificate from a CA made in the test and
can require client certificates (`verify_incoming`).
"""
from __future__ import annotations

import consul
import pytest
import requests

from tests.harness.consul_double import ConsulDouble
from tests.harness.tls import TestCA
from triton_mysql.config import Config
from triton_mysql.discovery import DiscoveryError, ServiceSpec, connect

TOKEN = "5f0c1a2e-acl-token-6b1d"


@pytest.fixture(autouse=True)
def system_ca_bundle(monkeypatch):
    """requests would let these override a CA set anywhere but on the request itself."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def secure_consul(tmp_path, ca):
    """HTTPS, a client certificate required, and an ACL token."""
    double = ConsulDouble(tmp_path / "consul", acl_token=TOKEN, ca=ca, verify_incoming=True)
    with double:
        yield double


def _config(env: dict[str, str]) -> Config:
    return Config.from_env({"NODE_NAME": "n1", **env})


def _exercise(d) -> None:
    root = "triton-mysql/mysql"
    session = d.create_session("n1", 10)
    assert d.acquire(f"{root}/primary", b'{"node": "n1"}', session)
    assert d.get(f"{root}/primary").session == session
    assert d.create(f"{root}/bootstrap", b"{}", session=session)
    assert [kv.key for kv in d.list(root + "/")] == [f"{root}/bootstrap", f"{root}/primary"]
    spec = ServiceSpec(id="mysql-n1", name="mysql", address="127.0.0.9", port=3306, ttl=10)
    d.register_service(spec)
    d.heartbeat(spec)
    assert [i.id for i in d.healthy("mysql")] == ["mysql-n1"]
    d.deregister_service(spec)
    assert d.release(f"{root}/primary", session)
    d.destroy_session(session)


def test_py_consul_replaces_an_explicit_token_with_an_empty_environment_variable(monkeypatch):
    """Pinned library behaviour (py-consul 1.8.0): why the token is set after construction."""
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "")
    assert consul.Consul(host="127.0.0.1", port=1, token="explicit").token == ""
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    assert consul.Consul(host="127.0.0.1", port=1, token="explicit").token == "from-env"


@pytest.mark.parametrize("environment_token", ["", "wrong-token-from-env", None])
def test_the_configured_token_wins_over_py_consuls_environment(tmp_path, monkeypatch, environment_token):
    if environment_token is None:
        monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    else:
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", environment_token)
    with ConsulDouble(tmp_path / "consul", acl_token=TOKEN) as double:
        d = connect(_config({"CONSUL": double.endpoint, "CONSUL_HTTP_TOKEN": TOKEN}))
        try:
            _exercise(d)
        finally:
            d.close()


def test_the_double_answers_like_consul_with_acls(tmp_path):
    with ConsulDouble(tmp_path / "consul", acl_token=TOKEN) as double:
        url = double.url + "/v1/kv/triton-mysql/x"
        missing = requests.get(url, timeout=5)
        assert missing.status_code == 403 and missing.text.startswith("Permission denied")
        wrong = requests.get(url, headers={"X-Consul-Token": "nope"}, timeout=5)
        assert wrong.status_code == 403 and wrong.text == "ACL not found"
        for headers, params in (({"X-Consul-Token": TOKEN}, {}), ({"Authorization": f"Bearer {TOKEN}"}, {}),
                                ({}, {"token": TOKEN})):
            assert requests.get(url, headers=headers, params=params, timeout=5).status_code == 404
        assert requests.get(double.url + "/v1/status/leader", timeout=5).status_code == 200
        # py-consul's view of it, and ours: a clear error naming the variable to check.
        with pytest.raises(consul.ACLPermissionDenied):
            consul.Consul(host=double.host, port=double.port).kv.get("x")
        d = connect(_config({"CONSUL": double.endpoint}))
        try:
            with pytest.raises(DiscoveryError) as err:
                d.get("triton-mysql/x")
            assert "ACL permission denied" in str(err.value) and "CONSUL_HTTP_TOKEN" in str(err.value)
        finally:
            d.close()


def test_https_with_client_certificate_and_token(secure_consul):
    config = _config(secure_consul.env())
    assert config.consul_scheme == "https" and config.consul_http_token == TOKEN
    d = connect(config)
    try:
        _exercise(d)
    finally:
        d.close()


def test_https_refuses_a_client_without_certificate(secure_consul):
    env = {k: v for k, v in secure_consul.env().items() if not k.startswith("CONSUL_CLIENT_")}
    d = connect(_config(env))
    try:
        with pytest.raises(DiscoveryError):
            d.get("triton-mysql/x")
    finally:
        d.close()


def test_https_refuses_a_server_signed_by_another_ca(secure_consul, tmp_path):
    other = TestCA(tmp_path / "other")
    d = connect(_config({**secure_consul.env(), "CONSUL_CACERT": other.cert}))
    try:
        with pytest.raises(DiscoveryError) as err:
            d.get("triton-mysql/x")
        assert "TLS: certificate verify failed" in str(err.value)
    finally:
        d.close()
    # Plain HTTP to an HTTPS-only agent does not work either.
    plain = {k: v for k, v in secure_consul.env().items() if not k.startswith(("CONSUL_CLIENT_", "CONSUL_CACERT"))}
    plain["CONSUL"] = f"{secure_consul.host}:{secure_consul.port}"
    d = connect(_config(plain))
    try:
        with pytest.raises(DiscoveryError):
            d.get("triton-mysql/x")
    finally:
        d.close()


def test_ssl_verify_false_skips_the_server_check(tmp_path, ca):
    with ConsulDouble(tmp_path / "consul", acl_token=TOKEN, ca=ca) as double:
        env = {"CONSUL": double.endpoint, "CONSUL_HTTP_TOKEN": TOKEN}
        d = connect(_config(env))  # system trust store: the test CA is not in it
        try:
            with pytest.raises(DiscoveryError):
                d.get("triton-mysql/x")
        finally:
            d.close()
        d = connect(_config({**env, "CONSUL_HTTP_SSL_VERIFY": "false"}))
        try:
            assert d.get("triton-mysql/x") is None
        finally:
            d.close()
