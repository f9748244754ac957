"""Which IPv4 address a service advertises.

ContainerPilot picks the address from the service's `interfaces` list: each
entry is an interface name (`eth0`), an interface name with an index
(`eth0[1]`: its second IPv4 address), a CIDR (`10.0.0.0/8`), `inet` (any
IPv4 address) or `static:ADDR`.  The first entry that yields an address wins.
Without `interfaces` the first non-loopback IPv4 address is used.  An
operator can always override it all with `ADVERTISE_ADDRESS`.

The interface list comes from libc's getifaddrs() through ctypes: it is the
only portable way to get every address with its interface name (ioctl
SIOCGIFADDR returns one address per interface).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import socket
from typing import Iterable, Sequence

from triton_mysql.config import default_advertise_address


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 14)]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_Sockaddr)),
    ("ifa_netmask", ctypes.POINTER(_Sockaddr)),
    ("ifa_ifu", ctypes.POINTER(_Sockaddr)),
    ("ifa_data", ctypes.c_void_p),
]


def interface_addresses() -> list[tuple[str, str]]:
    """(interface, IPv4 address) for every IPv4 address of this host, in the kernel's order."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        return []
    found: list[tuple[str, str]] = []
    try:
        node = head
        while node:
            entry = node.contents
            if entry.ifa_addr and entry.ifa_addr.contents.sa_family == socket.AF_INET:
                raw = bytes(entry.ifa_addr.contents.sa_data[2:6])
                found.append((entry.ifa_name.decode(errors="replace"), socket.inet_ntoa(raw)))
            node = entry.ifa_next
    finally:
        libc.freeifaddrs(head)
    return found


def check_interface_spec(spec: str) -> str | None:
    """None when `spec` is a well-formed `interfaces` entry, else what is wrong with it."""
    spec = spec.strip()
    if not spec:
        return "empty interface entry"
    if spec.startswith("static:"):
        try:
            ipaddress.IPv4Address(spec[len("static:"):])
        except ValueError:
            return f"{spec!r}: static: needs an IPv4 address"
        return None
    if "/" in spec:
        try:
            ipaddress.ip_network(spec, strict=False)
        except ValueError:
            return f"{spec!r}: not a valid CIDR"
        return None
    name, index = _split_index(spec)
    if index is not None and index < 0:
        return f"{spec!r}: bad index"
    if not name or any(c.isspace() for c in name):
        return f"{spec!r}: not an interface name"
    return None


def _split_index(spec: str) -> tuple[str, int | None]:
    if spec.endswith("]") and "[" in spec:
        name, _, rest = spec.partition("[")
        try:
            return name, int(rest[:-1])
        except ValueError:
            return name, -1
    return spec, None


def pick_address(interfaces: Sequence[str], available: Iterable[tuple[str, str]] | None = None) -> str | None:
    """The address the first matching `interfaces` entry yields (None: nothing matched).

    With no entries, the first non-loopback IPv4 address of the host.
    """
    if not interfaces:
        return default_advertise_address()
    addresses = list(interface_addresses() if available is None else available)
    for spec in interfaces:
        found = _match(spec.strip(), addresses)
        if found:
            return found
    return None


def _match(spec: str, addresses: list[tuple[str, str]]) -> str | None:
    if spec.startswith("static:"):
        return spec[len("static:"):]
    if spec == "inet":
        return addresses[0][1] if addresses else None
    if "/" in spec:
        network = ipaddress.ip_network(spec, strict=False)
        for _, address in addresses:
            if ipaddress.ip_address(address) in network:
                return address
        return None
    name, index = _split_index(spec)
    mine = [address for iface, address in addresses if iface == name]
    position = index or 0
    return mine[position] if position < len(mine) else None
