"""Configuration of the security settings: `_FILE` secrets, control characters, TLS and credentials."""
from __future__ import annotations

import pytest

from tests.test_config import BASE, run_cli
from triton_mysql.config import VARIABLES, Config, ConfigError

PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


def _error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        Config.from_env(env)
    return err.value


# -- secrets from files ----------------------------------------------------------

FILE_FORMS = sorted(v.name for v in VARIABLES if v.file_of)


def test_every_documented_secret_has_a_file_form():
    assert FILE_FORMS == sorted(f"{name}_FILE" for name in (
        "MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD", "MYSQL_REPL_PASSWORD", "CONSUL_HTTP_TOKEN", "ETCD_PASSWORD"))


@pytest.mark.parametrize("file_var", FILE_FORMS)
def test_file_form_reads_the_value_and_drops_one_trailing_newline(file_var, tmp_path):
    target = next(v for v in VARIABLES if v.name == file_var).file_of
    path = tmp_path / "secret"
    path.write_text("s3cr#t value \n")
    env = {k: v for k, v in BASE.items() if k != target}
    if target == "CONSUL_HTTP_TOKEN":
        env = {**{k: v for k, v in env.items() if k != "ETCD"}, "CONSUL": "127.0.0.1:8500"}
    if target == "ETCD_PASSWORD":
        env["ETCD_USER"] = "triton"
    if target == "MYSQL_PASSWORD":
        env["MYSQL_USER"] = "app"
    config = Config.from_env({**env, file_var: str(path)})
    assert getattr(config, target.lower()) == "s3cr#t value "   # one newline dropped, the space kept
    assert "s3cr#t value " in config.secrets()


def test_file_form_keeps_all_but_one_newline_and_then_refuses_the_rest(tmp_path):
    path = tmp_path / "secret"
    path.write_text("pw\n\n")
    err = _error({**{k: v for k, v in BASE.items() if k != "MYSQL_REPL_PASSWORD"}, "MYSQL_REPL_PASSWORD_FILE": str(path)})
    assert err.key == "MYSQL_REPL_PASSWORD_FILE" and "control character" in err.problem
    assert "pw" not in err.problem.replace("position", "")


def test_both_forms_set_is_exit_2(tmp_path):
    path = tmp_path / "repl"
    path.write_text("from-file")
    result = run_cli(["status"], {**BASE, "MYSQL_REPL_PASSWORD_FILE": str(path)})
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1
    assert "MYSQL_REPL_PASSWORD_FILE" in result.stderr and "not both" in result.stderr
    assert "from-file" not in result.stderr and BASE["MYSQL_REPL_PASSWORD"] not in result.stderr


def test_unreadable_secret_file_is_exit_2_naming_it(tmp_path):
    result = run_cli(["status"], {**{k: v for k, v in BASE.items() if k != "MYSQL_REPL_PASSWORD"},
                                  "MYSQL_REPL_PASSWORD_FILE": str(tmp_path / "missing")})
    assert result.returncode == 2 and "MYSQL_REPL_PASSWORD_FILE" in result.stderr
    assert "No such file" in result.stderr


# -- control characters ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(v.name for v in VARIABLES if not v.file_of))
@pytest.mark.parametrize("char", ["\n", "\x00", "\x1b", "\r", "\t", "\x7f"])
def test_control_characters_are_refused_in_every_variable(name, char):
    value = f"/a{char}skip-grant-tables" if name != "MANTA_PRIVATE_KEY" else f"key{char}"
    if name == "MANTA_PRIVATE_KEY" and char in "\n\r":
        return  # PEM text: lines are allowed (next test)
    err = _error({**BASE, name: value})
    assert err.key == name and "control character" in err.problem


def test_control_characters_are_exit_2_and_a_secret_is_not_echoed():
    result = run_cli(["status"], {**BASE, "MYSQL_DATADIR": "/var/lib/mysql\nskip-grant-tables"})
    assert result.returncode == 2 and "MYSQL_DATADIR" in result.stderr and result.stderr.count("\n") == 1
    result = run_cli(["status"], {**BASE, "MYSQL_ROOT_PASSWORD": "root\npw-1234"})
    assert result.returncode == 2 and "MYSQL_ROOT_PASSWORD" in result.stderr and "pw-1234" not in result.stderr


def test_pem_text_keeps_its_newlines_and_each_line_is_scrubbed():
    config = Config.from_env({**BASE, "MANTA_PRIVATE_KEY": PEM})
    assert config.manta_private_key == PEM
    secrets = config.secrets()
    assert PEM in secrets and "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg" in secrets
    assert not any(s.startswith("-----") for s in secrets if s != PEM)


def test_external_secrets_are_scrubbed_too():
    config = Config.from_env({**BASE, "AWS_SECRET_ACCESS_KEY": "aws-secret-1", "AWS_SESSION_TOKEN": "aws-token-2"})
    assert {"aws-secret-1", "aws-token-2"} <= set(config.secrets())
    assert "aws-secret-1" not in repr(config)


# -- discovery TLS and credentials ------------------------------------------------------

CONSUL = {k: v for k, v in BASE.items() if k != "ETCD"}


def test_https_discovery_addresses(tmp_path):
    config = Config.from_env({**CONSUL, "CONSUL": "https://consul.example:8501"})
    assert config.consul == ("consul.example", 8501) and config.consul_scheme == "https"
    config = Config.from_env({**BASE, "ETCD": "https://10.0.0.1:2379,https://10.0.0.2:2379"})
    assert config.etcd == (("10.0.0.1", 2379), ("10.0.0.2", 2379)) and config.etcd_scheme == "https"
    assert Config.from_env(BASE).etcd_scheme == "http"
    err = _error({**BASE, "ETCD": "https://10.0.0.1:2379,10.0.0.2:2379"})
    assert err.key == "ETCD" and "mixes" in err.problem
    assert _error({**CONSUL, "CONSUL": "ftp://c:1"}).key == "CONSUL"


def test_tls_files_for_a_plain_http_service_are_refused(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    err = _error({**CONSUL, "CONSUL": "consul:8500", "CONSUL_CACERT": str(pem)})
    assert err.key == "CONSUL_CACERT" and "https://" in err.problem
    err = _error({**BASE, "ETCD_CERT": str(pem), "ETCD_KEY": str(pem)})
    assert err.key == "ETCD_CERT"
    Config.from_env({**BASE, "ETCD": "https://e:2379", "ETCD_CACERT": str(pem)})


@pytest.mark.parametrize("given,missing", [
    ("CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"), ("CONSUL_CLIENT_KEY", "CONSUL_CLIENT_CERT"),
    ("ETCD_CERT", "ETCD_KEY"), ("ETCD_KEY", "ETCD_CERT"),
    ("MYSQL_TLS_CA", "MYSQL_TLS_CERT"), ("MYSQL_TLS_KEY", "MYSQL_TLS_CA")])
def test_certificate_settings_come_together(given, missing, tmp_path):
    pem = tmp_path / "f.pem"
    pem.write_text("x")
    env = {**BASE, "ETCD": "https://e:2379"} if not given.startswith("CONSUL") else \
        {**CONSUL, "CONSUL": "https://c:8501"}
    err = _error({**env, given: str(pem)})
    assert err.key == missing


def test_etcd_user_and_password_come_together():
    assert _error({**BASE, "ETCD_USER": "u"}).key == "ETCD_PASSWORD"
    assert _error({**BASE, "ETCD_PASSWORD": "p"}).key == "ETCD_USER"


def test_peer_identity_is_verified_by_default_only_for_host_names(tmp_path):
    pem = tmp_path / "f.pem"
    pem.write_text("x")
    tls = {"MYSQL_TLS_CA": str(pem), "MYSQL_TLS_CERT": str(pem), "MYSQL_TLS_KEY": str(pem)}
    assert Config.from_env({**BASE, **tls}).mysql_tls
    assert not Config.from_env({**BASE, **tls}).verify_peer_identity  # 127.0.0.2: containers' IPs change
    assert Config.from_env({**BASE, **tls, "ADVERTISE_ADDRESS": "db1.example"}).verify_peer_identity
    assert not Config.from_env({**BASE, **tls, "ADVERTISE_ADDRESS": "db1.example",
                                "MYSQL_TLS_VERIFY_IDENTITY": "false"}).verify_peer_identity
    assert Config.from_env({**BASE, **tls, "MYSQL_TLS_VERIFY_IDENTITY": "true"}).verify_peer_identity


def test_plaintext_credentials_to_another_host_are_warned_about():
    assert Config.from_env(BASE).plaintext_warnings() == []
    local = Config.from_env({**BASE, "ETCD_USER": "u", "ETCD_PASSWORD": "p"})
    assert local.plaintext_warnings() == []  # loopback: never leaves the machine
    remote = Config.from_env({**BASE, "ETCD": "10.1.2.3:2379", "ETCD_USER": "u", "ETCD_PASSWORD": "p"})
    assert len(remote.plaintext_warnings()) == 1 and "ETCD" in remote.plaintext_warnings()[0]
    consul = Config.from_env({**CONSUL, "CONSUL": "consul:8500", "CONSUL_HTTP_TOKEN": "t"})
    assert "CONSUL_HTTP_TOKEN" in consul.plaintext_warnings()[0]
    assert Config.from_env({**CONSUL, "CONSUL": "https://consul:8501", "CONSUL_HTTP_TOKEN": "t"}) \
        .plaintext_warnings() == []
    s3 = {**BASE, "BACKUP_URL": "s3://bucket/p", "AWS_SECRET_ACCESS_KEY": "k"}
    assert "S3_ENDPOINT_URL" in Config.from_env({**s3, "S3_ENDPOINT_URL": "http://minio:9000"}).plaintext_warnings()[0]
    assert Config.from_env({**s3, "S3_ENDPOINT_URL": "http://127.0.0.1:9000"}).plaintext_warnings() == []
    assert Config.from_env({**s3, "S3_ENDPOINT_URL": "https://minio:9000"}).plaintext_warnings() == []
    for warning in remote.plaintext_warnings() + consul.plaintext_warnings():
        assert "=p" not in warning and " t " not in warning
