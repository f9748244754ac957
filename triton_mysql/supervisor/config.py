"""The supervisor's configuration: source → rendered text → validated, frozen objects.

A config is read from `file:///path`, a plain path, or literal JSON (`{…}`),
rendered as a template from the environment (`template.py`), parsed as JSON
and validated key by key.  Every mistake is a `ConfigError` naming the key by
its path (`services[0].helth`), reported by `main` as one line and exit code
2.  ContainerPilot 2 keys that this supervisor does not implement
(a service's `consul` extras, `telemetry.metrics`) are accepted; each one
becomes a warning line, so a config written for ContainerPilot still starts.

This module is the top level: reading, rendering, the top-level keys and
hooks (`onStart`, `preStop`, `postStop`, `stopTimeout`) and `SupervisorConfig`.
Each section is parsed beside the code that runs it, as ContainerPilot keeps
a config.go in each package: `services` in services.py, `backends` in
backends.py, `tasks` and `coprocesses` in tasks.py, the `consul`/`etcd`
endpoints in worker.py, `telemetry` in telemetry/config.py; `logging` stays
here (see its section below).  The shapes values take (durations, commands,
names, strict keys) are schema.py's, which every section imports: the
sections never import this module, so there is no import cycle.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from triton_mysql.config import Config, ConfigError, default_node_name, valid_name

from . import schema
from .backends import BackendConfig, parse_backend
from .schema import Command
from .services import ServiceConfig, parse_service
from .tasks import CoprocessConfig, TaskConfig, parse_coprocess, parse_task
from .telemetry.config import TelemetryConfig, parse_telemetry
from .template import TemplateError, render
from .worker import DiscoveryConfig, parse_discovery

DEFAULT_STOP_TIMEOUT = 5.0

__all__ = ["ConfigError"]  # the one ConfigError (triton_mysql.config)


# --------------------------------------------------------------------------
# The whole config

@dataclass(frozen=True)
class SupervisorConfig:
    """The whole config, validated: what the supervisor runs and what a SIGHUP compares."""

    source: str
    path: str | None
    """The file the config came from (None for literal JSON): what SIGHUP re-reads."""
    node: str
    discovery: DiscoveryConfig | None = None
    on_start: Command | None = None
    pre_stop: Command | None = None
    post_stop: Command | None = None
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    services: tuple[ServiceConfig, ...] = ()
    backends: tuple[BackendConfig, ...] = ()
    tasks: tuple[TaskConfig, ...] = ()
    coprocesses: tuple[CoprocessConfig, ...] = ()
    logging: LoggingConfig | None = None
    """None when the config has no `logging` key (LOG_LEVEL/LOG_FORMAT then apply)."""
    telemetry: TelemetryConfig | None = None
    """The HTTP endpoints (None: off)."""
    warnings: tuple[str, ...] = ()
    """Keys accepted but not implemented: logged once logging is set up."""


# --------------------------------------------------------------------------
# Reading and rendering

def read_source(source: str) -> tuple[str, str | None]:
    """(raw text, file path or None) for a `-config` value."""
    text = source.strip()
    if not text:
        raise ConfigError("config", "empty configuration source")
    if text.startswith("{"):
        return source, None
    if text.startswith("file://"):
        path = text[len("file://"):]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise ConfigError("config", f"unsupported source {text.split('://')[0]}:// (use file:///path, a path or JSON)")
    else:
        path = text
    if not path:
        raise ConfigError("config", "file:// URL without a path")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("config", f"cannot read {path}: {reason}") from None


def render_text(text: str, env: Mapping[str, str]) -> str:
    try:
        return render(text, env)
    except TemplateError as exc:
        raise ConfigError("config", f"template: {exc}") from None


def parse_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("config", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", "must be a JSON object")
    return data


def load(source: str, env: Mapping[str, str] | None = None) -> SupervisorConfig:
    """Read, render, parse and validate the config named by `source`."""
    env = os.environ if env is None else env
    raw, path = read_source(source)
    data = parse_json(render_text(raw, env))
    return build(data, source=source, path=path, env=env)


# --------------------------------------------------------------------------
# Validation

TOP_KEYS = {"consul", "etcd", "onStart", "preStart", "preStop", "postStop", "stopTimeout", "services",
            "backends", "tasks", "coprocesses", "logging", "telemetry"}
TOP_IGNORED: set[str] = set()


def node_name(env: Mapping[str, str]) -> str:
    """This node's name, as the hooks will see it: NODE_NAME, else the name stored
    with the node's data (in MYSQL_DATADIR), else the short host name.

    The service IDs are built from it before onStart runs, so it is the rule
    of triton_mysql.config (a re-created container keeps its name).  Not
    validated here (build() does, naming NODE_NAME): logging needs a name even then.
    """
    if env.get("NODE_NAME"):
        return env["NODE_NAME"]
    return default_node_name(env.get("MYSQL_DATADIR") or Config.mysql_datadir, check=False)


def build(data: dict[str, Any], *, source: str, path: str | None, env: Mapping[str, str]) -> SupervisorConfig:
    """Validate parsed JSON into a `SupervisorConfig`."""
    warnings: list[str] = []
    schema.check_keys(data, "", TOP_KEYS, TOP_IGNORED, warnings)
    if "onStart" in data and "preStart" in data:
        raise ConfigError("preStart", "set onStart or its alias preStart, not both")
    node = node_name(env)
    try:
        valid_name(node)
    except ValueError as exc:
        raise ConfigError("NODE_NAME", f"{node!r} is not a valid node name: {exc}") from None
    services = tuple(parse_service(item, f"services[{i}]", node, env, warnings)
                     for i, item in enumerate(schema.array(data.get("services"), "services")))
    schema.unique([s.name for s in services], "services", "name")
    backends = tuple(parse_backend(item, f"backends[{i}]", warnings)
                     for i, item in enumerate(schema.array(data.get("backends"), "backends")))
    schema.unique([b.name for b in backends], "backends", "name")
    tasks = tuple(parse_task(item, f"tasks[{i}]", warnings)
                  for i, item in enumerate(schema.array(data.get("tasks"), "tasks")))
    coprocesses = tuple(parse_coprocess(item, f"coprocesses[{i}]", warnings)
                        for i, item in enumerate(schema.array(data.get("coprocesses"), "coprocesses")))
    discovery = parse_discovery(data, env, warnings)
    if discovery is None and (services or backends):
        raise ConfigError("consul", "services and backends need a discovery service: set consul or etcd endpoints")
    start_key = "preStart" if "preStart" in data else "onStart"
    return SupervisorConfig(
        source=source, path=path, node=node, discovery=discovery,
        on_start=schema.command(data.get(start_key), start_key),
        pre_stop=schema.command(data.get("preStop"), "preStop"),
        post_stop=schema.command(data.get("postStop"), "postStop"),
        stop_timeout=(schema.duration(data["stopTimeout"], "stopTimeout", allow_zero=True) if "stopTimeout" in data
                      else DEFAULT_STOP_TIMEOUT),
        services=services, backends=backends, tasks=tasks, coprocesses=coprocesses,
        logging=parse_logging(data.get("logging"), warnings),
        telemetry=parse_telemetry(data.get("telemetry"), warnings),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------
# The `logging` section of the config
#
# Parsed here, not beside its runner: that is `setup_logging` in main.py,
# which imports this module, so the section moving there would be an import
# cycle (config -> main -> config).

LOGGING_KEYS = {"level", "format", "output"}

_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING", "ERROR": "ERROR",
           "FATAL": "CRITICAL", "PANIC": "CRITICAL"}


@dataclass(frozen=True)
class LoggingConfig:
    """The `logging` section: how main.setup_logging sets up the supervisor's own log."""

    level: str = "INFO"
    format: str = "text"
    output: str = "stderr"


def parse_logging(obj: Any, warnings: list[str]) -> LoggingConfig | None:
    """The `logging` section (None when absent); ContainerPilot's level names map to Python's."""
    if obj is None:
        return None
    schema.check_keys(obj, "logging", LOGGING_KEYS, set(), warnings)
    level = str(obj.get("level") or "INFO").upper()
    if level not in _LEVELS:
        raise ConfigError("logging.level", f"{obj.get('level')!r} is not one of DEBUG, INFO, WARN, ERROR, FATAL")
    fmt = str(obj.get("format") or "text").lower()
    if fmt not in ("default", "text", "json"):
        raise ConfigError("logging.format", f"{obj.get('format')!r} is not one of default, text, json")
    output = str(obj.get("output") or "stderr").lower()
    if output not in ("stdout", "stderr"):
        raise ConfigError("logging.output", f"{obj.get('output')!r} is not stdout or stderr")
    return LoggingConfig(level=_LEVELS[level], format="json" if fmt == "json" else "text", output=output)
