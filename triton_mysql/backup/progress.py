"""Progress of a backup or restore: a bar on a terminal, a log line otherwise.

The pipeline only sees compressed bytes; how far the backup got is measured
on the source side instead: `/proc/<mariabackup pid>/io` `rchar` counts the
bytes the tool has read (the datadir's files), which against the datadir's
size gives a percentage and an ETA without touching the data path.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Callable

log = logging.getLogger(__name__)

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    for unit in UNITS:
        if abs(n) < 1024 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def human_seconds(s: float) -> str:
    s = max(0, int(s + 0.5))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def directory_size(path: str) -> int:
    """Total size of the regular files under `path` (0 when unreadable)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_blocks * 512 if st.st_blocks * 512 < st.st_size else st.st_size
    return total


def process_read_bytes(pid: int) -> int | None:
    """Bytes process `pid` has read so far (rchar in /proc/PID/io), None when unknown."""
    try:
        with open(f"/proc/{pid}/io", "rb") as f:
            for line in f:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Progress:
    """Reports `update(done, stored)` calls: a bar (TTY) or a log line every `interval` s."""

    def __init__(self, what: str, total: int | None, *, stream: IO[str] | None = None, tty: bool | None = None,
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.total = total if total and total > 0 else None
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = 0.2 if self.tty else interval
        self.clock = clock
        self.start = clock()
        self.last_report = self.start
        self.done = 0
        self.stored = 0
        self.lines = 0

    def update(self, done: int, stored: int) -> None:
        """`done`: source bytes processed (for the percentage); `stored`: bytes written to storage."""
        self.done = max(self.done, done)
        self.stored = stored
        now = self.clock()
        if now - self.last_report >= self.interval:
            self.last_report = now
            self._report(now)

    def text(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        parts = []
        if self.total:
            fraction = min(1.0, self.done / self.total)
            parts.append(f"{fraction * 100:3.0f}%")
            parts.append(f"{human_bytes(self.done)} of {human_bytes(self.total)}")
        else:
            parts.append(human_bytes(self.done))
        parts.append(f"{human_bytes(self.stored)} stored")
        parts.append(f"{human_bytes(rate)}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {human_seconds(max(0.0, self.total - self.done) / rate)}")
        return ", ".join(parts)

    def _bar(self, width: int = 24) -> str:
        if not self.total:
            return ""
        filled = int(width * min(1.0, self.done / self.total))
        return "[" + "#" * filled + "." * (width - filled) + "] "

    def _report(self, now: float) -> None:
        self.lines += 1
        if self.tty:
            self.stream.write(f"\r{self.what}: {self._bar()}{self.text(now)}\033[K")
            self.stream.flush()
        else:
            log.info("%s progress: %s", self.what, self.text(now))

    def finish(self, ok: bool = True) -> None:
        """Final state: the bar's last line on a terminal (log lines need no closing)."""
        if self.tty:
            if ok and self.total:
                self.done = max(self.done, self.total)
            self.stream.write(f"\r{self.what}: {self._bar()}{self.text()}\033[K\n")
            self.stream.flush()
