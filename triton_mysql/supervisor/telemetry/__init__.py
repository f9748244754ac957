"""The supervisor's HTTP endpoints and Prometheus metrics (SPEC §7, issue 18).

Kept apart from the supervisor's loop behind a narrow interface
(`runtime.Telemetry`): the supervisor tells it what happened (hook exits,
late wake-ups, maintenance, stop), lends it its discovery worker to read
the cluster records, and schedules its refresh like any other runner.
Everything else (the HTTP server thread, the local server probe, the rules
of each endpoint, the metrics) lives here.

Modules: `config` (the `telemetry` section), `facts` (what the supervisor
knows, shared with the HTTP threads), `rules` (the pure decision of each
endpoint, table-tested), `probe` (the local mysqld, read at request time),
`metrics` (the Prometheus collector), `server` (HTTP), `runtime` (the
facade the supervisor holds).  This package's `__init__` imports nothing, so
that parsing a config does not load the HTTP and metrics code.
"""
