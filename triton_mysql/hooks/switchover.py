"""`triton-mysql switchover [--to NODE]`: a planned change of primary.

Writes the `switchover` request; the primary's next health passes carry it
out (fence, wait for the target to apply everything, release the lock) and
the target takes the lock at once.  This command waits until the target
holds the lock as a ready primary, or reports why not.
"""
from __future__ import annotations

import logging
import time

from ..errors import UserError
from ..discovery import connect
from ..ha import decide as d
from ..records import READY, ClusterStore, SwitchoverRequest
from ..view import read_view
from ..keys import ClusterKeys

log = logging.getLogger("triton_mysql.switchover")


def run(config, target: str | None = None) -> int:
    discovery = connect(config)
    keys = ClusterKeys.for_config(config)
    try:
        view = read_view(discovery, keys)
        if view.lock is None:
            raise UserError("there is no primary to switch over from (the lock is free)")
        current = view.lock.node
        timing = d.Timing.from_config(config, discovery.expiry_bounds(config.session_ttl)[1])
        ranked = d.switchover_candidates(view, timing)
        if target is None:
            if not ranked:
                raise UserError("no candidate replica to switch over to")
            target = ranked[0]
        if target == current:
            raise UserError(f"{target} is already the primary")
        if target not in ranked:
            raise UserError(f"refusing to switch over to {target}: {d.why_not_switchover_target(view, target, timing)}")
        request = SwitchoverRequest(to=target, requested=time.time(), source=current, kind="planned")
        if not ClusterStore(discovery, keys).request_switchover(request, only_if_none=True):
            raise UserError("another switchover is already in progress")
        print(f"switchover requested: {current} -> {target}; waiting for {target} to become primary")
        deadline = time.monotonic() + timing.switchover_wait
        while time.monotonic() < deadline:
            view = read_view(discovery, keys)
            if view.lock is not None and view.lock.node == target and view.lock.state == READY:
                print(f"switchover done: {target} is the primary (writable) at "
                      f"{view.lock.address}:{view.lock.port}")
                return 0
            if view.switchover is None and (view.lock is None or view.lock.node == current):
                if view.lock is not None and view.lock.node == current:
                    raise UserError(f"switchover abandoned by {current} (see its log): {target} did not catch up "
                                    f"within STOP_GRACE or stopped being a candidate")
            time.sleep(0.2)
        raise UserError(f"timed out waiting for {target} to become primary")
    finally:
        discovery.close()

