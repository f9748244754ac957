"""Leaks and injections: the mariabackup option file, file:// snapshot permissions, `status`,
and the warning about credentials on an unencrypted link."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.test_config import BASE, run_cli
from triton_mysql.backup.pipeline import write_client_cnf
from triton_mysql.storage.local import LocalStorage

MY_PRINT_DEFAULTS = shutil.which("my_print_defaults") or "/usr/bin/my_print_defaults"


@pytest.mark.parametrize("password", [
    "ab#cd", "  spaced out  ", "q\"uo'te", "back\\slash\\", "semi;colon = x", "ünï©ødé",
    "line\n[mysqld]\nskip-grant-tables", "tab\there\rcr", "\\n literally", '"', "'", "#",
])
def test_option_file_gives_mariabackup_the_password_exactly(password, tmp_path):
    cnf = tmp_path / "backup.cnf"
    write_client_cnf(cnf, None, "/run/mysqld/mysqld.sock", password)
    assert stat.S_IMODE(cnf.stat().st_mode) == 0o600
    out = subprocess.run([MY_PRINT_DEFAULTS, f"--defaults-file={cnf}", "mariabackup"], capture_output=True,
                         timeout=10, check=True).stdout.decode()
    assert out == f"--user=root\n--socket=/run/mysqld/mysqld.sock\n--password={password}\n"
    # Nothing reached another group either (an injected "[mysqld]" would show up here).
    other = subprocess.run([MY_PRINT_DEFAULTS, f"--defaults-file={cnf}", "mysqld"], capture_output=True,
                           timeout=10, check=True).stdout.decode()
    assert other == ""


@pytest.fixture
def open_umask():
    """umask 0: the modes below must come from the code, not from a careful umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_file_snapshots_are_private(tmp_path, open_umask):
    root = tmp_path / "backups"
    storage = LocalStorage(f"file://{root}")
    writer = storage.open_write("mysql-20250101T000000Z/backup.xbstream.zst")
    writer.write(b"a full copy of the database")
    writer.commit()
    assert storage.create_exclusive("mysql-20250101T000000Z/manifest.json", b"{}")
    for directory in (root, root / "mysql-20250101T000000Z"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for name in ("backup.xbstream.zst", "manifest.json"):
        path = root / "mysql-20250101T000000Z" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert storage.open_read("mysql-20250101T000000Z/manifest.json").read() == b"{}"


def test_status_never_shows_a_secret(etcd_server):
    """Records are whatever nodes wrote into discovery: `status` scrubs them like the logs."""
    from triton_mysql.discovery import connect_endpoints
    secret = "status-secret-value-9"
    d = connect_endpoints(etcd=[(etcd_server.host, etcd_server.port)])
    try:
        record = {"node": "n1", "address": "127.0.0.2", "port": 3306, "role": "replica", "gtid": secret,
                  "updated": 0}
        d.put("/triton-mysql/mysql/nodes/n1", json.dumps(record).encode())
    finally:
        d.close()
    env = {**BASE, "ETCD": etcd_server.endpoint, "MYSQL_ROOT_PASSWORD": secret}
    for args in (["status"], ["status", "--json"]):
        result = run_cli(args, env)
        assert result.returncode == 0, result
        assert "n1" in result.stdout and secret not in result.stdout + result.stderr
        assert "***" in result.stdout


def test_on_start_warns_once_about_credentials_in_clear_text(tmp_path):
    env = {**BASE, "ETCD": "192.0.2.1:2379", "ETCD_USER": "triton", "ETCD_PASSWORD": "clear-text-pw-10",
           "DISCOVERY_WAIT": "0", "DISCOVERY_TIMEOUT": "0.3", "MYSQL_CNF": str(tmp_path / "my.cnf"),
           "MYSQL_DATADIR": str(tmp_path / "data"), "MYSQL_SOCKET": str(tmp_path / "mysqld.sock")}
    result = run_cli(["onStart"], env)
    assert result.returncode == 1  # nothing answers at that address: onStart gives up
    warnings = [line for line in result.stderr.splitlines() if "clear text" in line]
    assert len(warnings) == 1 and "192.0.2.1:2379" in warnings[0] and "WARNING" in warnings[0]
    assert "clear-text-pw-10" not in result.stderr
    loopback = run_cli(["onStart"], {**env, "ETCD": "127.0.0.1:1"})
    assert "clear text" not in loopback.stderr
