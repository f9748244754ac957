"""The image for real (issue 14): build it, run the shipped compose files, fail over, back up.

Real engine, real image, real compose (docker-compose 1.29, v1, Debian's; the
files are kept to what v2 takes too).  Everything is checked from outside, as
a user would: `triton-mysql status --json` through `docker compose exec -T`,
container health, a client on the compose network, `docker stop`/`start`,
a crash from the host, `--scale`, and clients through the compose file's
HAProxy (write port to the primary, read port to replicas, following both
failovers).  The etcd variant (docker-compose.etcd.yml) runs, because no
Consul image or binary exists here; without a registry, `haproxy:2.6` is a
local stand-in built from the base image and Debian's haproxy 2.6.

Without a Docker engine (and none can be started: no dockerd, or not root)
the test is skipped with one line saying why; with CI=true that is a failure.
The engine comes from bin/docker-engine (tests/harness/docker.py).  The local
base image (when the Dockerfile's FROM image is missing, as here: no registry)
is built once and then reused; the image builds reuse BuildKit's cache.

The numbers it measured are printed at the end and written to
.docker/image-test.json (BENCHMARKS.md quotes them).
"""
from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pymysql
import pytest
import yaml

from tests.harness import docker
from tests.harness.procs import wait_for

pytestmark = pytest.mark.slow

FILES = ("docker-compose.yml", "docker-compose.etcd.yml")
IMAGE, ETCD_IMAGE = "triton-mysql", "triton-mysql-etcd"  # the compose files' `image:` names
HAPROXY_IMAGE = yaml.safe_load((docker.REPO / FILES[0]).read_text())["services"]["haproxy"]["image"]
ETCD_DOCKERFILE = docker.REPO / "etc" / "etcd" / "Dockerfile"
NOFILE = 65536  # the compose file's default NOFILE_LIMIT
SESSION_TTL = 10  # the shipped default (.env.example)
# Seconds for the cluster part, from `up` to `down -v` (builds have their own timeouts): about 200 s on
# this 2-core machine with moderate load from other work, 410 s under heavy load.
BUDGET = 600.0
APP_USER, APP_DB = "app", "app"
HAPROXY_WRITE, HAPROXY_READ = 3306, 3307  # etc/haproxy.cfg's defaults, inside the compose network
SIZE = re.compile(r"\b\d+(?:\.\d)? (?:B|KiB|MiB|GiB|TiB)\b")
RESULTS = docker.STATE_DIR / "image-test.json"


class Budget:
    """One deadline for the whole test: every wait is cut to what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + seconds

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the image test ran out of its {BUDGET:g} s budget before: {what}")
        return wait_for(predicate, min(timeout, left), interval=interval, what=what)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


# ---------------------------------------------------------------------------
# Fixtures: engine, images, the compose project


@pytest.fixture(scope="module")
def engine():
    ci = os.environ.get("CI", "").lower() in ("true", "1", "yes")
    try:
        with docker.engine() as how:
            yield how
    except docker.DockerUnavailable as exc:
        if ci:
            pytest.fail(f"CI=true but no Docker engine: {exc}")
        pytest.skip(f"no Docker engine here ({exc}); CI=true makes this a failure, .ci/run installs one")


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    data: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count()}
    yield data
    docker.STATE_DIR.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print("\nimage test measurements: " + json.dumps(data, sort_keys=True))


@pytest.fixture(scope="module")
def images(engine, measured) -> dict[str, Any]:
    budget_start = time.monotonic()
    base = docker.dockerfile_from(docker.REPO / "Dockerfile")
    assert docker.dockerfile_from(ETCD_DOCKERFILE) == base
    measured["base_image"] = base
    measured["base"] = docker.ensure_base_image(base, docker.STATE_DIR)
    measured["base_local"] = docker.LOCAL_BASE_LABEL in (json.loads(docker.docker(
        "image", "inspect", "--format", "{{json .Config.Labels}}", base).stdout) or {})
    measured["build_seconds"] = round(docker.build_image(IMAGE, docker.REPO), 1)
    measured["etcd_build_seconds"] = round(docker.build_image(ETCD_IMAGE, docker.REPO, ETCD_DOCKERFILE), 1)
    measured["image_mib"] = round(docker.image_size(IMAGE) / 2**20, 1)
    measured["etcd_image_mib"] = round(docker.image_size(ETCD_IMAGE) / 2**20, 1)
    # The compose file's haproxy image: pulled where a registry answers, else a stand-in from the local base
    # and Debian's haproxy package (tests/harness/docker.py), under the compose file's own image name.
    measured["haproxy_image"] = HAPROXY_IMAGE
    measured["haproxy"] = docker.ensure_haproxy_image(HAPROXY_IMAGE, base, docker.STATE_DIR)
    measured["base_image_mib"] = round(docker.image_size(base) / 2**20, 1)
    measured["images_seconds"] = round(time.monotonic() - budget_start, 1)
    return measured


@pytest.fixture(scope="module")
def project(images, tmp_path_factory):
    """The compose project: the shipped files, a project directory holding the test's .env."""
    directory = tmp_path_factory.mktemp("compose-project")
    passwords = {name: secrets.token_hex(8) for name in ("repl", "app")}
    (directory / ".env").write_text("\n".join([
        "MYSQL_REPL_USER=repl", f"MYSQL_REPL_PASSWORD={passwords['repl']}",
        f"MYSQL_USER={APP_USER}", f"MYSQL_PASSWORD={passwords['app']}", f"MYSQL_DATABASE={APP_DB}",
        f"SESSION_TTL={SESSION_TTL}", "",
    ]))
    # The haproxy service mounts ./etc/haproxy.cfg, relative to the project directory (a user's checkout).
    (directory / "etc").mkdir()
    shutil.copy(docker.REPO / "etc" / "haproxy.cfg", directory / "etc" / "haproxy.cfg")
    env = {}
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        # A property of this machine (the engine cannot raise the limit above its own), like its CA.
        env["NOFILE_LIMIT"] = str(hard)
    images["nofile_limit"] = int(env.get("NOFILE_LIMIT", NOFILE))
    compose = docker.Compose(project=f"tmimage{os.getpid()}", files=[str(docker.REPO / f) for f in FILES],
                             env=env, directory=directory)
    compose.passwords = passwords  # type: ignore[attr-defined]
    images["compose"] = compose.version()
    try:
        yield compose
    finally:
        if compose.leftovers()["containers"]:  # the test stopped before its own `down -v`
            logs = compose("logs", "--no-color", "--tail=120", check=False, timeout=60)
            print("\n===== compose logs =====\n" + logs.stdout[-60000:])
            compose("down", "-v", "--timeout", "20", check=False, timeout=300)


# ---------------------------------------------------------------------------
# Looking at the cluster from outside


class View:
    """The project's mysql containers and what `status` says, by container number (--index)."""

    def __init__(self, compose: docker.Compose, budget: Budget) -> None:
        self.compose = compose
        self.budget = budget

    def containers(self) -> dict[int, dict]:
        return {int(c["Config"]["Labels"]["com.docker.compose.container-number"]): c
                for c in self.compose.containers("mysql")}

    def running(self) -> dict[int, dict]:
        return {i: c for i, c in self.containers().items() if c["State"]["Running"]}

    def node(self, index: int) -> str:
        """The node name: the container's host name (the default, stored with its data on first start)."""
        return self.containers()[index]["Config"]["Hostname"]

    def index_of(self, node: str) -> int:
        return next(i for i, c in self.containers().items() if c["Config"]["Hostname"] == node)

    def ip(self, index: int) -> str:
        return docker.container_ip(self.containers()[index])

    def health(self, index: int) -> str:
        state = self.containers()[index]["State"]
        return state.get("Health", {}).get("Status", "none") if state["Running"] else "stopped"

    def status(self, index: int | None = None) -> dict:
        index = index if index is not None else min(self.running())
        result = self.compose.exec(index, "triton-mysql", "status", "--json", timeout=60)
        return json.loads(result.stdout)

    def settled(self, count: int) -> dict | None:
        """One `ready` primary and count-1 healthy replicas in status, every container `healthy`."""
        running = self.running()
        if len(running) != count or any(self.health(i) != "healthy" for i in running):
            return None
        status = self.status()
        up = [n for n in status["nodes"] if n["up"]]
        primaries = [n for n in up if n["role"] == "primary"]
        replicas = [n for n in up if n["role"] == "replica" and n["healthy"]]
        ok = (status["primary"] is not None and status["primary"]["state"] == "ready" and len(up) == count
              and len(primaries) == 1 and primaries[0]["healthy"] and primaries[0]["node"] == status["primary"]["node"]
              and len(replicas) == count - 1)
        return status if ok else None

    def wait_settled(self, count: int, timeout: float, what: str) -> dict:
        return self.budget.wait(lambda: self.settled(count), timeout, what, interval=1.0)

    def sql(self, index: int, statement: str, check: bool = True) -> subprocess.CompletedProcess:
        """The mariadb client in the container, as the application account over TCP."""
        password = self.compose.passwords["app"]  # type: ignore[attr-defined]
        return self.compose("exec", "-T", "-e", f"MYSQL_PWD={password}", f"--index={index}", "mysql",
                            "mariadb", "-h", "127.0.0.1", "-u", APP_USER, "-N", "-B", APP_DB, "-e", statement,
                            check=check, timeout=60)

    def client(self, index: int) -> pymysql.Connection:
        """A client on the compose network (the host has an address on it), as the application account."""
        return pymysql.connect(host=self.ip(index), port=3306, user=APP_USER,
                               password=self.compose.passwords["app"],  # type: ignore[attr-defined]
                               database=APP_DB, connect_timeout=2, read_timeout=5, write_timeout=5,
                               autocommit=True)

    def count(self, index: int, table: str = "writes") -> int:
        conn = self.client(index)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    def ids(self, index: int) -> set[int]:
        conn = self.client(index)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM writes")
                return {int(row[0]) for row in cur.fetchall()}
        finally:
            conn.close()

    def routed(self, port: int) -> tuple[str, bool] | None:
        """(host name, read_only) of the node a new connection to HAProxy's `port` reaches (its address on
        the compose network, as an application container would connect); None when refused or closed."""
        haproxy = [c for c in self.compose.containers("haproxy") if c["State"]["Running"]]
        if not haproxy:
            return None
        try:
            conn = pymysql.connect(host=docker.container_ip(haproxy[0]), port=port, user=APP_USER,
                                   password=self.compose.passwords["app"],  # type: ignore[attr-defined]
                                   database=APP_DB, connect_timeout=2, read_timeout=5, write_timeout=5)
        except pymysql.MySQLError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@hostname, @@read_only")
                name, read_only = cur.fetchone()
                return str(name), bool(int(read_only))
        except pymysql.MySQLError:
            return None
        finally:
            _close(conn)

    def logs(self, index: int) -> str:
        cid = self.containers()[index]["Id"]
        result = docker.docker("logs", cid, check=False, timeout=60)
        return result.stdout + result.stderr


class Lock:
    """The lock record read straight from etcd (the discovery container, on the compose network):
    cheap enough to poll every 50 ms, so failover times are measured to the lock change."""

    def __init__(self, compose: docker.Compose) -> None:
        import etcd3gw

        (container,) = compose.containers("discovery")
        self.client = etcd3gw.client(host=docker.container_ip(container), port=2379, timeout=2)

    def holder(self) -> tuple[str, str] | None:
        values = self.client.get(b"/triton-mysql/mysql/primary")
        if not values:
            return None
        record = json.loads(values[0])
        return record.get("node"), record.get("state", "ready")

    def wait_new(self, old: str | None, budget: Budget, timeout: float, what: str) -> str:
        def new() -> str | None:
            holder = self.holder()
            return holder[0] if holder and holder[0] != old and holder[1] == "ready" else None
        return budget.wait(new, timeout, what, interval=0.05)


class Writer(threading.Thread):
    """Keeps inserting numbered rows as the application account into whichever node takes them
    (a read-only replica refuses with 1290); `acked` are the rows whose INSERT returned OK."""

    def __init__(self, view: View) -> None:
        super().__init__(daemon=True, name="writer")
        self.view = view
        self.addresses: list[str] = [view.ip(i) for i in view.running()]
        self.acked: list[int] = []
        self.failed = 0
        self.last_ok: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        conn = None
        try:
            while not self.stop_event.is_set():
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        time.sleep(0.1)
                        continue
                n += 1
                try:
                    with conn[1].cursor() as cur:
                        cur.execute("INSERT INTO writes (id) VALUES (%s)", (n,))
                    self.acked.append(n)
                    self.last_ok[conn[0]] = time.monotonic()
                except pymysql.MySQLError:
                    self.failed += 1
                    _close(conn[1])
                    conn = None
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc
        finally:
            if conn is not None:
                _close(conn[1])

    def _connect(self) -> tuple[str, pymysql.Connection] | None:
        """The first node that is writable now (a client that knows the nodes' addresses)."""
        for address in list(self.addresses):
            try:
                conn = pymysql.connect(host=address, port=3306, user=APP_USER, database=APP_DB,
                                       password=self.view.compose.passwords["app"],  # type: ignore[attr-defined]
                                       connect_timeout=1, read_timeout=3, write_timeout=3, autocommit=True)
            except pymysql.MySQLError:
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT @@read_only")
                    if int(cur.fetchone()[0]) == 0:
                        return address, conn
            except pymysql.MySQLError:
                pass
            _close(conn)
        return None

    def resumed_on(self, address: str, after: float) -> bool:
        return self.last_ok.get(address, 0.0) > after

    def stop(self) -> list[int]:
        self.stop_event.set()
        self.join(15)
        assert self.error is None, f"the writer failed: {self.error!r}"
        return list(self.acked)


def _close(conn: pymysql.Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a dead connection
        pass


# ---------------------------------------------------------------------------


def test_image_cluster_for_real(project: docker.Compose, measured: dict[str, Any]):
    budget = Budget(BUDGET)
    view = View(project, budget)
    timings: dict[str, float] = {}
    measured["timings"] = timings

    # -- up: three nodes from nothing ---------------------------------------------------
    started = time.monotonic()
    project("up", "-d", "--no-build", "--scale", "mysql=3", timeout=300)
    status = view.wait_settled(3, 240, "one primary and two healthy replicas (status, container health)")
    timings["up_to_3_healthy"] = round(time.monotonic() - started, 1)
    volumes = {v for c in view.containers().values() for v in docker.volumes_of(c)}
    primary = status["primary"]["node"]
    p = view.index_of(primary)
    replicas = [view.index_of(n["node"]) for n in status["nodes"] if n["role"] == "replica"]
    assert len({n["node"] for n in status["nodes"]}) == 3

    # The volume layout: the datadir is created by onStart one level below the volume.
    layout = project.exec(p, "sh", "-c", "stat -c %U /var/lib/mysql/data && ls /var/lib/mysql/data/triton-mysql.json "
                                         "&& ulimit -n").stdout.split()
    assert layout[:2] == ["mysql", "/var/lib/mysql/data/triton-mysql.json"], layout
    assert int(layout[2]) == measured["nofile_limit"]

    # -- a write as the application account: on the primary, read back on both replicas, refused on one
    view.sql(p, "CREATE TABLE writes (id INT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)); "
                "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'from-primary')")
    for r in replicas:
        budget.wait(lambda: view.sql(r, "SELECT v FROM t WHERE id = 1", check=False).stdout.strip() == "from-primary",
                    30, f"the write replicated to node {view.node(r)}")
    refused = view.sql(replicas[0], "INSERT INTO t VALUES (2, 'on-a-replica')", check=False)
    assert refused.returncode != 0 and "ERROR 1290" in refused.stderr, refused.stderr

    # -- HAProxy (the compose file's haproxy service, etc/haproxy.cfg): the write port reaches the primary,
    # the read port only replicas, found through Docker's DNS
    routed = time.monotonic()
    budget.wait(lambda: view.routed(HAPROXY_WRITE) == (primary, False), 30, "HAProxy's write port reaching the primary")
    timings["haproxy_write_routed"] = round(time.monotonic() - routed, 1)
    replica_names = {view.node(r) for r in replicas}
    reads: list[tuple[str, bool]] = []

    def both_replicas_read() -> bool:
        read = view.routed(HAPROXY_READ)
        if read is not None:
            reads.append(read)
        return {name for name, _ in reads} >= replica_names
    budget.wait(both_replicas_read, 30, "HAProxy's read port reaching both replicas", interval=0.2)
    assert all(name in replica_names and read_only for name, read_only in reads), \
        f"the read port reached something else than a read-only replica {sorted(replica_names)}: {reads}"

    # -- docker stop of the primary under a writer: a new primary in seconds, nothing acknowledged lost
    lock = Lock(project)
    writer = Writer(view)
    writer.start()
    budget.wait(lambda: len(writer.acked) > 50, 30, "the writer writing on the primary")
    old_primary, old_index = primary, p
    stop_started = time.monotonic()
    stopper = subprocess.Popen([docker.client(), "stop", view.containers()[p]["Id"]], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=docker.docker_env())
    new_primary = lock.wait_new(old_primary, budget, 30, "a new primary after docker stop")
    timings["stop_failover"] = round(time.monotonic() - stop_started, 2)
    n = view.index_of(new_primary)
    new_address = view.ip(n)
    budget.wait(lambda: writer.resumed_on(new_address, stop_started), 30, "writes accepted by the new primary")
    timings["stop_writes_resumed"] = round(max(writer.last_ok[new_address] - stop_started, 0.0), 2)
    assert stopper.wait(200) == 0, stopper.stderr.read()
    timings["docker_stop_returned"] = round(time.monotonic() - stop_started, 1)
    assert view.containers()[old_index]["State"]["ExitCode"] == 0, "the stopped node did not exit cleanly"
    budget.wait(lambda: len([a for a in writer.acked]) > 0 and writer.resumed_on(new_address, time.monotonic() - 1),
                10, "the writer still writing")
    acked = writer.stop()
    budget.wait(lambda: view.routed(HAPROXY_WRITE) == (new_primary, False), 30,
                "HAProxy's write port reaching the new primary after docker stop")
    timings["haproxy_write_follows_stop"] = round(time.monotonic() - stop_started, 1)
    present = view.ids(n)
    lost = sorted(set(acked) - present)
    measured["stop_rows_acked"], measured["stop_rows_lost"] = len(acked), len(lost)
    assert not lost, f"{len(lost)} acknowledged rows lost in a planned stop: {lost[:20]}"

    # -- docker start: the old primary comes back as a replica
    restart = time.monotonic()
    docker.docker("start", view.containers()[old_index]["Id"], timeout=60)
    status = view.wait_settled(3, 120, "the old primary rejoined as a healthy replica")
    timings["start_rejoin"] = round(time.monotonic() - restart, 1)
    rows = {x["node"]: x for x in status["nodes"]}
    assert status["primary"]["node"] == new_primary and rows[old_primary]["role"] == "replica"
    assert view.count(old_index) == view.count(n), "the rejoined node misses rows"

    # -- a replica's supervisor killed from the host (a real crash): the restart policy brings it back
    victim = next(i for i in view.running() if i != n)
    victim_node = view.node(victim)
    state = view.containers()[victim]["State"]
    restarts = view.containers()[victim]["RestartCount"]
    crashed = time.monotonic()
    os.kill(state["Pid"], signal.SIGKILL)  # its PID 1 as the host sees it: containerbuddy
    budget.wait(lambda: view.containers()[victim]["RestartCount"] > restarts and view.containers()[victim]["State"]["Running"],
                60, "the restart policy restarting the crashed node")
    timings["replica_crash_restarted"] = round(time.monotonic() - crashed, 1)
    status = view.wait_settled(3, 120, f"the crashed replica {victim_node} back and healthy")
    timings["replica_crash_healthy"] = round(time.monotonic() - crashed, 1)
    assert {x["node"]: x["role"] for x in status["nodes"]}[victim_node] == "replica"
    assert view.node(victim) == victim_node
    budget.wait(lambda: view.count(victim) == view.count(n), 30, "the restarted replica caught up")

    # -- the primary killed and kept down (`docker kill`: a manual stop, so no restart; a primary that the
    # policy restarts within SESSION_TTL just keeps its lock): failover after the lock expires
    crashed = time.monotonic()
    docker.docker("kill", view.containers()[n]["Id"], timeout=60)
    crash_primary = lock.wait_new(new_primary, budget, 3 * SESSION_TTL + 10, "a new primary after docker kill")
    timings["primary_kill_failover"] = round(time.monotonic() - crashed, 1)
    budget.wait(lambda: view.routed(HAPROXY_WRITE) == (crash_primary, False), 30,
                "HAProxy's write port reaching the new primary after docker kill")
    timings["haproxy_write_follows_kill"] = round(time.monotonic() - crashed, 1)
    restart = time.monotonic()
    docker.docker("start", view.containers()[n]["Id"], timeout=60)
    status = view.wait_settled(3, 150, "the killed primary started again and rejoined as a replica")
    timings["primary_kill_rejoined"] = round(time.monotonic() - restart, 1)
    assert status["primary"]["node"] == crash_primary
    assert {x["node"]: x["role"] for x in status["nodes"]}[new_primary] == "replica"
    assert status["last_failover"]["to"] == crash_primary
    primary, p = crash_primary, view.index_of(crash_primary)

    # -- --scale mysql=4: the new node clones itself from the snapshot
    scaled = time.monotonic()
    project("up", "-d", "--no-build", "--scale", "mysql=4", timeout=300)
    status = view.wait_settled(4, 150, "a fourth node cloned and healthy")
    timings["scale_to_4_healthy"] = round(time.monotonic() - scaled, 1)
    fourth = max(view.containers())
    fourth_node = view.node(fourth)
    row = {x["node"]: x for x in status["nodes"]}[fourth_node]
    assert row["role"] == "replica" and row["snapshot_id"], row
    assert f"restored snapshot {row['snapshot_id']}" in view.logs(fourth)
    budget.wait(lambda: view.count(fourth) == view.count(p), 30, "the clone caught up")
    volumes |= {v for c in view.containers().values() for v in docker.volumes_of(c)}

    # -- backup and snapshots in a container; one size unit in backup, snapshots and status
    backed = time.monotonic()
    backup = project.exec(replicas[0] if replicas[0] in view.running() else fourth, "triton-mysql", "backup",
                          timeout=180)
    timings["backup"] = round(time.monotonic() - backed, 1)
    listing = project.exec(fourth, "triton-mysql", "snapshots").stdout
    table = project.exec(fourth, "triton-mysql", "status").stdout
    newest = view.status()["last_snapshot"]
    assert newest["id"] in backup.stdout + backup.stderr and listing.splitlines()[1].startswith(newest["id"])
    for text in (backup.stdout + backup.stderr, listing, table):
        assert SIZE.search(text) and not re.search(r"\d MB\b", text), text
    assert "stale" not in table and "fenced" not in table

    # -- scale back to 3: the removed node is `down`; forget is refused for a live node, then removes it
    fourth_volumes = [v for v in docker.volumes_of(view.containers()[fourth]) if re.fullmatch(r"[0-9a-f]{64}", v)]
    assert len(fourth_volumes) == 1, "the node's own (anonymous) volume at /var/lib/mysql"
    project("up", "-d", "--no-build", "--scale", "mysql=3", timeout=300)
    budget.wait(lambda: {x["node"]: x["role"] for x in view.status()["nodes"]}.get(fourth_node) == "down",
                60, "the scaled-down node shown as down")
    refused = project.exec(1, "triton-mysql", "forget", primary, check=False)
    assert refused.returncode == 1 and "refusing to forget" in refused.stderr, refused.stderr
    forgot = project.exec(1, "triton-mysql", "forget", fourth_node)
    assert f"forgot {fourth_node}" in forgot.stdout
    assert fourth_node not in {x["node"] for x in view.status()["nodes"]}
    # Compose removes a scaled-down container but keeps its anonymous volume (its data), and `down -v`
    # only removes the volumes of containers that still exist: the README says to remove it by hand.
    for volume in fourth_volumes:
        if docker.docker("volume", "inspect", volume, check=False).returncode == 0:
            docker.docker("volume", "rm", volume)

    # -- down -v leaves nothing of the project
    downed = time.monotonic()
    project("down", "-v", timeout=300)
    timings["down"] = round(time.monotonic() - downed, 1)
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
    remaining = [v for v in volumes if docker.docker("volume", "inspect", v, check=False).returncode == 0]
    assert not remaining, f"volumes left after down -v: {remaining}"
    timings["test_total"] = round(budget.elapsed(), 1)
