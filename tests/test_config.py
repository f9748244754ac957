"""Configuration: every malformed or missing variable is exit 2 with one line naming it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from triton_mysql.config import VARIABLES, Config, ConfigError

CLI = [str(Path(sys.executable).parent / "triton-mysql")]

BASE = {
    "ETCD": "127.0.0.1:1",  # nothing listens: commands that got past the config fail with 1, not 2
    "MYSQL_REPL_USER": "repl",
    "MYSQL_REPL_PASSWORD": "repl-pw",
    "ADVERTISE_ADDRESS": "127.0.0.2",
    "NODE_NAME": "node-a",
    "DISCOVERY_TIMEOUT": "0.3",
}

# One malformed value per variable that has a type or a format.
MALFORMED = {
    "CONSUL": "consul:port",
    "ETCD": "127.0.0.1:99999",
    "ETCD_PREFIX": "no-leading-slash",
    "SERVICE_NAME": "bad name!",
    "NODE_NAME": "-starts-with-dash",
    "ADVERTISE_ADDRESS": "not an address",
    "MYSQL_PORT": "33o6",
    "MYSQL_BIND_ADDRESS": "300.1.2.3.4",
    "MYSQL_DATADIR": "relative/dir",
    "MYSQL_CNF": "relative.cnf",
    "MYSQL_CONF_DIR": "conf.d",
    "MYSQL_SOCKET": "mysqld.sock",
    "MYSQL_USER": "it's",
    "MYSQL_DATABASE": "bad`name",
    "MYSQL_REPL_USER": "re'pl",
    "BACKUP_URL": "ftp://host/path",
    "S3_ENDPOINT_URL": "localhost:9000",
    "S3_CREATE_BUCKET": "maybe",
    "MANTA_URL": "manta.example",
    "MANTA_KEY_PATH": "id_rsa",
    "SNAPSHOT_INTERVAL": "daily",
    "SNAPSHOT_KEEP": "0",
    "SESSION_TTL": "1",
    "MAX_LAG": "-5",
    "STOP_GRACE": "ten",
    "DISCOVERY_WAIT": "1m",
    "DISCOVERY_TIMEOUT": "0",
    "HEALTH_POLL": "fast",
    "SNAPSHOT_POLL": "0",
    "BOOTSTRAP_WAIT": "-1",
    "HTTP_PORT": "70000",
    "HTTP_BIND_ADDRESS": "999.1.1.1.1",
    "NOFAILOVER": "yes please",
    "AUTO_RECLONE": "2",
    "WARM_START": "maybe",
    "FAILOVER_COOLDOWN": "soon",
    "SYNC_REPLICATION": "async",
    "SYNC_TIMEOUT": "0",
    "LOG_LEVEL": "LOUD",
    "LOG_FORMAT": "xml",
    "CONSUL_HTTP_TOKEN_FILE": "/nonexistent/token",
    "CONSUL_CACERT": "ca.pem",
    "CONSUL_CLIENT_CERT": "/nonexistent/cert.pem",
    "CONSUL_CLIENT_KEY": "/nonexistent/key.pem",
    "CONSUL_HTTP_SSL_VERIFY": "sometimes",
    "ETCD_CACERT": "/nonexistent/ca.pem",
    "ETCD_CERT": "cert.pem",
    "ETCD_KEY": "/",
    "ETCD_PASSWORD_FILE": "password.txt",
    "MYSQL_ROOT_PASSWORD_FILE": "/nonexistent/root",
    "MYSQL_PASSWORD_FILE": "/nonexistent/app",
    "MYSQL_REPL_PASSWORD_FILE": "/nonexistent/repl",
    "MYSQL_TLS_CA": "/nonexistent/ca.pem",
    "MYSQL_TLS_CERT": "node.pem",
    "MYSQL_TLS_KEY": "/nonexistent/node-key.pem",
    "MYSQL_TLS_VERIFY_IDENTITY": "strict",
}

FREE_TEXT = {"MYSQLD", "MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD", "MYSQL_REPL_PASSWORD", "MANTA_USER",
             "MANTA_KEY_ID", "MANTA_PRIVATE_KEY", "CONSUL_HTTP_TOKEN", "ETCD_USER", "ETCD_PASSWORD"}


def run_cli(args, env_overrides, timeout=30):
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARIABLES}}
    env.update(env_overrides)
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def test_every_typed_variable_has_a_malformed_case():
    typed = {v.name for v in VARIABLES} - FREE_TEXT
    assert typed == set(MALFORMED), "add a malformed example for each new typed variable"


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_variable_is_exit_2_naming_it(name):
    env = dict(BASE)
    if name == "CONSUL":
        env.pop("ETCD")
    env[name] = MALFORMED[name]
    result = run_cli(["status"], env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["MYSQL_REPL_USER", "MYSQL_REPL_PASSWORD"])
def test_hooks_require_the_replication_account(missing):
    env = dict(BASE)
    env.pop(missing)
    result = run_cli(["health"], env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and missing in result.stderr


def test_discovery_is_required():
    env = dict(BASE)
    env.pop("ETCD")
    result = run_cli(["status"], env)
    assert result.returncode == 2 and "CONSUL" in result.stderr and result.stderr.count("\n") == 1


def test_status_does_not_need_the_replication_account():
    env = {k: v for k, v in BASE.items() if not k.startswith("MYSQL_REPL")}
    result = run_cli(["status"], env)
    # Past the configuration: it fails only because nothing listens on the etcd port.
    assert result.returncode == 1, result
    assert "MYSQL_REPL" not in result.stderr
    assert "Traceback" not in result.stderr


def test_consul_and_etcd_together_is_an_error():
    result = run_cli(["status"], {**BASE, "CONSUL": "127.0.0.1:8500"})
    assert result.returncode == 2 and "CONSUL" in result.stderr


def test_consul_session_ttl_below_ten_is_refused():
    env = {k: v for k, v in BASE.items() if k != "ETCD"}
    result = run_cli(["status"], {**env, "CONSUL": "127.0.0.1:8500", "SESSION_TTL": "5"})
    assert result.returncode == 2 and "SESSION_TTL" in result.stderr


def test_timing_rule_refuses_a_ttl_that_fencing_cannot_meet():
    with pytest.raises(ConfigError) as err:
        Config.from_env({**BASE, "SESSION_TTL": "5", "HEALTH_POLL": "2", "DISCOVERY_TIMEOUT": "1"})
    assert err.value.key == "SESSION_TTL"
    assert "HEALTH_POLL" in err.value.problem
    # The same TTL is fine with a faster poll and a shorter discovery timeout.
    Config.from_env({**BASE, "SESSION_TTL": "5", "HEALTH_POLL": "1", "DISCOVERY_TIMEOUT": "0.5"})


# The rule's boundary, one term at a time (FENCE_BUDGET 2 s, FENCE_MARGIN 1 s): exactly equal is
# accepted; a hundredth of a second more in any term is refused.  A rule that counted
# DISCOVERY_TIMEOUT once, or dropped the fencing budget or the margin, would accept the refused rows.
@pytest.mark.parametrize("poll, timeout, ttl, accepted", [
    (1.0, 1.5, 7.0, True),     # 1 + 2 x 1.5 + 2 + 1 = 7
    (1.01, 1.5, 7.0, False),   # HEALTH_POLL counts
    (1.0, 1.51, 7.0, False),   # DISCOVERY_TIMEOUT counts twice (2 x 0.01 over)
    (1.0, 1.5, 6.99, False),   # the budget and the margin count
    (2.0, 2.0, 9.0, True),     # the defaults' neighbourhood: 2 + 4 + 2 + 1 = 9
    (2.0, 2.0, 8.5, False),    # a rule counting DISCOVERY_TIMEOUT once would need only 7
])
def test_timing_rule_boundary(poll, timeout, ttl, accepted):
    env = {**BASE, "SESSION_TTL": f"{ttl:g}", "HEALTH_POLL": f"{poll:g}", "DISCOVERY_TIMEOUT": f"{timeout:g}"}
    if accepted:
        assert Config.from_env(env).session_ttl == ttl
    else:
        with pytest.raises(ConfigError) as err:
            Config.from_env(env)
        assert err.value.key == "SESSION_TTL" and "2 x DISCOVERY_TIMEOUT" in err.value.problem


def test_consul_session_ttl_is_a_whole_number_of_at_least_ten_seconds():
    consul = {**BASE, "CONSUL": "consul:8500"}
    consul.pop("ETCD", None)
    assert Config.from_env({**consul, "SESSION_TTL": "10"}).session_ttl == 10
    for ttl in ("10.5", "9"):
        with pytest.raises(ConfigError) as err:
            Config.from_env({**consul, "SESSION_TTL": ttl})
        assert err.value.key == "SESSION_TTL" and "whole number" in err.value.problem


def test_manta_storage_requires_its_credentials_only_when_used():
    config = Config.from_env({**BASE, "BACKUP_URL": "manta:///acct/stor/backups"})
    with pytest.raises(ConfigError) as err:
        config.require("storage")
    assert err.value.key == "MANTA_URL"
    Config.from_env(BASE).require("storage")  # file:// needs nothing


def test_empty_counts_as_unset_and_defaults_apply():
    config = Config.from_env({**BASE, "MYSQL_PORT": "", "SERVICE_NAME": "", "SESSION_TTL": ""})
    assert config.mysql_port == 3306 and config.service_name == "mysql" and config.session_ttl == 10


def test_password_with_hash_survives_and_never_shows():
    password = "s3cr#t pass;word # not a comment"
    config = Config.from_env({**BASE, "MYSQL_REPL_PASSWORD": password, "MYSQL_ROOT_PASSWORD": "r00t#1"})
    assert config.mysql_repl_password == password
    assert password not in repr(config) and "r00t#1" not in repr(config)
    assert password in config.secrets()


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(ConfigError) as err:
        Config.from_env({**BASE, "MANTA_KEY_PATH": "relative/key"})
    assert "relative/key" in str(err.value)  # not a secret: shown to help
    result = run_cli(["status"], {**BASE, "MYSQL_PASSWORD": "hunter#2", "MYSQL_USER": "root"})
    assert result.returncode == 2 and "hunter#2" not in result.stderr


def test_config_is_immutable():
    config = Config.from_env(BASE)
    with pytest.raises(Exception):
        config.mysql_port = 1  # type: ignore[misc]


def test_cluster_prefix_per_backend():
    assert Config.from_env(BASE).kv_prefix == "/triton-mysql/mysql"
    consul = {k: v for k, v in BASE.items() if k != "ETCD"}
    assert Config.from_env({**consul, "CONSUL": "c:8500", "SERVICE_NAME": "db"}).kv_prefix == "triton-mysql/db"


def test_etcd_endpoint_list():
    config = Config.from_env({**BASE, "ETCD": "10.0.0.1:2379, 10.0.0.2:2379,"})
    assert config.etcd == (("10.0.0.1", 2379), ("10.0.0.2", 2379))


def test_sync_replication_defaults_to_semi_with_a_ten_second_timeout():
    config = Config.from_env(BASE)
    assert (config.sync_replication, config.sync_timeout) == ("semi", 10.0)
    config = Config.from_env({**BASE, "SYNC_REPLICATION": "STRICT", "SYNC_TIMEOUT": "2.5"})
    assert (config.sync_replication, config.sync_timeout) == ("strict", 2.5)
    assert Config.from_env({**BASE, "SYNC_REPLICATION": "off"}).sync_replication == "off"
    with pytest.raises(ConfigError) as err:
        Config.from_env({**BASE, "SYNC_TIMEOUT": "5000000"})  # beyond the server's 2^32-1 ms
    assert err.value.key == "SYNC_TIMEOUT"
