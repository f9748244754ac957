"""The key layout of SPEC §5, in one place.

Consul: `triton-mysql/<SERVICE_NAME>/…`; etcd: `<ETCD_PREFIX>/<SERVICE_NAME>/…`.
Records are JSON objects (UTF-8).  Times are Unix epoch seconds (float).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClusterKeys:
    root: str
    """`triton-mysql/<SERVICE_NAME>` (Consul) or `<ETCD_PREFIX>/<SERVICE_NAME>` (etcd)."""

    @classmethod
    def for_config(cls, config) -> "ClusterKeys":
        return cls(config.kv_prefix)

    def _k(self, name: str) -> str:
        return f"{self.root}/{name}"

    @property
    def primary(self) -> str:
        """The lock: `{"node","address","port","server_id","since"}`, bound to the holder's session."""
        return self._k("primary")

    @property
    def members(self) -> str:
        """Prefix of the session-bound member records."""
        return self._k("members/")

    def member(self, node: str) -> str:
        return self._k(f"members/{node}")

    @property
    def nodes(self) -> str:
        """Prefix of the durable node records (last seen, shown by `status` when down)."""
        return self._k("nodes/")

    def node(self, node: str) -> str:
        return self._k(f"nodes/{node}")

    @property
    def bootstrap(self) -> str:
        return self._k("bootstrap")

    @property
    def switchover(self) -> str:
        return self._k("switchover")

    @property
    def failover_last(self) -> str:
        return self._k("failover/last")

    @property
    def snapshots_last(self) -> str:
        return self._k("snapshots/last")

    @property
    def snapshots_lock(self) -> str:
        return self._k("snapshots/lock")

    @property
    def server_id_counter(self) -> str:
        """Not in SPEC §5 (extra keys are allowed): the counter that hands out unique server_ids."""
        return self._k("server-id-counter")

    def name_of(self, key: str) -> str:
        """The last path element of a key (a node name for members/ and nodes/)."""
        return key.rsplit("/", 1)[-1]


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def decode(value: bytes | None) -> dict[str, Any] | None:
    """A JSON object from a stored value; None for anything that is not one."""
    if not value:
        return None
    try:
        record = json.loads(value.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None
