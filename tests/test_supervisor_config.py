"""containerbuddy config: sources, templates, durations, commands, strict keys, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from triton_mysql.config import DEFAULT_ETCD_PREFIX
from triton_mysql.supervisor import config as cb
from triton_mysql.supervisor import schema
from triton_mysql.supervisor.backends import BackendConfig
from triton_mysql.supervisor.config import ConfigError
from triton_mysql.supervisor.main import parse_args
from triton_mysql.supervisor.template import TemplateError, render
from triton_mysql.supervisor.worker import DiscoveryConfig

CONTAINERBUDDY = str(Path(sys.executable).parent / "containerbuddy")
ENV = {"NODE_NAME": "n1", "ADVERTISE_ADDRESS": "10.1.2.3"}


def load(data: dict | str, env: dict | None = None) -> cb.SupervisorConfig:
    text = data if isinstance(data, str) else json.dumps(data)
    return cb.load(text, {**ENV, **(env or {})})


def error_of(data: dict | str, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(data, env)
    return str(info.value)


SERVICE = {"name": "mysql", "port": 3306, "health": "triton-mysql health", "poll": 2, "ttl": 10}


# -- templates -------------------------------------------------------------------

def test_template_variable_default_and_missing():
    env = {"A": "x", "EMPTY": ""}
    assert render('{{ .A }}-{{.A}}-{{ .MISSING }}-', env) == "x-x--"
    assert render('{{ .EMPTY | default "d" }} {{ .A | default "d" }} {{ default "z" .MISSING }}', env) == "d x z"
    assert render('{{ .MISSING | default `raw"q` }}', env) == 'raw"q'
    assert render('a  {{- .A -}}  b{{/* note */}}', env) == "axb"


@pytest.mark.parametrize("text", ["{{ .A | upper }}", "{{ env \"A\" }}", "{{ .A", "{{ if .A }}x{{ end }}"])
def test_template_unsupported_is_an_error(text):
    with pytest.raises(TemplateError):
        render(text, {"A": "x"})


def test_templates_render_before_json_parsing():
    text = ('{"consul": "{{ .CONSUL }}", "etcd": {"endpoints": "{{ .ETCD }}", '
            '"prefix": "{{ .ETCD_PREFIX | default "/p" }}"}, '
            '"services": [{"name": "{{ .SERVICE_NAME | default "mysql" }}", "port": {{ .PORT | default "3306" }}, '
            '"health": "true", "poll": 1, "ttl": 3}]}')
    c = load(text, {"ETCD": "127.0.0.1:2379,http://127.0.0.2:2380"})
    assert c.discovery == DiscoveryConfig(etcd=(("127.0.0.1", 2379), ("127.0.0.2", 2380)), etcd_prefix="/p")
    assert c.services[0].name == "mysql" and c.services[0].port == 3306
    # the same file serves Consul: empty etcd endpoints count as absent
    c = load(text, {"CONSUL": "http://consul:8500", "SERVICE_NAME": "db", "PORT": "3307"})
    assert c.discovery == DiscoveryConfig(consul=("consul", 8500))
    assert (c.services[0].name, c.services[0].port, c.services[0].id) == ("db", 3307, "db-n1")
    # and neither: with a service that is an error naming the key
    with pytest.raises(ConfigError) as info:
        load(text, {})
    assert info.value.key == "consul"


# -- sources -------------------------------------------------------------------------

def test_sources_file_url_path_and_literal(tmp_path):
    path = tmp_path / "cb.json"
    path.write_text(json.dumps({"onStart": "echo hi", "stopTimeout": "2s"}))
    for source in (f"file://{path}", str(path)):
        c = cb.load(source, ENV)
        assert c.path == str(path) and c.source == source
        assert c.on_start == schema.Command(("echo", "hi")) and c.stop_timeout == 2.0
    literal = cb.load('  {"preStart": ["a b", "c"]}', ENV)
    assert literal.path is None and literal.on_start == schema.Command(("a b", "c"))


@pytest.mark.parametrize("source,key", [
    ("/nonexistent/cb.json", "config"),
    ("consul://x/y", "config"),
    ('{"services": [}', "config"),
    ("[1, 2]", "config"),
])
def test_bad_sources(tmp_path, source, key):
    if source.startswith("["):
        (tmp_path / "a.json").write_text(source)
        source = str(tmp_path / "a.json")
    with pytest.raises(ConfigError) as info:
        cb.load(source, ENV)
    assert info.value.key == key


def test_invalid_json_names_line_and_column():
    assert "line 2 column" in error_of('{"onStart": "x",\n "preStop": }')


# -- values --------------------------------------------------------------------------

@pytest.mark.parametrize("value,seconds", [
    (5, 5.0), (2.5, 2.5), ("7", 7.0), ("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("1.5s", 1.5), ("250us", 0.00025),
])
def test_durations(value, seconds):
    assert schema.duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10 parsecs", "s", "", "-1s", -2, 0, True, None, "1d", [1]])
def test_bad_durations(value):
    with pytest.raises(ConfigError) as info:
        schema.duration(value, "services[0].poll")
    assert info.value.key == "services[0].poll"


def test_commands_split_like_a_shell_without_one():
    assert schema.command("sh -c 'exit 7'", "x") == schema.Command(("sh", "-c", "exit 7"))
    assert schema.command(["/bin/echo", "a b", 3], "x") == schema.Command(("/bin/echo", "a b", "3"))
    assert schema.command("echo $HOME | cat", "x").argv == ("echo", "$HOME", "|", "cat")
    assert schema.command("", "x") is None and schema.command(None, "x") is None
    for bad in ("echo 'unterminated", {"a": 1}, [["nested"]]):
        with pytest.raises(ConfigError):
            schema.command(bad, "preStop")
    with pytest.raises(ConfigError):
        schema.command("", "services[0].health", required=True)


def test_full_config():
    c = load({
        "consul": "consul:8500", "onStart": "a", "preStop": ["b"], "postStop": "c", "stopTimeout": 0,
        "services": [{**SERVICE, "timeout": "1500ms", "tags": ["x", "y"], "interfaces": ["eth0", "10.0.0.0/8"]}],
        "backends": [{"name": "mysql-primary", "poll": "1s", "onChange": "triton-mysql onChange", "tag": "x"}],
        "tasks": [{"name": "snap", "command": "triton-mysql snapshot", "frequency": "10s", "timeout": "5s"},
                  {"command": "/usr/bin/backup", "frequency": 60}],
        "coprocesses": [{"command": "a", "restarts": "unlimited"}, {"name": "b", "command": "b", "restarts": 3},
                        {"command": "c", "restarts": "never"}, {"command": "d"}],
        "logging": {"level": "warn", "format": "json", "output": "stdout"},
    })
    s = c.services[0]
    assert (s.id, s.address, s.poll, s.ttl, s.timeout, s.tags) == ("mysql-n1", "10.1.2.3", 2.0, 10.0, 1.5, ("x", "y"))
    assert s.spec().id == "mysql-n1" and s.spec().ttl == 10.0
    assert c.backends[0] == BackendConfig("mysql-primary", 1.0, schema.Command(("triton-mysql", "onChange")), None, "x")
    assert [(t.name, t.frequency, t.timeout) for t in c.tasks] == [("snap", 10.0, 5.0), ("backup", 60.0, 60.0)]
    assert [(p.name, p.restarts) for p in c.coprocesses] == [("a", None), ("b", 3), ("c", 0), ("d", 0)]
    assert c.logging == cb.LoggingConfig("WARNING", "json", "stdout")
    assert c.stop_timeout == 0.0 and c.pre_stop == schema.Command(("b",))


def test_timeout_defaults_to_poll_and_node_name_to_env():
    c = load({"etcd": {"endpoints": ["127.0.0.1:2379"]}, "services": [SERVICE]}, {"NODE_NAME": "db-7"})
    assert c.services[0].timeout == 2.0 and c.services[0].id == "mysql-db-7"
    assert c.discovery.etcd_prefix == DEFAULT_ETCD_PREFIX


def test_address_from_interfaces_when_not_advertised():
    env = {"NODE_NAME": "n1"}
    c = cb.load(json.dumps({"consul": "c:1", "services": [{**SERVICE, "interfaces": ["static:192.0.2.9"]}]}), env)
    assert c.services[0].address == "192.0.2.9"
    c = cb.load(json.dumps({"consul": "c:1", "services": [{**SERVICE, "interfaces": "127.0.0.0/8"}]}), env)
    assert c.services[0].address == "127.0.0.1"
    c = cb.load(json.dumps({"consul": "c:1", "services": [{**SERVICE, "interfaces": ["nosuch0", "lo"]}]}), env)
    assert c.services[0].address == "127.0.0.1"
    with pytest.raises(ConfigError) as info:
        cb.load(json.dumps({"consul": "c:1", "services": [{**SERVICE, "interfaces": ["nosuch0"]}]}), env)
    assert info.value.key == "services[0].interfaces"


@pytest.mark.parametrize("data,key", [
    ({"services": [{**SERVICE, "helth": "x"}], "consul": "c:1"}, "services[0].helth"),
    ({"onstart": "x"}, "onstart"),
    ({"backends": [{"name": "a", "poll": 1, "onChange": "x", "onchange": "y"}], "consul": "c:1"}, "backends[0].onchange"),
    ({"tasks": [{"command": "x", "frequency": 1, "every": 2}]}, "tasks[0].every"),
    ({"coprocesses": [{"command": "x", "restart": 1}]}, "coprocesses[0].restart"),
    ({"etcd": {"endpoints": "a:1", "prefx": "/x"}}, "etcd.prefx"),
    ({"logging": {"lvl": "x"}}, "logging.lvl"),
    ({"services": [{**SERVICE, "poll": "often"}], "consul": "c:1"}, "services[0].poll"),
    ({"services": [{**SERVICE, "ttl": 0}], "consul": "c:1"}, "services[0].ttl"),
    ({"services": [{**SERVICE, "port": 70000}], "consul": "c:1"}, "services[0].port"),
    ({"services": [{k: v for k, v in SERVICE.items() if k != "health"}], "consul": "c:1"}, "services[0].health"),
    ({"services": [{**SERVICE, "name": "bad name"}], "consul": "c:1"}, "services[0].name"),
    ({"services": [SERVICE, SERVICE], "consul": "c:1"}, "services[1].name"),
    ({"services": {"name": "x"}}, "services"),
    ({"services": ["x"], "consul": "c:1"}, "services[0]"),
    ({"backends": [{"name": "a", "poll": 1}], "consul": "c:1"}, "backends[0].onChange"),
    ({"coprocesses": [{"command": "x", "restarts": "sometimes"}]}, "coprocesses[0].restarts"),
    ({"consul": "a:1", "etcd": {"endpoints": ["b:2"]}}, "consul"),
    ({"consul": "ftp://a:1"}, "consul"),
    ({"consul": "a:port"}, "consul"),
    ({"etcd": {"endpoints": [1]}}, "etcd.endpoints"),
    ({"etcd": {"endpoints": "a:1", "prefix": "rel"}}, "etcd.prefix"),
    ({"stopTimeout": "soon"}, "stopTimeout"),
    ({"onStart": "a", "preStart": "b"}, "preStart"),
    ({"logging": {"level": "LOUD"}}, "logging.level"),
])
def test_mistakes_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        load(data)
    assert info.value.key == key, str(info.value)


def test_containerpilot_keys_are_accepted_with_a_warning():
    c = load({"consul": "c:1", "telemetry": {"port": 9090, "metrics": [{"name": "x"}]},
              "services": [{**SERVICE, "consul": {"enableTagOverride": True}}]})
    assert len(c.warnings) == 2
    assert c.warnings[0].startswith("services[0].consul:") or c.warnings[1].startswith("services[0].consul:")
    assert any(w.startswith("telemetry.metrics:") for w in c.warnings)
    assert c.telemetry is not None and c.telemetry.port == 9090


def test_no_discovery_needed_without_services_or_backends():
    c = load({"etcd": {"endpoints": ""}, "consul": "", "onStart": "true"})
    assert c.discovery is None


# -- command line ----------------------------------------------------------------------

def test_parse_args():
    assert parse_args(["-config", "x", "mysqld", "-v"]).command == ["mysqld", "-v"]
    args = parse_args(["--config=file:///a", "--", "-weird", "arg"])
    assert (args.config, args.command) == ("file:///a", ["-weird", "arg"])
    assert parse_args(["sh"]).config is None


def run_cb(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CONTAINERBUDDY, *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", **ENV, **(env or {})})


def test_config_error_exits_2_with_one_line(tmp_path):
    path = tmp_path / "cb.json"
    path.write_text(json.dumps({"consul": "c:1", "services": [{**SERVICE, "helth": "x"}]}))
    for args, env in ((["-config", f"file://{path}", "true"], None), (["true"], {"CONTAINERBUDDY": str(path)})):
        result = run_cb(*args, env=env)
        assert result.returncode == 2
        assert result.stderr == "containerbuddy: config error: services[0].helth: unknown key\n"


@pytest.mark.parametrize("args", [
    ["-config", '{"stopTimeout": "forever"}', "true"],
    ["-config", '{"onStart": "{{ .X | upper }}"}', "true"],
    ["-config", "/nonexistent.json", "true"],
    ["-bogus", "true"],
    ["-config", '{"onStart": "true"}'],
])
def test_other_command_line_mistakes_exit_2(args):
    result = run_cb(*args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("containerbuddy: ")
    assert "Traceback" not in result.stderr


def test_template_flag_prints_rendered_config():
    result = run_cb("-config", '{"onStart": "{{ .GREETING | default "hi" }}"}', "-template", env={"GREETING": "yo"})
    assert result.returncode == 0 and result.stdout == '{"onStart": "yo"}'
