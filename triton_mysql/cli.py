"""The `triton-mysql` command line: one thin function per hook or command.

Each command reads the configuration (exit 2 on any mistake, one line, no
traceback), sets up logging, and hands over to a `run()` function in
`triton_mysql.hooks`.  Hook modules are imported lazily: `health` runs every
couple of seconds and must not pay for boto3 or the Consul client it does
not use.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any, Callable

import click

from . import log
from .config import Config, ConfigError, load
from .errors import UserError

# What each command needs from the environment (see Config.require).
HOOKS = ("discovery", "replication", "advertise")


def _config(*groups: str, **overrides: Any) -> Config:
    try:
        config = load()
        if overrides:
            config = config.with_overrides(**overrides)
        config.require(*groups)
    except ConfigError as exc:
        click.echo(f"triton-mysql: configuration error: {exc}", err=True)
        sys.exit(2)
    log.setup("triton-mysql", level=config.log_level, fmt=config.log_format,
              node=config.node_name, secrets=config.secrets())
    if config.mysql_tls:
        from .mysql import tls
        from .mysql.connection import use_peer_tls
        use_peer_tls(tls.client_options(config))
    return config


def _run(module: str, groups: tuple[str, ...], overrides: dict[str, Any] | None = None,
         warn_plaintext: bool = False, **kwargs: Any) -> None:
    """Load the config, then call `triton_mysql.hooks.<module>.run(config, **kwargs)`.

    `warn_plaintext`: log once (at the node's start) each credential that would
    cross an unencrypted link to another machine.
    """
    config = _config(*groups, **(overrides or {}))
    if warn_plaintext:
        for warning in config.plaintext_warnings():
            logging.getLogger("triton_mysql.security").warning("%s", warning)
    from .discovery import DiscoveryError

    run: Callable[..., int] = importlib.import_module(f"triton_mysql.hooks.{module}").run
    try:
        code = run(config, **kwargs)
    except ConfigError as exc:
        click.echo(f"triton-mysql: configuration error: {exc}", err=True)
        sys.exit(2)
    except (UserError, DiscoveryError) as exc:
        click.echo(f"triton-mysql {module.replace('_', '-')}: {log.scrub(str(exc))}", err=True)
        sys.exit(1)
    _exit_now(code or 0)


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down.

    A hook has closed its connections by now; module teardown would only cost
    time (about 40 ms of every `health` pass, measured by `make bench`).
    """
    if sys.getprofile() is not None:  # under a profiler (bench/health_hook.py): let it write its file
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="triton-mysql")
def main() -> None:
    """Self-operating MySQL/MariaDB replication: election, cloning, failover, snapshots.

    The hooks (onStart, health, onChange, snapshot, preStop, postStop) are run by
    the bundled supervisor `containerbuddy`; the other commands are for operators.
    """


def _alias(command: click.Command, *names: str) -> None:
    for name in names:
        main.add_command(command, name=name)


@main.command("onStart")
def on_start() -> None:
    """Before mysqld starts: write the server config; restore or bootstrap an empty datadir."""
    _run("on_start", HOOKS + ("storage",), warn_plaintext=True)


@main.command("health")
@click.option("--check-only", is_flag=True, help="Give the verdict with no side effect (container HEALTHCHECK).")
def health(check_only: bool) -> None:
    """One reconcile pass (lock, role, replication, member record), then the verdict."""
    _run("health", HOOKS, check_only=check_only)


@main.command("onChange")
def on_change() -> None:
    """The primary service changed: follow the new primary, or elect one."""
    _run("on_change", HOOKS)


@main.command("preStop")
def pre_stop() -> None:
    """Planned stop of the primary: fence, let the best replica catch up, hand over."""
    _run("pre_stop", HOOKS)


@main.command("postStop")
def post_stop() -> None:
    """Remove this node's member record and end its session."""
    _run("post_stop", ("discovery",))


@main.command("snapshot")
def snapshot() -> None:
    """On the primary: take a snapshot when one is due (a fast no-op otherwise)."""
    _run("snapshot", ("discovery", "storage"))


@main.command("backup")
@click.option("--url", default=None, help="Store the snapshot here instead of BACKUP_URL (an export).")
def backup(url: str | None) -> None:
    """Take a snapshot now, whatever its age (primary or replica)."""
    _run("backup", ("discovery", "storage"), url=url)


@main.command("snapshots")
def snapshots() -> None:
    """List the complete snapshots in storage, newest first."""
    _run("snapshots", ("storage",))


@main.command("restore")
@click.option("--snapshot", "snapshot_id", required=True, help="Snapshot id (see `triton-mysql snapshots`).")
@click.option("--datadir", required=True, type=click.Path(file_okay=False), help="An empty directory.")
def restore(snapshot_id: str, datadir: str) -> None:
    """Restore a snapshot into an empty directory (disaster recovery)."""
    _run("restore", ("storage",), snapshot_id=snapshot_id, datadir=datadir)


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: primary, nodes, last_snapshot.")
def status(as_json: bool) -> None:
    """The cluster as discovery sees it: nodes (also those that are down), lock, snapshots."""
    _run("status", ("discovery",), as_json=as_json)


@main.command("forget")
@click.argument("node")
def forget(node: str) -> None:
    """Remove a node that is gone for good from discovery (refused while it is alive)."""
    _run("forget", ("discovery",), node=node)


@main.command("switchover")
@click.option("--to", "target", default=None, help="Node to promote (default: the most advanced candidate).")
def switchover(target: str | None) -> None:
    """Planned change of primary with no lost transaction."""
    _run("switchover", ("discovery",), target=target)


_alias(on_start, "on-start")
_alias(on_change, "on-change")
_alias(pre_stop, "pre-stop")
_alias(post_stop, "post-stop")


if __name__ == "__main__":  # pragma: no cover
    main()
