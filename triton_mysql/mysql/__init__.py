"""The database layer: everything triton-mysql does to a MySQL/MariaDB server.

One module per job (import them explicitly):

- `flavor`        server families (MARIADB, MYSQL) and their dialect: SQL text and tool argv
- `gtid`          pure GTID arithmetic for both families (extra, classify by origin, contains, merge, progress)
- `connection`    PyMySQL with bounded timeouts and one scrubbed error type (DBError)
- `server_config` the generated MYSQL_CNF
- `datadir`       empty-or-not, initialise, install; `chown_mysql`, the package's one ownership helper
- `state`         the local server's state in three queries (ServerState)
- `local`         the local server as root over its socket: identity and binary logs (snapshots)
- `replication`   follow / start / stop_and_clear / wait_applied / seed_after_restore / remote_gtid_state
- `accounts`      replication, application and root accounts
- `fence`         kill clients, read_only, stop mysqld within a budget
"""
