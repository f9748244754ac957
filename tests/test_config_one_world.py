"""One configuration world: the hooks (environment) and the supervisor (its file, rendered from the
same environment) read addresses, node names and the etcd prefix by the same rules, and report a
mistake with the same `ConfigError`."""
from __future__ import annotations

import json

import pytest

from triton_mysql import errors
from triton_mysql.config import DEFAULT_ETCD_PREFIX, VARIABLES, Config, ConfigError, _attr
from triton_mysql.supervisor import config as cb
from triton_mysql.supervisor.worker import DiscoveryConfig

HOOKS = {"NODE_NAME": "n1", "ADVERTISE_ADDRESS": "10.1.2.3"}
SHIPPED = '{"consul": "{{ .CONSUL }}", "etcd": {"endpoints": "{{ .ETCD }}"}}'


def hooks(env: dict[str, str]) -> Config:
    return Config.from_env({**HOOKS, **env})


def supervisor(env: dict[str, str]) -> cb.SupervisorConfig:
    return cb.load(SHIPPED, {**HOOKS, **env})


def test_one_error_class():
    assert ConfigError is errors.ConfigError is cb.ConfigError


@pytest.mark.parametrize("value,expected", [
    ("consul", ("consul", 8500)),  # the default port, as Consul's own clients read it
    ("consul:8501", ("consul", 8501)),
    ("http://consul/", ("consul", 8500)),
    ("https://10.0.0.1:8501", ("10.0.0.1", 8501)),
    ("[::1]", ("::1", 8500)),
    ("[::1]:8501", ("::1", 8501)),
])
def test_consul_addresses_read_alike(value, expected):
    assert hooks({"CONSUL": value}).consul == expected
    assert supervisor({"CONSUL": value}).discovery.consul == expected


@pytest.mark.parametrize("value,expected", [
    ("etcd", (("etcd", 2379),)),
    ("etcd-1,etcd-2:2380", (("etcd-1", 2379), ("etcd-2", 2380))),
])
def test_etcd_addresses_read_alike(value, expected):
    assert hooks({"ETCD": value}).etcd == expected
    assert supervisor({"ETCD": value}).discovery.etcd == expected


@pytest.mark.parametrize("value", ["consul:port", "consul:70000", "ftp://consul:1", "fe80::1:8500", "a/b:1",
                                   "bad host:1", "http://"])
def test_bad_consul_addresses_are_refused_alike(value):
    with pytest.raises(ConfigError) as hook_error:
        hooks({"CONSUL": value})
    with pytest.raises(ConfigError) as supervisor_error:
        supervisor({"CONSUL": value})
    assert hook_error.value.key == "CONSUL"
    assert supervisor_error.value.key.lower() == "consul"


@pytest.mark.parametrize("name,valid", [("db-1", True), ("a" * 63, True), ("a" * 64, False),
                                        ("-db", False), ("bad name", False)])
def test_one_node_name_rule(name, valid):
    env = {"NODE_NAME": name, "ETCD": "etcd"}
    if valid:
        assert hooks(env).node_name == name
        assert supervisor(env).node == name
        return
    with pytest.raises(ConfigError) as hook_error:
        hooks(env)
    with pytest.raises(ConfigError) as supervisor_error:
        supervisor(env)
    assert hook_error.value.key == supervisor_error.value.key == "NODE_NAME"


def test_one_etcd_prefix_default():
    assert hooks({"ETCD": "etcd"}).etcd_prefix == DEFAULT_ETCD_PREFIX
    assert supervisor({"ETCD": "etcd"}).discovery.etcd_prefix == DEFAULT_ETCD_PREFIX
    assert DiscoveryConfig().etcd_prefix == DEFAULT_ETCD_PREFIX


def test_config_defaults_are_the_table_defaults():
    """`VARIABLES` is the single source: a bare `Config()` has every default the table documents."""
    bare = Config()
    for var in VARIABLES:
        if var.file_of or var.name == "NODE_NAME":  # NODE_NAME's default is computed, not a value
            continue
        assert getattr(bare, _attr(var)) == var.default, var.name


def test_the_supervisor_file_refuses_what_the_hooks_refuse():
    data = json.dumps({"consul": "consul", "etcd": {"endpoints": "", "prefix": "rel"}})
    with pytest.raises(ConfigError) as info:
        cb.load(data, HOOKS)
    assert info.value.key == "etcd.prefix"
