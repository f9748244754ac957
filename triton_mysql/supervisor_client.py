"""The hooks' side of the supervisor protocol (SPEC §4): what containerbuddy tells a hook through
its environment, and how a hook asks it to advertise the node under another service name.

The supervisor runs each hook with `CONTAINERBUDDY` (where its config comes from),
`CONTAINERBUDDY_PID` (whom to signal) and, in maintenance, `CONTAINERBUDDY_MAINTENANCE=1`.  A node
is advertised as `<SERVICE_NAME>` or `<SERVICE_NAME>-primary` by renaming the service in that
config (supervisor/rename.py edits it in place) and sending SIGHUP.  The HA code (ha/) reaches the
supervisor only through this module: it never imports from supervisor/.  The variables' names are
in hook_env.py, which the supervisor's side reads too.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping

from .hook_env import CONFIG_ENV, MAINTENANCE_ENV, PID_ENV
from .supervisor.rename import notify, set_service_name

log = logging.getLogger("triton_mysql.ha")


def in_maintenance(env: Mapping[str, str] | None = None) -> bool:
    """Is this hook run by a supervisor in maintenance?"""
    return (os.environ if env is None else env).get(MAINTENANCE_ENV) == "1"


@dataclass(frozen=True)
class Advertiser:
    """Moves this node between its two service names in the supervisor that runs it."""

    service_name: str
    primary_service: str

    @classmethod
    def for_config(cls, config) -> "Advertiser":
        return cls(config.service_name, config.primary_service)

    def advertise(self, primary: bool) -> None:
        """Register as `<SERVICE_NAME>-primary` or `<SERVICE_NAME>` by renaming the service in this
        node's supervisor config and sending it SIGHUP.  No supervisor (a manual run): nothing to do."""
        source = os.environ.get(CONFIG_ENV)
        pid = os.environ.get(PID_ENV)
        if not source or not pid:
            return
        names = {self.service_name, self.primary_service}
        wanted = self.primary_service if primary else self.service_name
        try:
            changed = set_service_name(source, names, wanted)
        except OSError as exc:
            log.error("could not rewrite the supervisor config %s: %s", source, exc)
            return
        if changed:
            try:
                notify(int(pid))
            except (ProcessLookupError, ValueError) as exc:
                log.error("could not signal the supervisor (pid %s): %s", pid, exc)
                return
            log.info("advertising as %s", wanted)
