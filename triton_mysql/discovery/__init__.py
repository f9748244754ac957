"""Discovery: one contract (`base.Discovery`), one module per backend.

`connect()` picks the backend from the configuration; backends are imported
lazily so that a hook only loads the client library it uses.
"""
from __future__ import annotations

from typing import Sequence

from .base import KV, Discovery, DiscoveryError, Instance, ServiceSpec

__all__ = ["KV", "Discovery", "DiscoveryError", "Instance", "ServiceSpec", "connect", "connect_endpoints"]


def connect_endpoints(
    *,
    consul: tuple[str, int] | None = None,
    etcd: Sequence[tuple[str, int]] | None = None,
    etcd_prefix: str = "/triton-mysql",
    timeout: float = 2.0,
) -> Discovery:
    """A client for exactly one of `consul` or `etcd`."""
    if (consul is None) == (not etcd):
        raise ValueError("exactly one of consul or etcd must be given")
    if consul is not None:
        from .consul import ConsulDiscovery
        return ConsulDiscovery(consul[0], consul[1], timeout=timeout)
    from .etcd import EtcdDiscovery
    return EtcdDiscovery(list(etcd or ()), prefix=etcd_prefix, timeout=timeout)


def connect(config) -> Discovery:  # config: triton_mysql.config.Config
    """The discovery client a command should use, per `CONSUL`/`ETCD`."""
    config.require("discovery")
    return connect_endpoints(
        consul=config.consul,
        etcd=config.etcd,
        etcd_prefix=config.etcd_prefix,
        timeout=config.discovery_timeout,
    )
