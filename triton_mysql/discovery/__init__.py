"""Discovery: one contract (`base.Discovery`), one module per backend.

`connect()` picks the backend from the configuration; backends are imported
lazily so that a hook only loads the client library it uses.  It is the one
place where a client is built from a `Config` (TLS, token, user): the hooks
call it, and the supervisor calls it with its own endpoints (`connect_endpoints`
only for callers that have no configuration, e.g. tests of the contract).
"""
from __future__ import annotations

import os
from typing import Sequence

from ..config import DEFAULT_ETCD_PREFIX
from .base import KV, Discovery, DiscoveryError, Instance, ServiceSpec, Transport

__all__ = ["KV", "Discovery", "DiscoveryError", "Instance", "ServiceSpec", "Transport", "connect",
           "connect_endpoints", "transport", "TOKEN_CACHE_NAME"]

#: The etcd auth token cache, next to MYSQL_CNF (a root-owned directory of this node, not the datadir:
#: it must not end up in a snapshot, nor make an empty datadir look used).
TOKEN_CACHE_NAME = ".triton-mysql-etcd-token"


def connect_endpoints(
    *,
    consul: tuple[str, int] | None = None,
    etcd: Sequence[tuple[str, int]] | None = None,
    etcd_prefix: str = DEFAULT_ETCD_PREFIX,
    timeout: float = 2.0,
    transport: Transport | None = None,
) -> Discovery:
    """A client for exactly one of `consul` or `etcd`."""
    if (consul is None) == (not etcd):
        raise ValueError("exactly one of consul or etcd must be given")
    if consul is not None:
        from .consul import ConsulDiscovery
        return ConsulDiscovery(consul[0], consul[1], timeout=timeout, transport=transport)
    from .etcd import EtcdDiscovery
    return EtcdDiscovery(list(etcd or ()), prefix=etcd_prefix, timeout=timeout, transport=transport)


def transport(config, token_cache: bool = True) -> Transport:  # config: triton_mysql.config.Config
    """The TLS and credential settings for the configured backend.

    `token_cache`: keep etcd's auth token in a 0600 file next to MYSQL_CNF, so
    that the next hook process need not authenticate again (bcrypt on the
    server: ~80 ms against ~1 ms for a read).  Used only when that directory
    exists (an operator's machine running `status` has none: it authenticates).
    """
    if config.consul is not None:
        return Transport(scheme=config.consul_scheme, ca=config.consul_cacert, cert=config.consul_client_cert,
                         key=config.consul_client_key, verify=config.consul_http_ssl_verify,
                         token=config.consul_http_token)
    cache = None
    if token_cache and config.etcd_user:
        directory = os.path.dirname(config.mysql_cnf)
        if os.path.isdir(directory):
            cache = os.path.join(directory, TOKEN_CACHE_NAME)
    return Transport(scheme=config.etcd_scheme, ca=config.etcd_cacert, cert=config.etcd_cert, key=config.etcd_key,
                     user=config.etcd_user, password=config.etcd_password, token_cache=cache)


def connect(config, token_cache: bool = True) -> Discovery:  # config: triton_mysql.config.Config
    """The discovery client a command should use, per `CONSUL`/`ETCD` and their TLS/credential settings."""
    config.require("discovery")
    return connect_endpoints(
        consul=config.consul,
        etcd=config.etcd,
        etcd_prefix=config.etcd_prefix,
        timeout=config.discovery_timeout,
        transport=transport(config, token_cache),
    )
