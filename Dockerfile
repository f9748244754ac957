# triton-mysql: one image for every node of a self-operating MariaDB cluster.
#
#   DOCKER_BUILDKIT=1 docker build -t triton-mysql .
#   docker compose up -d --scale mysql=3      (see docker-compose.yml)
#
# BuildKit is required (RUN --mount); its built-in Dockerfile frontend is
# enough, so there is no `# syntax=` line: that would make BuildKit fetch a
# frontend image from a registry, and the build must work offline.
#
# The supervisor `containerbuddy` is PID 1: it runs `triton-mysql onStart`,
# then the CMD (mariadbd with the generated config), and the lifecycle hooks.
# Configuration comes only from the environment at run time (.env.example);
# no password or key is baked into the image.
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="triton-mysql" \
      org.opencontainers.image.description="Self-operating MariaDB replication: election, cloning, failover and snapshots for identical containers" \
      org.opencontainers.image.licenses="MPL-2.0"

# Every install step is in bin/install-image, which the test suite also runs
# (tests/test_packaging.py). First the Debian packages, in a layer that depends
# on the script alone, so that a change to the sources does not reinstall
# MariaDB; then the rest. The sources are bind-mounted rather than copied, so
# they leave no layer behind; the script builds the package from a copy.
RUN --mount=type=bind,source=bin/install-image,target=/tmp/install-image \
    sh /tmp/install-image --packages-only
RUN --mount=type=bind,target=/src \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    sh /src/bin/install-image --src /src --no-apt

# The volume is /var/lib/mysql and the datadir one level below it, so that
# a datadir being initialised, restored or moved aside stays on the volume
# (onStart creates the datadir inside it).
ENV LANG=C.UTF-8 \
    CONTAINERBUDDY=file:///etc/containerbuddy.json \
    MYSQL_DATADIR=/var/lib/mysql/data

EXPOSE 3306

# Declared after the install, so the volume starts as the empty, mysql-owned
# directory the script made. Each container gets its own volume; the datadir
# is MYSQL_DATADIR=/var/lib/mysql/data inside it.
VOLUME ["/var/lib/mysql"]

# containerbuddy turns SIGTERM into the planned hand-over: preStop, then
# mysqld is stopped (SIGKILL after the config's stopTimeout), then postStop.
# Give the container more than STOP_GRACE + stopTimeout to stop
# (docker stop --time / compose stop_grace_period).
STOPSIGNAL SIGTERM

# The verdict only, no side effect: containerbuddy runs the real health pass.
# The start period covers onStart (restoring a snapshot, or waiting for the
# bootstrap node); a passing check ends it early.
HEALTHCHECK --interval=10s --timeout=10s --start-period=600s --retries=3 \
    CMD ["triton-mysql", "health", "--check-only"]

ENTRYPOINT ["containerbuddy"]
CMD ["triton-mysqld"]
