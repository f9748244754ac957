"""A Docker engine, images and compose projects for the image test (tests/test_image.py).

* `engine()` makes sure an engine answers for the length of a test run, through
  `bin/docker-engine` (the same script CI uses): it uses a running engine, or
  starts dockerd (root, dockerd installed) and stops it afterwards.  While it
  is in use, the run holds the engine's users lock shared, so that another run
  on this machine that started the engine does not stop it underneath.
* `ensure_base_image()` makes the Dockerfile's `FROM` image when it is missing
  (no registry is reachable here): `debootstrap` from this machine's Debian
  mirror, `docker import`.  This machine's apt sources and local CA
  certificates (HTTPS here is re-signed by a proxy) go into that BASE image,
  never into the Dockerfile: on a machine with a registry nothing changes.
  Once built, it stays in the engine's image store and is reused.
* `ensure_haproxy_image()` makes a stand-in for the compose file's `haproxy`
  image when it is missing and cannot be pulled: the local base image plus
  Debian's haproxy package (bookworm: 2.6, the compose file's version), run
  the way the official image runs it.  Labelled, like the base, so that it can
  be told from the real one; the compose file keeps its normal image.
* `build_image()` builds with BuildKit (never the legacy builder), on the host
  network (the engine's bridge has no route out).
* `Compose` runs docker-compose (v1, Debian's) or `docker compose` (v2) on the
  shipped compose files.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

REPO = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = REPO / "bin" / "docker-engine"
STATE_DIR = REPO / ".docker"
USERS_LOCK = Path(os.environ.get("DOCKER_ENGINE_LOCK")
                  or Path(os.environ.get("TMPDIR") or "/tmp") / "triton-mysql-docker-engine.lock")
BASE_LOCK = USERS_LOCK.with_name("triton-mysql-docker-base.lock")
# On the image made by ensure_base_image(), so that it can be told from a pulled one.
LOCAL_BASE_LABEL = "org.triton-mysql.local-base"
# On the haproxy stand-in made by ensure_haproxy_image().
LOCAL_STANDIN_LABEL = "org.triton-mysql.local-standin"
# What debian:*-slim leaves out (its /etc/dpkg/dpkg.cfg.d/docker): documentation,
# manuals and translations; copyright files are kept.
SLIM_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""


class DockerUnavailable(Exception):
    """No engine answers and none can be started here (the image test is skipped, or fails under CI)."""


class DockerError(Exception):
    """A docker/compose command failed."""


def client() -> str:
    """The docker client: $DOCKER, else the package's /usr/bin/docker, else `docker` on PATH.

    Another `docker` earlier on PATH may be a newer client without the buildx
    plugin, which then refuses BuildKit builds.
    """
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker") or "docker"


def docker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "1"
    # Compose v1 builds through this CLI (not docker-py's legacy builder) with it.
    env["COMPOSE_DOCKER_CLI_BUILD"] = "1"
    return env


def run(argv: Sequence[str], *, timeout: float = 120, check: bool = True, input: str | None = None,
        env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command, capture its output; DockerError with the output when `check` and it fails."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input,
                                env=env or docker_env(), cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise DockerError(f"{shlex.join(argv)}: timed out after {timeout:g} s\n{exc.stdout or ''}{exc.stderr or ''}") from None
    if check and result.returncode != 0:
        raise DockerError(f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run([client(), *args], **kwargs)


# --------------------------------------------------------------------------
# The engine

@contextlib.contextmanager
def engine() -> Iterator[str]:
    """An engine that answers for the length of the block; yields how it was obtained.

    Raises DockerUnavailable (exit 3 of bin/docker-engine) when there is none
    and none can be started; DockerError when starting one failed.
    """
    USERS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(USERS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # taken before start: a stop in progress finishes first
        result = run([str(ENGINE_SCRIPT), "start"], timeout=180, check=False)
        lines = (result.stdout.strip().splitlines() or [""])
        if result.returncode == 3:
            reason = (result.stderr.strip().splitlines() or ["no Docker engine"])[-1]
            raise DockerUnavailable(reason.removeprefix("docker-engine: error: "))
        if result.returncode != 0:
            raise DockerError(f"bin/docker-engine start exited {result.returncode}:\n{result.stdout}{result.stderr}")
        started = lines[-1].startswith("started")
        try:
            yield "started" if started else "running"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if started:
                run([str(ENGINE_SCRIPT), "stop"], timeout=900, check=False)


# --------------------------------------------------------------------------
# Images

def dockerfile_from(dockerfile: Path) -> str:
    """The image of the Dockerfile's first FROM line (flags such as --platform skipped)."""
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            images = [w for w in words[1:] if not w.startswith("--")]
            if images:
                return images[0]
    raise ValueError(f"{dockerfile}: no FROM line")


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False, timeout=30).returncode == 0


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref, timeout=30).stdout.strip())


def apt_source_files() -> list[Path]:
    """This machine's apt sources (one-line and deb822 files)."""
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    return [f for f in files if f.is_file() and f.suffix in (".list", ".sources") and f.stat().st_size > 0]


def debian_mirror(files: Sequence[Path] | None = None) -> str:
    """The Debian archive URI apt uses here (the first one serving `main` that is not debian-security)."""
    for path in files if files is not None else apt_source_files():
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, flags=re.M))
                uris = fields.get("URIs", "").split()
                if uris and "main" in fields.get("Components", "").split() and "deb" in fields.get("Types", "").split():
                    uri = uris[0]
                    if "security" not in uri:
                        return uri
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and "security" not in words[1] and "main" in words[3:]:
                    return words[1]
    raise DockerError("no Debian mirror found in this machine's apt sources")


def ensure_base_image(ref: str, workdir: Path, log=print) -> str:
    """Make sure `ref` (the Dockerfile's FROM image) exists; build it locally when it does not.

    Returns "present", "pulled" or "built in N s".  A machine with a registry
    pulls it as any build would; only without one (a pull fails: the engine
    that bin/docker-engine starts has its proxy pointed at a dead port, so it
    fails at once) is debian:<suite>[-slim] made here.  One build at a time per
    machine (a lock), and a build that another run finished while this one
    waited is used as it is.
    """
    if image_exists(ref):
        return "present"
    if docker("pull", ref, check=False, timeout=120).returncode == 0:
        return "pulled"
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?", ref)
    if match is None:
        raise DockerError(f"{ref} is missing and only debian:<suite>[-slim] can be built locally")
    suite = match.group(1)
    for program in ("debootstrap", "tar"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            raise DockerError(f"{ref} is missing and {program} is not installed (Debian package {program})")
    with open(BASE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(ref):
            return "present"
        started = time.monotonic()
        _build_base(ref, suite, workdir, log)
        return f"built in {time.monotonic() - started:.0f} s"


def _build_base(ref: str, suite: str, workdir: Path, log) -> None:
    sources = apt_source_files()
    mirror = debian_mirror(sources)
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="base-rootfs.", dir=workdir))
    try:
        log(f"building the local base image {ref}: debootstrap {suite} from {mirror}")
        debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        run([debootstrap, "--variant=minbase", suite, str(rootfs), mirror], timeout=900, env=dict(os.environ))
        _adapt_rootfs(rootfs, sources)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(
                [client(), "import", "-c", 'CMD ["bash"]', "-c", f"LABEL {LOCAL_BASE_LABEL}=debootstrap-{suite}",
                 "-", ref], stdin=tar.stdout, capture_output=True, text=True, timeout=600)
        finally:
            tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise DockerError(f"docker import of {ref} failed: {imported.stderr.strip()}")
        log(f"imported {ref} ({image_size(ref) / 2**20:.0f} MiB)")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _adapt_rootfs(rootfs: Path, sources: Sequence[Path]) -> None:
    """This machine's apt sources and CA certificates; slim dpkg excludes; no apt caches."""
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    target = rootfs / "etc/apt/sources.list.d"
    target.mkdir(parents=True, exist_ok=True)
    for path in sources:
        name = path.name if path.parent.name == "sources.list.d" else "machine.list"
        shutil.copy(path, target / name)
    cas = rootfs / "usr/local/share/ca-certificates"
    cas.mkdir(parents=True, exist_ok=True)
    for cert in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        shutil.copy(cert, cas / cert.name)
    # The bundle that update-ca-certificates builds once the image installs ca-certificates.
    (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_EXCLUDES)
    for sub in ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian"):
        shutil.rmtree(rootfs / sub, ignore_errors=True)
    for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
        directory = rootfs / sub
        for entry in directory.glob("*"):
            if entry.is_file():
                entry.unlink()
        (directory / "partial").mkdir(parents=True, exist_ok=True)


HAPROXY_STANDIN = """\
FROM {base}
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \\
    && apt-get clean \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /usr/local/etc/haproxy
LABEL {label}="debian-haproxy"
# As the official image: its own user, the config at /usr/local/etc/haproxy/haproxy.cfg,
# master-worker mode in the foreground, SIGUSR1 for a soft stop.
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
"""


def ensure_haproxy_image(ref: str, base: str, workdir: Path, log=print) -> str:
    """Make sure `ref` (the compose file's haproxy image) exists; build a stand-in when it does not.

    Returns "present", "pulled" or "stand-in built in N s".  Only when a pull
    fails (no registry) is `ref` built here, from `base` (the local base image)
    and Debian's haproxy package, tagged `ref` so that the shipped compose file
    runs unchanged.  Like the base image, a property of this machine: nothing
    of it goes into the repository's files.
    """
    if image_exists(ref):
        return "present"
    if docker("pull", ref, check=False, timeout=120).returncode == 0:
        return "pulled"
    if not re.fullmatch(r"(?:docker\.io/)?(?:library/)?haproxy:[0-9.]+(?:-[a-z]+)?", ref):
        raise DockerError(f"{ref} is missing and only haproxy:<version> has a local stand-in")
    with open(BASE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(ref):
            return "present"
        workdir.mkdir(parents=True, exist_ok=True)
        context = Path(tempfile.mkdtemp(prefix="haproxy-standin.", dir=workdir))
        try:
            (context / "Dockerfile").write_text(HAPROXY_STANDIN.format(base=base, label=LOCAL_STANDIN_LABEL))
            log(f"building a stand-in for {ref} from {base} and Debian's haproxy package")
            seconds = build_image(ref, context)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        return f"stand-in built in {seconds:.0f} s"


def build_image(tag: str, context: Path, dockerfile: Path | None = None, *, timeout: float = 900,
                no_cache: bool = False) -> float:
    """`docker build` with BuildKit on the host network; returns the seconds it took.

    BuildKit's step-by-step output (with each step's time) is kept in
    .docker/build-<tag>.log.
    """
    started = time.monotonic()
    argv = ["build", "--network=host", "--progress=plain", "-t", tag]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    if no_cache:
        argv.append("--no-cache")
    output = ""
    try:
        result = docker(*argv, str(context), timeout=timeout)
        output = result.stdout + result.stderr
    except DockerError as exc:
        output = str(exc)
        raise
    finally:
        STATE_DIR.mkdir(exist_ok=True)
        (STATE_DIR / f"build-{tag.replace('/', '_').replace(':', '_')}.log").write_text(output)
    return time.monotonic() - started


# --------------------------------------------------------------------------
# Compose

def compose_command() -> list[str]:
    """docker-compose (v1, what Debian ships) when installed, else `docker compose` (v2)."""
    if os.environ.get("COMPOSE"):
        return shlex.split(os.environ["COMPOSE"])
    v1 = shutil.which("docker-compose")
    if v1:
        return [v1]
    return [client(), "compose"]


@dataclass
class Compose:
    """One compose project on the shipped files (paths relative to the repository)."""

    project: str
    files: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    directory: Path = REPO

    def argv(self, *args: str) -> list[str]:
        argv = compose_command() + ["-p", self.project, "--project-directory", str(self.directory)]
        for name in self.files:
            argv += ["-f", str(self.directory / name)]
        return argv + list(args)

    def __call__(self, *args: str, timeout: float = 300, check: bool = True,
                 input: str | None = None) -> subprocess.CompletedProcess:
        env = docker_env()
        env.update(self.env)
        return run(self.argv(*args), timeout=timeout, check=check, input=input, env=env, cwd=self.directory)

    def version(self) -> str:
        return run(compose_command() + ["version", "--short"], timeout=30).stdout.strip()

    def containers(self, service: str = "mysql", all_states: bool = True) -> list[dict]:
        """`docker inspect` of the project's containers of `service`, by container number."""
        argv = ["ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.service={service}"]
        if all_states:
            argv.insert(1, "-a")
        ids = docker(*argv, timeout=30).stdout.split()
        if not ids:
            return []
        found = json.loads(docker("inspect", *ids, timeout=30).stdout)
        return sorted(found, key=lambda c: int(c["Config"]["Labels"].get("com.docker.compose.container-number", 0)))

    def exec(self, index: int, *cmd: str, service: str = "mysql", timeout: float = 60,
             check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        """`exec -T --index=N service cmd…` (no terminal here)."""
        return self("exec", "-T", f"--index={index}", service, *cmd, timeout=timeout, check=check, input=input)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and labelled volumes of the project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "-aq", "--filter", label, timeout=30).stdout.split(),
            "networks": docker("network", "ls", "-q", "--filter", label, timeout=30).stdout.split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label, timeout=30).stdout.split(),
        }


def container_ip(container: dict) -> str:
    networks = container["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def volumes_of(container: dict) -> list[str]:
    return [m["Name"] for m in container.get("Mounts", []) if m.get("Type") == "volume"]
