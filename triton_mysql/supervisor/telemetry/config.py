"""The supervisor config's `telemetry` section (ContainerPilot's), parsed beside the code that uses it.

    "telemetry": {"port": 9090, "interfaces": ["0.0.0.0"]}

`port`: where the HTTP endpoints listen; 0 turns them off (the shipped
config renders it from `HTTP_PORT`, default 9090).  `interfaces`: which address to bind, first match wins, as a service's
`interfaces` (`eth0`, `eth0[1]`, a CIDR, `inet`, `static:ADDR`) plus a plain
IP address (`0.0.0.0`, `127.0.0.5`, `::`), which is what `HTTP_BIND_ADDRESS`
renders to.  Without `interfaces` it listens on every IPv4 address
(`0.0.0.0`).  ContainerPilot's `tags` and `metrics` (its own custom metrics)
are accepted and ignored with a warning.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from .. import netif, schema
from ..schema import ConfigError

KEYS = {"port", "interfaces"}
IGNORED = {"tags", "metrics"}
DEFAULT_ADDRESS = "0.0.0.0"


@dataclass(frozen=True)
class TelemetryConfig:
    port: int
    address: str
    """The address the server binds (resolved from `interfaces`)."""
    interfaces: tuple[str, ...] = ()


def parse_telemetry(obj: Any, warnings: list[str]) -> TelemetryConfig | None:
    """The section, validated; None when it is absent or its port is 0 (endpoints off).

    Strict keys with ContainerPilot warnings and `ConfigError` come from
    ../schema.py, as for every section.
    """
    if obj is None:
        return None
    schema.check_keys(obj, "telemetry", KEYS, IGNORED, warnings)
    port = _port(obj.get("port"))
    if port == 0:
        return None
    interfaces = _interfaces(obj.get("interfaces"))
    return TelemetryConfig(port=port, address=resolve(interfaces), interfaces=interfaces)


def _port(value: Any) -> int:
    if value is None or value == "":
        raise ConfigError("telemetry.port", "required (0 turns the HTTP endpoints off)")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError("telemetry.port", f"must be a port number from 0 (off) to 65535 (got {value!r})")
    return value


def _interfaces(value: Any) -> tuple[str, ...]:
    # schema.strings, with list items stripped too: an address or interface name has no blanks.
    items = [item.strip() for item in schema.strings(value, "telemetry.interfaces")]
    items = [item for item in items if item]
    for item in items:
        if _ip(item) is None and (problem := netif.check_interface_spec(item)):
            raise ConfigError("telemetry.interfaces", problem)
    return tuple(items)


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def resolve(interfaces: tuple[str, ...]) -> str:
    """The bind address: the first entry that is an IP address or matches an interface."""
    if not interfaces:
        return DEFAULT_ADDRESS
    available = netif.interface_addresses()
    for spec in interfaces:
        address = _ip(spec) or netif.pick_address([spec], available)
        if address:
            return address
    raise ConfigError("telemetry.interfaces", f"no address matches {list(interfaces)}")
