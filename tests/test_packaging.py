"""Packaging: Dockerfile, bin/install-image, docker-compose*.yml, .env.example, .dockerignore.

These tests need no Docker engine (tests/test_image.py builds and runs the
image for real): they check the files against the config module (variable
names, values, timings), against the supervisor config and against each other,
so that a renamed variable or a changed timeout cannot drift unnoticed. The
compose files are also checked by docker-compose 1.29 itself (`config`) when it
is installed. The image's install step (bin/install-image) runs for real, into
a temporary root, from a build context made by the rules of .dockerignore.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml  # PyYAML: installed with the [test] extra (moto[server] depends on it)

from triton_mysql.config import VARIABLE_NAMES, VARIABLES, Config
from triton_mysql.supervisor import config as supervisor_config
from triton_mysql.supervisor import schema

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
# The optional parts are override files (both compose generations take them).
OVERRIDES = {"etcd": ROOT / "docker-compose.etcd.yml", "s3": ROOT / "docker-compose.s3.yml"}
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
SUPERVISOR_JSON = ROOT / "etc" / "containerbuddy.json"
INSTALL_SCRIPT = "bin/install-image"

HEALTH_ARGV = ["triton-mysql", "health", "--check-only"]
# Compose's own variables, read from .env (COMPOSE_FILE picks the override files),
# and the compose file's own knob for the open-files limit.
COMPOSE_NAMES = {"COMPOSE_FILE", "COMPOSE_PROFILES", "NOFILE_LIMIT"}
# Debian's sbin directories (mariadbd lives there); a non-login root shell may lack them.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
DEFAULTS = {v.name: v.default for v in VARIABLES}
SECRETS = {v.name for v in VARIABLES if v.secret}


# ---------------------------------------------------------------------------
# Parsers for the files under test

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not pending:
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return out


def dockerfile_all(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


def dockerfile_one(keyword: str) -> str:
    found = dockerfile_all(keyword)
    assert len(found) == 1, f"Dockerfile must have exactly one {keyword} (found {len(found)})"
    return found[0]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_all("ENV") + dockerfile_all("ARG"):
        words = shlex.split(args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) argument, e.g. of ENTRYPOINT or CMD."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        raise AssertionError(f"not exec form (a JSON array): {args}") from None
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck_argv(args: str) -> list[str]:
    """The command of `HEALTHCHECK [--opt=v ...] CMD ...`."""
    options, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    assert all(o.startswith("--") for o in options.split()), f"unexpected HEALTHCHECK options: {options}"
    command = command.strip()
    return exec_form(command) if command.startswith("[") else shlex.split(command)


def compose(path: Path = COMPOSE) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def strings_in(value: object):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def interpolated_names(data: dict) -> set[str]:
    """Variables compose substitutes (`$VAR`, `${VAR...}`); `$$` is a literal dollar."""
    names = set()
    for text in strings_in(data):
        text = text.replace("$$", "")
        names.update(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    return names


_ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def dotenv_value(raw: str) -> str:
    """A value as compose's env-file parser reads it (quotes removed, inline comment dropped)."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def env_example() -> tuple[dict[str, str], list[dict[str, str]]]:
    """(active assignments, commented-out example blocks): a block is a run of `# NAME=value` lines."""
    active: dict[str, str] = {}
    blocks: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match and match.group(1):
            if current is None:
                current = {}
                blocks.append(current)
            current[match.group(2)] = dotenv_value(match.group(3))
            continue
        current = None
        if match:
            assert match.group(2) not in active, f".env.example sets {match.group(2)} twice"
            active[match.group(2)] = dotenv_value(match.group(3))
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f".env.example: not NAME=value: {line!r}"
    return active, blocks


def boto3_env_names() -> set[str]:
    """The environment variables botocore reads: credentials and session settings."""
    import botocore.configprovider as provider
    from botocore.credentials import EnvProvider

    names = {EnvProvider.ACCESS_KEY, EnvProvider.SECRET_KEY, EnvProvider.EXPIRY_TIME, *EnvProvider.TOKENS}
    for spec in provider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values():
        env = spec[1]
        names.update([env] if isinstance(env, str) else (env or ()))
    return {n for n in names if n}


def effective(name: str) -> object:
    """A variable's value in a node started from .env.example: its line there, else the default."""
    active, _ = env_example()
    value = active.get(name, "")
    if value == "":
        return DEFAULTS[name]
    parse = next(v.parse for v in VARIABLES if v.name == name)
    return parse(value)


def mysql_service() -> dict:
    return compose()["services"]["mysql"]


def node_environment() -> dict[str, str]:
    """What a mysql container gets: .env.example's values, then compose's `environment` on top."""
    active, _ = env_example()
    env = {k: v for k, v in active.items() if v != ""}
    env.update(service_env(mysql_service()))
    return env


# ---------------------------------------------------------------------------
# docker-compose.yml

def test_compose_has_consul_as_discovery_and_the_mysql_nodes():
    services = compose()["services"]
    assert set(services) == {"discovery", "mysql", "haproxy"}  # haproxy: tests/test_haproxy_config.py
    assert services["discovery"]["image"].startswith("hashicorp/consul:")
    assert "-server" in services["discovery"]["command"] or "-dev" in services["discovery"]["command"]


def test_optional_parts_are_override_files_for_both_compose_generations():
    """docker-compose 1.29 (v1) rejects `required: false` and ignores profiles when resolving depends_on;
    overrides merge and cannot remove a dependency. So: no profiles, no `required`, and the base file's
    nodes depend only on `discovery`, which every variant defines under that name."""
    for path in [COMPOSE, *OVERRIDES.values()]:
        data = compose(path)
        assert "version" not in data, f"{path.name}: `version` is obsolete in v2 (and not needed by 1.29)"
        for name, service in data["services"].items():
            assert "profiles" not in service, f"{path.name}: {name} uses profiles (use an override file)"
            for target, condition in (service.get("depends_on") or {}).items():
                assert isinstance(condition, dict) and set(condition) == {"condition"}, \
                    f"{path.name}: {name} depends_on {target}: only `condition` is common to v1 and v2"
    assert set(mysql_service()["depends_on"]) == {"discovery"}
    etcd = compose(OVERRIDES["etcd"])["services"]
    assert set(etcd) == {"discovery", "mysql"}, "the etcd variant replaces `discovery` under its name"
    assert service_env(etcd["mysql"]) == {"CONSUL": "", "ETCD": "discovery:2379"}
    assert Config.from_env({"CONSUL": "", "ETCD": "discovery:2379"}).discovery_kind == "etcd"
    assert (ROOT / etcd["discovery"]["build"]["dockerfile"]).is_file()
    assert set(compose(OVERRIDES["s3"])["services"]) == {"s3", "mysql"}


COMBINATIONS = [[], ["etcd"], ["s3"], ["etcd", "s3"]]


@pytest.mark.parametrize("variants", COMBINATIONS, ids=lambda v: "+".join(["base", *v]))
def test_docker_compose_v1_accepts_every_combination(variants, tmp_path):
    """`docker-compose config` (1.29, Debian's) validates the merged files against its schema."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose (v1) is not installed (Debian package docker-compose)")
    (tmp_path / ".env").write_text("")
    argv = [binary, "--project-directory", str(tmp_path), "-f", str(COMPOSE)]
    for name in variants:
        argv += ["-f", str(OVERRIDES[name])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = _run(argv + ["config"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    mysql = merged["services"]["mysql"]
    assert mysql["environment"]["MYSQL_DATADIR"] == "/var/lib/mysql/data"
    assert mysql["ulimits"]["nofile"] == {"soft": 65536, "hard": 65536}
    assert set(mysql["depends_on"]) == {"discovery", *(["s3"] if "s3" in variants else [])}
    if "etcd" in variants:
        assert mysql["environment"]["ETCD"] == "discovery:2379" and mysql["environment"]["CONSUL"] == ""
    else:
        assert mysql["environment"]["CONSUL"] == "discovery:8500"


def test_mysql_is_built_from_this_dockerfile():
    build = mysql_service()["build"]
    context = build if isinstance(build, str) else build.get("context")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert context == "."
    assert (ROOT / dockerfile).resolve() == DOCKERFILE


def test_mysql_can_be_scaled():
    """`--scale mysql=N`: nothing in the service may be unique to one container."""
    service = mysql_service()
    for key in ("container_name", "hostname", "mac_address"):
        assert key not in service, f"{key} would be the same for every replica"
    for port in service.get("ports", []):
        if isinstance(port, dict):
            assert not port.get("published"), f"fixed host port {port}"
            continue
        parts = str(port).split("/")[0].split(":")
        host_port = parts[-2] if len(parts) >= 2 else ""
        assert host_port == "", f"fixed host port in {port!r}: replicas would clash"
    env = node_environment()
    for name in ("NODE_NAME", "ADVERTISE_ADDRESS"):
        assert name not in env, f"{name} must default per container, not be set for all replicas"
    datadir = node_environment().get("MYSQL_DATADIR") or str(effective("MYSQL_DATADIR"))
    for volume in service.get("volumes", []):
        target = volume.get("target") if isinstance(volume, dict) else str(volume).split(":")[1]
        assert not datadir.startswith(target.rstrip("/") + "/") and target.rstrip("/") != datadir, \
            "a datadir volume in compose would be shared by every replica"


def test_mysql_keeps_containerbuddy_as_pid_1():
    assert not mysql_service().get("init"), "init: true puts another PID 1 in front of containerbuddy"
    assert "entrypoint" not in mysql_service() and "command" not in mysql_service()


def test_mysql_restarts_unless_stopped():
    assert mysql_service()["restart"] == "unless-stopped"


def test_stop_grace_period_covers_hand_over_and_stop_timeout():
    """Docker must not SIGKILL the node during preStop (STOP_GRACE) + mysqld's stop (stopTimeout)."""
    stop_timeout = supervisor_config.load(str(SUPERVISOR_JSON), node_environment()).stop_timeout
    grace = schema.duration(mysql_service()["stop_grace_period"], "stop_grace_period")
    needed = float(effective("STOP_GRACE")) + stop_timeout
    assert grace > needed, f"stop_grace_period {grace:g} s <= STOP_GRACE + stopTimeout = {needed:g} s"


def test_healthcheck_gives_the_verdict_only():
    compose_check = mysql_service()["healthcheck"]
    test = compose_check["test"]
    argv = test[1:] if isinstance(test, list) and test[0] == "CMD" else shlex.split(test[1] if isinstance(test, list) else test)
    assert argv == HEALTH_ARGV
    assert healthcheck_argv(dockerfile_one("HEALTHCHECK")) == HEALTH_ARGV


def test_mysql_uses_the_compose_consul_and_the_env_file():
    service = mysql_service()
    env_file = service["env_file"]
    files = [env_file] if isinstance(env_file, str) else [e if isinstance(e, str) else e["path"] for e in env_file]
    assert files == [".env"]
    consul = service_env(service)["CONSUL"]
    host, _, port = consul.rpartition(":")
    assert host in compose()["services"], f"CONSUL={consul} does not name a compose service"
    assert Config.from_env({"CONSUL": consul}).consul == (host, int(port))
    assert host in service["depends_on"]


def test_volume_layout_keeps_the_datadir_one_level_below_the_volume():
    """SPEC §7: the volume is /var/lib/mysql, MYSQL_DATADIR=/var/lib/mysql/data (image and compose)."""
    assert dockerfile_env()["MYSQL_DATADIR"] == "/var/lib/mysql/data"
    assert service_env(mysql_service())["MYSQL_DATADIR"] == "/var/lib/mysql/data"
    volume = dockerfile_one("VOLUME")
    paths = exec_form(volume) if volume.startswith("[") else volume.split()
    assert paths == [str(Path(dockerfile_env()["MYSQL_DATADIR"]).parent)]


def test_nofile_limit_is_set_for_the_nodes():
    nofile = mysql_service()["ulimits"]["nofile"]
    assert nofile == {"soft": "${NOFILE_LIMIT:-65536}", "hard": "${NOFILE_LIMIT:-65536}"}


def test_every_environment_name_is_known():
    """A renamed or misspelt variable in compose or .env.example fails here."""
    known = VARIABLE_NAMES | boto3_env_names() | COMPOSE_NAMES
    data = compose()
    used = {f"compose interpolation {n}": n for n in interpolated_names(data)}
    for name, service in data["services"].items():
        used.update({f"services.{name}.environment {n}": n for n in service_env(service)})
    active, blocks = env_example()
    used.update({f".env.example {n}": n for n in active})
    used.update({f".env.example (commented) {n}": n for block in blocks for n in block})
    unknown = sorted(where for where, name in used.items() if name not in known)
    assert not unknown, f"names the config module (or boto3) does not know: {unknown}"
    assert any(n in VARIABLE_NAMES for n in active), "found no variable at all: is the parser broken?"


def test_env_example_documents_what_compose_passes():
    documented = set(env_example()[0]) | {n for block in env_example()[1] for n in block}
    text = ENV_EXAMPLE.read_text()
    for name in service_env(mysql_service()):
        assert name in documented or re.search(rf"^#\s+{name}\s", text, re.M), f"{name} is not documented in .env.example"
    for name in ("MYSQL_REPL_USER", "MYSQL_REPL_PASSWORD", "BACKUP_URL", "STOP_GRACE", "SESSION_TTL"):
        assert name in documented, f".env.example must document {name}"


def _placeholders(env: dict[str, str]) -> dict[str, str]:
    """Secrets are empty in .env.example (the user sets them): fill in stand-ins to validate the rest."""
    out = dict(env)
    for name in SECRETS:
        if not out.get(name) and name not in ("MANTA_PRIVATE_KEY", "ETCD_PASSWORD"):  # ETCD_PASSWORD needs ETCD_USER
            out[name] = "stand-in-secret"
    return out


def test_env_example_is_a_valid_configuration():
    """Every value in .env.example, and each commented-out alternative block, passes the config module."""
    base = _placeholders(node_environment())
    config = Config.from_env(base).require("discovery", "replication", "storage")
    assert config.discovery_kind == "consul"
    _, blocks = env_example()
    assert blocks, ".env.example has no commented alternative (S3) block"
    for block in blocks:
        env = dict(base)
        env.update({k: v for k, v in block.items() if k not in COMPOSE_NAMES})
        Config.from_env(env).require("discovery", "replication", "storage")


def test_secrets_are_not_filled_in():
    active, blocks = env_example()
    for name in SECRETS:
        assert active.get(name, "") == "", f".env.example ships a value for the secret {name}"


def test_file_backups_are_on_a_volume_every_node_shares():
    """file:// snapshots only work across nodes when every container sees the same directory."""
    url = str(effective("BACKUP_URL"))
    assert url.startswith("file://"), "the compose default storage is file:// on a shared volume"
    path = urlparse(url).path
    named = set(compose().get("volumes") or {})
    mounts = {}
    for volume in mysql_service().get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source")
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    assert path in mounts, f"BACKUP_URL {url}: {path} is not mounted in the mysql service"
    assert mounts[path] in named, f"{path} must be a named volume (shared by every node), not {mounts[path]!r}"


def test_s3_block_points_at_the_s3_override_service():
    _, blocks = env_example()
    s3_blocks = [b for b in blocks if b.get("BACKUP_URL", "").startswith("s3://")]
    assert len(s3_blocks) == 1
    block = s3_blocks[0]
    assert block["COMPOSE_FILE"].split(":") == [COMPOSE.name, OVERRIDES["s3"].name]
    override = compose(OVERRIDES["s3"])["services"]
    endpoint = urlparse(block["S3_ENDPOINT_URL"])
    assert endpoint.hostname in override, f"S3_ENDPOINT_URL {endpoint.geturl()} names no service of the override"
    server = override[endpoint.hostname]
    assert str(endpoint.port) in [str(p) for p in server.get("expose", [])]
    assert block.get("S3_CREATE_BUCKET") == "true"
    assert "s3" in override["mysql"]["depends_on"]


def test_etcd_block_selects_the_etcd_override():
    _, blocks = env_example()
    etcd_blocks = [b for b in blocks if OVERRIDES["etcd"].name in b.get("COMPOSE_FILE", "")]
    assert len(etcd_blocks) == 1
    assert etcd_blocks[0]["COMPOSE_FILE"].split(":") == [COMPOSE.name, OVERRIDES["etcd"].name]


# ---------------------------------------------------------------------------
# etc/containerbuddy.json

def test_supervisor_config_templates_use_known_variables():
    names = set()
    text = SUPERVISOR_JSON.read_text()
    for action in re.findall(r"\{\{(.*?)\}\}", text):
        names.update(re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)", re.sub(r'"[^"]*"', "", action.replace('\\"', '"'))))
    assert names, "no template found: is the parser broken?"
    unknown = sorted(names - VARIABLE_NAMES)
    assert not unknown, f"etc/containerbuddy.json uses variables the config module does not know: {unknown}"


def test_supervisor_config_loads_with_the_compose_environment():
    cfg = supervisor_config.load(str(SUPERVISOR_JSON), node_environment())
    assert cfg.discovery is not None and cfg.discovery.kind == "consul"
    assert [s.name for s in cfg.services] == [effective("SERVICE_NAME")]
    assert cfg.services[0].port == effective("MYSQL_PORT")


# ---------------------------------------------------------------------------
# Dockerfile

def test_dockerfile_base_and_process_model():
    assert dockerfile_one("FROM") == "debian:bookworm-slim"
    assert exec_form(dockerfile_one("ENTRYPOINT")) == ["containerbuddy"]
    assert exec_form(dockerfile_one("CMD")) == ["triton-mysqld"]
    assert dockerfile_one("STOPSIGNAL") == "SIGTERM"
    assert dockerfile_env()["CONTAINERBUDDY"] == "file:///etc/containerbuddy.json"
    assert dockerfile_one("EXPOSE").split() == [str(DEFAULTS["MYSQL_PORT"])]


def test_dockerfile_builds_offline_with_buildkits_own_frontend():
    """A `# syntax=` line makes BuildKit fetch a frontend image from a registry; RUN --mount needs none."""
    first = DOCKERFILE.read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, re.I), f"Dockerfile starts with {first!r}"
    assert all("--mount=" in run for run in dockerfile_all("RUN")), "the install steps bind-mount (BuildKit)"


def test_dockerfile_installs_with_the_one_script_before_the_volume():
    """Packages first (a layer that only the script invalidates), then the rest: both steps are
    bin/install-image, together a full install into / (--packages-only, then --no-apt)."""
    instructions = [kw for kw, _ in dockerfile_instructions()]
    packages, rest = dockerfile_all("RUN")
    assert "source=bin/install-image" in packages and packages.rstrip().endswith("--packages-only")
    assert INSTALL_SCRIPT in rest and rest.rstrip().endswith("--no-apt") and "--root" not in rest
    assert "--mount=type=bind,target=/src" in rest and "--src /src" in rest
    volume = dockerfile_one("VOLUME")
    paths = exec_form(volume) if volume.startswith("[") else volume.split()
    assert paths == ["/var/lib/mysql"]
    last_run = max(i for i, kw in enumerate(instructions) if kw == "RUN")
    assert last_run < instructions.index("VOLUME"), "changes after VOLUME are discarded"
    assert (ROOT / INSTALL_SCRIPT).stat().st_mode & 0o111, f"{INSTALL_SCRIPT} is not executable"


def test_dockerfile_bakes_in_no_secret():
    env = dockerfile_env()
    suspicious = [k for k in env if k in SECRETS or re.search(r"PASSWORD|SECRET|PRIVATE_KEY|TOKEN", k)]
    assert not suspicious, f"secrets in ENV/ARG: {suspicious}"
    assert "CONTAINERBUDDY" in env, "found no ENV at all: is the parser broken?"


# ---------------------------------------------------------------------------
# .dockerignore and the build context

def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(os.path.normpath(line.lstrip("!")).lstrip("/"))))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory excludes it."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, rx in rules:
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def copy_build_context(dest: Path) -> None:
    """What `docker build .` sends: the checkout minus .dockerignore (no `!` exception is used there)."""
    rules = dockerignore_rules()
    assert not any(negate for negate, _ in rules), "copy_build_context does not handle ! exceptions"
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not ignored(rel_dir + d, rules)]
        for name in filenames:
            if not ignored(rel_dir + name, rules):
                target = dest / (rel_dir + name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / name, target, follow_symlinks=False)


def test_dockerignore_keeps_secrets_out_and_what_the_install_needs_in():
    rules = dockerignore_rules()
    for path in (".env", ".env.local", ".git/config", ".venv/bin/python", "triton_mysql/__pycache__/x.pyc",
                 ".docker/dockerd.log", "docker-compose.etcd.yml"):
        assert ignored(path, rules), f"{path} would be sent to the Docker daemon"
    for path in (INSTALL_SCRIPT, "bin/triton-mysqld", "etc/containerbuddy.json", "setup.cfg", "pyproject.toml",
                 "README.md", "triton_mysql/__init__.py", "triton_mysql/supervisor/main.py"):
        assert not ignored(path, rules), f"{path} is needed by {INSTALL_SCRIPT} but ignored"


# ---------------------------------------------------------------------------
# bin/install-image, for real

def _path_with_sbin() -> str:
    parts = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    return os.pathsep.join(parts + [d for d in SBIN_DIRS if d not in parts])


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """bin/install-image --no-apt into a temporary root, from a .dockerignore'd copy of the checkout."""
    base = tmp_path_factory.mktemp("install-image")
    context, root = base / "context", base / "root"
    copy_build_context(context)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = _path_with_sbin()
    result = _run(["sh", str(context / INSTALL_SCRIPT), "--root", str(root), "--src", str(context), "--no-apt"],
                  env, base, timeout=600)
    assert result.returncode == 0, f"install-image failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return {"base": base, "context": context, "root": root, "env": env}  # type: ignore[dict-item]


def test_install_image_lays_out_the_image(installed):
    root, context = installed["root"], installed["context"]
    venv = root / "opt" / "triton-mysql"
    bindir = root / "usr" / "local" / "bin"
    for cmd in ("triton-mysql", "containerbuddy"):
        link = bindir / cmd
        assert link.is_symlink() and not os.readlink(link).startswith("/"), f"{link} must be a relative symlink"
        assert link.resolve() == (venv / "bin" / cmd).resolve()
    mysqld = bindir / "triton-mysqld"
    assert os.access(mysqld, os.X_OK) and mysqld.read_bytes() == (context / "bin/triton-mysqld").read_bytes()
    assert (root / "etc/containerbuddy.json").read_bytes() == SUPERVISOR_JSON.read_bytes()
    image_cnf = (root / "etc/mysql/triton-mysql.d/00-image.cnf").read_text().splitlines()
    assert image_cnf[1:] == ["[mysqld]", "skip_name_resolve=ON"], image_cnf
    dirs = ["var/lib/mysql", "run/mysqld", "etc/mysql/triton-mysql.d", "var/backups/triton-mysql"]
    for d in dirs:
        assert (root / d).is_dir(), d
    assert not any((root / "var/lib/mysql").iterdir()), "the datadir must start empty"
    if os.geteuid() == 0:
        import pwd

        mysql_uid = pwd.getpwnam("mysql").pw_uid
        for d in dirs:
            assert (root / d).stat().st_uid == mysql_uid, f"{d} is not owned by mysql"


def test_installed_package_is_the_venvs_own_copy(installed):
    """The venv imports its installed copy (not the checkout) with every dependency, manta included."""
    root, base, env = installed["root"], installed["base"], installed["env"]
    python = root / "opt" / "triton-mysql" / "bin" / "python"
    code = "import triton_mysql, pymysql, click, boto3, etcd3gw, consul, manta; print(triton_mysql.__file__)"
    result = _run([str(python), "-c", code], env, base)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve().is_relative_to((root / "opt" / "triton-mysql").resolve())


def test_installed_commands_run(installed):
    root, base, env = installed["root"], installed["base"], installed["env"]
    bindir = root / "usr" / "local" / "bin"
    result = _run([str(bindir / "triton-mysql"), "--help"], env, base)
    assert result.returncode == 0, result.stderr
    for command in ("onStart", "health", "onChange", "snapshot", "preStop", "postStop", "status"):
        assert command in result.stdout, f"`triton-mysql --help` does not list {command}"
    result = _run([str(bindir / "containerbuddy"), "-config", "{}", "true"], env, base)
    assert result.returncode == 0, result.stderr
    result = _run([str(bindir / "containerbuddy"), "-config", "{}", "sh", "-c", "exit 7"], env, base)
    assert result.returncode == 7, "containerbuddy must exit with its app's code"


def test_installed_supervisor_loads_the_installed_config(installed):
    root, base = installed["root"], installed["base"]
    env = dict(installed["env"], **node_environment())
    python = root / "opt" / "triton-mysql" / "bin" / "python"
    code = ("import sys; from triton_mysql.supervisor import config as c; "
            "cfg = c.load(sys.argv[1]); print(cfg.discovery.kind, cfg.stop_timeout, cfg.services[0].name)")
    result = _run([str(python), "-c", code, f"file://{root}/etc/containerbuddy.json"], env, base)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "consul"


def test_installed_cmd_starts_mariadbd_with_the_generated_config(installed):
    """triton-mysqld finds the server and passes --defaults-file=$MYSQL_CNF first (here with --version)."""
    root, base = installed["root"], installed["base"]
    cnf = base / "empty.cnf"
    cnf.write_text("")
    env = dict(installed["env"], MYSQL_CNF=str(cnf))
    result = _run([str(root / "usr/local/bin/triton-mysqld"), "--version"], env, base)
    assert result.returncode == 0, result.stderr
    assert "MariaDB" in result.stdout


def test_install_image_fails_clearly_without_the_server(tmp_path):
    """--no-apt on a machine without mariadbd: a clear error, and nothing installed."""
    found = shutil.which("mariadbd", path=_path_with_sbin())
    if found is None:
        pytest.skip("mariadbd is not installed here, so hiding it proves nothing")
    server_dir = Path(found).parent.resolve()
    path = [d for d in _path_with_sbin().split(os.pathsep) if d and Path(d).resolve() != server_dir]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(path)
    needed = ("sh", "dirname", "mkdir", "python3")
    if shutil.which("mariadbd", path=env["PATH"]) or not all(shutil.which(p, path=env["PATH"]) for p in needed):
        pytest.skip(f"cannot hide mariadbd ({found}) without also hiding the shell tools")
    root = tmp_path / "root"
    result = _run(["sh", str(ROOT / INSTALL_SCRIPT), "--root", str(root), "--no-apt"], env, tmp_path)
    assert result.returncode != 0
    assert "missing programs" in result.stderr and "mariadbd" in result.stderr, result.stderr
    assert not (root / "opt").exists() and not (root / "usr").exists(), "it installed something before failing"



def test_install_image_stops_at_a_failed_apt_get_update(tmp_path):
    """`apt-get update` exits 0 when a source cannot be fetched: the script asks for an error
    (--error-on=any) and stops right there with its own message, before touching the system."""
    if os.geteuid() != 0:
        pytest.skip("the apt path of install-image needs root")
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    calls = tmp_path / "apt-calls"
    (fakebin / "apt-get").write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> {calls}\n"
        "case \" $* \" in\n"
        "  *' update '*) echo 'E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease' >&2; exit 100 ;;\n"
        "esac\n"
        "exit 0\n")
    (fakebin / "apt-get").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{fakebin}:{_path_with_sbin()}"
    policy_before = Path("/usr/sbin/policy-rc.d").exists()
    result = _run(["sh", str(ROOT / INSTALL_SCRIPT)], env, tmp_path)
    assert result.returncode == 1
    assert "install-image: error: apt-get update failed" in result.stderr, result.stderr
    assert "E: Failed to fetch" in result.stderr, "apt's own message must be shown"
    made = calls.read_text().splitlines()
    assert len(made) == 1 and "update" in made[0] and "--error-on=any" in made[0], made
    assert Path("/usr/sbin/policy-rc.d").exists() == policy_before
