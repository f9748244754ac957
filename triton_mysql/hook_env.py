"""The environment variables the supervisor (containerbuddy) sets for the hooks it runs (SPEC §4).

Both sides of the protocol read these names from here: supervisor/ sets them, supervisor_client.py
reads them in a hook.  A ground module with no imports, so that neither side has to import the
other to agree on a name.
"""
from __future__ import annotations

CONFIG_ENV = "CONTAINERBUDDY"
"""The supervisor's config source (`file:///path`, a path, or literal JSON)."""
PID_ENV = "CONTAINERBUDDY_PID"
"""The supervisor's pid, which SIGHUP re-reads its config."""
MAINTENANCE_ENV = "CONTAINERBUDDY_MAINTENANCE"
"""Set to 1 by the supervisor for the hooks it runs while in maintenance (SIGUSR1)."""
