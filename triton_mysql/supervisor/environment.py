"""What the app (mysqld) may see of the supervisor's environment.

The container's environment holds every secret of the node: database
passwords, cloud keys, discovery tokens.  The hooks need them; mysqld does
not, and a process's environment is readable wherever its memory or
`/proc/<pid>/environ` is (a core dump, a debugger, a UDF, an error report).
So the app gets an allow-list, and everything else is left out:

* the process basics: PATH, HOME, USER, LOGNAME, SHELL, TERM, HOSTNAME, PWD, TMPDIR;
* locale and time: LANG, LANGUAGE, LC_*, TZ;
* how `bin/triton-mysqld` finds the server and its config: MYSQLD, MYSQL_CNF;
* what mysqld itself reads from the environment: UMASK, UMASK_DIR (file modes);
* memory allocator tuning: LD_PRELOAD, LD_LIBRARY_PATH (e.g. jemalloc), MALLOC_*.

Not passed, on purpose: MYSQL_PWD, MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_UNIX_PORT
and MYSQL_HOME (client or option-file settings that would override the
generated config), and every other variable.  The hooks still get the whole
environment (SPEC §4).
"""
from __future__ import annotations

from typing import Mapping

APP_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "HOSTNAME", "PWD", "TMPDIR",
    "LANG", "LANGUAGE", "TZ",
    "MYSQLD", "MYSQL_CNF",
    "UMASK", "UMASK_DIR",
    "LD_PRELOAD", "LD_LIBRARY_PATH",
})
APP_ALLOWED_PREFIXES = ("LC_", "MALLOC_")


def app_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` the app is started with (see the module docstring)."""
    return {name: value for name, value in env.items()
            if name in APP_ALLOWED or name.startswith(APP_ALLOWED_PREFIXES)}
