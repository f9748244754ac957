"""The supervisor: same discovery TLS/credentials as the hooks, a filtered environment for the app,
and no secret in its log."""
from __future__ import annotations

import json
import signal

import pytest

from tests.harness.consul_double import ConsulDouble
from tests.harness.etcd import EtcdServer
from tests.harness.procs import wait_for
from tests.harness.tls import TestCA
from tests.test_supervisor_discovery import config, service
from tests.test_supervisor_process import buddies  # noqa: F401  (fixture)
from triton_mysql.config import Config
from triton_mysql.discovery import connect, transport
from triton_mysql.supervisor import config as supervisor_config
from triton_mysql.supervisor.environment import app_environment

TOKEN = "acl-token-for-the-supervisor"
ETCD_USER, ETCD_PASSWORD = "triton", "etcd#Pass 5"
SUPERVISOR_JSON = "etc/containerbuddy.json"


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def secure_consul(tmp_path, ca):
    with ConsulDouble(tmp_path / "consul", acl_token=TOKEN, ca=ca, verify_incoming=True) as double:
        yield double


@pytest.fixture
def secure_etcd(tmp_path, ca):
    """TLS with client certificates and etcd auth, the user limited to the cluster's prefix."""
    server = EtcdServer(tmp_path / "etcd", ca=ca, client_cert_auth=True).start()
    try:
        server.add_user(ETCD_USER, ETCD_PASSWORD, "/secure/")
        server.enable_auth()
        yield server
    finally:
        server.stop()


def _secure_env(request) -> dict[str, str]:
    if request.param == "consul":
        return request.getfixturevalue("secure_consul").env()
    server = request.getfixturevalue("secure_etcd")
    return {**server.env(), "ETCD_PREFIX": "/secure", "ETCD_USER": ETCD_USER, "ETCD_PASSWORD": ETCD_PASSWORD}


@pytest.fixture(params=["consul", "etcd"])
def secure_env(request):
    """The environment that reaches a discovery service with TLS and credentials."""
    return _secure_env(request)


def test_supervisor_and_hooks_end_with_the_same_settings(secure_env):
    env = {**secure_env, "NODE_NAME": "n1", "ADVERTISE_ADDRESS": "127.0.0.2"}
    supervisor = supervisor_config.load(SUPERVISOR_JSON, env).discovery
    hooks = Config.from_env(env)
    assert supervisor.settings is not None
    assert transport(supervisor.settings, token_cache=False) == transport(hooks, token_cache=False)
    assert transport(hooks).scheme == "https"
    assert (supervisor.consul, supervisor.etcd) == (hooks.consul, hooks.etcd)
    assert supervisor.describe().count("https://") >= 1


def test_supervisor_registers_over_tls_with_credentials(secure_env, buddies, tmp_path):
    env = {**secure_env, "ADVERTISE_ADDRESS": "127.0.0.1"}
    cfg = config([service("web", "true", ttl=3)])
    cfg["etcd"]["prefix"] = "{{ .ETCD_PREFIX | default `/triton-mysql` }}"
    buddy = buddies(cfg, ["sleep", "60"], env=env)
    d = connect(Config.from_env({**env, "NODE_NAME": "observer"}), token_cache=False)
    try:
        listed = wait_for(lambda: d.healthy("web"), 15, what="web listed through TLS + credentials")
        assert [i.id for i in listed] == ["web-node1"]
        buddy.send(signal.SIGTERM)
        assert buddy.wait() == 143
        assert d.healthy("web") == []
    finally:
        d.close()
    # Slow answers on a loaded machine are retried at the next poll; a refusal would be a bug.
    out = buddy.output()
    assert "permission denied" not in out and "ACL" not in out and "TLS:" not in out, out


def test_a_bad_discovery_setting_is_exit_2_at_start(buddies, tmp_path):
    buddy = buddies(config([service("web", "true")]), ["sleep", "60"],
                    env={"CONSUL": "https://127.0.0.1:8501", "CONSUL_CACERT": str(tmp_path / "missing.pem"),
                         "ADVERTISE_ADDRESS": "127.0.0.1"})
    assert buddy.wait() == 2
    out = buddy.output()
    assert "CONSUL_CACERT" in out and "missing.pem" in out and out.count("\n") == 1


def test_the_app_gets_the_allow_list_and_the_hooks_everything(buddies, tmp_path):
    secrets = {"MYSQL_ROOT_PASSWORD": "root-secret-1", "AWS_SECRET_ACCESS_KEY": "aws-secret-2",
               "CONSUL_HTTP_TOKEN": "token-secret-3", "ETCD_PASSWORD": "etcd-secret-4",
               "MYSQL_PWD": "client-secret-5", "MANTA_PRIVATE_KEY": "-----BEGIN KEY-----\nabc\n-----END KEY-----"}
    app_env, hook_env = tmp_path / "app.json", tmp_path / "hook.json"
    dump = 'import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], "w"))'
    import sys
    buddy = buddies({"onStart": [sys.executable, "-c", dump, str(hook_env)]},
                    [sys.executable, "-c", dump, str(app_env)],
                    env={**secrets, "TZ": "UTC", "LC_ALL": "C.UTF-8", "MYSQL_CNF": "/etc/x.cnf",
                         "MALLOC_ARENA_MAX": "2", "UNRELATED": "x"})
    assert buddy.wait() == 0
    app, hook = json.loads(app_env.read_text()), json.loads(hook_env.read_text())
    for name in secrets:
        assert name not in app and hook[name] == secrets[name]
    for name in ("PATH", "TZ", "LC_ALL", "MYSQL_CNF", "MALLOC_ARENA_MAX"):
        assert name in app, name
    assert "UNRELATED" not in app and "UNRELATED" in hook
    assert "CONTAINERBUDDY_PID" in hook
    assert set(app) == set(app_environment(hook)) - {"CONTAINERBUDDY_PID", "CONTAINERBUDDY"}


def test_the_supervisor_log_has_no_secret(buddies, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("file-token-secret-6\n")
    secrets = {"MYSQL_ROOT_PASSWORD": "root-secret-1", "AWS_SECRET_ACCESS_KEY": "aws-secret-2",
               "AWS_SESSION_TOKEN": "aws-session-3", "ETCD_PASSWORD": "etcd-secret-4"}
    # A command that carries secrets (rendered from the environment) is logged at DEBUG and on failure.
    task = {"name": "leaky", "frequency": "200ms", "timeout": "1s",
            "command": ["sh", "-c", "echo {{ .MYSQL_ROOT_PASSWORD }} {{ .AWS_SECRET_ACCESS_KEY }} >/dev/null; "
                        "exit 3", "{{ .AWS_SESSION_TOKEN }}", "{{ .ETCD_PASSWORD }}"]}
    buddy = buddies({"tasks": [task], "stopTimeout": 1}, ["sleep", "60"],
                    env={**secrets, "CONSUL_HTTP_TOKEN_FILE": str(token_file), "LOG_LEVEL": "DEBUG"})
    wait_for(lambda: buddy.output().count("leaky") >= 4, 10, what="the task ran and was logged")
    buddy.send(signal.SIGTERM)
    buddy.wait()
    out = buddy.output()
    assert "***" in out
    for value in [*secrets.values(), "file-token-secret-6"]:
        assert value not in out, value
