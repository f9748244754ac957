"""The shapes a supervisor config's values take, shared by every section's parser.

Each section of the config is parsed beside the code that runs it (the
`services` section in services.py, `backends` in backends.py, `tasks` and
`coprocesses` in tasks.py, the discovery endpoints in worker.py, `telemetry`
in telemetry/config.py), as ContainerPilot keeps a config.go in each package;
config.py assembles them.  What they have in common lives here, below all of
them, so that config.py can import the sections and no section imports
config.py (no import cycle): strict keys with ContainerPilot warnings, lists,
unique names, required keys, names, ports, string lists, durations and
commands.  Every mistake is a `ConfigError` naming the key by its path
(`services[0].helth`).

Durations are seconds (a number or a numeric string) or Go duration strings
("500ms", "10s", "1h30m").  Commands are a string split like a shell would
(shlex; no shell runs, so no pipes or variables) or an argv list.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, TypeVar

from triton_mysql.config import ConfigError

# ConfigError: the one class of triton_mysql.config, for both worlds.
__all__ = ["Command", "ConfigError", "array", "check_keys", "command", "duration", "name",
           "optional_duration", "port", "required", "strings", "unique"]

_Default = TypeVar("_Default", float, None)


@dataclass(frozen=True)
class Command:
    """An argv to execute (never through a shell)."""

    argv: tuple[str, ...]

    def __str__(self) -> str:
        return shlex.join(self.argv)


def check_keys(obj: Any, path: str, known: set[str], ignored: set[str], warnings: list[str]) -> dict[str, Any]:
    """`obj` as a JSON object whose keys are all `known`; a key in `ignored` (ContainerPilot's,
    not implemented here) becomes a warning, so that a config written for ContainerPilot still starts."""
    if not isinstance(obj, dict):
        raise ConfigError(path or "config", "must be a JSON object")
    for key in obj:
        where = f"{path}.{key}" if path else key
        if key in ignored:
            warnings.append(f"{where}: ContainerPilot key not implemented by containerbuddy; ignored")
        elif key not in known:
            raise ConfigError(where, "unknown key")
    return obj


def array(value: Any, path: str) -> list[Any]:
    """A JSON list; an absent key is an empty one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(path, "must be a list")
    return value


def unique(names: list[str], path: str, key: str) -> None:
    """Refuse a name used twice in one list: runners, reloads and service IDs are matched by name."""
    seen: set[str] = set()
    for i, item in enumerate(names):
        if item in seen:
            raise ConfigError(f"{path}[{i}].{key}", f"duplicate name {item!r}")
        seen.add(item)


def required(obj: dict[str, Any], key: str, path: str) -> Any:
    """`obj[key]`, which must be set (an empty string counts as unset)."""
    value = obj.get(key)
    if value is None or value == "":
        raise ConfigError(f"{path}.{key}", "required")
    return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def name(value: Any, where: str) -> str:
    """A service, backend, task or coprocess name: it ends up in service IDs, log lines and process names."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(where, f"{value!r} is not a valid name (letters, digits, '-', '_', '.')")
    return value


def port(value: Any, where: str) -> int:
    """A TCP port, 1 to 65535 (a numeric string too: templates render numbers as text)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(where, f"must be a port number from 1 to 65535 (got {value!r})")
    return value


def strings(value: Any, where: str) -> tuple[str, ...]:
    """A list of strings, or one comma-separated string (what a template renders); empty items dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(where, "must be a string or a list of strings")
    return tuple(item for item in value if item)


_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: Any, where: str, *, allow_zero: bool = False) -> float:
    """Seconds from a number, a numeric string, or a Go duration string ("1h30m", "500ms")."""
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, total = 0, 0.0
            while pos < len(text):
                match = _GO_PART.match(text, pos)
                if not match:
                    break
                total += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if text and pos == len(text):
                seconds = total
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ConfigError(where, f"{value!r} is not a duration (seconds, or a string like \"500ms\", \"10s\", \"5m\")")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(where, f"must be {'at least 0' if allow_zero else 'greater than 0'} (got {value!r})")
    return seconds


def optional_duration(obj: dict[str, Any], key: str, path: str, default: _Default) -> float | _Default:
    """`obj[key]` as a duration when it is set (absent, null and "" count as unset), else `default`:
    every section's optional `timeout` (a service's defaults to its poll, a task's to its frequency)."""
    value = obj.get(key)
    return default if value in (None, "") else duration(value, f"{path}.{key}")


def command(value: Any, where: str, *, required: bool = False) -> Command | None:
    """An argv from a string (split like a shell) or a list of strings; None when empty."""
    if value is None or value == "" or value == []:
        if required:
            raise ConfigError(where, "required")
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(where, f"cannot split command: {exc}") from None
    elif isinstance(value, list):
        if not all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value):
            raise ConfigError(where, "a command list must hold strings")
        argv = [item if isinstance(item, str) else json.dumps(item) for item in value]
    else:
        raise ConfigError(where, "must be a command string or a list of strings")
    if not argv or not argv[0]:
        if required:
            raise ConfigError(where, "required")
        return None
    return Command(tuple(argv))
