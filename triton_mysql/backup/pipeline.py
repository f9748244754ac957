"""The snapshot pipeline: backup tool → zstd → storage, hashed on the fly.

    mariabackup --backup --stream=xbstream  |  zstd -1 -T0  |  Python: sha256, size → storage writer

The two tools are connected by an OS pipe (no Python in between, no copy of
the uncompressed stream); Python reads only the compressed stream, in 1 MiB
reads, hashes it and hands it to the storage writer, which keeps a bounded
buffer (file: none; S3: a few parts; Manta: none).  Nothing of the backup is
ever written locally except the tool's own metadata.

The binlog position (file, position, GTID) is taken from the tool itself:
`--extra-lsndir=DIR` makes mariabackup/xtrabackup write a second copy of
`xtrabackup_info` into a small local directory, and that file's `binlog_pos`
line is written from the same read (under the tool's BACKUP STAGE
BLOCK_COMMIT / lock) as `xtrabackup_binlog_info` inside the stream.  This is
exactly the position that matches the data, with no full local copy, no
parsing of the xbstream format, and no race (querying the server ourselves
"at the right moment" cannot be synchronised with the tool's lock).

The object is committed (made visible) only after both tools exited 0 and
the tool reported success; any failure aborts the upload, so a killed or
failed backup never leaves a visible data object.

The tools run with a lower CPU priority (nice 10) so that the server and the
health checks keep precedence while a backup runs.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..mysql.flavor import Flavor
from ..storage import Storage, StorageError
from .progress import Progress, process_read_bytes

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
NICENESS = 10
ZSTD_LEVEL = 1
PROGRESS_SAMPLE = 0.5

_BINLOG_POS = re.compile(r"filename '(?P<file>[^']*)', position '(?P<pos>\d+)'"
                         r"(?:, GTID of the last change '(?P<gtid>[^']*)')?", re.DOTALL)


class SnapshotError(Exception):
    """The snapshot failed; the message is one line for the operator."""


@dataclass(frozen=True)
class StreamResult:
    """What the pipeline learned: the stored object and the backup's position."""

    size: int
    sha256: str
    binlog_file: str | None
    binlog_pos: int | None
    gtid: str
    server_version: str | None
    tool: str
    tool_version: str | None
    source_bytes: int | None
    seconds: float


def _lower_priority() -> None:  # runs in the child between fork and exec
    try:
        os.nice(NICENESS)
    except OSError:
        pass


def _grow_pipe(fd: int) -> None:
    """Bigger pipe buffer: fewer, larger reads (Linux; ignored elsewhere)."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass


def parse_xtrabackup_info(text: str) -> dict[str, str]:
    """`key = value` lines of xtrabackup_info (values may be empty)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def binlog_position(info: dict[str, str]) -> tuple[str | None, int | None, str]:
    """(file, position, GTID) from xtrabackup_info's `binlog_pos` (None, None, '' when absent)."""
    match = _BINLOG_POS.search(info.get("binlog_pos", ""))
    if not match:
        return None, None, ""
    gtid = re.sub(r"\s+", "", match["gtid"] or "")
    return match["file"], int(match["pos"]), gtid


def tool_error(log_path: Path) -> str:
    """The most telling line of a tool's log: its last error, else its last line."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "[ERROR]" in line or "error" in line.lower() or "failed" in line.lower():
            return line[-300:]
    return lines[-1][-300:] if lines else "no output"


def failure(tool: str, code: int, log_path: Path) -> str:
    """One line: how the tool ended, and (unless a signal ended it) its last error."""
    if code < 0:
        return f"{tool} {exit_text(code)}"
    return f"{tool} {exit_text(code)}: {tool_error(log_path)}"


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def option_value(value: str) -> str:
    """`value` quoted for a MySQL option file, read back exactly (checked with my_print_defaults).

    Unquoted, `#` starts a comment, surrounding spaces are dropped and quotes are
    eaten; inside double quotes the reader turns `\\`, `\"`, `\n`, `\r`, `\t` back.
    A newline can therefore never end the line and inject another option.
    """
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def write_client_cnf(path: Path, server_cnf: str | None, socket: str, password: str | None) -> None:
    """A private defaults file: the server's config plus how to connect (the password
    stays off the command line, where `ps` and xtrabackup_info would show it)."""
    lines = []
    if server_cnf and os.path.exists(server_cnf):
        lines.append(f"!include {server_cnf}")
    for group in ("mariabackup", "xtrabackup"):
        lines += [f"[{group}]", "user=root", f"socket={socket}"]
        if password:
            lines.append(f"password={option_value(password)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a kill -9 does not take this long
        log.error("child %s did not exit after SIGKILL", proc.pid)


def stream_backup(*, flavor: Flavor, storage: Storage, key: str, socket: str, server_cnf: str | None = None,
                  password: str | None = None, datadir: str | None = None, progress: Progress | None = None,
                  should_stop: Callable[[], str | None] | None = None, extra_args: Sequence[str] = (),
                  zstd_level: int = ZSTD_LEVEL, tmp_root: str | None = None,
                  on_started: Callable[[subprocess.Popen], None] | None = None) -> StreamResult:
    """Run the pipeline into `storage` at `key`; returns what was stored.  Raises SnapshotError.

    `should_stop()` is polled for every chunk: a non-None reason aborts (e.g.
    the snapshot lock was lost).  `on_started(backup_process)` lets a caller
    (tests, benchmarks) see the tool's process.
    """
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="triton-mysql-backup-", dir=tmp_root))
    backup: subprocess.Popen | None = None
    zstd: subprocess.Popen | None = None
    tool = flavor.backup_tool
    try:
        target, lsn = workdir / "target", workdir / "lsn"
        target.mkdir()
        lsn.mkdir()
        client_cnf = workdir / "backup.cnf"
        write_client_cnf(client_cnf, server_cnf, socket, password)
        extra = [f"--extra-lsndir={lsn}"]
        if datadir:
            extra.append(f"--datadir={datadir}")
        argv = flavor.backup_argv(str(client_cnf), str(target), [*extra, *extra_args])
        tool_log_path, zstd_log_path = workdir / "tool.log", workdir / "zstd.log"
        with open(tool_log_path, "wb") as tool_log, open(zstd_log_path, "wb") as zstd_log:
            try:
                backup = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=tool_log,
                                          preexec_fn=_lower_priority)
            except OSError as exc:
                raise SnapshotError(f"cannot run {tool}: {exc.strerror or exc}") from None
            assert backup.stdout is not None
            _grow_pipe(backup.stdout.fileno())
            try:
                zstd = subprocess.Popen(["zstd", f"-{zstd_level}", "-T0", "-q", "-c"], stdin=backup.stdout,
                                        stdout=subprocess.PIPE, stderr=zstd_log, preexec_fn=_lower_priority)
            except OSError as exc:
                raise SnapshotError(f"cannot run zstd: {exc.strerror or exc}") from None
            finally:
                backup.stdout.close()  # zstd has it now; we must not hold the pipe open
            if on_started is not None:
                on_started(backup)
            assert zstd.stdout is not None
            fd = zstd.stdout.fileno()
            _grow_pipe(fd)
            sha = hashlib.sha256()
            size = 0
            source_bytes: int | None = None
            next_sample = time.monotonic()
            with storage.open_write(key) as writer:
                while True:
                    chunk = os.read(fd, CHUNK)
                    if not chunk:
                        break
                    sha.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                    if should_stop is not None:
                        reason = should_stop()
                        if reason:
                            raise SnapshotError(reason)
                    if progress is not None and time.monotonic() >= next_sample:
                        next_sample = time.monotonic() + PROGRESS_SAMPLE
                        source_bytes = process_read_bytes(backup.pid) or source_bytes
                        progress.update(source_bytes or 0, size)
                zstd_code = zstd.wait()
                source_bytes = process_read_bytes(backup.pid) or source_bytes
                backup_code = backup.wait()
                # A tool killed by a signal is the cause; the other one merely lost its pipe.
                ended = [(tool, backup_code, tool_log_path), ("zstd", zstd_code, zstd_log_path)]
                for name, code, path in sorted(ended, key=lambda e: e[1] >= 0):
                    if code != 0:
                        raise SnapshotError(failure(name, code, path))
                if "completed OK!" not in tool_log_path.read_text(errors="replace")[-4000:]:
                    raise SnapshotError(f"{tool} did not report success: {tool_error(tool_log_path)}")
                info_path = lsn / "xtrabackup_info"
                try:
                    info = parse_xtrabackup_info(info_path.read_text(errors="replace"))
                except OSError:
                    raise SnapshotError(f"{tool} wrote no xtrabackup_info into --extra-lsndir") from None
                binlog_file, binlog_pos, gtid = binlog_position(info)
                if binlog_file is None:
                    log.warning("%s recorded no binlog position (binary logging off?): clones of this "
                                "snapshot cannot replicate", tool)
                writer.commit()
        if progress is not None:
            progress.update(source_bytes or 0, size)
        return StreamResult(size=size, sha256=sha.hexdigest(), binlog_file=binlog_file, binlog_pos=binlog_pos,
                            gtid=gtid, server_version=info.get("server_version") or None,
                            tool=info.get("tool_name") or tool, tool_version=info.get("tool_version") or None,
                            source_bytes=source_bytes, seconds=time.monotonic() - started)
    except StorageError as exc:
        raise SnapshotError(str(exc)) from None
    finally:
        _kill(zstd)
        _kill(backup)
        if zstd is not None and zstd.stdout is not None:
            zstd.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)
